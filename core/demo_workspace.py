"""A demo workspace appears whole or not at all.

``embridge demo`` writes images, items, models and vectors for a minute. A marker file written first
and removed last says the build has not finished: a build that fails or is cancelled removes what it
made at once, and one that was killed (marker still there) is cleared by the next ``demo`` run on
the same folder, which then builds it again. Entries the folder held before (dot files, which an
empty folder may hold) are never touched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from embridge.core.errors import StoreError
from embridge.core.paths import owned_temp_name
from embridge.core.store import Workspace
from embridge.core.store.demo_lock import lock_demo_folder, unlock_demo_folder
from embridge.core.store.workspace import DB_NAME
from embridge.core.store.workspace_folder import UNFINISHED_DEMO as MARKER


def start_demo(path: str | Path, kind: str) -> Workspace:
    """A new workspace at ``path`` for a demo of ``kind`` (as ``embridge demo --kind`` names it), after
    clearing a demo build that was killed there."""
    root = Path(path)
    made = not root.exists() and not root.is_symlink()
    if made or root.is_dir():  # held for the whole build: another demo here is refused, not let clear this one
        root.mkdir(parents=True, exist_ok=True)
        lock_demo_folder(root)
    try:
        return _start(root, made, kind)
    except BaseException:
        unlock_demo_folder(root)
        if made:
            try:
                root.rmdir()
            except OSError:
                pass
        raise


def _start(root: Path, made: bool, kind: str) -> Workspace:
    marker = root / MARKER
    if (root / DB_NAME).exists() and marker.is_file():
        kept = _kept(marker)
        foreign = sorted(e.name for e in os.scandir(root) if e.name not in set(kept or ())
                         and not _made(e.name) and not e.name.startswith("."))
        foreign += [name for name in sorted(MADE_FOLDERS) if name not in set(kept or ())
                    for name in _foreign_inside(root, name)]
        if foreign:  # the build would stop on a folder that is not empty, after clearing its own files
            raise StoreError(f"{root}: holds {', '.join(foreign[:5])}{' ...' if len(foreign) > 5 else ''} beside "
                             "the stopped demo's own files; move them out of the folder, then run 'embridge demo' "
                             "again (nothing was removed)")
        _remove_made(root, kept)
    before = None if made else sorted(os.listdir(root)) if root.is_dir() else None
    ws = Workspace.create(root)
    try:
        _write_marker(marker, before, kind)
    except BaseException:
        ws.close()
        _remove_made(root, before)
        raise
    return ws


def finish_demo(ws: Workspace) -> None:
    """The demo is complete: from now on it is a workspace like any other."""
    (ws.root / MARKER).unlink(missing_ok=True)
    unlock_demo_folder(ws.root)


def abandon_demo(ws: Workspace) -> None:
    """Close the workspace and remove what the unfinished demo made."""
    ws.close()
    try:
        _remove_made(ws.root, _kept(ws.root / MARKER))
    finally:
        unlock_demo_folder(ws.root)


def _write_marker(marker: Path, before: list[str] | None, kind: str) -> None:
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_text(json.dumps({"kept": before, "kind": kind}), encoding="utf-8")
    os.replace(tmp, marker)


def _kept(marker: Path) -> list[str] | None:
    """Entries the folder held before the demo (None: the demo made the folder itself)."""
    try:
        kept = json.loads(marker.read_text(encoding="utf-8")).get("kept")
    except (OSError, ValueError, AttributeError):
        return []  # unreadable: keep the folder itself, remove only what a demo makes inside it
    return kept if kept is None or isinstance(kept, list) else []


# what a demo build makes at the top of its folder: anything else there was put by someone else and stays
# (the next build then refuses the folder as not empty, naming it)
MADE = frozenset({DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", f"{DB_NAME}-journal", "adapters", "bundles", "models",
                  "reports", "vectors", "demo-items", "scale-jobs"})


MADE_FOLDERS = frozenset(name for name in MADE if not name.startswith(DB_NAME))
# what a demo build makes inside them: the digits' images, model copies named by their hash (a text model's
# folder whole), vector sets and the embedding's partial state; the other folders stay empty
_INSIDE = {
    "demo-items": re.compile(r"(gallery|query)(/\d(/digit-\d{4}\.png)?)?"),
    "models": re.compile(r"[^/]+-[0-9a-f]{12}(\.[A-Za-z0-9]+)?(/.*)?", re.S),
    "vectors": re.compile(r"\.partial(/.*)?|[^/]+(/vectors-[0-9a-f]{8}(\.ids)?\.npy)?", re.S),
}


def _foreign_inside(root: Path, folder: str) -> list[str]:
    """Entries under the build's folder ``folder`` that no demo build makes (a user's, put there after
    the build stopped): clearing the folder would delete them. Links are not entered."""
    top = root / folder
    if not top.is_dir() or top.is_symlink():
        return []
    pattern, found = _INSIDE.get(folder), []
    for base, dirs, files in os.walk(top, followlinks=False):
        for name in [*dirs, *files]:
            rel = (Path(base) / name).relative_to(top).as_posix()
            path = Path(base) / name
            folder_only = folder == "vectors" and "/" not in rel and rel != ".partial"  # a model's folder
            if owned_temp_name(name) or (pattern is not None and pattern.fullmatch(rel) and not path.is_symlink()
                                         and (not folder_only or path.is_dir())):
                continue
            found.append(f"{folder}/{rel}")
        dirs[:] = [d for d in dirs if f"{folder}/{(Path(base) / d).relative_to(top).as_posix()}" not in found]
    return found


def _made(name: str) -> bool:
    """Whether a top-level entry is one a demo build makes (its marker's temp file and temp names too)."""
    return name in MADE or name == f"{MARKER}.tmp" or owned_temp_name(name)


def _remove_made(root: Path, kept: list[str] | None) -> None:
    keep = set(kept or ()) - {MARKER}
    for entry in os.scandir(root):
        if entry.name in keep or entry.name == MARKER or not _made(entry.name):  # a user's dot file (.git) stays
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            Path(entry.path).unlink(missing_ok=True)
    (root / MARKER).unlink(missing_ok=True)
    if kept is None:
        try:
            root.rmdir()
        except OSError:
            pass
