"""Schema versioning: a fresh workspace is at the current version, a version-1 workspace migrates, reopening changes nothing, a failed
migration leaves the old schema intact."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import sqlite_utils
from helpers.workspace_files import checkpoint, snapshot, table_dump

from embridge.core.errors import SchemaVersionError, StoreError
from embridge.core.store import Workspace
from embridge.core.store import schema as schema_module

TABLES = {"meta", "items", "models", "vector_sets", "folds", "runs", "adapters", "reports", "bundles", "judgments"}


def _schema_sql(path: Path) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return sorted(conn.execute("select type, name, sql from sqlite_master").fetchall(), key=repr)
    finally:
        conn.close()


def test_fresh_workspace_is_at_the_current_version(tmp_path: Path) -> None:
    with Workspace.create(tmp_path / "ws") as ws:
        assert set(ws.db.table_names()) == TABLES
        assert ws.db.execute("select key, value from meta").fetchall() == [("schema_version", "4")]
        assert schema_module.current_version(ws.db) == schema_module.SCHEMA_VERSION == 4
        assert ws.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert ws.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        for sub in ("vectors", "models", "adapters", "reports", "bundles"):
            assert (tmp_path / "ws" / sub).is_dir()


def test_reopening_is_idempotent(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    with Workspace.create(root) as ws:
        ids = ws.add_items([{"key": "a"}, {"key": "b"}])
        ws.add_model("m", "old", {"kind": "vectors", "dim": 2}, None)
        ws.add_vector_set("m", ids, np.eye(2))
        checkpoint(ws)
    schema, rows, files = _schema_sql(root / "embridge.db"), table_dump(root), snapshot(root)
    for _ in range(3):
        with Workspace.open(root) as ws:
            assert ws.db.execute("select count(*) from meta").fetchone()[0] == 1
            np.testing.assert_array_equal(ws.vectors_for("m", ids), np.eye(2))
    assert _schema_sql(root / "embridge.db") == schema
    assert table_dump(root) == rows
    assert snapshot(root) == files  # reading never rewrote a stored file
    with Workspace.open_or_create(root) as ws:
        assert ws.item_ids().tolist() == ids


def test_open_or_create_makes_a_new_workspace(tmp_path: Path) -> None:
    with Workspace.open_or_create(tmp_path / "new") as ws:
        assert schema_module.current_version(ws.db) == 4


def test_interrupted_migration_leaves_the_database_as_it_was(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def half_migration(db: sqlite_utils.Database) -> None:
        db["items"].create({"id": int, "key": str}, pk="id")
        raise RuntimeError("power cut")

    monkeypatch.setitem(schema_module.MIGRATIONS, 0, half_migration)
    root = tmp_path / "ws"
    with pytest.raises(RuntimeError, match="power cut"):
        Workspace.create(root)
    conn = sqlite3.connect(root / "embridge.db")
    try:
        assert conn.execute("select name from sqlite_master").fetchall() == []  # no meta, no items
    finally:
        conn.close()
    monkeypatch.undo()
    with pytest.raises(StoreError, match="an 'embridge init' stopped before it finished"):
        Workspace.open(root)  # a reader does not finish it: it writes nothing
    with Workspace.create(root) as ws:  # init then runs the real migration from scratch
        assert set(ws.db.table_names()) == TABLES


def test_missing_migration_step_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "ws"
    Workspace.create(root).close()
    monkeypatch.setattr(schema_module, "SCHEMA_VERSION", 5)
    with pytest.raises(SchemaVersionError, match=r"no migration from schema version 4"):
        Workspace.open(root)


def test_newer_workspace_is_refused_and_left_untouched(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    with Workspace.create(root) as ws:
        ws.add_items([{"key": "a"}])
        ws.db.execute("update meta set value = '99' where key = 'schema_version'")
        checkpoint(ws)
    before = snapshot(root)
    with pytest.raises(SchemaVersionError, match=r"embridge\.db: workspace schema version 99 is newer"):
        Workspace.open(root)
    assert snapshot(root) == before


def _version_one_workspace(root: Path) -> None:
    """A workspace as Embridge with schema version 1 wrote it (before key namespaces and judgments)."""
    root.mkdir()
    for sub in ("vectors", "models", "adapters", "reports", "bundles"):
        (root / sub).mkdir()
    db = sqlite_utils.Database(root / "embridge.db")
    db["meta"].create({"key": str, "value": str}, pk="key")
    schema_module.MIGRATIONS[0](db)
    db["meta"].insert({"key": "schema_version", "value": "1"})
    db["items"].insert_all([{"key": "g1", "split": "gallery"}, {"key": "g2", "split": "gallery"},
                            {"key": "q1", "split": "query"}, {"key": "loose"}])
    db.close()


def test_version_one_workspace_migrates_keeping_its_items(tmp_path: Path) -> None:
    root = tmp_path / "v1"
    _version_one_workspace(root)
    with Workspace.open(root) as ws:
        assert schema_module.current_version(ws.db) == 4
        assert set(ws.db.table_names()) == TABLES
        rows = ws.db.execute("select key, split, namespace from items order by id").fetchall()
        assert rows == [("g1", "gallery", "doc"), ("g2", "gallery", "doc"), ("q1", "query", "query"),
                        ("loose", None, "doc")]
        assert ws.ids_for_keys(["q1", "g2"]).tolist() == [3, 2]  # existing callers keep working
        assert not ws.has_judgments() and len(ws.judgments()) == 0
        # after the migration a query may take a document's key, and judgments can be stored
        (q,) = ws.add_items([{"key": "g1", "split": "query"}])
        assert ws.query_ids_for_keys(["g1"]).tolist() == [q] and ws.doc_ids_for_keys(["g1"]).tolist() == [1]
        with pytest.raises(Exception, match="1 key already exists in the workspace: g2"):
            ws.add_items([{"key": "g2", "split": "gallery"}])
    with Workspace.open(root) as ws:  # a second open migrates nothing
        assert schema_module.current_version(ws.db) == 4


def _indexes(db: sqlite_utils.Database) -> dict[str, str]:
    return dict(db.execute("select name, sql from sqlite_master where type = 'index' and tbl_name = 'items' "
                           "and sql is not null").fetchall())


def test_version_two_workspace_trades_its_split_index_for_a_query_index(tmp_path: Path) -> None:
    """v3: the index of every item's split goes; a partial index of the query items serves query reads."""
    root = tmp_path / "v2"
    _version_one_workspace(root)
    db = sqlite_utils.Database(root / "embridge.db")
    schema_module.MIGRATIONS[1](db)
    db["meta"].upsert({"key": "schema_version", "value": "2"}, pk="key")
    assert "idx_items_split" in _indexes(db)
    db.close()
    with Workspace.open(root) as ws:
        assert schema_module.current_version(ws.db) == 4
        indexes = _indexes(ws.db)
        assert "idx_items_split" not in indexes and "where split = 'query'" in indexes["idx_items_queries"]
        assert ws.query_ids().tolist() == [3] and ws.items("query")[0]["key"] == "q1"
        assert ws.gallery_ids().tolist() == [1, 2, 4] and ws.gallery_count() == 3
        plan = " ".join(r[-1] for r in ws.db.execute(
            "explain query plan select id from items where split = 'query' order by id").fetchall())
        assert "idx_items_queries" in plan
    with Workspace.create(tmp_path / "fresh") as ws:  # a new workspace has the same indexes
        assert set(_indexes(ws.db)) == set(indexes)


def test_two_processes_opening_an_older_workspace_at_once_both_open_it(tmp_path: Path) -> None:
    """The app and a terminal opening a workspace after an upgrade: the second failed at once with 'the
    workspace is busy' (its deferred write on a stale snapshot), instead of waiting for the first's migration."""
    import subprocess
    import sys

    for attempt in range(2):
        root = tmp_path / f"v1-{attempt}"
        _version_one_workspace(root)
        db = sqlite_utils.Database(root / "embridge.db")
        db["items"].insert_all(({"key": f"k{i}", "split": "gallery"} for i in range(200_000)), batch_size=20_000)
        db.execute("pragma journal_mode=wal")
        db.close()
        command = [sys.executable, "-m", "embridge.core.cli.main", "info", "--workspace", str(root), "--json"]
        children = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                    for _ in range(2)]
        outcomes = [child.communicate(timeout=300) for child in children]
        for child, (out, err) in zip(children, outcomes, strict=True):
            assert child.returncode == 0, err
            assert json.loads(out)["schema_version"] == 4
        with Workspace.open(root) as ws:
            assert ws.item_count() == 200_004


def test_version_three_workspace_forgets_the_passwords_of_the_stores_it_imported(tmp_path: Path) -> None:
    """v4: a store URI was recorded with its password (items, their model, a backfill's store, an
    interrupted import's resume key); it is recorded masked, as imports now record it, so importing the
    same store again finds its items under the same source."""
    import hashlib

    from embridge.core.credentials import masked

    secret = "postgresql://me:pa55@db.example.org/shop?table=docs&password=pa55"
    source = f"store:{secret}"

    def resume_key(text: str) -> str:
        return "import-from-store:" + hashlib.sha256(text.encode()).hexdigest()[:16]

    root = tmp_path / "v3"
    with Workspace.create(root) as ws:
        ws.add_items([{"key": "a", "source": source}, {"key": "b", "source": "items.csv"}], source=source)
        ws.add_model("m", "old", {"kind": "vectors", "dim": 2, "source": secret, "sha256": "a" * 64}, None)
        ws.start_run("backfill", "m", {"store": secret, "note": "user@example.org"})
        ws.set_meta(resume_key(source), "{}")
        rotated = source.replace("me:pa55@", "me:older-pa55@")  # the same store, before a password change
        ws.add_items([{"key": "c", "source": rotated}], source=rotated)
        ws.set_meta(resume_key(rotated), "{}")
    partial = root / "vectors" / ".partial"
    partial.mkdir(parents=True, exist_ok=True)
    stem = "store-" + hashlib.sha256(source.encode()).hexdigest()[:16]
    for suffix in (".npy", ".ids.npy", ".json"):  # an interrupted import's rows: resumed, not rewritten
        (partial / f"{stem}{suffix}").write_bytes(b"rows")
    db = sqlite_utils.Database(root / "embridge.db")
    db["meta"].upsert({"key": "schema_version", "value": "3"}, pk="key")
    db.close()
    with Workspace.open(root) as ws:
        assert schema_module.current_version(ws.db) == 4
        dump = "\n".join(ws.db.conn.iterdump())
        assert "pa55" not in dump
        assert {r["key"]: r["source"] for r in ws.items()} == {"a": f"store:{masked(secret)}", "b": "items.csv",
                                                                "c": f"store:{masked(secret)}"}
        assert ws.model("m")["spec"]["source"] == "postgresql://me:***@db.example.org/shop?table=docs&password=***"
        (run,) = ws.runs("backfill")
        assert run["config"] == {"store": masked(secret), "note": "user@example.org"}
        assert ws.meta(resume_key(f"store:{masked(secret)}")) == "{}"
    stem = "store-" + hashlib.sha256(f"store:{masked(secret)}".encode()).hexdigest()[:16]
    assert sorted(f.name for f in partial.iterdir() if not f.name.endswith(".lock")) == \
        sorted(f"{stem}{suffix}" for suffix in (".npy", ".ids.npy", ".json"))
