"""Row access to a ``.npy`` matrix (or the file behind a memmap) by plain file reads, for building
search indexes in less memory.

A memmap's pages stay mapped into the process once read, so adding a memmapped gallery to a faiss
index counts the file's bytes in the resident set on top of the index's own copy (about twice the
vector bytes at the peak). :class:`NpyRows` answers the row slices and row-index lookups that
:func:`embridge.core.evaluation.search.build_index`, ``search_index`` and ``measure_recall`` make with plain
reads into fresh arrays, so only the index and one chunk are resident; the file's pages stay in
the reclaimable page cache. ``build_index`` reads a whole-file memmap gallery this way by itself
(:meth:`NpyRows.of_memmap`); open a stored matrix with ``NpyRows(path)`` to skip the mapping.
"""

from __future__ import annotations

import mmap
from pathlib import Path
from typing import Any

import numpy as np

from embridge.core.errors import VectorFileError

SCAN_ROWS = 65_536


class NpyRows:
    """Read-only, 2-D, C-ordered ``.npy`` matrix; ``rows[a:b]`` and ``rows[index_array]`` read the file."""

    def __init__(self, path: str | Path, layout: tuple[int, tuple[int, int], np.dtype] | None = None) -> None:
        """Open ``path`` as a ``.npy`` file, or as raw rows at ``layout`` = (byte offset, shape, dtype)."""
        self._fh: Any = None
        self.path = Path(path)
        offset, shape, dtype = layout if layout is not None else _npy_layout(self.path)
        if len(shape) != 2:
            raise VectorFileError(str(self.path), f"expected a 2-D matrix, got shape {shape}")
        self.offset = int(offset)
        self.shape: tuple[int, int] = (int(shape[0]), int(shape[1]))
        self.dtype = np.dtype(dtype)
        self.row_bytes = self.shape[1] * self.dtype.itemsize
        expected = self.offset + self.shape[0] * self.row_bytes
        if self.path.stat().st_size < expected:
            raise VectorFileError(str(self.path), f"is truncated: {self.path.stat().st_size} bytes, expected {expected}")
        self._fh = open(self.path, "rb", buffering=0)  # noqa: SIM115 - closed by close()/__del__

    @classmethod
    def of_memmap(cls, array: Any) -> NpyRows | None:
        """A reader of the file behind ``array`` when it maps a whole C-ordered 2-D matrix (what
        ``np.load(..., mmap_mode=...)`` and ``np.memmap`` return); None for anything else, views
        and slices included, whose offset numpy does not track."""
        if not (isinstance(array, np.memmap) and isinstance(array.base, mmap.mmap) and array.ndim == 2
                and array.flags.c_contiguous and array.filename and not array.dtype.hasobject):
            return None
        return cls(array.filename, (int(array.offset), array.shape, array.dtype))

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

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
        self._fh.seek(self.offset + start * self.row_bytes)
        done = 0
        while done < len(view):
            got = self._fh.readinto(view[done:])
            if not got:
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


def _npy_layout(path: Path) -> tuple[int, tuple[int, ...], np.dtype]:
    """(data offset, shape, dtype) from a ``.npy`` header, refusing Fortran order and objects."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f"unsupported .npy format version {version}")
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(fh)
            offset = fh.tell()
    except (OSError, ValueError) as exc:
        raise VectorFileError(str(path), f"cannot read the .npy header: {exc}") from exc
    if len(shape) != 2 or fortran or dtype.hasobject:
        raise VectorFileError(str(path), f"expected a C-ordered 2-D numeric matrix, got shape {shape}")
    return offset, shape, dtype
