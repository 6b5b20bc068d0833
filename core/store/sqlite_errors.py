"""SQLite's errors in the words of the workspace: what went wrong with the disk, not the library.

SQLite reports a read-only folder as "unable to open database file" (a workspace in WAL mode writes
its journal beside the database even to read it) and a full disk as "disk I/O error" or "database or
disk is full". The folder is checked here so the message says which it was and what to do.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

from embridge.core.errors import DiskFullError, StoreError, WorkspaceBusyError

LOW_SPACE_BYTES = 1 << 20  # under this much free space, a failed write is put down to the full disk


def read_only_folder(folder: Path) -> bool:
    """True when ``folder`` sits on a read-only file system or this user may not write in it."""
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY) or not os.access(folder, os.W_OK)
    except OSError:
        return False


SQLITE_PATH_MAX = 500  # SQLite's default pathname limit is 512 bytes, the journal's suffixes included


def free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def translate(exc: sqlite3.DatabaseError, db_path: Path) -> Exception:
    """The workspace error for ``exc``, raised while using the database at ``db_path``."""
    text = str(exc).lower()
    folder = db_path.parent
    if "locked" in text or "busy" in text:
        return WorkspaceBusyError(f"{db_path}: the workspace is busy (another process is writing); try again")
    if "not a database" in text or "malformed" in text or "file is encrypted" in text:
        return StoreError(f"{db_path}: the workspace database is corrupt or not a database ({exc})")
    size = len(os.fsencode(os.path.abspath(db_path)))
    if "unable to open" in text and size > SQLITE_PATH_MAX:
        return StoreError(f"{db_path}: its full path is {size} bytes long, and SQLite opens database files by "
                          f"paths of at most about {SQLITE_PATH_MAX} bytes; put the workspace in a folder with a "
                          "shorter path")
    if ("unable to open" in text or "readonly" in text or "read-only" in text) and read_only_folder(folder):
        return StoreError(f"{db_path}: the workspace folder is read-only; the database writes its journal beside "
                          "it (to be read, unless a journal is already there) and every command that records a run "
                          "or a change writes to it; copy the workspace to a writable folder")
    free = free_bytes(folder)
    if ("disk i/o" in text or "full" in text) and free is not None and free < LOW_SPACE_BYTES:
        return DiskFullError(f"{db_path}: no space left on the disk holding the workspace ({free:,} bytes were free "
                             "when the write failed); free some space and run the command again (SQLite undid the "
                             "write it could not finish; even reading needs room for the database's index file)")
    return StoreError(f"{db_path}: {exc}")
