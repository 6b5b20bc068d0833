"""A workspace's folder: what it must be before it is opened (checked, never repaired), the folders it
holds, and the leftovers of crashed writers swept when it opens."""

from __future__ import annotations

import errno
import os
import re
import stat
import time
from pathlib import Path
from typing import Any

from embridge.core.errors import StoreError
from embridge.core.paths import (
    DB_NAME,
    STORE_FOLDERS,
    TEMP_MAX_AGE_S,
    absolute,
    is_real_dir,
    owned_temp_name,
    remove_if_untouched,
    sweep_old_temps,
)
from embridge.core.store.demo_lock import refuse_while_building
from embridge.core.store.files import sha256_file, sha256_tree
from embridge.core.store.vector_matrix import sweep_orphans

UNFINISHED_DEMO = ".embridge-demo-unfinished"  # written first and removed last by `embridge demo`


def make_store_folders(root: Path) -> None:
    """The folders every workspace holds (opening one made before a folder was added makes it too)."""
    for sub in STORE_FOLDERS:
        try:
            (root / sub).mkdir(exist_ok=True)
        except OSError as exc:
            if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise StoreError(f"{root}: the workspace folder is read-only, and its '{sub}' folder is missing (a "
                                 "command makes it); copy the workspace to a writable folder") from exc
            raise StoreError(f"{root / sub}: cannot make the workspace's folder ({exc.strerror or exc})") from exc


STORED_COPY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*-(?P<sha>[0-9a-f]{12})(\.[A-Za-z0-9]+)*")  # <model>-<sha12><suffix>
STORED_LAYER = re.compile(r"[a-z0-9_]+-run(\d+|None)-(?P<sha>[0-9a-f]{12})\.pt")  # as add_adapter names a layer


def sweep_model_orphans(models_dir: Path, registered: set[str], cutoff: float,
                        referenced: frozenset[Path] = frozenset(), named: re.Pattern[str] = STORED_COPY) -> int:
    """Remove stored checkpoint copies no model names (or layer files no layer row names, ``adapters/``),
    unchanged since ``cutoff``; returns how many.

    A ``model remove`` killed between its commit and the unlink left its copy behind for good. Only
    entries with the names :meth:`add_model` gives are candidates, and no link is followed. A file a
    vectors-only model references where it lies (``referenced``, resolved) is the user's, whatever its name.
    """
    if not is_real_dir(models_dir):
        return 0
    removed = 0
    with os.scandir(models_dir) as entries:
        for entry in entries:
            if entry.name in registered or not named.fullmatch(entry.name) or entry.is_symlink():
                continue
            if referenced and Path(entry.path).resolve() in referenced:
                continue
            if _holds_its_name(Path(entry.path), cutoff, named):
                removed += remove_if_untouched(Path(entry.path), cutoff)
    return removed


REPORT_FILES = frozenset({"report.json", "report.html"})  # what `report` writes into reports/<id>/


def unregistered_report_folder(folder: Path, cutoff: float | None = None) -> bool:
    """Whether ``folder`` (``reports/<id>`` of an id no report row has) holds only what a report writes:
    files a report killed between writing them and committing its row left, which no row will ever name
    (its id goes to the next report). With ``cutoff``, only when nothing in it changed since then."""
    if not is_real_dir(folder):
        return False
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                st = entry.stat(follow_symlinks=False)
                if not stat.S_ISREG(st.st_mode) or not (entry.name in REPORT_FILES or owned_temp_name(entry.name)):
                    return False
                if cutoff is not None and max(st.st_mtime, st.st_ctime) >= cutoff:
                    return False
    except OSError:
        return False
    return True


def sweep_report_orphans(reports_dir: Path, registered: set[str], cutoff: float) -> int:
    """Remove ``reports/<id>`` folders no report row names, untouched since ``cutoff``; returns how many."""
    if not is_real_dir(reports_dir):
        return 0
    removed = 0
    with os.scandir(reports_dir) as entries:
        for entry in entries:
            if entry.name.isdigit() and entry.name not in registered and \
                    unregistered_report_folder(Path(entry.path), cutoff):
                removed += remove_if_untouched(Path(entry.path), cutoff)
    return removed


def _holds_its_name(path: Path, cutoff: float, pattern: re.Pattern[str] = STORED_COPY) -> bool:
    """A copy ``add_model`` made is named by its content's sha256; a user's file that merely looks so (a
    timestamp of 12 digits) does not hash to its name, and is never ours to remove."""
    try:
        st = os.lstat(path)
        if max(st.st_mtime, st.st_ctime) >= cutoff:
            return False  # recent: left alone without reading it
        sha = sha256_tree(path) if stat.S_ISDIR(st.st_mode) else sha256_file(path) if stat.S_ISREG(st.st_mode) else ""
    except OSError:
        return False
    named = pattern.fullmatch(path.name)
    return bool(sha and named and named["sha"] == sha[:12])


def holds_files(root: Path) -> bool:
    """True when any workspace folder holds a file (links are not entered)."""
    for sub in STORE_FOLDERS:
        folder = root / sub
        if folder.is_symlink() or (folder.exists() and any(os.scandir(folder))):
            return True
    return False


def check_database_file(root: Path) -> None:
    """The database must be a readable, non-empty regular file; never created or repaired here."""
    refuse_while_building(root)
    db_path = root / DB_NAME
    try:
        st = db_path.stat()
    except FileNotFoundError:
        raise StoreError(f"{root}: not an Embridge workspace (no {DB_NAME}); run 'embridge init' first") from None
    except NotADirectoryError:
        raise StoreError(f"{root}: is a file, not a workspace folder") from None
    except OSError as exc:
        raise StoreError(f"{db_path}: cannot read the workspace database ({exc.strerror})") from exc
    if not stat.S_ISREG(st.st_mode):
        raise StoreError(f"{db_path}: the workspace database is not a regular file")
    if (root / UNFINISHED_DEMO).is_file():  # anything written into it would be removed by the next demo run
        kind = _demo_kind(root / UNFINISHED_DEMO)
        raise StoreError(f"{root}: an 'embridge demo' that was stopped before it finished; run 'embridge demo "
                         f"--workspace {root}{' --kind ' + kind if kind and kind != 'digits' else ''}' again to "
                         "finish it (it removes only what the demo made), or delete the folder")
    if st.st_size == 0 and init_cut_short(root):  # one without tables is refused once opened (Workspace._connect)
        raise StoreError(init_stopped(db_path, "empty (0 bytes)"))
    if st.st_size == 0:
        raise StoreError(f"{db_path}: the workspace database is empty (0 bytes); restore it from a backup. "
                         "Embridge leaves it and the workspace's files untouched")


def init_stopped(db_path: Path, what: str) -> str:
    """The refusal of a workspace whose 'init' stopped before it finished (``what``: its database's state)."""
    return (f"{db_path}: the workspace database is {what} and the workspace holds no files: an 'embridge init' "
            f"stopped before it finished; run 'embridge init --workspace {db_path.parent}' to finish it, or "
            "restore the database from a backup")


def check_creatable(root: Path) -> None:
    """Refuse a folder a new workspace cannot be made in: a file, a folder holding anything (a workspace
    included), unless it is what an 'init' killed before its first write left, which is finished then."""
    if root.exists() and not root.is_dir():
        raise StoreError(f"{root}: is a file, not a folder; give a new or empty folder for the workspace")
    refuse_while_building(root)
    db_path = root / DB_NAME
    if db_path.exists() and not db_path.is_file():
        raise StoreError(f"{db_path}: the workspace database is not a regular file")
    if init_cut_short(root):
        return
    if db_path.exists():
        raise StoreError(f"{root}: a workspace already exists here")
    if root.exists() and any(p for p in root.iterdir() if not p.name.startswith(".")):
        raise StoreError(f"{root}: folder is not empty; choose an empty or new folder")
    outer = next((f for f in absolute(root).parents if _workspace_database(f / DB_NAME)), None)
    if outer is not None:  # its sweeps and checks would take the inner workspace's files for its own
        raise StoreError(f"{root}: is inside the workspace {outer}; make the new workspace beside it, not in it")


def _workspace_database(path: Path) -> bool:
    """Whether ``path`` is a workspace's database: an SQLite file, or the empty one an 'init' cut short left
    (a text file that happens to be called embridge.db is not)."""
    try:
        if not path.is_file():  # never opened otherwise: a FIFO would wait for a writer
            return False
        with open(path, "rb") as fh:
            return fh.read(16) in (b"", b"SQLite format 3\x00")
    except OSError:
        return False


def init_cut_short(root: Path) -> bool:
    """True for what an 'init' stopped before its schema was written leaves: an empty database file (SQLite
    writes nothing until the schema's first statement) or one holding no schema object (a full disk failed
    the first table after the file's header page was written), maybe an empty journal, and workspace folders
    without files. Nothing else may be in the folder: then 'init' may finish it without losing anything."""
    db_path = root / DB_NAME
    try:
        st = db_path.lstat()
        if not stat.S_ISREG(st.st_mode):
            return False
        wal = root / (DB_NAME + "-wal")
        if wal.exists() and wal.stat().st_size != 0:
            return False
        if st.st_size != 0 and (st.st_size > _SMALL_DATABASE or not _no_schema(db_path)):
            return False
        extra = [p.name for p in root.iterdir() if not p.name.startswith(".")
                 and p.name not in (DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm", *STORE_FOLDERS)]
    except OSError:
        return False
    return not extra and not holds_files(root)


_SMALL_DATABASE = 64 * 1024  # a database stopped before its first table holds its header page alone


def _no_schema(db_path: Path) -> bool:
    """Whether a database file holds no table, index or view and was never given a schema version.

    Read through SQLite, read-only: it writes nothing to the file, and, unlike a plain open and close of
    the file, keeps the locks other connections of this process hold on it (closing any descriptor of
    a file drops every POSIX record lock the process holds on it)."""
    import sqlite3

    try:
        conn = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True, timeout=0.1)
        try:
            objects = conn.execute("select count(*) from sqlite_master").fetchone()[0]
            version = conn.execute("pragma user_version").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return False
    return objects == 0 and version == 0


def _demo_kind(marker: Path) -> str | None:
    """The kind of demo a stopped build was making, as its marker records it (None when unreadable)."""
    import json

    try:
        kind = json.loads(marker.read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
        return None
    return kind if isinstance(kind, str) and kind.isidentifier() else None


def sweep_leftovers(root: Path, conn: Any) -> None:
    """Remove temp files, unregistered vector files, stored checkpoint copies, trained layers and report
    folders a crashed writer left behind.

    Only names this program gives its own files are removed, in the workspace's own folders, after an
    hour untouched, and no symbolic link is ever followed (a linked folder is left alone entirely).
    """
    cutoff = time.time() - TEMP_MAX_AGE_S
    for sub in STORE_FOLDERS:
        sweep_old_temps(root / sub, cutoff)
    model_rows = conn.execute("select name, file, source_path, kind from models").fetchall()
    # a vectors-only model references its file where it lies, which may be inside the workspace's folders
    referenced = frozenset(Path(str(src)).resolve() for _, _, src, kind in model_rows if src and kind == "vectors")
    sweep_model_orphans(root / "models", {str(file).split("/", 1)[-1] for _, file, _, _ in model_rows if file},
                        cutoff, referenced)
    registered = {root / r[c] for r in conn.execute("select file, ids_file from vector_sets") for c in (0, 1) if r[c]}
    models = {name for name, *_ in model_rows if isinstance(name, str)}
    if is_real_dir(root / "vectors"):
        sweep_orphans(root / "vectors", registered, cutoff, models)
    reports = {str(r[0]) for r in conn.execute("select id from reports")}
    sweep_report_orphans(root / "reports", reports, cutoff)
    # a trained layer copied in but never registered (killed between its copy and its row): named by its sha too
    layers = {str(r[0]).split("/", 1)[-1] for r in conn.execute("select file from adapters") if r[0]}
    sweep_model_orphans(root / "adapters", layers, cutoff, named=STORED_LAYER)  # only names a layer gets
