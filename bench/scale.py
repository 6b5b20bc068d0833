"""Scale-out on Ray: the gallery transform and the sharded search on 1, 2 and all local workers.

The same data goes through the local engine (one process) and through Ray on a local cluster
started with ``num_cpus`` = workers: the transform as the Ray Data pipeline of ``embridge transform
--engine ray`` (one partition per batch on an actor pool, FCT layer through onnxruntime), the
search as the sharded exact search of ``report --engine ray``. Every process runs its math on one
thread (BLAS and onnxruntime pinned), so a worker is one core and the local engine is one core: the
ratio to the local engine is the speed-up from workers. Ray's own cost is measured twice: the round
trip of a no-op task, and the time per batch of a Ray Data ``map_batches`` that does nothing. The
measurement runs in a child process (``python -m bench.scale``), and a projection to 1B items on N
nodes is computed from the measured per-worker rates (linear in workers, plus the overheads). The
load average under the table says whether other jobs shared the machine while it ran.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import ROOT, Row, Target, area_result, usable_cpus

BILLION = 1_000_000_000
PINNED = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# 384-d, as the galleries of today's text and image models: the per-row work of a real layer and search
SIZES = {"rows": 1_000_000, "dim": 384, "parts": 16, "queries": 1000, "k": 10, "repeats": 2, "noop_batches": 200}
TINY = {"rows": 6_000, "dim": 16, "parts": 4, "queries": 50, "k": 5, "repeats": 1, "noop_batches": 20}
# an idle 2-core machine gives about 1.6-1.9x at 2 workers; a shared one may give less
TWO_WORKERS = Target("ratio_min", 1.6, ">= 1.6x the local engine at 2 workers (idle 2-core machine)")


def pin_threads() -> None:
    """One thread for BLAS and onnxruntime in this process (also a Ray worker setup hook)."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass
    import onnxruntime as ort

    base = ort.SessionOptions

    def one_thread() -> Any:
        options = base()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        return options

    ort.SessionOptions = one_thread


def make_bundle(work: Path, dim: int, seed: int = 0) -> Path:
    """A forward (FCT, old -> new) bundle fitted on random data: the layer a gallery transform runs."""
    from embridge.core.adapters import FCTAdapter, save_adapter
    from embridge.core.adapters.closed_form import ridge_path
    from embridge.core.bundle import export_bundle
    from embridge.core.retrieval import l2_normalize
    from embridge.core.store import Workspace

    rng = np.random.default_rng(seed)
    old = l2_normalize(rng.standard_normal((2000, dim)).astype(np.float32))
    new = l2_normalize(old @ np.linalg.qr(rng.standard_normal((dim, dim)))[0].astype(np.float32))
    with Workspace.create(work / "ws") as ws:
        ids = np.asarray(ws.add_items([{"key": f"i{i}", "label": str(i % 10), "split": "gallery"}
                                       for i in range(2000)]), dtype=np.int64)
        for name, role, vec in (("old", "old", old), ("new", "new", new)):
            ws.add_model(name, role, {"name": name, "kind": "vectors", "dim": dim,
                                      "sha256": name.encode().hex().ljust(64, "0")}, None)
            ws.add_vector_set(name, ids, vec)
        fct = FCTAdapter(dim, dim, hidden=dim)
        fct.init_from_data(old, next(ridge_path(old, new, [1e-3]))[1])
        run = ws.start_run("train", fct.kind, {"method": fct.kind, "old": "old", "new": "new"})
        file = save_adapter(fct.eval(), work / "adapter.pt")
        row = ws.add_adapter(run, fct.kind, fct.direction, dim, dim, "old", "new", file,
                             {**fct.config(), "input_normalised": True})
        ws.finish_run(run, "completed", metrics={"adapter_id": row["id"]})
        export_bundle(ws, work / "fct.zip", [run], gallery=False)
    return work / "fct.zip"


def write_dataset(folder: Path, vectors: np.ndarray, parts: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True)
    for i, rows in enumerate(np.array_split(np.arange(len(vectors)), parts)):
        flat = pa.array(vectors[rows].ravel())
        pq.write_table(pa.table({"id": pa.array(rows, pa.int64()),
                                 "vector": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])}),
                       folder / f"part-{i:04d}.parquet")


def task_overhead_ms(n: int = 300) -> float:
    """Milliseconds per no-op Ray task (submit, schedule, run, return) on the open session."""
    import ray

    noop = ray.remote(num_cpus=1)(lambda: None)
    ray.get([noop.remote() for _ in range(20)])
    t = time.perf_counter()
    ray.get([noop.remote() for _ in range(n)])
    return 1000 * (time.perf_counter() - t) / n


class _Nothing:
    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return batch


def arrivals(mapped: Any) -> list[float]:
    """Seconds from the start of iteration at which each output row of a Ray dataset arrives."""
    t = time.perf_counter()
    out = []
    for _ in mapped.iter_rows():
        out.append(time.perf_counter() - t)
    return out


def batch_overhead(workers: int, n: int, repeats: int) -> tuple[float, float]:
    """Ray Data's cost of a ``map_batches`` built as the transform's (actor pool of ``workers``, one row
    per block and per batch) that does nothing: (seconds to the first row, ms per batch and worker after)."""
    import ray.data

    best = (float("inf"), float("inf"))
    for _ in range(repeats):
        ds = ray.data.from_items([{"i": i} for i in range(n)], override_num_blocks=n)
        times = arrivals(ds.map_batches(_Nothing, batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers),
                                        num_cpus=1))
        per_batch = 1000 * (times[-1] - times[0]) / (n - 1) * workers
        best = (min(best[0], times[0]), min(best[1], per_batch))
    return best


def measure(sizes: dict[str, int], work: Path) -> dict[str, Any]:
    """All timings, in this (pinned) process; local first, then Ray at each worker count."""
    import ray

    from embridge.core.evaluation.search import SearchConfig, search
    from embridge.core.scale.gallery_transform import transform_gallery
    from embridge.core.scale.sharded_search import sharded_search

    pin_threads()
    rows, dim, k, repeats = sizes["rows"], sizes["dim"], sizes["k"], sizes["repeats"]
    rng = np.random.default_rng(0)
    gallery = rng.standard_normal((rows, dim), dtype=np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    queries = gallery[rng.choice(rows, sizes["queries"], replace=False)] + 0.01
    np.save(work / "g.npy", gallery)
    write_dataset(work / "in", gallery, sizes["parts"])
    bundle = make_bundle(work, dim)
    src = str(work / "in")

    def transform(engine: str) -> float:
        out = work / f"out-{engine}"
        shutil.rmtree(out, ignore_errors=True)
        return transform_gallery(bundle, src, str(out), engine=engine).seconds

    def ray_transform() -> tuple[float, float]:
        """(seconds end to end, seconds from the first finished partition to the last)."""
        out, done = work / "out-ray", []
        shutil.rmtree(out, ignore_errors=True)
        began = time.perf_counter()
        total = transform_gallery(bundle, src, str(out), engine="ray",
                                  on_progress=lambda *_: done.append(time.perf_counter() - began)).seconds
        return total, done[-1] - done[0]

    def timed(fn: Any) -> float:
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t

    transform("local")  # warm: the local engine loads the bundle once, as a warm Ray worker has
    local_t = min(transform("local") for _ in range(repeats))
    local_s = min(timed(lambda: search(queries, gallery, k, config=SearchConfig(method="exact", threads=1)))
                  for _ in range(repeats))
    out: dict[str, Any] = {"local": {"transform_s": local_t, "search_s": local_s}}
    mm = np.load(work / "g.npy", mmap_mode="r")
    for w in sorted({1, 2, usable_cpus()}):
        ray.init(address="local", num_cpus=w, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 runtime_env={"env_vars": PINNED, "worker_process_setup_hook": "bench.scale.pin_threads"})
        try:
            task_ms, (start_s, batch_ms) = task_overhead_ms(), batch_overhead(w, sizes["noop_batches"], repeats)
            ray_transform()  # warm: the first job on a fresh cluster starts Ray Data itself
            runs = [ray_transform() for _ in range(repeats)]
            sharded_search(queries, mm, k, shards=w)
            s = min(timed(lambda w=w: sharded_search(queries, mm, k, shards=w)) for _ in range(repeats))
        finally:
            ray.shutdown()
        out[f"ray_{w}"] = {"workers": w, "transform_s": min(r[0] for r in runs),
                           "steady_s": min(r[1] for r in runs), "search_s": s, "task_overhead_ms": task_ms,
                           "batch_overhead_ms": batch_ms, "pipeline_start_s": start_s}
    return out


def projection(times: dict[str, Any], sizes: dict[str, int]) -> dict[str, Any]:
    """Time for 1B items on N nodes of C workers, from the per-worker rates at all local workers."""
    best = max((v for k, v in times.items() if k.startswith("ray_")), key=lambda v: v["workers"])
    w = best["workers"]
    # steady state: the partitions after the first one, over the time between the first and last to finish
    per_worker_t = sizes["rows"] * (sizes["parts"] - 1) / sizes["parts"] / best["steady_s"] / w
    per_worker_s = sizes["rows"] / best["search_s"] / w
    rows_per_partition = sizes["rows"] / sizes["parts"]
    overhead_s = best["batch_overhead_ms"] / 1000 * BILLION / rows_per_partition  # summed over all workers
    nodes = {}
    for n_nodes, cores in ((1, 16), (4, 16), (16, 16), (64, 64)):
        workers = n_nodes * cores
        nodes[f"{n_nodes}x{cores}"] = {
            "workers": workers,
            "transform_minutes": ((BILLION / per_worker_t + overhead_s) / workers + best["pipeline_start_s"]) / 60,
            "search_minutes": BILLION / per_worker_s / workers / 60,
        }
    return {"per_worker_transform_rows_per_s": per_worker_t, "per_worker_search_gallery_rows_per_s": per_worker_s,
            "rows_per_partition": rows_per_partition, "search_queries": sizes["queries"], "dim": sizes["dim"],
            "nodes": nodes}


def rows_of(times: dict[str, Any], sizes: dict[str, int]) -> list[Row]:
    n = sizes["rows"]
    local = times["local"]
    out = [Row("transform, local engine", "rows/s", n / local["transform_s"], note="one process, one thread"),
           Row("search, local engine", "gallery rows/s", n / local["search_s"],
               note=f"{sizes['queries']} queries, k={sizes['k']}, exact, one thread")]
    for key in sorted((k for k in times if k.startswith("ray_")), key=lambda k: times[k]["workers"]):
        r = times[key]
        w = r["workers"]
        target = TWO_WORKERS if w == 2 else None
        out.append(Row(f"transform, Ray Data on {w} worker{'s' * (w > 1)}, end to end", "rows/s",
                       n / r["transform_s"], n / local["transform_s"], "local engine, same data",
                       note=f"{sizes['parts']} partitions; includes starting the actor pool and loading the "
                            "bundle in each actor"))
        steady = n * (sizes["parts"] - 1) / sizes["parts"] / r["steady_s"]
        out.append(Row(f"transform, Ray Data on {w} worker{'s' * (w > 1)}, steady state", "rows/s", steady,
                       n / local["transform_s"], "local engine, same data", target,
                       note="partitions 2..N, first to last finished"))
        out.append(Row(f"search, Ray on {w} shard worker{'s' * (w > 1)}", "gallery rows/s", n / r["search_s"],
                       n / local["search_s"], "local engine, same data", target))
        out.append(Row(f"Ray Data overhead per batch, {w} worker{'s' * (w > 1)}", "ms", r["batch_overhead_ms"],
                       note=f"no-op map_batches, one row per batch; pipeline start {r['pipeline_start_s']:.2f} s; "
                            f"no-op Ray task round trip {r['task_overhead_ms']:.2f} ms"))
    return out


def projection_notes(p: dict[str, Any]) -> list[str]:
    lines = [f"Projection to 1B items from the per-worker rates at all local workers "
             f"({p['per_worker_transform_rows_per_s']:,.0f} rows/s per worker for the transform, "
             f"{p['per_worker_search_gallery_rows_per_s']:,.0f} gallery rows/s per worker for a "
             f"{p['search_queries']}-query search, dim {p['dim']}), linear in workers, plus Ray Data's overhead per "
             f"partition of {p['rows_per_partition']:,.0f} rows and the pipeline's start:"]
    for name, v in p["nodes"].items():
        lines.append(f"{name} ({v['workers']} workers): transform {v['transform_minutes']:.1f} min, "
                     f"one search {v['search_minutes']:.1f} min")
    return lines


def child(argv: list[str]) -> None:
    """``python -m bench.scale --child SIZES_JSON OUT_JSON``: measure in this pinned process."""
    sizes, out = json.loads(argv[1]), Path(argv[2])
    with tempfile.TemporaryDirectory(prefix="embridge-bench-scale-") as tmp:
        times = measure(sizes, Path(tmp))
    out.write_text(json.dumps(times))


def run(tiny: bool, device: str) -> dict[str, Any]:
    """The ``scale`` area of ``bench.run_all``: measure in a child process, then build the rows."""
    started = time.time()
    sizes = TINY if tiny else SIZES
    with tempfile.TemporaryDirectory(prefix="embridge-bench-scale-") as tmp:
        out = Path(tmp) / "times.json"
        env = {**os.environ, **PINNED, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        proc = subprocess.run([sys.executable, "-m", "bench.scale", "--child", json.dumps(sizes), str(out)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"the scale child failed: {proc.stderr.strip()[-2000:]}")
        times = json.loads(out.read_text())
    proj = projection(times, sizes)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    notes = [f"{sizes['rows']:,} rows of dim {sizes['dim']} in {sizes['parts']} Parquet partitions; "
             f"{usable_cpus()} usable cores; the local engine and every Ray worker run on one thread.",
             "Load average at the end of the run "
             f"{', '.join(f'{x:.1f}' for x in load) if load else 'unknown'} on {usable_cpus()} cores (the "
             "benchmark's own workers included; a value well above the cores means other jobs shared them and "
             "the ratios are noisy). 'Steady state' times partitions 2..N, after the pool has started and "
             "each actor has loaded the bundle; 'end to end' includes both.",
             *projection_notes(proj)]
    result = area_result("scale", rows_of(times, sizes), {**sizes, "times": times, "projection": proj}, notes,
                         started, device)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="toy sizes (a smoke test, not a measurement)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scale.json")
    args = parser.parse_args()
    from bench.common import write_json

    result = run(args.tiny, "cpu")
    write_json(args.out, result)
    for row in result["rows"]:
        ratio = f" ({row['ratio']:.2f}x local)" if row.get("ratio") else ""
        print(f"{row['name']}: {row['measured']:,.2f} {row['unit']}{ratio}")
    for note in result["notes"]:
        print(note)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[1:])
    else:
        main()
