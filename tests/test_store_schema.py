"""Schema versioning: a fresh workspace is at version 1, reopening changes nothing, a failed
migration leaves the old schema intact."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
import sqlite_utils
from helpers.workspace_files import checkpoint, snapshot, table_dump

from core.errors import SchemaVersionError
from core.store import Workspace
from core.store import schema as schema_module

TABLES = {"meta", "items", "models", "vector_sets", "folds", "runs", "adapters", "reports", "bundles"}


def _schema_sql(path: Path) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return sorted(conn.execute("select type, name, sql from sqlite_master").fetchall(), key=repr)
    finally:
        conn.close()


def test_fresh_workspace_is_at_version_one(tmp_path: Path) -> None:
    with Workspace.create(tmp_path / "ws") as ws:
        assert set(ws.db.table_names()) == TABLES
        assert ws.db.execute("select key, value from meta").fetchall() == [("schema_version", "1")]
        assert schema_module.current_version(ws.db) == schema_module.SCHEMA_VERSION == 1
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
        assert schema_module.current_version(ws.db) == 1


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
    with Workspace.open(root) as ws:  # the real migration then runs from scratch
        assert set(ws.db.table_names()) == TABLES


def test_missing_migration_step_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "ws"
    Workspace.create(root).close()
    monkeypatch.setattr(schema_module, "SCHEMA_VERSION", 2)
    with pytest.raises(SchemaVersionError, match=r"no migration from schema version 1"):
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
