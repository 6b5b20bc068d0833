"""Real stores for the connector tests, each filled through the store's own client library.

Sources are written the way users' applications write them (never through Embridge's connector),
so a test reads back what a real deployment holds. PostgreSQL is a real server with pgvector,
started once per session by ``pgserver`` (its wheel ships the server and the extension).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embridge.core.cli.main import main

STORES = ("parquet", "lancedb", "qdrant", "chroma", "pgvector")


@dataclass
class StoreCase:
    """A filled source collection and the URIs of its shadow and alias."""

    kind: str
    source: str
    target: str
    alias_uri: str  # the alias, read like a collection
    rollback: str  # the source collection, with the alias named
    base: str


def _fsl(vectors: np.ndarray) -> Any:
    import pyarrow as pa

    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.astype(np.float32).ravel()), vectors.shape[1])


def parquet_dataset(folder: Path, vectors: np.ndarray) -> str:
    """One Parquet file of (id 0.., vector) rows in a new ``folder``; its ``parquet://`` URI."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True)
    pq.write_table(pa.table({"id": pa.array(range(len(vectors)), pa.int64()), "vector": _fsl(vectors)}),
                   folder / "part-0.parquet")
    return f"parquet://{folder}"


def fill_source(kind: str, root: Path, ids: list[int], vectors: np.ndarray, labels: list[str],
                pg_base: str | None = None, name: str = "docs_v1") -> StoreCase:
    """Write ``docs_v1`` with payload fields ``label`` and ``body`` into a new store under ``root``."""
    bodies = [f"text of point {i}" for i in ids]
    if kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        folder = root / "pq" / name
        folder.mkdir(parents=True)
        half = len(ids) // 2
        for n, part in enumerate((slice(0, half), slice(half, None))):
            table = pa.table({"id": pa.array(ids[part], pa.int64()), "vector": _fsl(vectors[part]),
                              "label": labels[part], "body": bodies[part]})
            pq.write_table(table, folder / f"part-{n}.parquet")
        base = f"parquet://{root / 'pq'}"
        return StoreCase(kind, f"{base}/{name}", f"{base}/docs_v2", f"{base}/docs", f"{base}/{name}?alias=docs", base)
    if kind == "lancedb":
        import lancedb
        import pyarrow as pa

        db = lancedb.connect(str(root / "lance"))
        db.create_table(name, data=pa.table({"id": pa.array(ids, pa.int64()), "vector": _fsl(vectors),
                                             "label": labels, "body": bodies}))
        base = f"lancedb://{root / 'lance'}"
    elif kind == "qdrant":
        from qdrant_client import QdrantClient, models

        client = QdrantClient(path=str(root / "qdrant"))
        client.create_collection(name, vectors_config=models.VectorParams(size=vectors.shape[1],
                                                                          distance=models.Distance.COSINE))
        client.upsert(name, points=models.Batch(ids=ids, vectors=vectors.tolist(),
                                                payloads=[{"label": lab, "body": b} for lab, b in zip(labels, bodies, strict=True)]))
        client.close()
        base = f"qdrant://{root / 'qdrant'}"
    elif kind == "chroma":
        import chromadb
        from chromadb.config import Settings

        client = chromadb.PersistentClient(path=str(root / "chroma"), settings=Settings(anonymized_telemetry=False))
        col = client.create_collection(name, metadata={"hnsw:space": "cosine"})
        step = 1000
        for start in range(0, len(ids), step):
            col.add(ids=[str(i) for i in ids[start:start + step]], embeddings=vectors[start:start + step],
                    metadatas=[{"label": lab, "body": b} for lab, b in zip(labels[start:start + step],
                                                                          bodies[start:start + step], strict=True)])
        base = f"chroma://{root / 'chroma'}"
    elif kind == "pgvector":
        import psycopg
        from pgvector.psycopg import register_vector

        assert pg_base is not None
        with psycopg.connect(pg_base, autocommit=True) as conn:
            register_vector(conn)
            conn.execute(f"create table {name} (id bigint primary key, embedding vector({vectors.shape[1]}), "
                         "label text, body text)")
            with conn.cursor() as cur, cur.copy(f"copy {name} (id, embedding, label, body) from stdin") as cp:
                for i, v, lab, b in zip(ids, vectors, labels, bodies, strict=True):
                    cp.write_row([i, v, lab, b])
        sep = "&" if "?" in pg_base else "?"
        q = f"{pg_base}{sep}column=embedding&table="
        return StoreCase(kind, q + name, q + "docs_v2", q + "docs", q + f"{name}&alias=docs", pg_base)
    else:
        raise ValueError(kind)
    key = "table" if kind == "lancedb" else "collection"
    return StoreCase(kind, f"{base}?{key}={name}", f"{base}?{key}=docs_v2", f"{base}?{key}=docs",
                     f"{base}?{key}={name}&alias=docs", base)


def fresh_pg_database(pg_base: str, name: str) -> str:
    """A new empty database on the session's server (with pgvector); returns its URI."""
    import psycopg

    with psycopg.connect(pg_base, autocommit=True) as conn:
        conn.execute(f"create database {name}")
    with psycopg.connect(pg_base.replace("/postgres?", f"/{name}?"), autocommit=True) as conn:
        conn.execute("create extension if not exists vector")
    return pg_base.replace("/postgres?", f"/{name}?")


def pg_schema_source(pg_base: str, name: str, upgrade: dict, tmp_path: Path, schema: str,
                     *statements: str) -> str:
    """A new database with ``schema`` (and ``statements`` run after it) whose ``schema.docs`` holds the
    upgrade's v1 vectors and labels under ids 0..n-1; returns the database's URI."""
    import psycopg

    base = fresh_pg_database(pg_base, name)
    with psycopg.connect(base, autocommit=True) as conn:
        for statement in (f"create schema {schema}", *statements):
            conn.execute(statement)
    v1 = upgrade["vectors"]["v1"]
    fill_source("pgvector", tmp_path, list(range(len(v1))), v1, upgrade["labels"], pg_base=base, name=f"{schema}.docs")
    return base


def read_all(uri: str) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
    """Every point of a collection by id (as text); fails on a repeated id."""
    from embridge.core.connectors import open_store

    out: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}
    store = open_store(uri)
    try:
        for batch in store.read_batches(500):
            for pid, vec, payload in zip(batch.ids, batch.vectors, batch.payloads, strict=True):
                assert str(pid) not in out, f"point {pid} stored twice"
                out[str(pid)] = (vec, payload)
    finally:
        store.close()
    return out


def fct_upgrade(root: Path) -> dict[str, Any]:
    """The bundle workspace's gallery (v1 vectors, labels) and its fct bundle, exported once under ``root``."""
    from bundle_fixtures import build_upgrade_workspace

    from embridge.core.bundle import export_bundle
    from embridge.core.store import Workspace

    up = build_upgrade_workspace(root / "ws", with_report=False)
    bundle = root / "fct.zip"
    with Workspace.open(up["path"]) as ws:
        export_bundle(ws, bundle, [up["runs"]["fct"]])
        labels = ws.labels(up["ids"])
    return {**up, "bundle": bundle, "labels": [str(x) for x in labels]}


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    code = main([*args, "--json"])
    out, err = capsys.readouterr()
    return code, json.loads(out) if code == 0 else out, err


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def one_line(code: int, err: str, *needles: str, status: int = 1) -> None:
    """Exit ``status`` (2: an option's value refused by its form) and one error line (besides progress lines)
    holding every needle."""
    lines = [line for line in err.splitlines() if not re.match(r"\S+: \d+/\d+ ", line)]
    assert code == status and len(lines) == 1 and lines[0].startswith("embridge: error: "), err
    for needle in needles:
        assert needle in err, (needle, err)
