"""Scaling of the gallery transform and the sharded search: local engine vs Ray on 1, 2, all workers.

    python -m bench.scale [--rows 400000] [--dim 64] [--out bench/results/scale.json]

Same data for every engine; the local engine is one process. Ray runs on a local cluster started with
``num_cpus`` = workers (threads per process pinned to 1 so a worker is one core). Reported: rows/s,
the ratio to the local engine, Ray's fixed cost per task (a no-op task's round trip), and a projection
to 1B items on N nodes from the measured per-worker rate.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core per worker, and the same for the local engine

import numpy as np  # noqa: E402

from bench.common import machine_info, usable_cpus, write_json  # noqa: E402

BILLION = 1_000_000_000


def make_bundle(work: Path, dim: int, seed: int = 0) -> Path:
    """A forward (FCT, old -> new) bundle fitted on random data."""
    from core.adapters import FCTAdapter, save_adapter
    from core.adapters.closed_form import ridge_path
    from core.bundle import export_bundle
    from core.retrieval import l2_normalize
    from core.store import Workspace

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


def run(rows: int, dim: int, parts: int, n_queries: int, k: int, work: Path) -> dict[str, Any]:
    import ray

    from core.evaluation.search import SearchConfig, search
    from core.scale.gallery_transform import transform_gallery
    from core.scale.sharded_search import sharded_search

    rng = np.random.default_rng(0)
    gallery = rng.standard_normal((rows, dim)).astype(np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    queries = gallery[rng.choice(rows, n_queries, replace=False)] + 0.01
    np.save(work / "g.npy", gallery)
    write_dataset(work / "in", gallery, parts)
    bundle = make_bundle(work, dim)
    src = str(work / "in")

    def transform(engine: str) -> float:
        out = work / f"out-{engine}"
        shutil.rmtree(out, ignore_errors=True)
        return transform_gallery(bundle, src, str(out), engine=engine).seconds

    transform("local")  # warm: the local engine loads the bundle once, as a warm Ray worker has
    local_t = min(transform("local") for _ in range(2))
    local_s = min(time_of(lambda: search(queries, gallery, k, config=SearchConfig(method="exact", threads=1)))
                  for _ in range(2))
    results: dict[str, Any] = {"local": {"transform_rows_per_s": rows / local_t, "search_rows_per_s": rows / local_s}}
    workers = sorted({1, 2, usable_cpus()})
    mm = np.load(work / "g.npy", mmap_mode="r")
    for w in workers:
        ray.init(num_cpus=w, include_dashboard=False, log_to_driver=False, configure_logging=False)
        try:
            overhead = task_overhead_ms()
            transform("ray")  # warm: workers import torch and load the bundle once
            t = min(transform("ray") for _ in range(2))
            sharded_search(queries, mm, k, shards=w)
            s = min(time_of(lambda w=w: sharded_search(queries, mm, k, shards=w)) for _ in range(2))
        finally:
            ray.shutdown()
        results[f"ray_{w}"] = {"workers": w, "task_overhead_ms": overhead,
                               "transform_rows_per_s": rows / t, "transform_ratio_vs_local": local_t / t,
                               "search_rows_per_s": rows / s, "search_ratio_vs_local": local_s / s}
    return {"rows": rows, "dim": dim, "partitions": parts, "queries": n_queries, "k": k, "results": results,
            "projection": projection(results, workers[-1], n_queries)}


def time_of(fn: Any) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def projection(results: dict[str, Any], all_workers: int, n_queries: int) -> dict[str, Any]:
    """Hours for 1B items on N nodes of C workers each, from the measured per-worker rates (linear)."""
    best = results[f"ray_{all_workers}"]
    per_worker_t = best["transform_rows_per_s"] / all_workers
    per_worker_s = best["search_rows_per_s"] / all_workers
    out = {"per_worker_transform_rows_per_s": per_worker_t, "per_worker_search_gallery_rows_per_s": per_worker_s,
           "search_queries": n_queries, "nodes": {}}
    for nodes in (1, 4, 16, 64):
        for cores in (16, 64):
            w = nodes * cores
            out["nodes"][f"{nodes}x{cores}"] = {
                "transform_hours": BILLION / (per_worker_t * w) / 3600,
                "search_hours_per_query_batch": BILLION / (per_worker_s * w) / 3600,
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--parts", type=int, default=16)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("bench/results/scale.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = run(args.rows, args.dim, args.parts, args.queries, args.k, Path(tmp))
    result["machine"] = machine_info()
    write_json(args.out, result)
    for name, r in result["results"].items():
        print(name, {key: round(v, 3) if isinstance(v, float) else v for key, v in r.items()})


if __name__ == "__main__":
    main()
