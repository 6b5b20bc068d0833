"""Migration refusals of bad source data (repeated, null ids; NaN vectors) and sources whose ids change type.

Sources are written through the stores' own clients, as applications write them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from store_fixtures import cli, fct_upgrade, read_all

from embridge.core.connectors import open_store


@pytest.fixture(scope="module")
def upgrade(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return fct_upgrade(tmp_path_factory.mktemp("store-sources"))


def lance_source(root: Path, ids: list[Any], vectors: np.ndarray, name: str = "docs") -> str:
    """A LanceDB table of (id, vector, label) rows written with lance (which, unlike lancedb, keeps NaNs)."""
    import lance
    import pyarrow as pa

    flat = pa.array(vectors.astype(np.float32).ravel())
    (root / "ldb").mkdir(exist_ok=True)
    lance.write_dataset(pa.table({"id": pa.array(ids, pa.int64()),
                                  "vector": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1]),
                                  "label": [str(i) for i in range(len(ids))]}), str(root / "ldb" / f"{name}.lance"))
    return f"lancedb://{root / 'ldb'}?table={name}"


def rows(uri: str) -> int:
    store = open_store(uri)
    try:
        return store.count() if store.exists() else 0
    finally:
        store.close()


def one_line(code: int, err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if not re.match(r"\S+: \d+/\d+ ", line)]  # not progress lines
    assert code == 1 and len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, err)


def test_repeated_and_null_ids_are_refused_before_the_batch_is_written(upgrade: dict, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    v1 = upgrade["vectors"]["v1"][:240]
    src = lance_source(tmp_path, [i % 120 for i in range(240)], v1)
    dst = f"lancedb://{tmp_path / 'ldb'}?table=docs_v2"
    args = ["migrate", "--bundle", str(upgrade["bundle"]), "--from", src, "--to", dst, "--batch", "80"]
    for _ in range(2):  # a rerun refuses again and never appends a second copy
        code, _, err = cli(capsys, *args)
        one_line(code, err, "LanceDB", "table 'docs'", "the id 0 appears more than once")
        assert rows(dst) == 80  # the first batch only; the one holding the repeat was never written
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "pq" / "nulls"
    folder.mkdir(parents=True)
    flat = pa.array(v1[:10].astype(np.float32).ravel())
    pq.write_table(pa.table({"id": pa.array([0, 1, None, *range(3, 10)], pa.int64()),
                             "vector": pa.FixedSizeListArray.from_arrays(flat, v1.shape[1])}), folder / "p.parquet")
    dst = f"parquet://{tmp_path / 'pq'}/nulls_v2"
    code, _, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from",
                       f"parquet://{folder}", "--to", dst)
    one_line(code, err, "nulls", "null id")
    assert not (tmp_path / "pq" / "nulls_v2").exists()


def test_a_rerun_after_a_failed_verification_never_copies_again(upgrade: dict, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    v1 = upgrade["vectors"]["v1"][:240]
    src = lance_source(tmp_path, list(range(240)), v1)
    dst = f"lancedb://{tmp_path / 'ldb'}?table=docs_v2"
    args = ["migrate", "--bundle", str(upgrade["bundle"]), "--from", src, "--to", dst, "--batch", "80"]
    assert cli(capsys, *args)[0] == 0
    ckpt = tmp_path / "ldb.embridge" / "lancedb-migrate-docs_v2.json"
    state = json.loads(ckpt.read_text())
    state["status"] = "running"  # what a verification that failed leaves behind
    ckpt.write_text(json.dumps(state))
    code, out, err = cli(capsys, *args)
    assert code == 0, err
    assert out["status"] == "already complete" and out["written"] == 0 and rows(dst) == 240


def test_a_nan_in_the_source_names_the_store_and_point_not_the_bundle(upgrade: dict, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    v1 = upgrade["vectors"]["v1"][:50].copy()
    v1[17, 2] = np.nan
    src = lance_source(tmp_path, list(range(100, 150)), v1)
    dst = f"lancedb://{tmp_path / 'ldb'}?table=docs_v2"
    code, _, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", src, "--to", dst)
    one_line(code, err, "LanceDB", "table 'docs'", "point 117", "NaN")
    assert "fct.zip" not in err and rows(dst) == 0


@pytest.mark.parametrize("kind", ["lancedb", "qdrant"])
def test_integer_ids_migrate_into_chroma_and_a_rerun_only_verifies(kind: str, upgrade: dict, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    v1 = upgrade["vectors"]["v1"][:240]
    if kind == "lancedb":
        src = lance_source(tmp_path, list(range(240)), v1)
    else:
        from qdrant_client import QdrantClient, models

        client = QdrantClient(path=str(tmp_path / "qd"))
        client.create_collection("docs", vectors_config=models.VectorParams(size=v1.shape[1],
                                                                             distance=models.Distance.DOT))
        client.upsert("docs", points=models.Batch(ids=list(range(240)), vectors=v1.tolist()))
        client.close()
        src = f"qdrant://{tmp_path / 'qd'}?collection=docs"
    dst = f"chroma://{tmp_path / 'chr'}?collection=fromint"
    args = ["migrate", "--bundle", str(upgrade["bundle"]), "--from", src, "--to", dst, "--batch", "80"]
    code, out, err = cli(capsys, *args)
    assert code == 0, err
    assert out["status"] == "completed" and out["verification"]["sample"] > 0
    code, out, err = cli(capsys, *args)
    assert code == 0, err
    assert out["status"] == "already complete" and out["written"] == 0
    assert sorted(read_all(dst)) == sorted(str(i) for i in range(240))
    code, out, err = cli(capsys, "check", "--uri", dst)
    assert code == 0, err
    assert "240" in json.dumps(out) and "480" not in json.dumps(out)


def test_an_empty_lancedb_table_gets_an_empty_shadow_that_a_switch_can_serve(upgrade: dict, tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture[str]) -> None:
    v1 = upgrade["vectors"]["v1"][:0]
    src = lance_source(tmp_path, [], v1)
    dst = f"lancedb://{tmp_path / 'ldb'}?table=docs_v2"
    args = ["migrate", "--bundle", str(upgrade["bundle"]), "--from", src, "--to", dst]
    code, out, err = cli(capsys, *args, "--switch", "--alias", "served")
    assert code == 0, err
    assert out["status"] == "completed" and out["total"] == 0 and out["switched"]
    assert (tmp_path / "ldb" / "docs_v2.lance").is_dir() and rows(dst) == 0
    assert rows(f"lancedb://{tmp_path / 'ldb'}?table=served") == 0
    code, out, err = cli(capsys, *args)
    assert code == 0 and out["status"] == "already complete", err


def test_a_batch_of_another_width_is_refused_by_qdrant_with_both_widths(tmp_path: Path) -> None:
    from embridge.core.connectors import Batch, VectorStoreError

    store = open_store(f"qdrant://{tmp_path}/q?collection=docs", "--to")
    try:
        store.create(16)
        store.write(Batch([1, 2], np.ones((2, 16), np.float32), [{}, {}]))
        with pytest.raises(VectorStoreError, match=r"64-d vectors for a 16-d collection") as err:
            store.write(Batch([3], np.ones((1, 64), np.float32), [{}]))
        assert "ids must be" not in str(err.value)
        assert store.count() == 2
    finally:
        store.close()


def test_parquet_writes_vectors_plain_and_payload_compressed(tmp_path: Path) -> None:
    """Embedding floats do not compress: the vector column is written without snappy or a dictionary
    (a third of the write's time), ids and payload with both; the points read back unchanged."""
    import pyarrow.parquet as pq
    from store_fixtures import read_all

    from embridge.core.connectors import Batch, open_store

    vectors = np.random.default_rng(3).standard_normal((300, 16)).astype(np.float32)
    uri = f"parquet://{tmp_path / 'out'}"
    store = open_store(uri, "--to")
    try:
        batch = Batch(list(range(300)), vectors, [{"label": str(i % 7)} for i in range(300)])
        store.create(16, sample=batch)
        store.write(batch)
    finally:
        store.close()
    (file,) = (tmp_path / "out").glob("*.parquet")
    group = pq.ParquetFile(file).metadata.row_group(0)
    columns = {group.column(i).path_in_schema: group.column(i) for i in range(group.num_columns)}
    vector = next(c for name, c in columns.items() if name.startswith("vector."))
    assert vector.compression == "UNCOMPRESSED" and not any("DICTIONARY" in e for e in vector.encodings)
    assert columns["id"].compression == columns["label"].compression == "SNAPPY"
    assert any("DICTIONARY" in e for e in columns["label"].encodings)
    back = read_all(uri)
    assert np.array_equal(np.stack([back[str(i)][0] for i in range(300)]), vectors)
    assert [back[str(i)][1]["label"] for i in range(300)] == [str(i % 7) for i in range(300)]


def test_a_partitioned_parquet_dataset_is_refused_not_read_as_empty(upgrade: dict, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Files under shard=N/ were not listed: the dataset read as empty and a --switch served 0 points."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    v1 = upgrade["vectors"]["v1"][:60]
    root = tmp_path / "pq"
    table = pa.table({"id": pa.array(range(60), pa.int64()),
                      "vector": pa.FixedSizeListArray.from_arrays(pa.array(v1.astype(np.float32).ravel()), v1.shape[1]),
                      "shard": [i % 3 for i in range(60)]})
    pq.write_to_dataset(table, root / "docs", partition_cols=["shard"])
    source = f"parquet://{root / 'docs'}"
    code, _, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", source,
                       "--to", f"parquet://{root / 'docs_v2'}", "--alias", "live", "--switch")
    one_line(code, err, "holds Parquet files in a subfolder (shard=", "partitioned dataset")
    assert not (root / "docs_v2").exists() and not (root / "live").exists()
    ws = tmp_path / "ws"
    assert cli(capsys, "init", "--workspace", str(ws))[0] == 0
    code, _, err = cli(capsys, "import", "--workspace", str(ws), "--from", source, "--model", "m")
    one_line(code, err, "partitioned dataset")
    code, _, err = cli(capsys, "check", "--uri", source)
    one_line(code, err, "partitioned dataset")


def test_chroma_documents_survive_a_migration_and_import_as_text(upgrade: dict, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A RAG collection's documents (its chunk texts) were dropped from the shadow and unreachable on import."""
    import chromadb
    from chromadb.config import Settings

    def chroma() -> Any:  # the settings the connector opens with: one process keeps one client per folder
        return chromadb.PersistentClient(path=str(db), settings=Settings(anonymized_telemetry=False))

    v1 = upgrade["vectors"]["v1"][:40]
    db = tmp_path / "chroma"
    client = chroma()
    texts = [f"chunk {i} of the handbook" if i % 4 else None for i in range(40)]
    client.create_collection("docs").add(ids=[f"c{i}" for i in range(40)], embeddings=v1.astype(np.float32),
                                         documents=texts, metadatas=[{"page": i} for i in range(40)])
    del client
    code, _, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", f"chroma://{db}?collection=docs",
                       "--to", f"chroma://{db}?collection=docs_v2")
    assert code == 0, err
    got = chroma().get_collection("docs_v2").get(include=["documents", "metadatas"])
    shadow = {i: (d, m) for i, d, m in zip(got["ids"], got["documents"], got["metadatas"], strict=True)}
    assert {i: d for i, (d, _) in shadow.items()} == {f"c{i}": t for i, t in enumerate(texts)}
    assert all("document" not in m and m["page"] == int(i[1:]) for i, (_, m) in shadow.items())
    client = chroma()
    client.create_collection("full").add(ids=[f"c{i}" for i in range(40)], embeddings=v1.astype(np.float32),
                                         documents=[f"chunk {i}" for i in range(40)])
    del client
    ws = tmp_path / "ws"
    assert cli(capsys, "init", "--workspace", str(ws))[0] == 0
    code, imported, err = cli(capsys, "import", "--workspace", str(ws), "--from", f"chroma://{db}?collection=full",
                              "--model", "m", "--text-field", "document")
    assert code == 0 and imported["new_items"] == 40, err
    from embridge.core.store import Workspace

    with Workspace.open(ws) as w:
        assert {row["key"]: row["text"] for row in w.items()} == {f"c{i}": f"chunk {i}" for i in range(40)}


def _parquet(root: Path, vectors: np.ndarray, ids: Any, **columns: Any) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    root.mkdir(parents=True)
    flat = pa.array(vectors.astype(np.float32).ravel())
    pq.write_table(pa.table({"id": ids, "vector": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1]), **columns}),
                   root / "part-0.parquet")
    return f"parquet://{root}"


def test_a_misspelt_label_field_is_refused_and_imports_nothing(upgrade: dict, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """--label-field categroy imported 300 points without one label and without a word."""
    v1 = upgrade["vectors"]["v1"][:50]
    source = _parquet(tmp_path / "pq" / "docs", v1, list(range(50)), category=[str(i % 4) for i in range(50)])
    ws = tmp_path / "ws"
    assert cli(capsys, "init", "--workspace", str(ws))[0] == 0
    code, _, err = cli(capsys, "import", "--workspace", str(ws), "--from", source, "--model", "m",
                       "--label-field", "categroy")
    one_line(code, err, "no point has a 'categroy' field (--label-field)")
    code, info, err = cli(capsys, "info", "--workspace", str(ws))
    assert code == 0 and info["items"] == {} and info["models"] == [], (info, err)
    code, imported, err = cli(capsys, "import", "--workspace", str(ws), "--from", source, "--model", "m",
                              "--label-field", "category")
    assert code == 0 and imported["new_items"] == 50, err


@pytest.mark.parametrize("kind", ["binary", "timestamp"])
def test_ids_that_are_neither_integers_nor_text_are_refused_before_anything_is_written(
        kind: str, upgrade: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Binary ids were keyed by their Python repr ("b'b0'"); both kinds crashed the checkpoint (exit 3)."""
    import datetime

    import pyarrow as pa

    v1 = upgrade["vectors"]["v1"][:20]
    ids = (pa.array([f"b{i}".encode() for i in range(20)], pa.binary()) if kind == "binary" else
           pa.array([datetime.datetime(2026, 1, 1, 0, 0, i) for i in range(20)], pa.timestamp("s")))
    source = _parquet(tmp_path / "pq" / "docs", v1, ids)
    target = tmp_path / "pq" / "docs_v2"
    code, _, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", source,
                       "--to", f"parquet://{target}")
    one_line(code, err, f"column 'id' holds {'binary' if kind == 'binary' else 'timestamp'}",
             "integers or text")
    assert not target.exists() and not list((tmp_path / "pq").glob(".embridge*/*"))
    ws = tmp_path / "ws"
    assert cli(capsys, "init", "--workspace", str(ws))[0] == 0
    code, _, err = cli(capsys, "import", "--workspace", str(ws), "--from", source, "--model", "m")
    one_line(code, err, "integers or text")


@pytest.mark.parametrize("case", ["qdrant text ids", "qdrant upper-case uuids", "chroma nested payload"])
def test_a_target_refusing_the_first_batch_leaves_no_collection_and_no_checkpoint(
        case: str, upgrade: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The refusal was one line, but an empty collection and a checkpoint stayed, and `check` then called
    the target half-migrated and said to run the migration again (which could never finish)."""
    import uuid

    import pyarrow as pa

    v1 = upgrade["vectors"]["v1"][:30]
    if case == "qdrant text ids":
        ids, extra, needle = [f"p{i}" for i in range(30)], {}, "Qdrant ids are unsigned integers or UUIDs"
    elif case == "qdrant upper-case uuids":
        ids = [str(uuid.UUID(int=0xABC + i)).upper() for i in range(30)]
        extra, needle = {}, "Qdrant stores this UUID as '00000000-0000-0000-0000-000000000abc'"
    else:
        ids = list(range(30))
        extra = {"meta": pa.array([{"page": i} for i in range(30)], pa.struct([("page", pa.int64())]))}
        needle = "point 0: payload field 'meta' holds a nested object, which Chroma metadata would not keep"
    source = _parquet(tmp_path / "pq" / "docs", v1, ids, **extra)
    store = "qdrant" if case.startswith("qdrant") else "chroma"
    target = f"{store}://{tmp_path / store}?collection=docs_v2"
    code, _, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", source, "--to", target)
    one_line(code, err, needle)
    assert rows(target) == 0
    assert [p.name for p in tmp_path.rglob("*") if "docs_v2" in p.name and p.suffix == ".json"] == []  # no checkpoint


def test_a_lancedb_table_named_as_a_parquet_dataset_beside_it_keeps_its_own_checkpoint(
        upgrade: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A LanceDB table written into the folder of a Parquet dataset of the same name shared its
    checkpoint file: the untouched dataset then read as a half-migrated target, and `check`, `import`
    and a rollback to it were refused."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    v1 = upgrade["vectors"]["v1"][:120]
    folder = tmp_path / "pq" / "docs"
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"id": pa.array(range(120), pa.int64()), "vector": pa.FixedSizeListArray.from_arrays(
        pa.array(v1.astype(np.float32).ravel()), v1.shape[1])}), folder / "part-0.parquet")
    src, dst = f"parquet://{folder}", f"lancedb://{tmp_path / 'pq'}?table=docs"
    assert cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", src, "--to", dst)[0] == 0
    code, out, err = cli(capsys, "check", "--uri", src)
    assert code == 0 and out["migration"] is None and out["spaces"] == {"": 120}, (out, err)
    ws = tmp_path / "ws"
    assert cli(capsys, "init", "--workspace", str(ws))[0] == 0
    code, _, err = cli(capsys, "import", "--workspace", str(ws), "--from", src)
    assert code == 0, err
    assert rows(dst) == 120


def _named_columns_source(folder: Path, v1: np.ndarray) -> str:
    """A Parquet dataset with the application's own column names and a payload column called ``id``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True)
    n = len(v1)
    pq.write_table(pa.table({"doc_id": [f"doc-{i}" for i in range(n)], "embedding": pa.FixedSizeListArray.from_arrays(
        pa.array(v1.astype(np.float32).ravel()), v1.shape[1]), "title": [f"t{i}" for i in range(n)],
        "id": pa.array(range(1000, 1000 + n), pa.int64())}), folder / "part-0.parquet")
    return f"parquet://{folder}?id=doc_id&vector=embedding"


@pytest.mark.parametrize("kind", ["parquet", "lancedb"])
def test_a_shadow_keeps_the_source_tables_column_names_and_payload(upgrade: dict, tmp_path: Path, kind: str,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """`?id=doc_id&vector=embedding` on the source alone wrote `id` and `vector` columns, and the
    payload column `id` was lost to the ids: the application could not read the switched table."""
    src = _named_columns_source(tmp_path / "pq" / "docs_v1", upgrade["vectors"]["v1"][:60])
    dst = (f"parquet://{tmp_path / 'pq'}/docs_v2" if kind == "parquet" else
           f"lancedb://{tmp_path / 'ldb'}?table=docs_v2")
    code, _, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", src, "--to", dst)
    assert code == 0, err
    if kind == "parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(tmp_path / "pq" / "docs_v2")
    else:
        import lancedb

        table = lancedb.connect(str(tmp_path / "ldb")).open_table("docs_v2").to_arrow()
    table = table.sort_by("doc_id")
    assert {"doc_id", "embedding", "title", "id"} <= set(table.column_names), table.column_names
    assert sorted(table.column("id").to_pylist()) == list(range(1000, 1060))  # the payload, kept
    assert sorted(table.column("doc_id").to_pylist()) == sorted(f"doc-{i}" for i in range(60))


def test_a_payload_field_named_as_the_targets_id_column_is_refused_not_dropped(
        upgrade: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _named_columns_source(tmp_path / "pq" / "docs_v1", upgrade["vectors"]["v1"][:60])
    code, _, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", src, "--to",
                       f"parquet://{tmp_path / 'pq'}/docs_v2?id=id")
    one_line(code, err, "payload field 'id'", "?id=")


def _mixed_id_qdrant(root: Path, v1: np.ndarray) -> str:
    """A Qdrant collection of 40 integer ids and then 20 UUIDs, as a Qdrant application may hold."""
    import uuid

    from qdrant_client import QdrantClient, models

    client = QdrantClient(path=str(root / "qdrant"))
    try:
        client.create_collection("mixed", vectors_config=models.VectorParams(size=v1.shape[1],
                                                                              distance=models.Distance.COSINE))
        ids: list[Any] = [*range(40), *(str(uuid.UUID(int=1000 + i)) for i in range(20))]
        client.upsert("mixed", [models.PointStruct(id=pid, vector=v.tolist(), payload={"n": i})
                                for i, (pid, v) in enumerate(zip(ids, v1, strict=True))])
    finally:
        client.close()
    return f"qdrant://{root / 'qdrant'}?collection=mixed"


@pytest.mark.parametrize("batch", ["100", "16", "20"])
def test_ids_mixing_integers_and_text_are_refused_for_a_table_target(upgrade: dict, tmp_path: Path, batch: str,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Qdrant ids mixing integers and UUIDs crashed a migration to Parquet (ArrowInvalid, exit 3). Refused
    in one line; met in a later batch, the half-written shadow's check says which point stopped it, and a
    rerun (whose first new batch, of 20, holds UUIDs only) refuses again by the shadow's own id type."""
    src = _mixed_id_qdrant(tmp_path, upgrade["vectors"]["v1"][:60])
    dst = f"parquet://{tmp_path / 'pq'}/mixed_v2"
    args = ["migrate", "--bundle", str(upgrade["bundle"]), "--from", src, "--to", dst, "--batch", batch]
    code, _, err = cli(capsys, *args)
    one_line(code, err, "mix integers and text")
    if batch == "100":  # refused on its first batch: nothing made
        assert not (tmp_path / "pq" / "mixed_v2").exists()
        return
    for _ in range(2):
        code, out, err = cli(capsys, "check", "--uri", dst)
        assert "mix integers and text" in json.dumps(out) + err and "mend the source" in json.dumps(out) + err, err
        code, _, err = cli(capsys, *args)  # resumed: still refused, nothing of the wrong type written
        one_line(code, err, "mix integers and text")
    written = 40 if batch == "20" else 32  # the whole batches of integer ids before the first UUID
    assert rows(dst) == written and sorted(read_all(dst)) == sorted(str(i) for i in range(written))


def test_a_rollback_after_a_migration_into_another_store_says_why_it_cannot_move_the_alias(
        upgrade: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A switch made the alias in the LanceDB target; rolling back to the Parquet source said only that
    the alias was not one of the source's store, which a user who had just switched could not place."""
    src = _named_columns_source(tmp_path / "pq" / "docs_v1", upgrade["vectors"]["v1"][:40])
    dst = f"lancedb://{tmp_path / 'ldb'}?table=docs_v2"
    code, out, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", src, "--to", dst,
                         "--alias", "docs", "--switch")
    assert code == 0 and out["switched"], err
    code, _, err = cli(capsys, "rollback", "--to", src, "--alias", "docs")
    one_line(code, err, "'docs' is not an alias of", "after one into another store, point the application back")


def test_a_shadow_written_under_the_default_column_names_is_resumed_and_verified_under_them(
        upgrade: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A shadow an earlier Embridge wrote with `id` and `vector` columns (the target's defaults) from a source
    read with ?id=doc_id&vector=embedding: run again, it failed with KeyError (exit 3) looking for doc_id."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    v1 = upgrade["vectors"]["v1"][:50]
    folder = tmp_path / "pq" / "docs_v1"
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"doc_id": [f"doc-{i}" for i in range(50)], "embedding": pa.FixedSizeListArray.from_arrays(
        pa.array(v1.astype(np.float32).ravel()), v1.shape[1])}), folder / "part-0.parquet")
    src = f"parquet://{folder}?id=doc_id&vector=embedding"
    dst = f"parquet://{tmp_path / 'pq'}/docs_v2"
    args = ["migrate", "--bundle", str(upgrade["bundle"]), "--from", src, "--to"]
    assert cli(capsys, *args, f"{dst}?id=id&vector=vector")[0] == 0  # the default names, as written before
    code, out, err = cli(capsys, *args, dst)
    assert code == 0 and out["status"] == "already complete" and out["written"] == 0, err


def test_ids_mixing_integers_and_text_are_refused_for_a_postgresql_table(upgrade: dict, tmp_path: Path,
                                                                        pg_server: str,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The table's id column is typed by the first id: a later UUID crashed the insert (TypeError, exit 3)."""
    from store_fixtures import fresh_pg_database

    src = _mixed_id_qdrant(tmp_path, upgrade["vectors"]["v1"][:60])
    base = fresh_pg_database(pg_server, "mixedids")
    dst = f"{base}&table=mixed_v2" if "?" in base else f"{base}?table=mixed_v2"
    code, _, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", src, "--to", dst,
                       "--batch", "20")
    one_line(code, err, "mix integers and text")
