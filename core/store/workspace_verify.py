"""A full check of a workspace's stored bytes: what ``embridge info --verify`` runs.

Readers check a vector file's sha256 on open but remember a check that passed per file identity
(:mod:`embridge.core.store.file_checks`), so a file whose bytes rot on disk without its size or
times changing is not hashed again by them. This check hashes every stored file afresh, ignoring
what was remembered, and asks SQLite to check its own file, so a damaged workspace is found before
an upgrade is planned or shipped from it. It reads only: nothing in the workspace is written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from embridge.core.progress import ProgressFn, StopFn, check_stop, no_progress
from embridge.core.store.files import sha256_file, sha256_tree
from embridge.core.store.vector_set_health import SUPERSEDED, damaged_advice, replaced


@dataclass(frozen=True)
class FileCheck:
    """One stored file (or folder) and what is wrong with it, if anything."""

    what: str
    path: str
    problem: str | None = None
    advice: str = ""
    reference: bool = False  # a file the workspace reads where it lies (a vectors-only model's), not one it stores
    superseded: bool = False  # a damaged vector set whose items a later intact set holds: nothing reads it

    def to_dict(self) -> dict[str, Any]:
        return {"what": self.what, "path": self.path, "ok": self.problem is None, "problem": self.problem,
                "advice": self.advice or None, "reference": self.reference, "superseded": self.superseded}


@dataclass(frozen=True)
class WorkspaceCheck:
    """Every stored file checked against its recorded checksum, and SQLite's own check of its file."""

    workspace: str
    database_problem: str | None
    files: list[FileCheck] = field(default_factory=list)

    @property
    def problems(self) -> list[FileCheck]:
        """Damaged stored files: what the workspace holds is not what it recorded."""
        return [f for f in self.files if f.problem is not None and not f.reference and not f.superseded]

    @property
    def notes(self) -> list[FileCheck]:
        """Referenced files gone or changed: nothing stored is damaged (a vectors-only model's vectors are in its
        sets), but embedding more items with that model needs the file back as it was. And damaged sets a
        repair replaced: a later set holds their items, so nothing reads them."""
        return [f for f in self.files if f.problem is not None and (f.reference or f.superseded)]

    @property
    def ok(self) -> bool:
        return self.database_problem is None and not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"workspace": self.workspace, "ok": self.ok, "checked_files": len(self.files),
                "damaged_files": len(self.problems), "referenced_files_changed": len(self.notes),
                "database_problem": self.database_problem,
                "files": [f.to_dict() for f in self.files]}

    def text(self) -> str:
        referenced = sum(f.reference for f in self.files)
        also = f" (and {referenced} file{'s' * (referenced != 1)} it references)" if referenced else ""
        lines = [f"verified {len(self.files) - referenced} stored files{also} of {self.workspace} by their sha256, "
                 "and the database"]
        if self.database_problem:
            lines.append(f"  DAMAGED: database: {self.database_problem}")
        for f in self.problems:
            lines.append(f"  DAMAGED: {f.what} ({f.path}): {f.problem}" + (f"; {f.advice}" if f.advice else ""))
        for f in self.notes:
            lines.append(f"  NOTE: {f.what} ({f.path}): {f.problem}" + (f"; {f.advice}" if f.advice else ""))
        lines.append("all intact" if self.ok else
                     f"{len(self.problems) + bool(self.database_problem)} damaged; nothing was changed")
        return "\n".join(lines)


def verify_workspace(ws: Any, on_progress: ProgressFn = no_progress,
                     should_stop: StopFn | None = None) -> WorkspaceCheck:
    """Hash every file the workspace records (vector sets and their id lists, stored model copies,
    trained layers) against its recorded sha256, and run SQLite's ``integrity_check``."""
    root = Path(ws.root)
    targets = _targets(ws, root)
    sizes = [_size(t.path) for t in targets]
    total = sum(sizes) or 1
    done, files = 0, []
    on_progress(0, total, {"stage": "checking the database"})
    database_problem = _database_problem(ws)
    for target, size in zip(targets, sizes, strict=True):
        check_stop(should_stop)
        problem = _file_problem(target.path, target.sha256, target.file_only)
        superseded = problem is not None and target.vector_set is not None and replaced(ws, target.vector_set)
        advice = SUPERSEDED if superseded else target.advice
        files.append(FileCheck(target.what, str(target.path), problem, advice if problem else "", target.reference,
                               superseded))
        done += size
        on_progress(min(done, total), total, {"stage": "hashing stored files"})
    on_progress(total, total, {"stage": "checking the id lists against the items"})
    files = _with_items_checked(ws, root, files)
    on_progress(total, total, {"stage": "done"})
    return WorkspaceCheck(str(root.resolve()), database_problem, files)


def _with_items_checked(ws: Any, root: Path, files: list[FileCheck]) -> list[FileCheck]:
    """An intact id list may still name items the database no longer holds (a database restored from an
    older backup beside newer vector files): its rows would be read as other items, or not at all."""
    import numpy as np

    intact = {f.path for f in files if f.problem is None}
    items = ws.item_ids()
    out = list(files)
    for v in ws.vector_sets():
        path = str(root / v["ids_file"])
        if path not in intact:
            continue
        ids = np.load(path, mmap_mode="r", allow_pickle=False)
        gone = ids[~np.isin(ids, items)] if len(ids) else ids
        if len(gone):
            n = next(i for i, f in enumerate(out) if f.path == path)
            out[n] = FileCheck(out[n].what, path, f"names {len(gone):,} item{'s' * (len(gone) != 1)} the workspace "
                               f"does not hold (item id {int(gone[0])}, ...)", "its rows cannot be matched to items; restore the "
                               "database and the vector files from one backup")
    return out


class _Target(NamedTuple):
    what: str
    path: Path
    sha256: str
    advice: str  # said when it is damaged
    file_only: bool = True  # a model's checkpoint may be a folder
    reference: bool = False  # read where it lies, not stored: a change is a note, not damage
    vector_set: dict[str, Any] | None = None  # the row of the vector set the file is part of


def _targets(ws: Any, root: Path) -> list[_Target]:
    """Every file the database records, with its recorded sha256."""
    out: list[_Target] = []
    for v in ws.vector_sets():
        what = f"vector set #{v['id']} ({v['model']}, {v['count']} x {v['dim']})"
        advice = damaged_advice(v["model"], int(v["count"]))
        out.append(_Target(what, root / v["file"], v["sha256"], advice, vector_set=v))
        out.append(_Target(f"id list of {what}", root / v["ids_file"], v["ids_sha256"], advice, vector_set=v))
    for m in ws.models():
        if m.get("path") and m.get("sha256"):
            stored = bool(m.get("file"))
            advice = (f"add the checkpoint it was added from again ('embridge model add --name {m['name']} --path "
                      "ORIGINAL'): that restores its copy" if stored else
                      "its stored vector sets are not affected; embedding more items with it needs the file back "
                      "as it was added")
            what = f"model '{m['name']}'" + ("" if stored else " (the vectors file it references, not a copy)")
            out.append(_Target(what, Path(m["path"]), m["sha256"], advice, file_only=False, reference=not stored))
    for a in ws.adapters():
        out.append(_Target(f"trained layer of run {a['run_id']} ({a['kind']})", Path(a["path"]), a["sha256"],
                           f"train it again with 'embridge train --method {a['kind']}'"))
    return out


def _file_problem(path: Path, expected: str, file_only: bool) -> str | None:
    if not path.exists():
        return "missing (removed by hand?)"
    if path.is_dir() and file_only:
        return "is a folder where a file was stored"
    if not path.is_dir() and not path.is_file():  # a pipe or a device would be read for ever
        return "is not a regular file (a pipe, socket or device)"
    try:
        if path.is_dir():
            unreadable = _unreadable_in(path)
            if unreadable is not None:
                return f"cannot be read ({unreadable}: permission denied)"
        actual = sha256_tree(path) if path.is_dir() else sha256_file(path)  # a checkpoint may be a folder
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if actual != expected:
        return "its bytes differ from those stored (changed or corrupted since)"
    return None


def _unreadable_in(folder: Path) -> Path | None:
    """A folder inside ``folder`` that cannot be listed (a tree hash would pass over it silently)."""
    for inner in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
        if not os.access(inner, os.R_OK | os.X_OK):
            return inner
    return None


def _size(path: Path) -> int:
    try:
        if not path.is_dir() and not path.is_file():
            return 0
        if path.is_dir():
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        return path.stat().st_size
    except OSError:
        return 0


def _database_problem(ws: Any) -> str | None:
    """SQLite's own check of the database file (pages, indexes, free lists): None when it says ok."""
    rows = [str(r[0]) for r in ws.db.execute("pragma integrity_check").fetchall()]
    if rows == ["ok"]:
        return None
    found = [line.strip() for row in rows for line in row.splitlines()
             if line.strip() and not line.startswith("***")] or rows  # "*** in database main ***" heads a list
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    return (f"SQLite's integrity check reports: {found[0]}{more}; restore the workspace's database from a backup "
            "before writing to it")
