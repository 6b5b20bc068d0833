"""PostgreSQL schemas and roles as deployments have them, against the real server the ``pg_server`` fixture starts.

A role that owns its schema and has no CREATE on ``public`` (PostgreSQL 15's default) migrates within that
schema, and everything Embridge makes (shadow, alias view, checkpoints) stays there; checkpoints that earlier
versions kept in ``public.embridge_state`` still resume; a missing privilege is one line. A ``vector`` column
declared without a dimension (as LangChain's tables are) is read at its rows' width.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from store_fixtures import (
    cli,
    fct_upgrade,
    fill_source,
    fresh_pg_database,
    one_line,
    pg_schema_source,
    read_all,
)

from embridge.core.bundle import load_bundle
from embridge.core.connectors.migration import migrate_store
from embridge.core.errors import Cancelled


@pytest.fixture(scope="module")
def upgrade(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return fct_upgrade(tmp_path_factory.mktemp("pg_schemas"))


def as_role(base: str, role: str) -> str:
    """The database URI with another user (the server trusts local socket connections)."""
    return re.sub(r"^postgresql://[^@/]*@", f"postgresql://{role}@", base)


def relations(base: str, schema: str) -> dict[str, str]:
    import psycopg

    with psycopg.connect(base, autocommit=True) as conn:
        rows = conn.execute("select c.relname, c.relkind::text from pg_class c join pg_namespace n on "
                            "n.oid = c.relnamespace where n.nspname = %s and c.relkind in ('r', 'v')",
                            [schema]).fetchall()
    return dict(rows)


def state_keys(base: str, table: str) -> dict[str, str]:
    import psycopg

    with psycopg.connect(base, autocommit=True) as conn:
        rows = conn.execute(f"select key, state->>'status' from {table}").fetchall()
    return dict(rows)


def restricted_database(pg_server: str, name: str, role: str) -> tuple[str, str]:
    """A database whose role ``role`` owns schema ``app`` and may not create in ``public``: (superuser, role) URIs."""
    import psycopg

    base = fresh_pg_database(pg_server, name)
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"create role {role} login")
        conn.execute("revoke create on schema public from public")  # the default since PostgreSQL 15
        conn.execute(f"create schema app authorization {role}")
        assert not conn.execute("select has_schema_privilege(%s, 'public', 'CREATE')", [role]).fetchone()[0]
    return base, as_role(base, role)


@pytest.mark.slow
def test_a_role_without_create_on_public_migrates_inside_its_own_schema(
        upgrade: dict, tmp_path: Path, pg_server: str, capsys: pytest.CaptureFixture[str]) -> None:
    v1, labels = upgrade["vectors"]["v1"], upgrade["labels"]
    n = len(v1)
    base, mine = restricted_database(pg_server, "schemas_role", "appuser")
    fill_source("pgvector", tmp_path, list(range(n)), v1, labels, pg_base=mine, name="app.docs")

    def uri(table: str) -> str:
        return f"{mine}&column=embedding&table={table}"

    code, out, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", uri("app.docs"),
                         "--to", uri("app.docs_v2"), "--switch", "--alias", "docs_live", "--batch", "100")
    assert code == 0 and out["written"] == n and out["switched"] and out["verification"]["ok"], err
    assert relations(base, "app") == {"docs": "r", "docs_v2": "r", "docs_live": "v", "embridge_state": "r"}
    assert relations(base, "public") == {}  # nothing made where the role may not create
    assert state_keys(base, "app.embridge_state") == {"migrate-app.docs_v2": "complete", "alias-app.docs_live": None}
    want = load_bundle(upgrade["bundle"])(v1, normalise_output=True)
    got = read_all(uri("app.docs_v2"))
    np.testing.assert_allclose(np.stack([got[str(i)][0] for i in range(n)]), want, rtol=1e-4, atol=1e-5)

    code, checked, err = cli(capsys, "check", "--uri", uri("app.docs_live"))
    assert code == 0 and checked["serves"] == "app.docs_v2" and checked["count"] == n, err
    assert checked["state"] == "single"
    code, back, err = cli(capsys, "rollback", "--to", uri("app.docs") + "&alias=docs_live")
    assert code == 0 and back["changed"] and back["previous"] == "app.docs_v2", err
    code, checked, err = cli(capsys, "check", "--uri", uri("app.docs_live"))
    assert code == 0 and checked["serves"] == "app.docs" and checked["state"] == "single", err  # as rollback reads it
    assert checked["versions"] == back["serves"]
    assert relations(base, "public") == {}

    # a bare name goes to public through the search path: refused in one line naming the schema and privilege
    code, _, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", uri("app.docs"),
                       "--to", uri("docs_v3"))
    one_line(code, err, "role 'appuser' lacks the CREATE privilege on schema 'public'")
    assert relations(base, "public") == {} and "docs_v3" not in relations(base, "app")

    # a schema the role may use but not create in: the same line, nothing written
    import psycopg

    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute("create schema other")
        conn.execute("grant usage on schema other to appuser")
    code, _, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", uri("app.docs"),
                       "--to", uri("other.docs_v2"))
    one_line(code, err, "role 'appuser' lacks the CREATE privilege on schema 'other'")
    assert relations(base, "other") == {}
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute("create schema closed")  # not even USAGE
    code, _, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", uri("app.docs"),
                       "--to", uri("closed.docs_v2"))
    one_line(code, err, "role 'appuser' lacks the USAGE privilege on schema 'closed'")
    assert relations(base, "closed") == {} and relations(base, "public") == {}


@pytest.mark.slow
def test_a_migration_an_earlier_version_checkpointed_in_public_resumes(
        upgrade: dict, tmp_path: Path, pg_server: str, capsys: pytest.CaptureFixture[str]) -> None:
    import psycopg

    v1 = upgrade["vectors"]["v1"]
    n = len(v1)
    base = pg_schema_source(pg_server, "schemas_legacy", upgrade, tmp_path, "app")
    source, target = (f"{base}&column=embedding&table={t}" for t in ("app.docs", "app.docs_v2"))
    calls = iter(range(1000))
    with pytest.raises(Cancelled):
        migrate_store(upgrade["bundle"], source, target, batch_size=50, should_stop=lambda: next(calls) >= 4)
    # where earlier versions kept it: the search path's embridge_state (public)
    with psycopg.connect(base, autocommit=True) as conn:
        state = conn.execute("select state::text from app.embridge_state where key = 'migrate-app.docs_v2'").fetchone()
        conn.execute("drop table app.embridge_state")
        conn.execute("create table embridge_state (key text primary key, state jsonb not null)")
        conn.execute("insert into embridge_state values ('migrate-app.docs_v2', %s::jsonb)", [state[0]])
        written = conn.execute("select count(*) from app.docs_v2").fetchone()[0]
    assert 0 < written < n

    code, checked, err = cli(capsys, "check", "--uri", target)
    assert code == 0 and checked["count"] == written, err
    assert checked["migration"]["status"] != "complete" and checked["migration"]["written"] == written
    code, out, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", source, "--to", target,
                         "--batch", "50")
    assert code == 0 and out["status"] == "completed" and out["written"] == n - written, err
    assert out["verification"]["ok"]
    assert state_keys(base, "app.embridge_state") == {"migrate-app.docs_v2": "complete"}  # moved beside its table
    assert state_keys(base, "public.embridge_state") == {}
    got = read_all(target)
    want = load_bundle(upgrade["bundle"])(v1, normalise_output=True)
    assert sorted(got, key=int) == [str(i) for i in range(n)]
    np.testing.assert_allclose(np.stack([got[str(i)][0] for i in range(n)]), want, rtol=1e-4, atol=1e-5)


def untyped_table(base: str, name: str, key: str, vectors: np.ndarray) -> None:
    """A table as LangChain's PGVector makes it: ``embedding vector`` with no dimension, a document and metadata."""
    import psycopg
    from pgvector.psycopg import register_vector

    with psycopg.connect(base, autocommit=True) as conn:
        register_vector(conn)
        conn.execute(f"create table {name} (id {key} primary key, embedding vector, document text, cmetadata jsonb)")
        for i, v in enumerate(vectors):
            conn.execute(f"insert into {name} values (%s, %s, %s, %s)",
                         [i if key == "bigint" else f"u{i}", v, f"doc {i}", psycopg.types.json.Jsonb({"k": i})])


@pytest.mark.slow
@pytest.mark.parametrize("key", ["text", "bigint"])
def test_a_vector_column_without_a_dimension_is_read_at_its_rows_width(
        key: str, upgrade: dict, tmp_path: Path, pg_server: str, capsys: pytest.CaptureFixture[str]) -> None:
    import psycopg

    v1 = upgrade["vectors"]["v1"]
    n = len(v1)
    base = fresh_pg_database(pg_server, f"untyped_{key}")
    untyped_table(base, "untyped", key, v1)
    uri = f"{base}&column=embedding&table=untyped"
    ids = [str(i) if key == "bigint" else f"u{i}" for i in range(n)]

    ws = tmp_path / "ws"
    assert cli(capsys, "init", "--workspace", str(ws))[0] == 0
    code, imported, err = cli(capsys, "import", "--workspace", str(ws), "--from", uri, "--model", "m")
    assert code == 0 and imported["count"] == imported["new_items"] == n and imported["dim"] == 16, err
    from embridge.core.store import Workspace

    with Workspace.open(ws) as opened:
        stored = opened.vectors_for("m", opened.ids_for_keys(ids))
    np.testing.assert_allclose(stored, v1, rtol=1e-6, atol=1e-7)

    code, out, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", uri, "--to",
                         f"{base}&column=embedding&table=untyped_v2", "--batch", "64")
    assert code == 0 and out["written"] == n and out["verification"]["ok"], err
    bundle = load_bundle(upgrade["bundle"])
    with psycopg.connect(base, autocommit=True) as conn:
        kind = conn.execute("select format_type(atttypid, atttypmod) from pg_attribute where attrelid = "
                            "'untyped_v2'::regclass and attname = 'embedding'").fetchone()[0]
    want = bundle(v1, normalise_output=True)
    assert kind == f"vector({want.shape[1]})"
    got = read_all(f"{base}&column=embedding&table=untyped_v2")
    np.testing.assert_allclose(np.stack([got[i][0] for i in ids]), want, rtol=1e-4, atol=1e-5)
    assert got[ids[3]][1]["document"] == "doc 3" and got[ids[3]][1]["cmetadata"] == {"k": 3}

    # a row of another width: refused naming the row, before the shadow takes any of it
    with psycopg.connect(base, autocommit=True) as conn:
        from pgvector.psycopg import register_vector

        register_vector(conn)
        conn.execute("update untyped set embedding = %s where id = %s", [v1[7][:12], 7 if key == "bigint" else "u7"])
    odd = repr(7 if key == "bigint" else "u7")
    code, _, err = cli(capsys, "import", "--workspace", str(ws), "--from", uri, "--model", "m2")
    one_line(code, err, f"row id={odd} holds a 12-d vector among 16-d ones (column 'embedding')")
    code, _, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", uri, "--to",
                       f"{base}&column=embedding&table=untyped_v3", "--batch", "64")
    one_line(code, err, f"row id={odd} holds a 12-d vector among 16-d ones")


def test_json_payloads_of_a_qdrant_collection_migrate_into_jsonb_and_a_field_of_two_types_is_named(
        pg_server: str, upgrade: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Nested objects and lists (ordinary Qdrant payloads) crashed the COPY with exit 3 ('bad argument type')."""
    import psycopg
    from qdrant_client import QdrantClient, models

    v1 = upgrade["vectors"]["v1"][:40]
    client = QdrantClient(path=str(tmp_path / "qd"))
    params = models.VectorParams(size=v1.shape[1], distance=models.Distance.COSINE)
    for name in ("json", "mixed", "late"):
        client.create_collection(name, vectors_config=params)
    client.upsert("late", points=[models.PointStruct(id=i, vector=v.tolist(), payload={
        "nothing": None, **({"late": f"p{i}"} if i >= 20 else {})}) for i, v in enumerate(v1)])
    client.upsert("json", points=[models.PointStruct(id=i, vector=v.tolist(), payload={
        "meta": {"source": {"page": i, "refs": [1, {"d": "e"}]}}, "tags": [f"t{i}", "all"]}) for i, v in enumerate(v1)])
    client.upsert("mixed", points=[models.PointStruct(id=i, vector=v.tolist(), payload={"v": "x" if i < 20 else i})
                                   for i, v in enumerate(v1)])
    client.close()
    base = fresh_pg_database(pg_server, "jsonpayloads")
    code, out, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from",
                         f"qdrant://{tmp_path / 'qd'}?collection=json", "--to", f"{base}&table=docs_v2")
    assert code == 0 and out["verification"]["ok"], err
    with psycopg.connect(base, autocommit=True) as conn:
        rows = dict(conn.execute("select id, meta from docs_v2").fetchall())
        kinds = dict(conn.execute("select column_name, data_type from information_schema.columns "
                                  "where table_name = 'docs_v2'").fetchall())
    assert kinds["meta"] == kinds["tags"] == "jsonb"
    assert rows[7] == {"source": {"page": 7, "refs": [1, {"d": "e"}]}} and len(rows) == len(v1)
    code, _, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from",
                       f"qdrant://{tmp_path / 'qd'}?collection=mixed", "--to", f"{base}&table=mixed_v2", "--batch", "40")
    one_line(code, err, "point 20: payload field 'v' holds int 20, but its column is text")
    # a field no point of the first batches holds gets its column when it appears (it was refused, exit 1)
    code, out, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from",
                         f"qdrant://{tmp_path / 'qd'}?collection=late", "--to", f"{base}&table=late_v2", "--batch", "10")
    assert code == 0 and out["verification"]["ok"], err
    with psycopg.connect(base, autocommit=True) as conn:
        late = dict(conn.execute("select id, late from late_v2").fetchall())
        columns = [r[0] for r in conn.execute("select column_name from information_schema.columns where "
                                              "table_name = 'late_v2'").fetchall()]
    assert late[25] == "p25" and late[3] is None and "nothing" not in columns


def test_check_through_an_alias_in_another_schema_reads_the_served_tables_checkpoint(
        upgrade: dict, tmp_path: Path, pg_server: str, capsys: pytest.CaptureFixture[str]) -> None:
    """An alias in public serving r4.docs_v2 read the checkpoint from public's state table: no migration
    status, and five removed points went unsaid (checking r4.docs_v2 itself said so)."""
    import psycopg

    base = pg_schema_source(pg_server, "schemas_alias", upgrade, tmp_path, "r4")
    uri = f"{base}&column=embedding&table="
    code, out, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", uri + "r4.docs",
                         "--to", uri + "r4.docs_v2", "--switch", "--alias", "public.docs_live")
    assert code == 0 and out["switched"], err
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute("delete from r4.docs_v2 where id < 5")
    direct = cli(capsys, "check", "--uri", uri + "r4.docs_v2")[1]
    code, through, err = cli(capsys, "check", "--uri", uri + "public.docs_live")
    assert code == 0 and through["serves"] == "r4.docs_v2", err
    assert through["migration"] == direct["migration"] and "points were removed" in through["migration"]["changed"]
    assert through["notes"] == direct["notes"] and len(through["notes"]) == 1
