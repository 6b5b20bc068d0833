"""Whether a stored vector set's files are intact: what ``info`` flags and what ``embed`` counts as held.

A set whose file was deleted, cut short or changed since it was stored cannot be read (its checksum
is checked on every open), so its items are not counted as holding the model's vectors: ``embed``
embeds them again and the new set, newer, is the one every reader takes for them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from embridge.core.errors import IntegrityError
from embridge.core.store.file_checks import verified_sha256


def file_problem(root: Path, info: dict[str, Any]) -> str | None:
    """What is wrong with a vector set's files that a look at them shows, or None: the id list is checked
    whole (a few bytes an item), the vector file by its size and header only (no hashing)."""
    vectors, ids = Path(root) / info["file"], Path(root) / info["ids_file"]
    passed_over = "so readers pass it over, its items counting as without vectors of its model"
    if not ids.is_file():
        return f"its id list {_gone_or_replaced(ids)}, {passed_over}"
    try:  # a remembered check is not repeated
        verified_sha256(ids, info["ids_sha256"])
    except IntegrityError:
        return f"its id list changed since it was stored, {passed_over}"
    if not vectors.is_file():
        return f"its file {_gone_or_replaced(vectors)}"
    expected = int(info["count"]) * int(info["dim"]) * np.dtype(info["dtype"]).itemsize
    try:
        size = vectors.stat().st_size
        matrix = np.load(vectors, mmap_mode="r", allow_pickle=False)  # maps, reads nothing but the header
        expected += int(getattr(matrix, "offset", 0))
        shape = matrix.shape
        del matrix
    except (OSError, ValueError, EOFError) as exc:  # cut short (to nothing: EOF): the map cannot be made
        return f"its file cannot be read as the stored vectors (cut short or changed: {exc})"
    if shape != (int(info["count"]), int(info["dim"])) or size != expected:
        return f"its file is {size:,} bytes of shape {shape} where {expected:,} bytes were stored (cut short or changed)"
    return None


def set_intact(root: Path, info: dict[str, Any]) -> bool:
    """Both files present, of their stored size and checksum (:func:`file_problem` checks the id list's;
    a remembered check is not repeated)."""
    if file_problem(root, info) is not None:
        return False
    try:
        verified_sha256(Path(root) / info["file"], info["sha256"])
    except IntegrityError:
        return False
    return True


def held_ids(ws: Any, model: str) -> np.ndarray:
    """Sorted ids of items holding ``model``'s vectors in an intact set (see the module docstring)."""
    sets = [s for s in ws.vector_sets(model) if set_intact(Path(ws.root), s)]
    if not sets:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.concatenate([ws.vector_set_ids(s["id"], verify=False) for s in sets]))  # just checked


SUPERSEDED = "a later set holds all its items again, so nothing reads it"  # said of a set replaced()


def replaced(ws: Any, info: dict[str, Any]) -> bool:
    """True when later intact sets of the set's model hold every item of a damaged set (readers take the
    newest set first, so nothing reads the damaged one)."""
    later = [s for s in ws.vector_sets(info["model"]) if s["id"] > info["id"] and set_intact(Path(ws.root), s)]
    if not later:
        return False
    try:
        ids = ws.vector_set_ids(info["id"], verify=True)
    except (IntegrityError, OSError, ValueError):  # its items unknown (readers pass it over: damage_log)
        return False
    held = np.unique(np.concatenate([ws.vector_set_ids(s["id"], verify=False) for s in later]))  # just checked
    return bool(np.isin(ids, held).all())


def read_id_list(path: Path, info: dict[str, Any], verify: bool) -> np.ndarray:
    """The item ids of a vector set (``info``: its row), its checksum verified when ``verify``."""
    if not path.is_file():
        state = "is no longer a regular file" if path.exists() else "is missing from the workspace"
        raise IntegrityError(f"{path}: id list of vector set {info['id']} {state}")
    if verify:
        verified_sha256(path, info["ids_sha256"])
    try:
        ids = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise IntegrityError(f"{path}: unreadable id list ({exc})") from exc
    if ids.shape != (info["count"],):
        raise IntegrityError(f"{path}: id list has shape {ids.shape}, expected ({info['count']},)")
    return ids


def with_advice(exc: IntegrityError, info: dict[str, Any]) -> IntegrityError:
    """A vector set's damage (deleted, cut short or changed by hand) with how to recover from it."""
    return IntegrityError(f"{exc}; {damaged_advice(info['model'], int(info['count']))}")


def damaged_advice(model: str, count: int) -> str:
    """How to recover a damaged set of ``count`` items: embed the items without intact vectors again (a new
    set replaces it), a sample of that size when the set was a sample, or restore the file."""
    return (f"run 'embridge embed --model {model}' to embed every item without intact vectors of it again, or "
            f"'embridge embed --model {model} --sample {count}' when this set of {count} items was a sample "
            "(the seeded sample is drawn again); the new set replaces it. Or restore the file from a backup")


def _gone_or_replaced(path: Path) -> str:
    """A stored file that is not a regular file any more: removed, or replaced by something else."""
    if path.is_symlink() or path.exists():
        return "is no longer a regular file (replaced by a link, a folder or a special file?)"
    return "is gone from the workspace (removed by hand?)"
