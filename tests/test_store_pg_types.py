"""PostgreSQL column types as real tables declare them, against the server the ``pg_server`` fixture starts.

Ids of ``varchar(n)``, payloads of ``numeric(p,s)``, ``timestamp(p)``, ``char(n)``, enums, bit strings,
geometric and network types, arrays and JSON migrate with every payload value as the source holds it
(a type name with a modifier used to stop the migration with an internal error), and an id that two rows
share is refused wherever it falls, a page's boundary included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from store_fixtures import cli, fct_upgrade, fresh_pg_database, one_line, read_all

from embridge.core.bundle import load_bundle
from embridge.core.store import Workspace

PAYLOAD = ("n numeric(10,2), ch character(8), ts timestamp(3), mood zmood, flags bit(3), at point, net inet, "
           "tags varchar(5)[], doc jsonb, title varchar(50), made timestamptz(2), span interval, "
           "twice numeric generated always as (n * 2) stored")


@pytest.fixture(scope="module")
def upgrade(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return fct_upgrade(tmp_path_factory.mktemp("pg_types"))


def _vector(v: np.ndarray) -> str:
    return "[" + ",".join(repr(float(x)) for x in v) + "]"


def _typed_source(base: str, v1: np.ndarray, id_type: str) -> None:
    import psycopg

    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute("create type zmood as enum ('calm', 'tense')")
        conn.execute(f"create table docs (id {id_type} primary key, embedding vector({v1.shape[1]}), {PAYLOAD})")
        for i, v in enumerate(v1):
            conn.execute(
                "insert into docs values (%s, %s::vector, %s, %s, %s, %s, %s::bit(3), %s::point, %s::inet, %s, %s, "
                "%s, %s, %s)",
                [f"d-{i:04d}" if id_type.startswith("varchar") else i, _vector(v), f"{i}.25", f"c{i % 7}",
                 f"2024-01-02 03:04:05.{i:03d}", ("calm", "tense")[i % 2], format(i % 8, "03b"), f"({i},{-i})",
                 f"10.0.{i % 256}.1/24", ["ab", f"t{i % 10}"], f'{{"k": [{i}, "é\\t"]}}' if i % 5 else '"just a string"', f"title {i}",
                 "2024-05-06 07:08:09.12+00", f"{i % 3} mons {i} days"])


def _payload_text(uri_base: str, table: str) -> dict[str, str]:
    """Each row's payload columns as PostgreSQL prints them, by id."""
    import psycopg

    cols = "n, ch, ts, mood, flags, at, net, tags, doc, title, made, span, twice"
    with psycopg.connect(uri_base, autocommit=True) as conn:
        return {str(r[0]): r[1] for r in conn.execute(f"select id::text, row({cols})::text from {table}")}


@pytest.mark.parametrize("id_type", ["varchar(20)", "bigint"])
def test_typed_columns_migrate_with_every_payload_value_unchanged(pg_server: str, upgrade: dict, id_type: str,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    v1 = np.ascontiguousarray(upgrade["vectors"]["v1"][:150], dtype=np.float32)
    base = fresh_pg_database(pg_server, "types_" + id_type.split("(")[0])
    _typed_source(base, v1, id_type)
    source = f"{base}&table=docs&column=embedding"
    code, out, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", source,
                         "--to", f"{base}&table=docs_v2", "--batch", "40")
    assert code == 0 and out["written"] == len(v1), err
    assert _payload_text(base, "docs_v2") == _payload_text(base, "docs")  # '1 mon' stays a month, not 30 days
    import psycopg

    with psycopg.connect(base, autocommit=True) as conn:  # still computed by the shadow, for the writes after a switch
        assert conn.execute("select attgenerated from pg_attribute where attrelid = 'docs_v2'::regclass "
                            "and attname = 'twice'").fetchone()[0] == "s"
    ws_path = Path(upgrade["path"]).parent / f"w-{id_type[:4]}"
    Workspace.create(ws_path).close()
    code, out, err = cli(capsys, "import", "--workspace", str(ws_path), "--from", source, "--model", "v1",
                         "--label-field", "mood", "--text-field", "title")
    assert code == 0 and out["count"] == len(v1), err
    with Workspace.open(ws_path) as ws:
        keys = [f"d-{i:04d}" if id_type.startswith("varchar") else str(i) for i in range(len(v1))]
        ids = ws.ids_for_keys(keys)
        assert list(ws.labels(ids)[:2]) == ["calm", "tense"]  # an enum's label, not its raw bytes
        np.testing.assert_array_equal(ws.vectors_for("v1", ids), v1)
    got = read_all(f"{base}&table=docs_v2&column=embedding")
    expected = load_bundle(upgrade["bundle"])(v1, normalise_output=True)
    order = [f"d-{i:04d}" if id_type.startswith("varchar") else str(i) for i in range(len(v1))]
    np.testing.assert_allclose(np.stack([got[k][0] for k in order]), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("repeated", [39, 20])
def test_an_id_two_rows_share_is_refused_wherever_it_falls(pg_server: str, upgrade: dict, repeated: int,
                                                          tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Pages follow the id, so a repeat of a page's last id (39 with --batch 40) was skipped unseen: the
    migration then blamed the bundle or the counts, forever. One inside a page (20) was always refused."""
    import psycopg

    v1 = np.ascontiguousarray(upgrade["vectors"]["v1"][:120], dtype=np.float32)
    base = fresh_pg_database(pg_server, f"repeats_{repeated}")
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"create table docs (id bigint, embedding vector({v1.shape[1]}))")  # no key: repeats allowed
        for i, v in enumerate(v1):
            conn.execute("insert into docs values (%s, %s::vector)", [repeated if i == 100 else i, _vector(v)])
    source = f"{base}&table=docs&column=embedding"
    code, _, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", source,
                       "--to", f"{base}&table=docs_v2", "--batch", "40")
    one_line(code, err, f"the id {repeated} appears more than once", "every point needs a unique id")
    with psycopg.connect(base, autocommit=True) as conn:
        assert conn.execute("select to_regclass('docs_v2')").fetchone()[0] is None
    Workspace.create(tmp_path / "ws").close()
    code, _, err = cli(capsys, "import", "--workspace", str(tmp_path / "ws"), "--from", source, "--model", "v1")
    one_line(code, err, f"the id {repeated} appears more than once")


@pytest.mark.parametrize("id_type", ["bigint", "text"])
def test_an_infinite_timestamp_is_one_line_naming_the_table(pg_server: str, upgrade: dict, id_type: str,
                                                           tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """PostgreSQL's 'infinity' has no Python value: reading it stopped the migration with 'unexpected
    DataError: date too small' (exit 3)."""
    import psycopg

    v1 = np.ascontiguousarray(upgrade["vectors"]["v1"][:30], dtype=np.float32)
    base = fresh_pg_database(pg_server, f"infinite_{id_type}")
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"create table docs (id {id_type} primary key, embedding vector({v1.shape[1]}), at timestamp)")
        for i, v in enumerate(v1):
            conn.execute("insert into docs values (%s, %s::vector, %s)",
                         [i if id_type == "bigint" else f"d{i:02d}", _vector(v), "-infinity" if i == 7 else "2024-01-01"])
    code, _, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from",
                       f"{base}&table=docs&column=embedding", "--to", f"{base}&table=docs_v2", "--batch", "10")
    one_line(code, err, "table 'docs': a row holds a value that cannot be read", "infinity")
