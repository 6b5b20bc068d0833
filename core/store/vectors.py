"""Vector files: ``.npy`` matrices aligned to an explicit ``.ids.npy`` list of item ids.

Writers fill a memmap under ``vectors/.partial/`` chunk by chunk and record how many rows are
durable in a small JSON beside it, so an interrupted embedding resumes from the last complete
chunk. Only ``commit`` makes the set visible: it hashes the files, renames them into place and
registers them in one transaction. Readers open memmaps and check the recorded sha256 once per
process (per file size and mtime), so a corrupted or swapped file is caught before use.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import IntegrityError, VectorFileError
from core.store.files import atomic_write_text, fsync_dir, publish, sha256_file

SUPPORTED_DTYPES = ("float32", "float16")
_verified: dict[tuple[str, int, int], str] = {}


def check_finite(block: np.ndarray, source: str, first_row: int = 0) -> None:
    """Raise VectorFileError naming the first row that holds NaN or inf."""
    bad = ~np.isfinite(block).all(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0]) + first_row
        raise VectorFileError(source, f"row {row} holds NaN or inf values ({int(bad.sum())} bad rows in block)")


def verified_sha256(path: Path, expected: str) -> None:
    """Check a file's sha256 against the recorded one, caching success per (size, mtime)."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if _verified.get(key) == expected:
        return
    actual = sha256_file(path)
    if actual != expected:
        raise IntegrityError(f"{path}: checksum mismatch (file changed or corrupted since it was stored)")
    _verified[key] = expected


def open_matrix(path: Path, expected_sha: str | None, expect_rows: int, expect_dim: int) -> np.memmap:
    """Open a stored vector file read-only after checking checksum and shape."""
    if not path.exists():
        raise IntegrityError(f"{path}: vector file is missing from the workspace")
    if expected_sha:
        verified_sha256(path, expected_sha)
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise IntegrityError(f"{path}: unreadable vector file ({exc})") from exc
    if arr.ndim != 2 or arr.shape != (expect_rows, expect_dim):
        raise IntegrityError(f"{path}: shape {arr.shape} differs from the recorded ({expect_rows}, {expect_dim})")
    return arr


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
    ) -> None:
        if dtype not in SUPPORTED_DTYPES:
            raise VectorFileError(label, f"unsupported dtype {dtype}; use one of {SUPPORTED_DTYPES}")
        if dim <= 0:
            raise VectorFileError(label, f"dimension must be positive, got {dim}")
        self.ids = np.asarray(item_ids, dtype=np.int64)
        if self.ids.ndim != 1 or len(self.ids) == 0:
            raise VectorFileError(label, "a vector set needs a non-empty 1-D list of item ids")
        if len(np.unique(self.ids)) != len(self.ids):
            raise VectorFileError(label, "duplicate item ids in the vector set")
        self.dim, self.dtype, self.label = dim, dtype, label
        self._register = register
        self._final_dir = final_dir
        self._final_stem = final_stem
        partial_dir.mkdir(parents=True, exist_ok=True)
        self._matrix = partial_dir / f"{resume_key}.npy"
        self._state = partial_dir / f"{resume_key}.json"
        self._ids_file = partial_dir / f"{resume_key}.ids.npy"
        self.done_rows = self._resume_or_start()

    def _fingerprint(self) -> dict[str, Any]:
        return {"rows": len(self.ids), "dim": self.dim, "dtype": self.dtype,
                "ids_hash": int(np.bitwise_xor.reduce(self.ids * 2654435761 % (1 << 61)))}

    def _resume_or_start(self) -> int:
        if self._state.exists() and self._matrix.exists():
            try:
                state = json.loads(self._state.read_text())
            except (OSError, ValueError):
                state = {}
            if state.get("fingerprint") == self._fingerprint():
                self._mm = np.load(self._matrix, mmap_mode="r+")
                return int(state.get("done_rows", 0))
        self.abort()
        self._mm = np.lib.format.open_memmap(self._matrix, mode="w+", dtype=self.dtype,
                                             shape=(len(self.ids), self.dim))
        self._save_state(0)
        return 0

    def _save_state(self, done: int) -> None:
        atomic_write_text(self._state, json.dumps({"fingerprint": self._fingerprint(), "done_rows": done}))

    def write(self, start_row: int, block: np.ndarray) -> None:
        """Write rows ``start_row ..`` and make them durable before recording progress."""
        block = np.asarray(block)
        if block.ndim != 2 or block.shape[1] != self.dim:
            raise VectorFileError(self.label, f"block of shape {block.shape} does not match dim {self.dim}")
        stop = start_row + block.shape[0]
        if start_row < 0 or stop > len(self.ids):
            raise VectorFileError(self.label, f"rows {start_row}:{stop} fall outside 0:{len(self.ids)}")
        check_finite(block, self.label, start_row)
        self._mm[start_row:stop] = block.astype(self.dtype, copy=False)
        self._mm.flush()
        if start_row <= self.done_rows:
            self.done_rows = max(self.done_rows, stop)
            self._save_state(self.done_rows)

    def commit(self) -> dict[str, Any]:
        """Finish: hash, move into ``vectors/``, register in one transaction."""
        if self.done_rows < len(self.ids):
            raise VectorFileError(self.label, f"only {self.done_rows} of {len(self.ids)} rows were written")
        self._mm.flush()
        del self._mm
        np.save(self._ids_file, self.ids)
        self._final_dir.mkdir(parents=True, exist_ok=True)
        stem = f"{self._final_stem}-{os.urandom(4).hex()}"
        final_matrix = self._final_dir / f"{stem}.npy"
        final_ids = self._final_dir / f"{stem}.ids.npy"
        sha, ids_sha = sha256_file(self._matrix), sha256_file(self._ids_file)
        publish(self._ids_file, final_ids)
        publish(self._matrix, final_matrix)
        try:
            info = self._register(final_matrix, final_ids, sha, ids_sha)
        except BaseException:
            final_matrix.unlink(missing_ok=True)
            final_ids.unlink(missing_ok=True)
            raise
        self._state.unlink(missing_ok=True)
        fsync_dir(self._final_dir)
        return info

    def abort(self) -> None:
        """Forget any partial state for this resume key."""
        if hasattr(self, "_mm"):
            del self._mm
        for path in (self._matrix, self._state, self._ids_file):
            path.unlink(missing_ok=True)


def remove_partial(partial_dir: Path) -> None:
    shutil.rmtree(partial_dir, ignore_errors=True)
