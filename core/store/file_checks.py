"""Checking a stored file against its recorded sha256, and remembering checks that passed.

A check that passes is remembered per file identity (inode, size, mtime, ctime) in this process
and, once the file is settled, in a note under the user's cache folder, so a later process skips
hashing a file that has not changed since. The workspace itself is never written by a check.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from pathlib import Path

from embridge.core.errors import IntegrityError
from embridge.core.paths import file_kind
from embridge.core.store.files import atomic_write_text, sha256_file

_verified: dict[tuple[str, int, int, int, int], str] = {}
# A file modified within this many seconds of its last check may share its mtime with the
# modification (coarse filesystem clocks), so such a check is not remembered.
_RACY_WINDOW_NS = 2_000_000_000
CACHE_DIR_ENV = "EMBRIDGE_CACHE_DIR"


def stored_file_stat(path: Path) -> os.stat_result:
    """The stat of a file the workspace stored; refused when it is gone or no longer a regular file (a FIFO
    put in its place: hashing or loading it would wait for a writer for ever)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise IntegrityError(f"{path}: file is missing from the workspace") from None
    if not stat.S_ISREG(st.st_mode):
        raise IntegrityError(f"{path}: is {file_kind(st.st_mode)}, not the regular file that was stored")
    return st


def file_identity(path: Path) -> tuple[int, int, int, int]:
    """(inode, size, mtime_ns, ctime_ns): any write, replacement or ``touch`` changes one of them.

    ctime cannot be set back by a user, so an edit that restores the mtime still shows here.
    """
    st = stored_file_stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def settled(identity: tuple[int, int, int, int]) -> bool:
    """Old enough that a later edit cannot share its timestamps (coarse filesystem clocks)."""
    return time.time_ns() - max(identity[2], identity[3]) > _RACY_WINDOW_NS


def verified_sha256(path: Path, expected: str) -> None:
    """Check a file's sha256 against the recorded one, caching success per file identity and times.

    Success is remembered in this process and, for settled files, in a note under the user's cache
    folder (:func:`verified_notes_dir`), so the next process skips hashing a file that has not
    changed since: a 1.5 GB gallery takes 5-9 s to hash on a CPU without SHA instructions. The
    workspace itself is never written by a check.
    """
    identity = file_identity(path)
    key = (str(path), *identity)
    if _verified.get(key) == expected:
        return
    resolved = str(path.resolve())
    note = verified_notes_dir() / (hashlib.sha256(os.fsencode(resolved)).hexdigest() + ".json")
    record = json.dumps({"path": resolved, "identity": list(identity), "sha256": expected})
    if settled(identity) and _read_note(note) == record:
        _verified[key] = expected
        return
    actual = sha256_file(path)
    if actual != expected:
        raise IntegrityError(f"{path}: checksum mismatch (file changed or corrupted since it was stored)")
    if settled(identity):
        _verified[key] = expected
        _write_note(note, record)


def verified_notes_dir() -> Path:
    """Where checks of settled files are noted: ``EMBRIDGE_CACHE_DIR``, else the user's cache folder."""
    root = os.environ.get(CACHE_DIR_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "embridge")
    return Path(root) / "verified"


def _read_note(note: Path) -> str | None:
    try:
        return note.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _write_note(note: Path, record: str) -> None:
    """Best effort: a note only saves a later hash, so an unwritable cache folder changes nothing."""
    try:
        note.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(note, record)
    except OSError:
        pass
