"""Store migration: points per second through each local vector store, against its own bulk insert.

Measured: ``embridge migrate`` (``embridge.core.connectors.migration.migrate_store``) moving N 384-d points
from a source collection into a new one through a forward (fct) bundle: read, transform, write,
checkpoint and verify, with 65,536-point batches. Floor, same store, same machine, same vectors:
the store's own client inserting the already-transformed vectors into a fresh collection in batches
of the same size (Parquet ``write_table``, LanceDB ``add``, Qdrant ``upsert``, Chroma ``add``,
PostgreSQL binary ``COPY``). Ratio = migration rate / bulk-insert rate; target >= 0.8. Peak memory:
the migration runs in a child process of its own (in-process under ``--tiny``); its peak private memory (RssAnon) above the
level just before the migration started, target <= 1 GiB beyond one batch. ``SIZES`` gives each
store's default size (1M for Parquet, LanceDB and PostgreSQL; embedded Qdrant persists point by
point and Chroma builds its HNSW index while inserting, at tens to hundreds of points a second, so
they run smaller); the note under the table gives the sizes of the recorded run. The migration
reads and transforms the next batch in a background thread while the store writes the current one.
The transform alone (``transform_only_s``, the fct layer through the bundle's torch-free ONNX
runtime) is timed too, and ``overlap_ceiling`` = bulk insert / max(bulk insert, transform) is the
best ratio a perfect overlap could reach on this machine: where it is below 0.8 the CPU time of the
transform, not the store, bounds the rate.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import AnonPeak, Row, Target, area_result, run_child

DIM = 384
BATCH = 65_536
SIZES = {"parquet": 1_000_000, "lancedb": 1_000_000, "pgvector": 1_000_000, "chroma": 20_000, "qdrant": 5_000}
TINY = {"parquet": 500, "lancedb": 500, "pgvector": 500, "chroma": 200, "qdrant": 100}
RATE = Target("ratio_min", 0.8, ">= 0.8x the store's bulk insert")
MEMORY = Target("abs_max", 1024.0, "<= 1024 MiB above the batch")


def chunks(n: int, batch: int, seed: int = 0) -> Any:
    """(ids, old vectors) in batches, the same on every call (seeded per batch)."""
    for start in range(0, n, batch):
        end = min(start + batch, n)
        rng = np.random.default_rng([seed, start])
        yield list(range(start, end)), rng.standard_normal((end - start, DIM), dtype=np.float32)


def build_bundle(folder: Path) -> Path:
    """A real forward (fct) bundle 384 -> 384, trained briefly on synthetic pairs."""
    from embridge.core.bundle import export_bundle
    from embridge.core.store import Workspace
    from embridge.core.train.runs import train_run

    rng = np.random.default_rng(0)
    n = 2_000
    old = rng.standard_normal((n, DIM)).astype(np.float32)
    new = (old @ np.linalg.qr(rng.standard_normal((DIM, DIM)))[0]).astype(np.float32)
    new += 0.1 * rng.standard_normal(new.shape).astype(np.float32)
    ws = Workspace.create(folder / "ws")
    ids = ws.add_items([{"key": f"i{i}", "label": str(i % 10), "split": "gallery"} for i in range(n)])
    for name, role, vectors in (("old", "old", old), ("new", "new", new)):
        ws.add_model(name, role, {"name": name, "kind": "vectors", "dim": DIM, "sha256": name.encode().hex().ljust(64, "0")},
                     None)
        ws.add_vector_set(name, ids, vectors)
    run = train_run(ws, "fct", old="old", new="new", device="cpu", config={"epochs": 1})
    out = folder / "fct.zip"
    export_bundle(ws, out, [run["run_id"]], gallery=False)
    ws.close()
    return out


def store_uris(kind: str, root: Path, pg: str | None) -> tuple[str, str, str]:
    """(source, migration target, bulk-insert target) URIs."""
    if kind == "parquet":
        return (f"parquet://{root}/pq/src", f"parquet://{root}/pq/migrated", f"parquet://{root}/pq/bulk")
    if kind == "pgvector":
        q = f"{pg}&column=embedding&table="
        return q + "src", q + "migrated", q + "bulk"
    key = "table" if kind == "lancedb" else "collection"
    base = {"lancedb": "lancedb", "qdrant": "qdrant", "chroma": "chroma"}[kind]
    return tuple(f"{base}://{root}/{kind}?{key}={name}" for name in ("src", "migrated", "bulk"))  # type: ignore[return-value]


def fill(kind: str, uri: str, n: int) -> None:
    """Write the source with the store's own client (as an application would)."""
    from embridge.core.connectors import Batch, open_store

    store = open_store(uri, "--to")  # written here: a new store folder is expected
    try:
        for n_batch, (ids, old) in enumerate(chunks(n, BATCH)):
            batch = Batch(ids, old, [{"label": str(i % 10)} for i in ids])
            if n_batch == 0:
                store.create(DIM, sample=batch)
            store.write(batch)
    finally:
        store.close()


def bulk_insert_seconds(kind: str, uri: str, n: int, bundle: Any) -> tuple[float, float]:
    """Seconds of the store's native client inserting the transformed vectors, and of the transform alone."""
    from embridge.core.connectors import open_store
    from embridge.core.connectors.connector import SPACE_FIELD

    store: Any = open_store(uri, "--to")
    spent = transform = 0.0
    try:
        for ids, old in chunks(n, BATCH):
            started = time.perf_counter()
            new = bundle(old)
            transform += time.perf_counter() - started
            labels = [str(i % 10) for i in ids]
            spaces = ["bulk"] * len(ids)
            started = time.perf_counter()
            _native_insert(kind, store, ids, new, labels, spaces, SPACE_FIELD)
            spent += time.perf_counter() - started
    finally:
        store.close()
    return spent, transform


def _native_insert(kind: str, store: Any, ids: list[int], vectors: np.ndarray, labels: list[str],
                   spaces: list[str], space_field: str) -> None:
    if kind in ("parquet", "lancedb"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({"id": pa.array(ids, pa.int64()),
                          "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), DIM),
                          "label": labels, space_field: spaces})
        if kind == "parquet":
            store.folder.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, store.folder / f"part-{ids[0]:09d}.parquet")
        elif store._table is None and not store.exists():
            store._table = store.db.create_table(store.collection, data=table)
        else:
            store.table().add(table)
    elif kind == "qdrant":
        from qdrant_client import models

        if not store.client.collection_exists(store.collection):
            store.client.create_collection(store.collection, vectors_config=models.VectorParams(
                size=DIM, distance=models.Distance.COSINE))
        store.client.upsert(store.collection, points=models.Batch(ids=ids, vectors=vectors.tolist(), payloads=[
            {"label": lab, space_field: s} for lab, s in zip(labels, spaces, strict=True)]), wait=True)
    elif kind == "chroma":
        col = store.client.get_or_create_collection(store.collection, metadata={"hnsw:space": "cosine"})
        step = int(store.client.get_max_batch_size())
        for start in range(0, len(ids), step):
            end = start + step
            col.add(ids=[str(i) for i in ids[start:end]], embeddings=vectors[start:end],
                    metadatas=[{"label": lab, space_field: s} for lab, s in zip(labels[start:end], spaces[start:end],
                                                                               strict=True)])
    elif kind == "pgvector":
        conn = store.conn
        conn.execute(f"create table if not exists {store.collection} (id bigint primary key, embedding vector({DIM}), "
                     f"label text, {space_field} text)")
        with conn.transaction(), conn.cursor() as cur, cur.copy(
                f"copy {store.collection} (id, embedding, label, {space_field}) from stdin (format binary)") as cp:
            cp.set_types(["bigint", "vector", "text", "text"])
            for row in zip(ids, vectors, labels, spaces, strict=True):
                cp.write_row(row)


def measure(stage: str, kind: str, n: int, root: Path, bundle_path: str, pg: str | None) -> dict[str, Any]:
    """One measurement: ``prepare`` (fill the source, time the bulk-insert floor) or ``migrate``."""
    source, target, bulk = store_uris(kind, root, pg)
    if stage == "prepare":
        from embridge.core.bundle import load_bundle

        started = time.perf_counter()
        fill(kind, source, n)
        fill_s = time.perf_counter() - started
        bulk_s, transform_s = bulk_insert_seconds(kind, bulk, n, load_bundle(bundle_path))
        return {"fill_s": fill_s, "bulk_s": bulk_s, "transform_s": transform_s}
    from embridge.core.connectors import open_store
    from embridge.core.connectors.migration import migrate_store
    from embridge.core.connectors.transform import load_transform
    from embridge.core.heap import cap_malloc_arenas

    cap_malloc_arenas()  # what migrate_store does first in a fresh process, here before the warm-up opens the store
    load_transform(bundle_path)  # libraries loaded and warm before the baseline
    open_store(source, "--from").close()
    with AnonPeak() as peak:
        baseline = peak.peak
        result = migrate_store(bundle_path, source, target, batch_size=BATCH)
    return {"migrate_s": result.seconds, "verify_s": result.verify_seconds, "written": result.written,
            "verified": result.verification.ok, "peak_above_start_mib": (peak.peak - baseline) / 2**20,
            "baseline_mib": baseline / 2**20}


def child(args: list[str]) -> None:
    """``python -m bench.stores STAGE KIND N ROOT BUNDLE [PG]``: one measurement in its own process."""
    out = measure(args[0], args[1], int(args[2]), Path(args[3]), args[4], args[5] if len(args) > 5 else None)
    print(json.dumps(out), flush=True)


def measured(tiny: bool, stage: str, kind: str, n: int, root: Path, bundle: Path, pg: list[str]) -> dict[str, Any]:
    """A child process per measurement (its own memory); in-process for the --tiny smoke run."""
    if tiny:
        return measure(stage, kind, n, root, str(bundle), pg[0] if pg else None)
    return run_child("bench.stores", [stage, kind, str(n), str(root), str(bundle), *pg], timeout_s=7200)


def start_pg(root: Path) -> tuple[Any, str]:
    import pgserver

    root.chmod(0o711)
    server = pgserver.get_server(root / "pgdata", cleanup_mode="delete")
    server.psql("CREATE EXTENSION IF NOT EXISTS vector;")
    return server, server.get_uri()


def run(tiny: bool, device: str, seed: int = 0, only: list[str] | None = None,
        sizes: dict[str, int] | None = None, on_partial: Any = None) -> dict[str, Any]:
    """Every store in turn; ``on_partial`` gets the result so far after each store (a long run keeps them)."""
    started = time.time()
    sizes = sizes or (TINY if tiny else SIZES)
    rows: list[Row] = []
    notes = [f"{DIM}-d float32 vectors, batches of {BATCH:,} points; sizes per store: "
             + ", ".join(f"{k} {v:,}" for k, v in sizes.items())]
    work = Path(tempfile.mkdtemp(prefix="embridge-bench-stores-"))
    server = None
    try:
        bundle = build_bundle(work)
        for kind in only or list(sizes):
            n = sizes[kind]
            root = work / kind
            root.mkdir()
            pg: list[str] = []
            if kind == "pgvector":
                server, uri = start_pg(root)
                pg = [uri]
            prep = measured(tiny, "prepare", kind, n, root, bundle, pg)
            mig = measured(tiny, "migrate", kind, n, root, bundle, pg) if "error" not in prep else \
                {"error": "not run: preparation failed"}
            if server is not None:
                server.cleanup()
                server = None
            shutil.rmtree(root, ignore_errors=True)
            if "error" in prep or "error" in mig:
                rows.append(Row(f"{kind}: migrate {n:,} points", "points/s", None,
                                note=str(prep.get("error") or mig.get("error"))))
                continue
            rate, floor = n / mig["migrate_s"], n / prep["bulk_s"]
            batch_mib = BATCH * DIM * 4 / 2**20
            ceiling = prep["bulk_s"] / max(prep["bulk_s"], prep["transform_s"])
            rows.append(Row(f"{kind}: migrate {n:,} points", "points/s", rate, floor,
                            f"{kind} bulk insert of the same vectors", RATE,
                            note=f"transform alone {prep['transform_s']:.0f} s, bulk insert {prep['bulk_s']:.0f} s: "
                                 f"a perfect overlap would reach {ceiling:.2f}x" if ceiling < 0.8 else "",
                            details={"migrate_s": mig["migrate_s"], "verify_s": mig["verify_s"],
                                     "bulk_insert_s": prep["bulk_s"], "transform_only_s": prep["transform_s"],
                                     "overlap_ceiling": ceiling, "verified": mig["verified"],
                                     "source_fill_s": prep["fill_s"]}))
            rows.append(Row(f"{kind}: migration peak memory above start, beyond one batch ({batch_mib:.0f} MiB)",
                            "MiB", max(mig["peak_above_start_mib"] - batch_mib, 0.0), target=MEMORY,
                            details={"peak_above_start_mib": mig["peak_above_start_mib"]}))
            if on_partial is not None:
                on_partial(area_result("stores", rows, {"dim": DIM, "batch": BATCH, "sizes": sizes}, notes, started,
                                       device))
    finally:
        if server is not None:
            server.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    return area_result("stores", rows, {"dim": DIM, "batch": BATCH, "sizes": sizes}, notes, started, device)


if __name__ == "__main__":
    child(sys.argv[1:])
