"""Snapshots of a workspace folder, to prove that a failed write changed nothing.

The database is checkpointed first (``wal_checkpoint(TRUNCATE)``), so every committed change is
in ``embridge.db`` and the ``-wal`` file is empty; a failed write that still committed something
would then show up as a changed ``embridge.db`` or a non-empty ``-wal``. Only ``-shm`` is left
out: it is SQLite's shared-memory index of the WAL, rewritten by readers too, and holds no data.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from embridge.core.errors import ImportDataError
from embridge.core.store import Workspace


def checkpoint(ws: Workspace) -> None:
    busy, _, _ = ws.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    assert busy == 0, "checkpoint could not complete"


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (except the ``-shm`` index), keyed by relative path."""
    out: dict[str, str] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.name.endswith("-shm"):
            continue
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # gone since it was listed: SQLite removes the -wal when a last connection closes
            continue
        out[path.relative_to(root).as_posix()] = hashlib.sha256(data).hexdigest()
    return out


def refused_unchanged(ws: Workspace, call: Callable[[], object], message: str,
                      error: type[Exception] = ImportDataError) -> None:
    """``call`` raises ``error`` matching ``message``, and every file of the workspace is as it was."""
    checkpoint(ws)
    before = snapshot(ws.root)
    with pytest.raises(error, match=message):
        call()
    checkpoint(ws)
    assert snapshot(ws.root) == before


def tree_snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root``: files by content hash, links by target, folders as such (a store's
    collections are folders and its aliases links, so a refusal must leave all three as they were)."""
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            out[rel] = f"link -> {path.readlink()}"
        elif path.is_file():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            out[rel] = "folder"
    return out


def table_dump(root: Path) -> dict[str, list[tuple]]:
    """Every row of every table, read through a separate connection."""
    conn = sqlite3.connect(os.fspath(root / "embridge.db"))
    try:
        names = [r[0] for r in conn.execute("select name from sqlite_master where type = 'table'")]
        return {n: sorted(conn.execute(f'select * from "{n}"').fetchall(), key=repr) for n in names}
    finally:
        conn.close()
