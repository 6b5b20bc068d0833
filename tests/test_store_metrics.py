"""A store's own metric: `check --label-field` ranks as the store's index does, and import and migrate say when
the store ranks by the vectors' lengths too (inner product, L2) while Embridge measures by cosine.

The gallery's vectors carry lengths that vary (a popularity factor), so the three metrics rank them apart:
a number measured by cosine on such a store is not what the store serves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from store_fixtures import cli, fct_upgrade, fresh_pg_database

from embridge.core.connectors import open_store


@pytest.fixture(scope="module")
def upgrade(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return fct_upgrade(tmp_path_factory.mktemp("metrics"))


def _lengthy(upgrade: dict) -> tuple[np.ndarray, list[str]]:
    """The gallery's v1 vectors, each scaled by a log-normal length."""
    v1 = np.asarray(upgrade["vectors"]["v1"][:300], dtype=np.float32)
    scale = np.exp(np.random.default_rng(3).normal(0.0, 1.0, len(v1))).astype(np.float32)
    return v1 * scale[:, None], [str(x) for x in upgrade["labels"][:300]]


def _agreement(x: np.ndarray, labels: list[str], metric: str) -> float:
    x = x.astype(np.float64)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    scores = -((x[:, None, :] - x[None, :, :]) ** 2).sum(axis=2) if metric == "l2" else x @ x.T
    np.fill_diagonal(scores, -np.inf)
    lab = np.asarray(labels)
    return float((lab[scores.argmax(axis=1)] == lab).mean())


def _qdrant(root: Path, x: np.ndarray, labels: list[str], distance: str) -> str:
    from qdrant_client import QdrantClient, models

    client = QdrantClient(path=str(root / "qdrant"))
    client.create_collection("docs_v1", vectors_config=models.VectorParams(
        size=x.shape[1], distance=getattr(models.Distance, distance)))
    client.upsert("docs_v1", points=models.Batch(ids=list(range(len(x))), vectors=x.tolist(),
                                                 payloads=[{"label": lab} for lab in labels]))
    client.close()
    return f"qdrant://{root / 'qdrant'}?collection=docs_v1"


@pytest.mark.parametrize(("distance", "metric", "words"), [("DOT", "dot", "inner product"),
                                                           ("EUCLID", "l2", "L2 distance"),
                                                           ("COSINE", "cosine", "cosine similarity")])
def test_check_ranks_as_the_stores_index_does(distance: str, metric: str, words: str, upgrade: dict,
                                               tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """It always ranked by cosine and called that the quality served."""
    x, labels = _lengthy(upgrade)
    uri = _qdrant(tmp_path, x, labels, distance)
    code, checked, err = cli(capsys, "check", "--uri", uri, "--label-field", "label")
    assert code == 0, err
    quality = checked["quality"]
    assert quality["metric"] == metric and quality["metric_from_store"] is True and quality["queries"] == len(x)
    assert quality["top1_label_agreement"] == pytest.approx(_agreement(x, labels, metric), abs=1e-9)
    if metric != "cosine":  # the lengths matter: the store's ranking is not cosine's
        assert abs(_agreement(x, labels, metric) - _agreement(x, labels, "cosine")) > 0.02
    from embridge.core.cli.main import main

    assert main(["check", "--uri", uri, "--label-field", "label"]) == 0
    assert f"agreement {quality['top1_label_agreement']:.3f} by {words} (as the store's index ranks)" in \
        capsys.readouterr().out


def test_import_and_migrate_say_a_store_ranking_by_length_is_not_what_embridge_measures(
        upgrade: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x, labels = _lengthy(upgrade)
    uri = _qdrant(tmp_path, x, labels, "DOT")
    ws = tmp_path / "ws"
    assert cli(capsys, "init", "--workspace", str(ws))[0] == 0
    code, imported, err = cli(capsys, "import", "--workspace", str(ws), "--from", uri, "--label-field", "label")
    assert code == 0, err
    assert "the store ranks by inner product, and these vectors' lengths vary" in imported["note"]
    code, migrated, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", uri, "--to",
                              uri.replace("docs_v1", "docs_v2"))
    assert code == 0, err
    assert "the source store ranks by inner product, and its vectors' lengths vary" in migrated["warning"]
    with open_store(uri.replace("docs_v1", "docs_v2")) as shadow:
        assert shadow.metric() == "dot"  # its settings are the source's: only the lengths changed
        written = next(iter(shadow.read_batches(50))).vectors
    np.testing.assert_allclose(np.linalg.norm(written, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("case", ["unit vectors in a dot store", "any lengths in a cosine store"])
def test_a_store_that_ranks_as_embridge_measures_gets_no_note(case: str, upgrade: dict, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """A cosine store got the note that guesses at inner product, though it ranks as Embridge measures."""
    x, labels = _lengthy(upgrade)
    if case.startswith("unit"):
        uri = _qdrant(tmp_path, x / np.linalg.norm(x, axis=1, keepdims=True), labels, "DOT")
    else:
        import chromadb
        from chromadb.config import Settings

        client = chromadb.PersistentClient(path=str(tmp_path / "chroma"), settings=Settings(anonymized_telemetry=False))
        client.create_collection("cosdocs", metadata={"hnsw:space": "cosine"}).add(
            ids=[str(i) for i in range(len(x))], embeddings=x)
        uri = f"chroma://{tmp_path / 'chroma'}?collection=cosdocs"
    ws = tmp_path / "ws"
    assert cli(capsys, "init", "--workspace", str(ws))[0] == 0
    code, imported, err = cli(capsys, "import", "--workspace", str(ws), "--from", uri)
    assert code == 0 and not imported["note"], (err, imported)


@pytest.mark.parametrize("kind", ["chroma", "lancedb", "pgvector"])
def test_each_store_says_its_metric(kind: str, upgrade: dict, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Inner product where an index (Chroma: its space) says so, none where no index says anything."""
    x, labels = _lengthy(upgrade)
    if kind == "chroma":
        import chromadb
        from chromadb.config import Settings

        client = chromadb.PersistentClient(path=str(tmp_path / "chroma"), settings=Settings(anonymized_telemetry=False))
        client.create_collection("ipdocs", metadata={"hnsw:space": "ip"}).add(ids=[str(i) for i in range(len(x))],
                                                                           embeddings=x)
        client.create_collection("plaindocs").add(ids=["0", "1"], embeddings=x[:2])
        uris = {"dot": f"chroma://{tmp_path / 'chroma'}?collection=ipdocs",
                "l2": f"chroma://{tmp_path / 'chroma'}?collection=plaindocs"}  # Chroma's default space
    elif kind == "lancedb":
        import lancedb
        import pyarrow as pa

        db = lancedb.connect(str(tmp_path / "lance"))
        vectors = pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), x.shape[1])
        db.create_table("plain", data=pa.table({"id": np.arange(len(x)), "vector": vectors}))
        from lancedb.index import IvfPq

        db.create_table("ip", data=pa.table({"id": np.arange(len(x)), "vector": vectors})).create_index(
            "vector", config=IvfPq(distance_type="dot", num_partitions=2, num_sub_vectors=2))
        uris = {"dot": f"lancedb://{tmp_path / 'lance'}?table=ip", None: f"lancedb://{tmp_path / 'lance'}?table=plain"}
    else:
        import psycopg
        from pgvector.psycopg import register_vector

        base = fresh_pg_database(request.getfixturevalue("pg_server"), "metrics")
        with psycopg.connect(base, autocommit=True) as conn:
            register_vector(conn)
            for table in ("ip", "plain"):
                conn.execute(f"create table {table} (id bigint primary key, embedding vector({x.shape[1]}))")
                with conn.cursor() as cur, cur.copy(f"copy {table} (id, embedding) from stdin") as cp:
                    for i, v in enumerate(x):
                        cp.write_row([i, v])
            conn.execute("create index on ip using hnsw (embedding vector_ip_ops)")
            conn.execute("create view served as select * from ip")
        sep = "&" if "?" in base else "?"
        uris = {"dot": f"{base}{sep}table=ip&column=embedding", None: f"{base}{sep}table=plain&column=embedding"}
        with open_store(f"{base}{sep}table=served&column=embedding") as view:
            assert view.metric() == "dot"  # a view (an alias) ranks as the table it shows
    for metric, uri in uris.items():
        with open_store(uri) as store:
            assert store.metric() == metric, uri


def test_a_lancedb_shadow_gets_the_sources_vector_index(upgrade: dict, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Lance trains an index on written data, so the shadow was made without one: after a switch every search
    was a full scan, and the store's metric was lost with it."""
    import lancedb
    import pyarrow as pa
    from lancedb.index import IvfPq

    x, labels = _lengthy(upgrade)
    noise = np.random.default_rng(4).normal(0.0, 0.01, (2 * len(x), x.shape[1])).astype(np.float32)
    x, labels = np.concatenate([x, x, x]) + np.concatenate([np.zeros_like(x), noise]), labels * 3  # PQ trains on 256+
    db = lancedb.connect(str(tmp_path / "lance"))
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), x.shape[1])
    db.create_table("docs_v1", data=pa.table({"id": np.arange(len(x)), "vector": vectors, "label": labels})
                    ).create_index("vector", config=IvfPq(distance_type="dot", num_partitions=2, num_sub_vectors=2))
    base = f"lancedb://{tmp_path / 'lance'}?table="
    code, migrated, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", base + "docs_v1",
                              "--to", base + "docs_v2", "--switch", "--alias", "docs")
    assert code == 0, err
    assert "the shadow has no vector index" not in (migrated["warning"] or "")
    for name in ("docs_v2", "docs"):  # by name and through the alias
        with open_store(base + name) as shadow:
            stats = shadow._vector_index()
            assert stats is not None and stats.index_type == "IVF_PQ" and shadow.metric() == "dot"
            assert stats.num_indexed_rows == len(x)
    code, again, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", base + "docs_v1",
                           "--to", base + "docs_v2")
    assert code == 0 and again["status"] == "already complete", err  # the index is not made twice
    with open_store(base + "docs_v2") as shadow:
        assert len(shadow.table().list_indices()) == 1


def test_an_index_lance_cannot_make_on_the_shadow_is_said_and_the_migration_completes(
        upgrade: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import lancedb
    import pyarrow as pa
    from lancedb.index import IvfFlat
    from lancedb.table import LanceTable

    x, _ = _lengthy(upgrade)
    db = lancedb.connect(str(tmp_path / "lance"))
    table = db.create_table("docs_v1", data=pa.table({"id": np.arange(len(x)),
                                                      "vector": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()),
                                                                                                  x.shape[1])}))
    table.create_index("vector", config=IvfFlat(distance_type="cosine", num_partitions=2))

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("Not enough rows to train the index\n  at src/ivf.rs:12")

    monkeypatch.setattr(LanceTable, "create_index", refuse)
    base = f"lancedb://{tmp_path / 'lance'}?table="
    code, migrated, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", base + "docs_v1",
                              "--to", base + "docs_v2")
    assert code == 0 and migrated["status"] == "completed", err
    assert ("the shadow has no vector index: making one like the source's (IVF_FLAT, cosine) failed (Not enough rows "
            "to train the index); create it there before serving the shadow") in migrated["warning"]
    with open_store(base + "docs_v2") as shadow:
        assert shadow._vector_index() is None and shadow.count() == len(x)
