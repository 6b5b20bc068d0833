"""Stores holding what users made for their own ends: views and links named like an alias, ids and
fields Embridge did not write, vectors a migration cannot carry. Each is refused in one line naming
the option or the store, with nothing of the user's changed and nothing written.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from store_fixtures import cli, fct_upgrade, fill_source, fresh_pg_database, one_line, read_all, unit


@pytest.fixture(scope="module")
def upgrade(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return fct_upgrade(tmp_path_factory.mktemp("store-hostile"))



def migrate(capsys: pytest.CaptureFixture[str], upgrade: dict, source: str, target: str,
            *extra: str) -> tuple[int, Any, str]:
    return cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", source, "--to", target, *extra)


@pytest.mark.parametrize("kind", ["parquet", "lancedb"])
def test_a_users_own_link_named_as_the_alias_is_never_replaced(kind: str, upgrade: dict, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    v1 = upgrade["vectors"]["v1"]
    case = fill_source(kind, tmp_path, list(range(len(v1))), v1, upgrade["labels"])
    root = tmp_path / ("pq" if kind == "parquet" else "lance")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = root / ("mine" if kind == "parquet" else "mine.lance")
    os.symlink(elsewhere, link)
    code, _, err = migrate(capsys, upgrade, case.source, case.target, "--switch", "--alias", "mine")
    one_line(code, err, "--alias", "'mine' is a symbolic link", str(elsewhere), "did not make")
    assert os.readlink(link) == str(elsewhere)
    assert not (root / ("docs_v2" if kind == "parquet" else "docs_v2.lance")).exists()  # refused before writing

    # an alias Embridge made is moved by the next switch and by rollback, as before
    code, out, err = migrate(capsys, upgrade, case.source, case.target, "--switch", "--alias", "docs")
    assert code == 0 and out["switched"], err
    third = case.target.replace("docs_v2", "docs_v3")
    code, out, err = migrate(capsys, upgrade, case.source, third, "--switch", "--alias", "docs", "--batch", "50")
    assert code == 0 and out["previous"] == "docs_v2", err
    code, back, err = cli(capsys, "rollback", "--to", case.rollback)
    assert code == 0 and back["changed"] and back["previous"] == "docs_v3", err

    # once the user points that link elsewhere, it is theirs: rollback leaves it alone
    docs = root / ("docs" if kind == "parquet" else "docs.lance")
    docs.unlink()
    os.symlink(elsewhere, docs)
    code, _, err = cli(capsys, "rollback", "--to", case.rollback)
    one_line(code, err, "--alias", "'docs' is a symbolic link", "did not make")
    assert os.readlink(docs) == str(elsewhere)


def test_a_users_own_view_named_as_the_alias_keeps_its_sql(upgrade: dict, tmp_path: Path, pg_server: str,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    import psycopg

    v1 = upgrade["vectors"]["v1"]
    base = fresh_pg_database(pg_server, "hostile_views")
    case = fill_source("pgvector", tmp_path, list(range(len(v1))), v1, upgrade["labels"], pg_base=base)
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute("create view only_a as select id, embedding from docs_v1 where label = 'zzz'")
        conn.execute("create view report as select count(*) as n from docs_v1")
        views = {v: conn.execute(f"select pg_get_viewdef('{v}')").fetchone()[0] for v in ("only_a", "report")}
        for alias in views:
            code, _, err = migrate(capsys, upgrade, case.source, case.target, "--switch", "--alias", alias)
            one_line(code, err, "--alias", f"'{alias}' is a view of table 'docs_v1'", "did not make")
            assert conn.execute(f"select pg_get_viewdef('{alias}')").fetchone()[0] == views[alias]
            assert conn.execute("select to_regclass('docs_v2')").fetchone()[0] is None  # nothing written
        code, _, err = cli(capsys, "rollback", "--to", case.source + "&alias=only_a")
        one_line(code, err, "--alias", "'only_a' is a view")
        assert conn.execute("select pg_get_viewdef('only_a')").fetchone()[0] == views["only_a"]

        code, out, err = migrate(capsys, upgrade, case.source, case.target, "--switch", "--alias", "docs")
        assert code == 0 and out["switched"], err
        code, back, err = cli(capsys, "rollback", "--to", case.rollback)
        assert code == 0 and back["changed"] and back["previous"] == "docs_v2", err
        # a view the user rewrote under Embridge's alias name is theirs from then on
        conn.execute("create or replace view docs as select * from docs_v1 where label <> 'zzz'")
        before = conn.execute("select pg_get_viewdef('docs')").fetchone()[0]
        code, _, err = migrate(capsys, upgrade, case.source, case.target.replace("docs_v2", "docs_v3"), "--switch",
                               "--alias", "docs")
        one_line(code, err, "--alias", "'docs' is a view", "did not make")
        assert conn.execute("select pg_get_viewdef('docs')").fetchone()[0] == before
    assert len(read_all(case.target)) == len(v1)


def test_a_view_rewritten_to_embridges_sql_is_moved_unless_it_holds_grants_or_views_built_on_it(
        upgrade: dict, tmp_path: Path, pg_server: str, capsys: pytest.CaptureFixture[str]) -> None:
    import psycopg

    v1 = upgrade["vectors"]["v1"][:40]
    base = fresh_pg_database(pg_server, "hostile_view_extras")
    case = fill_source("pgvector", tmp_path, list(range(40)), v1, upgrade["labels"][:40], pg_base=base)
    code, out, err = migrate(capsys, upgrade, case.source, case.target, "--switch", "--alias", "docs")
    assert code == 0 and out["switched"], err
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute("drop view docs")  # made again by hand, exactly as Embridge made it: nothing of anyone's to lose
        conn.execute("create view docs as select * from docs_v2")
        code, back, err = cli(capsys, "rollback", "--to", case.rollback)
        assert code == 0 and back["previous"] == "docs_v2", err
        conn.execute("create view docs_report as select count(*) as n from docs")  # a drop would fail
        code, _, err = migrate(capsys, upgrade, case.source, case.target, "--switch", "--alias", "docs")
        one_line(code, err, "--alias", "views built on it (docs_report)")
        conn.execute("drop view docs_report")
        conn.execute("grant select on docs to public")  # a drop and create would lose it
        code, _, err = migrate(capsys, upgrade, case.source, case.target, "--switch", "--alias", "docs")
        one_line(code, err, "--alias", "'docs' is a view of table 'docs_v1'", "grants", "did not make")
        assert "=r/" in conn.execute("select relacl::text from pg_class where oid = 'docs'::regclass").fetchone()[0]
        assert conn.execute("select pg_get_viewdef('docs')").fetchone()[0].split()[-1] == "docs_v1;"


def pg_table(base: str, name: str, id_type: str, ids: list[Any], vectors: np.ndarray, extra: str = "",
             values: list[Any] | None = None) -> str:
    """A pgvector table written through psycopg: (id, embedding[, one extra column]); returns its URI."""
    import psycopg
    from pgvector.psycopg import register_vector

    with psycopg.connect(base, autocommit=True) as conn:
        register_vector(conn)
        conn.execute(f"create table {name} (id {id_type}, embedding vector({vectors.shape[1]}){extra})")
        for n, (pid, vec) in enumerate(zip(ids, vectors, strict=True)):
            if values is None:
                conn.execute(f"insert into {name} (id, embedding) values (%s, %s)", [pid, vec])
            else:
                conn.execute(f"insert into {name} values (%s, %s, %s)", [pid, vec, values[n]])
    return f"{base}&column=embedding&table={name}"


def test_postgresql_null_and_uuid_ids(upgrade: dict, tmp_path: Path, pg_server: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    import uuid

    import psycopg

    v1 = upgrade["vectors"]["v1"][:40]
    base = fresh_pg_database(pg_server, "hostile_ids")
    nulls = pg_table(base, "nullid", "bigint", [None if i == 2 else i for i in range(40)], v1)
    ws = tmp_path / "ws"
    assert cli(capsys, "init", "--workspace", str(ws))[0] == 0
    code, _, err = migrate(capsys, upgrade, nulls, nulls.replace("=nullid", "=nullid_v2"), "--batch", "15")
    one_line(code, err, "table 'nullid'", "NULL id (column 'id')")
    code, _, err = cli(capsys, "import", "--workspace", str(ws), "--from", nulls, "--model", "m")
    one_line(code, err, "table 'nullid'", "NULL id")
    with psycopg.connect(base, autocommit=True) as conn:
        assert conn.execute("select to_regclass('nullid_v2')").fetchone()[0] is None  # nothing half-written

    keys = [uuid.UUID(int=i + 1) for i in range(40)]
    uids = pg_table(base, "uid", "uuid primary key", keys, v1)
    target = uids.replace("=uid", "=uid_v2")
    code, out, err = migrate(capsys, upgrade, uids, target, "--batch", "15")
    assert code == 0 and out["written"] == 40 and out["verification"]["ok"], err
    assert sorted(read_all(target)) == sorted(str(k) for k in keys)
    code, again, err = migrate(capsys, upgrade, uids, target, "--batch", "15")
    assert code == 0 and again["status"] == "already complete", err
    code, imported, err = cli(capsys, "import", "--workspace", str(ws), "--from", uids, "--model", "m2")
    assert code == 0 and imported["new_items"] == 40, err
    code, _, err = migrate(capsys, upgrade, pg_table(base, "numid", "numeric", list(range(40)), v1),
                           f"{base}&column=embedding&table=numid_v2")
    one_line(code, err, "id column 'id' has type numeric")


def parquet_source(folder: Path, vectors: np.ndarray, **columns: Any) -> str:
    """One Parquet file of ids 0..n-1, the vectors and any extra columns; returns its URI."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True)
    flat = pa.array(vectors.astype(np.float32).ravel())
    table = pa.table({"id": pa.array(range(len(vectors)), pa.int64()),
                      "vector": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1]), **columns})
    pq.write_table(table, folder / "part-0.parquet")
    return f"parquet://{folder}"


def test_space_fields_embridge_did_not_write_and_points_already_migrated_are_refused(
        upgrade: dict, tmp_path: Path, pg_server: str, capsys: pytest.CaptureFixture[str]) -> None:
    import psycopg
    import pyarrow as pa

    v1 = upgrade["vectors"]["v1"][:30]
    theirs = parquet_source(tmp_path / "pq" / "theirs", v1, embridge_space=pa.array(["v3@bundle:deadbeef"] * 30))
    ints = parquet_source(tmp_path / "pq" / "ints", v1, embridge_space=pa.array(range(30), pa.int64()))
    for uri, value in ((theirs, "'v3@bundle:deadbeef'"), (ints, "'0'")):
        code, _, err = migrate(capsys, upgrade, uri, f"parquet://{tmp_path / 'pq' / 'out'}")
        one_line(code, err, "field 'embridge_space' holds", value, "not an Embridge space marker")
        assert not (tmp_path / "pq" / "out").exists()
    code, checked, err = cli(capsys, "check", "--uri", ints)
    assert code == 0 and checked["count"] == 30, err

    base = fresh_pg_database(pg_server, "hostile_spaces")
    pg = pg_table(base, "marked", "bigint primary key", list(range(30)), v1, ", embridge_space int", list(range(30)))
    code, _, err = migrate(capsys, upgrade, pg, pg.replace("=marked", "=marked_v2"))
    one_line(code, err, "table 'marked'", "field 'embridge_space' holds")
    with psycopg.connect(base, autocommit=True) as conn:
        assert conn.execute("select to_regclass('marked_v2')").fetchone()[0] is None
    code, checked, err = cli(capsys, "check", "--uri", pg)
    assert code == 0 and checked["count"] == 30, err

    # a shadow this bundle wrote, given as a source again, is refused instead of transformed twice
    plain = parquet_source(tmp_path / "pq" / "plain", v1)
    done = f"parquet://{tmp_path / 'pq' / 'plain_v3'}"
    code, out, err = migrate(capsys, upgrade, plain, done)
    assert code == 0 and out["verification"]["ok"], err
    code, _, err = migrate(capsys, upgrade, done, f"parquet://{tmp_path / 'pq' / 'twice'}")
    one_line(code, err, "30 points are already in v3", "a second time")
    assert not (tmp_path / "pq" / "twice").exists()


def test_an_all_zero_vector_is_refused_by_migrate_and_import(upgrade: dict, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    v1 = upgrade["vectors"]["v1"][:30].copy()
    v1[5] = 0.0
    uri = parquet_source(tmp_path / "pq" / "zero", v1)
    code, _, err = migrate(capsys, upgrade, uri, f"parquet://{tmp_path / 'pq' / 'zero_v2'}")
    one_line(code, err, "point 5 holds an all-zero vector")
    ws = tmp_path / "ws"
    assert cli(capsys, "init", "--workspace", str(ws))[0] == 0
    code, _, err = cli(capsys, "import", "--workspace", str(ws), "--from", uri, "--model", "m")
    one_line(code, err, "point 5 holds an all-zero vector", "nothing was imported")
    from embridge.core.store import Workspace

    with Workspace.open(ws) as opened:
        assert not opened.models() and not opened.items()


def test_a_qdrant_point_without_the_named_vector_is_named(upgrade: dict, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from qdrant_client import QdrantClient, models

    v1 = upgrade["vectors"]["v1"][:20]
    client = QdrantClient(path=str(tmp_path / "qd"))
    client.create_collection("named", vectors_config={"img": models.VectorParams(size=16,
                                                                                 distance=models.Distance.COSINE)})
    client.upsert("named", points=[models.PointStruct(id=i, vector={"img": v.tolist()} if i != 5 else {},
                                                      payload={}) for i, v in enumerate(v1)])
    client.close()
    source = f"qdrant://{tmp_path / 'qd'}?collection=named&vector=img"
    code, _, err = migrate(capsys, upgrade, source, f"qdrant://{tmp_path / 'qd'}?collection=named_v2&vector=img")
    one_line(code, err, "collection 'named'", "point 5 has no vector 'img'")
    ws = tmp_path / "ws"
    assert cli(capsys, "init", "--workspace", str(ws))[0] == 0
    code, _, err = cli(capsys, "import", "--workspace", str(ws), "--from", source, "--model", "m")
    one_line(code, err, "point 5 has no vector 'img'")
    client = QdrantClient(path=str(tmp_path / "qd"))
    assert [c.name for c in client.get_collections().collections] == ["named"]  # no shadow was made
    client.close()


def test_transform_names_the_file_and_row_of_a_null_vector(upgrade: dict, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    v1 = upgrade["vectors"]["v1"][:10].astype(np.float32)
    (tmp_path / "src").mkdir()
    vec = pa.FixedSizeListArray.from_arrays(pa.array(v1.ravel()), 16, mask=pa.array([i == 4 for i in range(10)]))
    pq.write_table(pa.table({"id": pa.array(range(10), pa.int64()), "vector": vec}), tmp_path / "src" / "p.parquet")
    code, _, err = cli(capsys, "transform", "--bundle", str(upgrade["bundle"]), "--from",
                       f"parquet://{tmp_path / 'src'}", "--to", str(tmp_path / "out"))
    one_line(code, err, str(tmp_path / "src" / "p.parquet"), "row 4 of column 'vector' (id 4) is a null vector")
    assert not (tmp_path / "out").exists()


def test_empty_chroma_and_parquet_sources_get_an_empty_shadow(upgrade: dict, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    import chromadb
    from chromadb.config import Settings

    client = chromadb.PersistentClient(path=str(tmp_path / "ch"), settings=Settings(anonymized_telemetry=False))
    client.create_collection("empty", metadata={"hnsw:space": "cosine"})
    del client
    code, out, err = migrate(capsys, upgrade, f"chroma://{tmp_path / 'ch'}?collection=empty",
                             f"chroma://{tmp_path / 'ch'}?collection=empty_v2")
    assert code == 0 and out["total"] == 0 and out["verification"]["ok"], err
    code, checked, err = cli(capsys, "check", "--uri", f"chroma://{tmp_path / 'ch'}?collection=empty_v2")
    assert code == 0 and checked["state"] == "empty", err

    (tmp_path / "pq" / "empty").mkdir(parents=True)
    first, second = f"parquet://{tmp_path / 'pq' / 'empty_v2'}", f"parquet://{tmp_path / 'pq' / 'empty_v3'}"
    code, out, err = migrate(capsys, upgrade, f"parquet://{tmp_path / 'pq' / 'empty'}", first)
    assert code == 0 and out["total"] == 0 and (tmp_path / "pq" / "empty_v2").is_dir(), err
    code, out, err = migrate(capsys, upgrade, first, second)  # what a migration wrote is a source like any other
    assert code == 0 and out["total"] == 0 and (tmp_path / "pq" / "empty_v3").is_dir(), err


def test_parquet_files_of_another_width_are_named_not_the_bundle(upgrade: dict, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    v1 = upgrade["vectors"]["v1"][:20].astype(np.float32)
    folder = tmp_path / "pq" / "mixed"
    folder.mkdir(parents=True)
    for n, vectors in enumerate((v1[:10], np.hstack([v1[10:], v1[10:]]))):
        flat = pa.array(vectors.ravel())
        pq.write_table(pa.table({"id": pa.array(range(n * 10, n * 10 + 10), pa.int64()),
                                 "vector": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])}),
                       folder / f"part-{n}.parquet")
    code, _, err = migrate(capsys, upgrade, f"parquet://{folder}", f"parquet://{tmp_path / 'pq' / 'mixed_v2'}")
    one_line(code, err, str(folder / "part-1.parquet"), "32-long vectors, but part-0.parquet holds 16-long")
    assert "fct.zip" not in err

    wide = tmp_path / "wide"
    wide.mkdir()
    flat = pa.array(np.hstack([v1, v1]).ravel())
    pq.write_table(pa.table({"id": pa.array(range(20), pa.int64()),
                             "vector": pa.FixedSizeListArray.from_arrays(flat, 32)}), wide / "p.parquet")
    code, _, err = cli(capsys, "transform", "--bundle", str(upgrade["bundle"]), "--from", f"parquet://{wide}",
                       "--to", str(tmp_path / "out"))
    one_line(code, err, str(wide / "p.parquet"), "holds 32-d vectors, the bundle fct.zip maps 16-d ones")
    assert not (tmp_path / "out").exists()
    # on Ray it was found by a worker, after the cluster was reached (here: nothing listens, so the width
    # refusal shows it was found before)
    code, _, err = cli(capsys, "transform", "--bundle", str(upgrade["bundle"]), "--from", f"parquet://{wide}",
                       "--to", str(tmp_path / "out"), "--engine", "ray", "--ray-address", "127.0.0.1:9")
    one_line(code, err, str(wide / "p.parquet"), "holds 32-d vectors, the bundle fct.zip maps 16-d ones")


@pytest.mark.parametrize("kind", ["parquet", "lancedb"])
def test_a_second_migration_into_the_same_target_is_refused_while_the_first_runs(
        kind: str, upgrade: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from embridge.core.connectors import open_store
    from embridge.core.connectors.job_lock import job_lock
    from embridge.core.connectors.store_pair import state_key

    v1 = upgrade["vectors"]["v1"]
    case = fill_source(kind, tmp_path, list(range(len(v1))), v1, upgrade["labels"])
    running = open_store(case.target, "--to")
    try:
        with job_lock(running, state_key(running)):  # what the first migration holds while it writes
            code, _, err = migrate(capsys, upgrade, case.source, case.target)
            one_line(code, err, "another migration is writing", "docs_v2")
            assert not running.exists()
    finally:
        running.close()
    code, out, err = migrate(capsys, upgrade, case.source, case.target)  # once it is over, the target is free
    assert code == 0 and out["written"] == len(v1), err


@pytest.mark.parametrize(("uri", "key"), [("parquet:///data/docs?colection=x", "colection"),
                                          ("lancedb:///data/db?table=docs&vectr=v", "vectr"),
                                          ("qdrant:///data/q?collection=docs&https=1&apikey=k", "apikey"),
                                          ("chroma:///data/c?collection=docs&tenant=t", "tenant"),
                                          ("faiss:///data/x.faiss?id=k", "id")])
def test_unknown_uri_parameters_are_refused_by_name(uri: str, key: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "check", "--uri", uri)
    one_line(code, err, "--uri", f"the parameter '{key}'", "does not take")


def test_chroma_sources_with_their_own_space_field_or_a_zero_vector_are_refused(
        upgrade: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import chromadb
    from chromadb.config import Settings

    v1 = upgrade["vectors"]["v1"][:20].copy()
    client = chromadb.PersistentClient(path=str(tmp_path / "ch"), settings=Settings(anonymized_telemetry=False))
    client.create_collection("mine").add(ids=[str(i) for i in range(20)], embeddings=v1,
                                         metadatas=[{"embridge_space": "mine", "k": 1}] * 20)
    v1[0] = 0.0
    client.create_collection("zeroc").add(ids=[str(i) for i in range(20)], embeddings=v1, metadatas=[{"k": 1}] * 20)
    del client
    base = f"chroma://{tmp_path / 'ch'}?collection="
    code, _, err = migrate(capsys, upgrade, base + "mine", base + "mine_v2")
    one_line(code, err, "collection 'mine'", "field 'embridge_space' holds 'mine' (20 points)")
    code, _, err = migrate(capsys, upgrade, base + "zeroc", base + "zeroc_v2")
    one_line(code, err, "collection 'zeroc'", "point '0' holds an all-zero vector")
    code, listed, err = cli(capsys, "check", "--uri", base + "mine")
    assert code == 0 and listed["count"] == 20, err
    names = sorted(c if isinstance(c, str) else c.name for c in chromadb.PersistentClient(
        path=str(tmp_path / "ch"), settings=Settings(anonymized_telemetry=False)).list_collections())
    assert names == ["mine", "zeroc"]  # no shadow was made


def test_points_of_another_model_version_are_refused_and_a_renamed_models_earlier_name_is_its_own(
        upgrade: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The bundle maps v1 to v3. Points a store marks as v2 (transformed there by another bundle, or v2's
    own vectors) are not v1 vectors: migrating them would write wrong vectors that look migrated. A store
    migrated while the old model was called v1 still says v1 after the model is renamed."""
    import pyarrow as pa

    v1 = upgrade["vectors"]["v1"][:30]
    out = tmp_path / "pq" / "out"
    for value, needles in (("v2@bundle:0123456789ab", ("30 points are in v2", "this bundle maps v1 to v3")),
                           ("v2", ("holds 'v2' (30 points)", "use a bundle whose old model is v2"))):
        uri = parquet_source(tmp_path / "pq" / value.replace("@", "-").replace(":", "-"), v1,
                             embridge_space=pa.array([value] * 30))
        code, _, err = migrate(capsys, upgrade, uri, f"parquet://{out}")
        one_line(code, err, *needles)
        assert not out.exists()

    renamed = tmp_path / "renamed"
    shutil.copytree(upgrade["path"], renamed)
    assert cli(capsys, "model", "rename", "-w", str(renamed), "--name", "v1", "--to", "v1-2027")[0] == 0
    bundle = tmp_path / "renamed.zip"
    code, exported, err = cli(capsys, "bundle", "export", "-w", str(renamed), "--run", str(upgrade["runs"]["fct"]),
                              "--out", str(bundle))
    assert code == 0, err
    assert exported["manifest"]["models"]["old"]["spec"]["earlier_names"] == ["v1"]
    for value in ("v1", "v1@bundle:0123456789ab"):  # written while the model was v1: migrated under its new name
        uri = parquet_source(tmp_path / "pq" / f"old-{value.replace('@', '-').replace(':', '-')}", v1,
                             embridge_space=pa.array([value] * 30))
        target = tmp_path / "pq" / f"to-{value.replace('@', '-').replace(':', '-')}"
        code, done, err = cli(capsys, "migrate", "--bundle", str(bundle), "--from", uri, "--to", f"parquet://{target}")
        assert code == 0 and done["written"] == 30 and done["verification"]["ok"], err
        made = "30 of the source's 30 points are v1-2027 vectors an earlier bundle made"
        # the bundle's numbers measured real v1 vectors: a source of transformed ones is said to be other
        assert (made in (done["warning"] or "")) == ("@bundle:" in value), done["warning"]


def test_import_refuses_a_store_of_several_model_versions_and_notes_vectors_a_bundle_made(
        upgrade: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pyarrow as pa

    v1 = upgrade["vectors"]["v1"][:30]
    mixed = parquet_source(tmp_path / "mixed", v1, embridge_space=pa.array(["v1"] * 10 + ["v3@bundle:0123456789ab"] * 20))
    made = parquet_source(tmp_path / "made", v1, embridge_space=pa.array(["v3"] * 10 + ["v3@bundle:0123456789ab"] * 20))
    ws = tmp_path / "ws"
    assert cli(capsys, "init", "-w", str(ws))[0] == 0
    code, _, err = cli(capsys, "import", "-w", str(ws), "--from", mixed, "--model", "served")
    one_line(code, err, "holds points of several model versions (v1 (10 points so far), v3 (20 points so far)",
             "nothing was imported")
    code, info, err = cli(capsys, "info", "-w", str(ws))
    assert code == 0 and not info["models"] and not info["items"], info
    code, done, err = cli(capsys, "import", "-w", str(ws), "--from", made, "--model", "served")
    assert code == 0 and done["count"] == 30, err
    assert "20 of the 30 points are v3 vectors a bundle made" in done["note"]
    # a field of the user's own by Embridge's name was dropped from the items' metadata without a word
    own = parquet_source(tmp_path / "own", v1, embridge_space=pa.array(["tenant-a"] * 30))
    assert cli(capsys, "init", "-w", str(tmp_path / "ws2"))[0] == 0
    code, done, err = cli(capsys, "import", "-w", str(tmp_path / "ws2"), "--from", own, "--model", "tenant-store")
    assert code == 0 and done["count"] == 30, err
    assert ("the points' field 'embridge_space' names 'tenant-a', where Embridge records the model version of a "
            "point; they were imported as 'tenant-store' vectors and the field was not kept") in done["note"]


def test_backfill_of_an_embeddings_only_model_copies_the_vectors_it_holds(
        upgrade: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(upgrade["path"], ws)
    target = tmp_path / "pq" / "v3"
    code, done, err = cli(capsys, "backfill", "-w", str(ws), "--model", "v3", "--order", "stored",
                          "--to-store", f"parquet://{target}")
    assert code == 0 and done["embedded"] == 0 and done["items"] > 0, err
    from embridge.core.store import Workspace

    with Workspace.open(ws) as opened:
        keys = opened.keys_of(upgrade["ids"])
    v3 = dict(zip(keys, unit(np.asarray(upgrade["vectors"]["v3"], np.float32)), strict=True))
    stored = read_all(f"parquet://{target}")
    assert len(stored) == done["items"] and set(stored) <= set(v3)  # each gallery item once, as the model holds it
    assert max(float(np.abs(unit(vec) - v3[pid]).max()) for pid, (vec, _) in stored.items()) < 1e-6


def test_a_shadow_stays_refused_when_the_new_model_takes_the_old_models_earlier_name(
        upgrade: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """v1 renamed v1-old, then v3 renamed v1 ("the new model becomes the encoder"): the bundle's new model
    is now called what its old model once was. Its own shadow must still be refused as already migrated
    (transforming it again writes wrong vectors that look migrated), and a marker of that name from
    another layer is ambiguous, so it is refused too."""
    import pyarrow as pa

    ws = tmp_path / "ws"
    shutil.copytree(upgrade["path"], ws)
    for name, to in (("v1", "v1-old"), ("v3", "v1")):
        assert cli(capsys, "model", "rename", "-w", str(ws), "--name", name, "--to", to)[0] == 0
    bundle = tmp_path / "b.zip"
    assert cli(capsys, "bundle", "export", "-w", str(ws), "--run", str(upgrade["runs"]["fct"]),
               "--out", str(bundle))[0] == 0
    v1 = upgrade["vectors"]["v1"][:30]
    source = parquet_source(tmp_path / "src", v1)
    shadow = tmp_path / "shadow"
    code, done, err = cli(capsys, "migrate", "--bundle", str(bundle), "--from", source, "--to", f"parquet://{shadow}")
    assert code == 0 and done["spaces"]["adapted"].startswith("v1@bundle:"), err
    code, _, err = cli(capsys, "migrate", "--bundle", str(bundle), "--from", f"parquet://{shadow}",
                       "--to", f"parquet://{tmp_path / 'twice'}")
    one_line(code, err, "30 points are already in v1", "would transform them a second time")
    other = parquet_source(tmp_path / "other", v1, embridge_space=pa.array(["v1@bundle:0123456789ab"] * 30))
    code, _, err = cli(capsys, "migrate", "--bundle", str(bundle), "--from", other,
                       "--to", f"parquet://{tmp_path / 'other-out'}")
    one_line(code, err, "'v1' names both this bundle's new model and an earlier name of its old model")
    assert not (tmp_path / "twice").exists() and not (tmp_path / "other-out").exists()


def test_a_parquet_file_of_another_width_stops_the_migration_and_check_says_to_mend_the_source(
        upgrade: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`check` advised running the same migration again, which stopped on the same file every time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    v1 = upgrade["vectors"]["v1"][:40]
    uri = parquet_source(tmp_path / "src", v1[:20])
    flat = pa.array(v1[20:, :12].astype(np.float32).ravel())
    pq.write_table(pa.table({"id": pa.array(range(20, 40), pa.int64()),
                             "vector": pa.FixedSizeListArray.from_arrays(flat, 12)}), tmp_path / "src" / "part-1.parquet")
    target = f"parquet://{tmp_path / 'out' / 'docs_v2'}"
    args = ["migrate", "--bundle", str(upgrade["bundle"]), "--from", uri, "--to", target, "--batch", "10"]
    code, _, err = cli(capsys, *args)
    one_line(code, err, "part-1.parquet: column 'vector' holds 12-long vectors, but part-0.parquet holds 16-long")
    code, checked, err = cli(capsys, "check", "--uri", target)
    assert code == 0 and checked["state"] == "half-migrated", err
    assert any("mend the source, then run the same migration again" in n for n in checked["notes"]), checked["notes"]


def _parquet_source(folder: Path, ids: Any, vectors: np.ndarray) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True)
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel())
    pq.write_table(pa.table({"id": ids, "vector": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])}),
                   folder / "part-0.parquet")
    return f"parquet://{folder}"


def test_ids_each_store_keys_otherwise_are_carried_or_refused_in_one_line(
        upgrade: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """uint64 ids past int64 left a Parquet migration unfinished forever (an OverflowError at its check);
    negative ids went into a Qdrant shadow a server could not hold; an empty id failed Chroma's own check
    as an unexpected error."""
    import pyarrow as pa
    from qdrant_client import QdrantClient

    v1 = upgrade["vectors"]["v1"][:40]
    big = _parquet_source(tmp_path / "u64", pa.array([2**63 + i for i in range(40)], type=pa.uint64()), v1)
    code, out, err = migrate(capsys, upgrade, big, f"parquet://{tmp_path / 'u64_v2'}")
    assert code == 0 and out["status"] == "completed" and out["verification"]["ok"], err
    assert sorted(int(k) for k in read_all(f"parquet://{tmp_path / 'u64_v2'}")) == [2**63 + i for i in range(40)]
    negative = _parquet_source(tmp_path / "neg", pa.array([-1, *range(39)], type=pa.int64()), v1)
    code, _, err = migrate(capsys, upgrade, negative, f"qdrant://{tmp_path / 'qd'}?collection=neg_v2")
    one_line(code, err, "point id -1", "Qdrant ids are unsigned 64-bit integers or UUIDs")
    client = QdrantClient(path=str(tmp_path / "qd"))
    assert client.get_collections().collections == []  # the collection it made is removed
    client.close()
    empty = _parquet_source(tmp_path / "empty", pa.array(["", *(f"k{i}" for i in range(39))]), v1)
    code, _, err = migrate(capsys, upgrade, empty, f"chroma://{tmp_path / 'ch'}?collection=empty_v2")
    one_line(code, err, "point id ''", "Chroma ids are text of at least one character")


def test_a_qdrant_shadow_in_another_store_keeps_the_named_vector_and_a_trailing_slash_is_the_same_store(
        upgrade: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The shadow in another Qdrant folder had an unnamed vector, so the application's queries by name
    failed once the alias moved; ``db/`` beside ``db`` was taken for another store and failed to open."""
    from qdrant_client import QdrantClient, models

    v1 = upgrade["vectors"]["v1"][:30]
    client = QdrantClient(path=str(tmp_path / "qd"))
    client.create_collection("named", vectors_config={"img": models.VectorParams(size=16,
                                                                                 distance=models.Distance.COSINE)})
    client.upsert("named", points=[models.PointStruct(id=i, vector={"img": v.tolist()}) for i, v in enumerate(v1)])
    client.close()
    source = f"qdrant://{tmp_path / 'qd'}?collection=named&vector=img"
    code, out, err = migrate(capsys, upgrade, source, f"qdrant://{tmp_path / 'other'}?collection=named_v2",
                             "--switch", "--alias", "imgs")
    assert code == 0 and out["switched"], err
    client = QdrantClient(path=str(tmp_path / "other"))
    assert list(client.get_collection("named_v2").config.params.vectors) == ["img"]
    assert len(client.query_points("imgs", query=[0.1] * 32, using="img", limit=3).points) == 3
    client.close()
    code, _, err = migrate(capsys, upgrade, source, f"qdrant://{tmp_path / 'qd'}/?collection=named&vector=img")
    one_line(code, err, "is the source collection itself")
    os.symlink(tmp_path / "qd", tmp_path / "link")  # other spellings of the folder: the same store
    for spelling in (f"{tmp_path / 'qd'}/.", f"{tmp_path}/./qd/../qd", str(tmp_path / "link")):
        code, _, err = migrate(capsys, upgrade, source, f"qdrant://{spelling}?collection=named&vector=img")
        one_line(code, err, "is the source collection itself")
    code, out, err = migrate(capsys, upgrade, source, f"qdrant://{tmp_path / 'link'}?collection=sibling")
    assert code == 0 and out["status"] == "completed", err  # a sibling through the link: one client, one store


def test_a_lancedb_folder_reached_through_a_link_and_dot_dot_opens(upgrade: dict, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """``a/link/../lance`` where the link points into ``b``: LanceDB read the ``..`` by text (``a/lance``, not
    there) and the check failed as an unexpected error (exit 3)."""
    from scale_fixtures import write_lance

    (tmp_path / "a").mkdir()
    (tmp_path / "b" / "inner").mkdir(parents=True)
    os.symlink(tmp_path / "b" / "inner", tmp_path / "a" / "link")
    write_lance(tmp_path / "b" / "lance", "docs", upgrade["vectors"]["v1"][:20], fragments=1)
    code, out, err = cli(capsys, "check", "--uri", f"lancedb://{tmp_path / 'a' / 'link'}/../lance?table=docs")
    assert code == 0 and out["count"] == 20, err
