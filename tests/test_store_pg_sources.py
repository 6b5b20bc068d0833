"""PostgreSQL sources as users keep them: a password in the URI, tables whose definition describes the
old model's vectors (a CHECK on their width, a column generated from them, a default vector), and bytes.

A password given in a URI was printed in messages and ``--json`` and stored with the imported items, the
model and the migration's checkpoint; a rerun after the password changed was "another source". A shadow
made like a table with such a definition failed on an unexpected error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from store_fixtures import cli, fct_upgrade, fill_source, fresh_pg_database, one_line


@pytest.fixture(scope="module")
def upgrade(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return fct_upgrade(tmp_path_factory.mktemp("pg-sources"))


def _with_password(base: str, password: str) -> str:
    assert "postgres:@" in base  # the test server trusts local connections: any password is accepted
    return base.replace("postgres:@", f"postgres:{password}@")


def _stored_text(ws: Path, base: str) -> str:
    """Everything the workspace database and the server's checkpoint tables hold, as text."""
    import sqlite3

    import psycopg

    with sqlite3.connect(ws / "embridge.db") as db:
        dump = "\n".join(db.iterdump())
    with psycopg.connect(base, autocommit=True) as conn:
        states = conn.execute("select * from embridge_state").fetchall()
    return dump + repr(states)


def test_a_password_in_the_uri_is_never_printed_or_stored_and_a_new_one_resumes_the_same_migration(
        upgrade: dict, tmp_path: Path, pg_server: str, capsys: pytest.CaptureFixture[str]) -> None:
    v1, labels = upgrade["vectors"]["v1"], upgrade["labels"]
    base = fresh_pg_database(pg_server, "pg_credentials")
    fill_source("pgvector", tmp_path, list(range(len(v1))), v1, labels, pg_base=base, name="docs")
    said: list[str] = []

    def run(*args: str) -> tuple[int, Any, str]:
        code, out, err = cli(capsys, *args)
        said.append(f"{out}\n{err}")
        return code, out, err

    first = _with_password(base, "s3cret-A") + "&column=embedding&table="
    ws = tmp_path / "ws"
    assert run("init", "--workspace", str(ws))[0] == 0
    code, imported, err = run("import", "--workspace", str(ws), "--from", first + "docs", "--model", "m")
    assert code == 0 and imported["new_items"] == len(v1), err
    code, migrated, err = run("migrate", "--bundle", str(upgrade["bundle"]), "--from", first + "docs",
                              "--to", first + "docs_v2", "--batch", "50")
    assert code == 0 and migrated["verification"]["ok"], err
    assert run("check", "--uri", first + "docs_v2")[0] == 0
    one_line(*run("check", "--uri", first + "nosuch")[::2], "no such table or view 'nosuch'")
    one_line(*run("check", "--uri", first.replace("postgres:s3cret", "postgres:s3cret@[::1"))[::2], "not a store URI")
    assert "postgres:***@" in migrated["source"]  # the store is still named, its password masked

    # the password changed since: the same source, so the same migration (it was refused as another one)
    second = _with_password(base, "s3cret-B") + "&column=embedding&table="
    code, again, err = run("migrate", "--bundle", str(upgrade["bundle"]), "--from", second + "docs",
                           "--to", second + "docs_v2", "--batch", "50")
    assert code == 0 and again["status"] == "already complete", err
    # a backfill into a table of the store: its line, --json and run record name the store masked
    code, filled, err = run("backfill", "--workspace", str(ws), "--model", "m", "--to-store", second + "docs_bf")
    assert code == 0 and filled["store"].startswith("postgresql://postgres:***@"), err
    one_line(*run("backfill", "--workspace", str(ws), "--model", "m", "--to-store", second + "docs_bf2",
                  "--detach", "--engine", "ray", "--ray-address", "127.0.0.1:1")[::2], "--to-store: holds a password or key")
    # libpq quotes a password it cannot parse in its own message; a scheme in capitals is still PostgreSQL
    one_line(*run("check", "--uri", _with_password(base, "s3cret%zz") + "&table=docs")[::2],
              "cannot connect to PostgreSQL")
    mixed = "PostgreSQL" + first.removeprefix("postgresql")
    code, checked, err = run("check", "--uri", mixed + "docs_v2")
    assert code == 0 and checked["count"] == len(v1), err
    assert not [text for text in said if "s3cret" in text]
    assert "s3cret" not in _stored_text(ws, base)


def test_a_shadow_leaves_out_what_described_the_old_vectors_and_generates_columns_again(
        upgrade: dict, tmp_path: Path, pg_server: str, capsys: pytest.CaptureFixture[str]) -> None:
    import psycopg
    from pgvector.psycopg import register_vector

    v1, labels = upgrade["vectors"]["v1"], upgrade["labels"]
    width = v1.shape[1]
    base = fresh_pg_database(pg_server, "pg_shapes")
    fill_source("pgvector", tmp_path, list(range(len(v1))), v1, labels, pg_base=base, name="docs")
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"alter table docs add constraint docs_width check (vector_dims(embedding) = {width})")
        conn.execute("alter table docs add constraint docs_label check (label <> '')")
        conn.execute(f"alter table docs alter column embedding set default array_fill(0.5, array[{width}])::vector")
        conn.execute("alter table docs add column norm double precision generated always as "
                     "(vector_norm(embedding)) stored")
    uri = base + "&column=embedding&table="
    code, migrated, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", uri + "docs",
                              "--to", uri + "docs_v2", "--batch", "50")
    assert code == 0 and migrated["verification"]["ok"], err
    assert "the shadow leaves out the constraint 'docs_width' (CHECK ((vector_dims(embedding) = " in migrated["warning"]
    assert "docs_label" not in migrated["warning"]
    assert "leaves out the vector column's default (" in migrated["warning"]
    assert "computes its column 'norm' (vector_norm(embedding)) from the new vectors" in migrated["warning"]
    with psycopg.connect(base, autocommit=True) as conn:
        register_vector(conn)
        checks = [r[0] for r in conn.execute("select conname from pg_constraint where conrelid = 'docs_v2'::regclass "
                                             "and contype = 'c'").fetchall()]
        default = conn.execute("select column_default from information_schema.columns where table_name = 'docs_v2' "
                               "and column_name = 'embedding'").fetchone()[0]
        rows = conn.execute("select embedding, norm from docs_v2").fetchall()
        source_width = conn.execute("select vector_dims(embedding) from docs limit 1").fetchone()[0]
    assert checks == ["docs_label"] and default is None and source_width == width
    vectors = np.stack([np.asarray(r[0].to_numpy(), dtype=np.float64) for r in rows])
    assert vectors.shape == (len(v1), upgrade["vectors"]["v3"].shape[1])  # the new width
    np.testing.assert_allclose([r[1] for r in rows], np.linalg.norm(vectors, axis=1), rtol=1e-5)


def test_a_bytea_column_migrates_into_another_database_as_bytes(
        upgrade: dict, tmp_path: Path, pg_server: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A table made in another database takes its columns from the values: bytes had no column type, so
    the first point was refused as if its column were text 'taken from the points before it'."""
    import psycopg

    v1, labels = upgrade["vectors"]["v1"], upgrade["labels"]
    base = fresh_pg_database(pg_server, "pg_bytes_source")
    fill_source("pgvector", tmp_path, list(range(len(v1))), v1, labels, pg_base=base, name="docs")
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute("alter table docs add column blob bytea")
        conn.execute("update docs set blob = int8send(id) || '\\x00ff'::bytea where id % 3 <> 0")
        wanted = dict(conn.execute("select id, blob from docs").fetchall())
    other = fresh_pg_database(pg_server, "pg_bytes_target")
    code, migrated, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from",
                              base + "&column=embedding&table=docs", "--to", other + "&column=embedding&table=docs_v2")
    assert code == 0 and migrated["verification"]["ok"], err
    with psycopg.connect(other, autocommit=True) as conn:
        kind = conn.execute("select data_type from information_schema.columns where table_name = 'docs_v2' and "
                            "column_name = 'blob'").fetchone()[0]
        got = dict(conn.execute("select id, blob from docs_v2").fetchall())
    assert kind == "bytea" and got == wanted and sum(v is None for v in got.values()) == (len(v1) + 2) // 3


def test_a_numeric_label_column_is_read_as_the_integers_it_holds() -> None:
    """PostgreSQL numeric (and Parquet decimal) values come back as Decimal: refused as 'not text or an
    integer', though a double precision 3.0 was the label 3."""
    from decimal import Decimal

    from embridge.core.errors import ImportDataError
    from embridge.core.keys import normalise_label

    assert [normalise_label(v, "src", "point 1") for v in (Decimal("3"), Decimal("-2.000"), 3.0)] == ["3", "-2", "3"]
    for bad in (Decimal("2.5"), Decimal("NaN"), Decimal("Infinity")):
        with pytest.raises(ImportDataError, match="a label must be text or an integer, got the number"):
            normalise_label(bad, "src", "point 1")


def test_a_column_computed_at_the_old_width_is_refused_in_one_line(
        upgrade: dict, tmp_path: Path, pg_server: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A generated column comparing the vector with a constant of the old width: the copied definition
    refuses every new vector, which ended in 'unexpected DataException' (exit 3)."""
    import psycopg

    v1, labels = upgrade["vectors"]["v1"], upgrade["labels"]
    base = fresh_pg_database(pg_server, "pg_old_width")
    fill_source("pgvector", tmp_path, list(range(len(v1))), v1, labels, pg_base=base, name="docs")
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute("alter table docs add column dist real generated always as (l2_distance(embedding, "
                     f"array_fill(0::real, array[{v1.shape[1]}])::vector)) stored")
    uri = base + "&column=embedding&table="
    code, _, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", uri + "docs",
                       "--to", uri + "docs_v2", "--batch", "50")
    one_line(code, err, "the server refused the rows (different vector dimensions",
             "a constraint, generated column or index of the table may compute on the vectors as the old model's")


def test_a_complete_migration_whose_last_page_was_full_runs_again_as_complete(
        upgrade: dict, tmp_path: Path, pg_server: str) -> None:
    """PostgreSQL keeps the last id as the cursor when the last page is full: a complete migration run again
    was taken for a resume, and an edit since was refused with 'drop' advice for a shadow that may serve."""
    import psycopg

    from embridge.core.connectors.migration import migrate_store

    v1, labels = upgrade["vectors"]["v1"], upgrade["labels"]
    batch = next(b for b in (40, 30, 24, 20, 16, 12, 10, 8, 6, 5, 4, 3, 2) if len(v1) % b == 0)
    base = fresh_pg_database(pg_server, "pg_full_pages")
    fill_source("pgvector", tmp_path, list(range(len(v1))), v1, labels, pg_base=base, name="docs")
    uri = base + "&column=embedding&table="
    done = migrate_store(upgrade["bundle"], uri + "docs", uri + "docs_v2", batch_size=batch, switch=True,
                         alias="docs_live")
    assert done.status == "completed" and done.switched
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute("update docs set label = 'edited' where id = 3")
    again = migrate_store(upgrade["bundle"], uri + "docs", uri + "docs_v2", batch_size=batch, switch=True,
                          alias="docs_live")
    assert again.status == "already complete" and "changed since the migration copied it" in (again.warning or "")
    assert "drop" not in again.warning
