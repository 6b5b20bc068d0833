"""Vector files: ``.npy`` matrices aligned to an explicit ``.ids.npy`` list of item ids.

Writers fill a memmap under ``vectors/.partial/`` chunk by chunk and record how many rows are
durable in a small JSON beside it, so an interrupted embedding resumes from the last complete
chunk. The file's full size is reserved on disk up front, so a full disk is an error at the start
rather than a crash mid-write. Only ``commit`` makes the set visible: it hashes the files, notes the
final names in the progress JSON, renames them into place and registers them in one transaction;
a writer killed between the rename and the registration gets its files back on resume. Readers
open memmaps after checking the recorded sha256 (:mod:`embridge.core.store.file_checks`), so a
corrupted or swapped file is caught before use.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from embridge.core.errors import IntegrityError, StoreError, VectorFileError, WorkspaceBusyError
from embridge.core.paths import is_real_dir, remove_if_untouched
from embridge.core.store.file_checks import stored_file_stat, verified_sha256
from embridge.core.store.file_lock import HeldLock
from embridge.core.store.files import (
    DISK_FULL,
    atomic_write_text,
    disk_error,
    fsync_dir,
    publish,
    save_npy_once,
    sha256_file,
)
from embridge.core.vector_spread import spread_problem

SUPPORTED_DTYPES = ("float32", "float16")
_COMMITTED = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*-[0-9a-f]{8}(?:\.ids)?\.npy")


def finite_rows(block: np.ndarray) -> np.ndarray:
    """Per row of a 2-D block: True when every value is finite.

    A row's sum is finite only if each of its values is (NaN and inf carry through a sum), so one
    pass of row sums clears almost every row without an elementwise mask of the whole block; rows
    whose sum is not finite (NaN or inf inside, or finite values whose sum overflows) are checked
    value by value.
    """
    if block.dtype.kind != "f":
        return np.ones(len(block), dtype=bool)
    with np.errstate(over="ignore", invalid="ignore"):
        ok = np.isfinite(block.sum(axis=1, dtype=np.float64 if block.dtype.itemsize < 4 else None))
    if not ok.all():
        unsure = np.flatnonzero(~ok)
        ok[unsure] = np.isfinite(block[unsure]).all(axis=1)
    return ok


def check_finite(block: np.ndarray, source: str, first_row: int = 0) -> None:
    """Raise VectorFileError naming the first row that holds NaN or inf."""
    bad = ~finite_rows(block)
    if bad.any():
        row = int(np.flatnonzero(bad)[0]) + first_row
        count = int(bad.sum())
        raise VectorFileError(source, f"row {row} holds NaN or inf values ({count} such row{'s' if count > 1 else ''} "
                                      f"among rows {first_row}-{first_row + len(block) - 1})")


def as_storage_dtype(block: np.ndarray, dtype: str, source: str, first_row: int = 0) -> np.ndarray:
    """Cast finite vectors to the stored dtype, refusing values the cast would turn into inf."""
    check_finite(block, source, first_row)
    if block.dtype == np.dtype(dtype):
        return block  # nothing cast, nothing to overflow
    with np.errstate(over="ignore"):
        out = block.astype(dtype, copy=False)
    bad = ~finite_rows(out)
    if bad.any():
        row = int(np.flatnonzero(bad)[0]) + first_row
        hint = "" if np.dtype(dtype) == np.float32 else "; store this set as float32"
        raise VectorFileError(source, f"row {row} holds values too large for {dtype} "
                              f"({int(bad.sum())} rows){hint}")
    zero = ~out.any(axis=1) if out.ndim == 2 else np.zeros(0, dtype=bool)
    if zero.any():  # a row with a direction the cast rounded to nothing would be stored as a zero vector
        lost = np.flatnonzero(zero)[block[zero].any(axis=1)]
        if lost.size:
            hint = "scale the vectors up" + ("" if np.dtype(dtype) == np.float32 else " or store this set as float32")
            raise VectorFileError(source, f"row {int(lost[0]) + first_row} holds values too small for {dtype}: "
                                  f"every one rounds to zero ({lost.size} rows); {hint} (a cosine search reads "
                                  "only their directions)")
    return out


def open_matrix(path: Path, expected_sha: str | None, expect_rows: int, expect_dim: int) -> np.memmap:
    """Open a stored vector file read-only after checking checksum and shape."""
    if not path.exists():
        raise IntegrityError(f"{path}: vector file is missing from the workspace")
    stored_file_stat(path)  # a FIFO or a folder put in its place: loading it would wait or fail obscurely
    if expected_sha:
        verified_sha256(path, expected_sha)
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise IntegrityError(f"{path}: unreadable vector file ({exc})") from exc
    if arr.ndim != 2 or arr.shape != (expect_rows, expect_dim):
        raise IntegrityError(f"{path}: shape {arr.shape} differs from the recorded ({expect_rows}, {expect_dim})")
    return arr


def release_pages(mm: np.ndarray, start_row: int, stop_row: int) -> None:
    """Drop rows ``start_row:stop_row`` of a C-ordered file memmap from this process's resident memory.

    The data stays in the file (and the page cache); touching the rows again reads it back. Without
    this, a streamed pass over a file-backed matrix keeps every page it touched resident until the
    map is closed, so peak memory grows with the file even though each block is used once.
    """
    base = getattr(mm, "_mmap", None)
    if base is None or not hasattr(base, "madvise") or not hasattr(mmap, "MADV_DONTNEED") or stop_row <= start_row:
        return
    row_bytes = int(np.prod(mm.shape[1:], dtype=np.int64)) * mm.dtype.itemsize
    inner = int(getattr(mm, "offset", 0)) % mmap.ALLOCATIONGRANULARITY  # where the array starts in the map
    begin = inner + start_row * row_bytes
    aligned = begin - begin % mmap.PAGESIZE
    try:
        base.madvise(mmap.MADV_DONTNEED, aligned, inner + stop_row * row_bytes - aligned)
    except (OSError, ValueError):
        pass  # only a memory hint


def _reserve(path: Path) -> None:
    """Allocate a sparse file's blocks now, so that a full disk fails here and not in a memmap write."""
    if not hasattr(os, "posix_fallocate"):
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as exc:
        if exc.errno in DISK_FULL:
            raise
    finally:
        os.close(fd)


class VectorSetWriter:
    """Chunked, resumable writer for one vector set; see the module docstring."""

    def __init__(
        self,
        partial_dir: Path,
        final_dir: Path,
        resume_key: str,
        item_ids: np.ndarray,
        dim: int,
        dtype: str,
        register: Callable[[Path, Path, str, str], dict[str, Any]],
        label: str,
        final_stem: str = "vectors",
        is_registered: Callable[[Path], bool] | None = None,
        owner: str | None = None,  # the model whose rows these are: `model remove` drops them with it
    ) -> None:
        if dtype not in SUPPORTED_DTYPES:
            raise VectorFileError(label, f"unsupported dtype {dtype}; use one of {SUPPORTED_DTYPES}")
        if dim <= 0:
            raise VectorFileError(label, f"dimension must be positive, got {dim}")
        self.ids = np.asarray(item_ids, dtype=np.int64)
        if self.ids.ndim != 1 or len(self.ids) == 0:
            raise VectorFileError(label, "a vector set needs a non-empty 1-D list of item ids")
        if not (self.ids[1:] > self.ids[:-1]).all():  # ascending ids (the usual case) are unique as they are
            ordered = np.sort(self.ids)
            if (ordered[1:] == ordered[:-1]).any():
                raise VectorFileError(label, "duplicate item ids in the vector set")
        self._fingerprint_cache: dict[str, Any] | None = None
        self._hasher: Any = None  # sha256 of the file so far, while rows arrive in order from the first
        self._hashed_rows = 0
        self.dim, self.dtype, self.label = dim, dtype, label
        self._register = register
        self._is_registered = is_registered
        self._final_dir = final_dir
        self._final_stem, self._owner = final_stem, owner
        self._matrix = partial_dir / f"{resume_key}.npy"
        self._state = partial_dir / f"{resume_key}.json"
        self._ids_file = partial_dir / f"{resume_key}.ids.npy"
        try:
            partial_dir.mkdir(parents=True, exist_ok=True)
            # one writer per resume key: a second process would replace the first one's partial file
            self._lock = HeldLock(partial_dir / f"{resume_key}.lock", lambda: WorkspaceBusyError(
                f"{partial_dir.parent.parent}: the workspace is busy (another process is writing {label}); "
                "try again when it has finished"))
        except OSError as exc:
            raise disk_error(exc, self._matrix, f"start {label}") from exc
        try:
            self.done_rows = self._resume_or_start()
        except OSError as exc:
            self._lock.release()
            raise disk_error(exc, self._matrix, f"start {label}") from exc
        except BaseException:
            self._lock.release()
            raise

    def _fingerprint(self) -> dict[str, Any]:
        # Order-sensitive: a resumed writer must see the very same id list, row for row.
        if self._fingerprint_cache is None:
            self._fingerprint_cache = {"rows": len(self.ids), "dim": self.dim, "dtype": self.dtype,
                                       "ids_sha256": hashlib.sha256(self.ids.tobytes()).hexdigest()}
        return self._fingerprint_cache

    def _read_state(self) -> dict[str, Any]:
        try:
            state = json.loads(self._state.read_text())
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def _resume_or_start(self) -> int:
        state = self._read_state()
        if state.get("fingerprint") == self._fingerprint():
            self._take_back_published(state.get("committing"))
            mm = self._open_partial()
            if mm is not None:
                self._mm = mm
                return int(state.get("done_rows", 0))
        self._discard()
        try:
            self._mm = np.lib.format.open_memmap(self._matrix, mode="w+", dtype=self.dtype,
                                                 shape=(len(self.ids), self.dim))
            _reserve(self._matrix)
            np.save(self._ids_file, self.ids)  # now, so that a commit on a disk filled since needs no space
            with open(self._matrix, "rb") as fh:  # the .npy header: the hash of the file starts with it
                self._hasher = hashlib.sha256(fh.read(self._mm.offset))
            self._save_state(0)
        except BaseException:
            self._discard()
            raise
        return 0

    def _open_partial(self) -> np.memmap | None:
        if not self._matrix.exists():
            return None
        try:
            mm = np.load(self._matrix, mmap_mode="r+", allow_pickle=False)
        except (OSError, ValueError):
            return None
        return mm if mm.shape == (len(self.ids), self.dim) and mm.dtype == np.dtype(self.dtype) else None

    def _take_back_published(self, committing: Any) -> None:
        """After a crash inside ``commit``: move unregistered published files back (or drop duplicates)."""
        if not isinstance(committing, list) or self._is_registered is None:
            return
        for name, partial in zip(committing, (self._matrix, self._ids_file), strict=False):
            final = self._final_dir / str(name)
            if final.name != str(name) or not final.exists() or self._is_registered(final):
                continue
            if partial.exists():
                final.unlink()
            else:
                os.replace(final, partial)

    def _save_state(self, done: int, committing: list[str] | None = None) -> None:
        state: dict[str, Any] = {"fingerprint": self._fingerprint(), "done_rows": done, "model": self._owner}
        if committing:
            state["committing"] = committing
        atomic_write_text(self._state, json.dumps(state))

    def write(self, start_row: int, block: np.ndarray) -> None:
        """Write rows ``start_row ..`` and make them durable before recording progress."""
        block = np.asarray(block)
        if block.ndim != 2 or block.shape[1] != self.dim:
            raise VectorFileError(self.label, f"block of shape {block.shape} does not match dim {self.dim}")
        stop = start_row + block.shape[0]
        if start_row < 0 or stop > len(self.ids):
            raise VectorFileError(self.label, f"rows {start_row}:{stop} fall outside 0:{len(self.ids)}")
        stored = as_storage_dtype(block, self.dtype, self.label, start_row)
        if self._hasher is not None and start_row == self._hashed_rows:
            self._hasher.update(np.ascontiguousarray(stored).data)  # hashed as written: no second read at commit
            self._hashed_rows = stop
        elif start_row < self._hashed_rows:
            self._hasher = None  # rows rewritten: the file is hashed whole at commit
        try:
            self._mm[start_row:stop] = stored
            self._mm.flush()
            release_pages(self._mm, start_row, stop)
            if start_row <= self.done_rows:  # counted once recorded: a full disk here leaves the count as it was
                done = max(self.done_rows, stop)
                self._save_state(done)
                self.done_rows = done
        except OSError as exc:
            raise disk_error(exc, self._matrix, f"write {self.label}") from exc

    def commit(self) -> dict[str, Any]:
        """Finish: hash, move into ``vectors/``, register in one transaction."""
        if self.done_rows < len(self.ids):
            raise VectorFileError(self.label, f"only {self.done_rows} of {len(self.ids)} rows were written")
        problem = spread_problem(self._mm)
        if problem:
            raise VectorFileError(self.label, problem)
        stem = f"{self._final_stem}-{os.urandom(4).hex()}"
        final_matrix = self._final_dir / f"{stem}.npy"
        final_ids = self._final_dir / f"{stem}.ids.npy"
        try:
            self._mm.flush()
            save_npy_once(self._ids_file, self.ids)
            streamed = self._hasher is not None and self._hashed_rows == len(self.ids)
            sha = self._hasher.hexdigest() if streamed else sha256_file(self._matrix)
            ids_sha = sha256_file(self._ids_file)
            self._final_dir.mkdir(parents=True, exist_ok=True)
            self._save_state(self.done_rows, committing=[final_matrix.name, final_ids.name])
        except OSError as exc:
            raise disk_error(exc, self._matrix, f"finish {self.label}") from exc
        del self._mm
        try:
            publish(self._ids_file, final_ids)
            publish(self._matrix, final_matrix)
            info = self._register(final_matrix, final_ids, sha, ids_sha)
        except BaseException as exc:
            try:
                self._unpublish(final_matrix, final_ids)
            except (OSError, StoreError):  # the failure said is the commit's, not this clean-up's
                pass  # the state still names the final files; a resume takes them back
            if isinstance(exc, OSError):
                raise disk_error(exc, final_matrix, f"store {self.label}") from exc
            raise
        self._state.unlink(missing_ok=True)
        fsync_dir(self._final_dir)
        self.release()
        return info

    def _unpublish(self, final_matrix: Path, final_ids: Path) -> None:
        """Undo a failed commit's renames so the writer can commit again (or resume later)."""
        registered = self._is_registered is not None and self._is_registered(final_matrix)
        for final, partial in ((final_matrix, self._matrix), (final_ids, self._ids_file)):
            if final.exists() and not registered:
                os.replace(final, partial)
        if self._matrix.exists():
            self._mm = np.load(self._matrix, mmap_mode="r+", allow_pickle=False)
            self._save_state(self.done_rows)

    def release(self) -> None:
        """Let another writer of this resume key start; the partial files stay for a later resume."""
        if hasattr(self, "_mm"):
            del self._mm
        self._lock.release()

    def abort(self) -> None:
        """Forget any partial state for this resume key (and unregistered files of a failed commit)."""
        self._discard()
        self._lock.release()

    def _discard(self) -> None:
        if hasattr(self, "_mm"):
            del self._mm
        committing = self._read_state().get("committing")
        if isinstance(committing, list) and self._is_registered is not None:
            for name in committing:
                final = self._final_dir / str(name)
                if final.name == str(name) and final.exists() and not self._is_registered(final):
                    final.unlink()
        for path in (self._matrix, self._state, self._ids_file):
            path.unlink(missing_ok=True)


def committed_name(name: str) -> bool:
    """True for the names ``commit`` gives vector files: ``<set name>-<8 hex>.npy`` / ``.ids.npy``."""
    return bool(_COMMITTED.fullmatch(name))


def sweep_orphans(vectors_dir: Path, registered: set[Path], cutoff: float, models: set[str]) -> int:
    """Delete vector files no set registers, untouched since ``cutoff``; returns how many.

    They come from a commit whose registration never happened (killed writer, rolled-back outer
    transaction). Only regular files with the names ``commit`` gives, in the real (not linked)
    folder of a registered model, are candidates; files a crashed writer's progress JSON still
    names are kept: resuming takes them back.
    """
    claimed: set[str] = set()
    partial = vectors_dir / ".partial"
    if is_real_dir(partial):
        for state in partial.glob("*.json"):
            try:
                claimed.update(str(n) for n in json.loads(state.read_text()).get("committing") or [])
            except (OSError, ValueError, AttributeError, TypeError):
                continue
    removed = 0
    for model in sorted(models):
        folder = vectors_dir / model
        if model in (".partial", "", ".", "..") or "/" in model or not is_real_dir(folder):
            continue
        with os.scandir(folder) as entries:
            for entry in entries:
                path = Path(entry.path)
                if (not entry.is_file(follow_symlinks=False) or not committed_name(entry.name)
                        or path in registered or entry.name in claimed):
                    continue
                removed += remove_if_untouched(path, cutoff)
    return removed
