"""Row access to a ``.npy`` matrix by plain file reads, for building search indexes in less memory.

A memmap's pages stay mapped into the process once read, so adding a memmapped gallery to a faiss
index counts the file's bytes in the resident set on top of the index's own copy (about twice the
vector bytes at the peak). :class:`NpyRows` answers the row slices and row-index lookups that
:func:`core.report.search.build_index`, ``search_index`` and ``measure_recall`` make with
``os.pread`` into fresh arrays, so only the index and one chunk are resident; the file's pages
stay in the reclaimable page cache. Use it in place of ``np.load(path, mmap_mode="r")``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import VectorFileError

SCAN_ROWS = 65_536


class NpyRows:
    """Read-only, 2-D, C-ordered ``.npy`` matrix; ``rows[a:b]`` and ``rows[index_array]`` read the file."""

    def __init__(self, path: str | Path) -> None:
        self._fd = -1
        self.path = Path(path)
        try:
            with open(self.path, "rb") as fh:
                version = np.lib.format.read_magic(fh)
                if version not in ((1, 0), (2, 0)):
                    raise ValueError(f"unsupported .npy format version {version}")
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, fortran, dtype = read_header(fh)
                self.offset = fh.tell()
        except (OSError, ValueError) as exc:
            raise VectorFileError(str(self.path), f"cannot read the .npy header: {exc}") from exc
        if len(shape) != 2 or fortran or dtype.hasobject:
            raise VectorFileError(str(self.path), f"expected a C-ordered 2-D numeric matrix, got shape {shape}")
        self.shape: tuple[int, int] = (int(shape[0]), int(shape[1]))
        self.dtype = np.dtype(dtype)
        self.row_bytes = self.shape[1] * self.dtype.itemsize
        expected = self.offset + self.shape[0] * self.row_bytes
        if self.path.stat().st_size < expected:
            raise VectorFileError(str(self.path), f"is truncated: {self.path.stat().st_size} bytes, expected {expected}")
        self._fd = os.open(self.path, os.O_RDONLY)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> NpyRows:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def ndim(self) -> int:
        return 2

    def _read(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((max(stop - start, 0), self.shape[1]), dtype=self.dtype)
        if out.size == 0:
            return out
        view = memoryview(out.reshape(-1).view(np.uint8))
        pos, done = self.offset + start * self.row_bytes, 0
        while done < len(view):
            got = os.preadv(self._fd, [view[done:]], pos + done)
            if got <= 0:
                raise VectorFileError(str(self.path), f"ended early while reading rows {start}..{stop}")
            done += got
        return out

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, slice):
            start, stop, step = key.indices(self.shape[0])
            if step != 1:
                return self._take(np.arange(start, stop, step))
            return self._read(start, max(start, stop))
        if isinstance(key, int | np.integer):
            i = int(key) + (self.shape[0] if key < 0 else 0)
            if not 0 <= i < self.shape[0]:
                raise IndexError(f"row {key} out of range for {self.shape[0]} rows")
            return self._read(i, i + 1)[0]
        return self._take(np.asarray(key))

    def _take(self, idx: np.ndarray) -> np.ndarray:
        """Rows by index (any order): one sequential scan over the span they cover."""
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        idx = np.where(idx < 0, idx + self.shape[0], idx).astype(np.int64).ravel()
        if idx.size and (idx.min() < 0 or idx.max() >= self.shape[0]):
            raise IndexError(f"row index out of range for {self.shape[0]} rows")
        order = np.argsort(idx, kind="stable")
        wanted = idx[order]
        out = np.empty((idx.size, self.shape[1]), dtype=self.dtype)
        pos = 0
        while pos < wanted.size:
            start = int(wanted[pos])
            stop = min(start + SCAN_ROWS, self.shape[0])
            end = int(np.searchsorted(wanted, stop, side="left"))
            block = self._read(start, stop)
            out[order[pos:end]] = block[wanted[pos:end] - start]
            pos = end
        return out
