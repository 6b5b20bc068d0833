"""A float32 ``.npy`` matrix written block by block, with all of its disk space reserved first.

A write through a memory map of a sparse file cannot report a full disk: the kernel answers with
SIGBUS and the process dies without a word. So the file's blocks are allocated when it is created
(``posix_fallocate``, or zeros written where the file system cannot allocate), which turns a full
disk into an ``OSError`` before any row is written, and rows then go in with plain writes, which
report their errors too.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import BinaryIO

import numpy as np

DTYPE = np.dtype("<f4")
_ZEROS = 1 << 22
_UNSUPPORTED = (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)  # then zeros are written instead


class MatrixFile:
    """An open ``(rows, dim)`` float32 ``.npy`` file whose rows are written in place."""

    def __init__(self, path: Path, fh: BinaryIO, rows: int, dim: int, offset: int) -> None:
        self.path, self.rows, self.dim = path, rows, dim
        self._fh, self._offset = fh, offset

    @classmethod
    def create(cls, path: Path, rows: int, dim: int) -> MatrixFile:
        """A new file (an existing one is truncated) with its header written and its space reserved."""
        fh = open(path, "w+b")  # noqa: SIM115 - kept open until close()
        try:
            np.lib.format.write_array_header_1_0(
                fh, {"descr": np.lib.format.dtype_to_descr(DTYPE), "fortran_order": False, "shape": (rows, dim)})
            fh.flush()
            offset = fh.tell()
            reserve(fh, offset, rows * dim * DTYPE.itemsize)
        except BaseException:
            fh.close()
            raise
        return cls(path, fh, rows, dim, offset)

    @classmethod
    def reopen(cls, path: Path, rows: int, dim: int) -> MatrixFile:
        """An existing file of exactly this shape and dtype; ValueError when it is anything else."""
        fh = open(path, "r+b")  # noqa: SIM115 - kept open until close()
        try:
            version = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(fh)
            offset = fh.tell()
            size = os.fstat(fh.fileno()).st_size
            if shape != (rows, dim) or fortran or dtype != DTYPE or size != offset + rows * dim * DTYPE.itemsize:
                raise ValueError(f"{path}: not a ({rows}, {dim}) float32 matrix")
        except BaseException:
            fh.close()
            raise
        return cls(path, fh, rows, dim, offset)

    def write(self, start: int, block: np.ndarray) -> None:
        """Rows ``start:start + len(block)``; errors (a full disk) raise ``OSError``."""
        data = np.ascontiguousarray(block, dtype=DTYPE)
        if data.ndim != 2 or data.shape[1] != self.dim or start < 0 or start + len(data) > self.rows:
            raise ValueError(f"{self.path}: rows {start}:{start + len(data)} of shape {data.shape} do not fit "
                             f"({self.rows}, {self.dim})")
        self._fh.seek(self._offset + start * self.dim * DTYPE.itemsize)
        self._fh.write(data.data)

    def flush(self) -> None:
        """Everything written so far is on the disk (before progress that counts on it is recorded)."""
        self._fh.flush()
        sync = getattr(os, "fdatasync", os.fsync)
        sync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> MatrixFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def reserve(fh: BinaryIO, offset: int, size: int) -> None:
    """Allocate ``size`` bytes from ``offset`` (extending the file), so later writes there cannot run out."""
    if size <= 0:
        return
    fd = fh.fileno()
    if hasattr(os, "posix_fallocate"):
        try:
            os.posix_fallocate(fd, offset, size)
            return
        except OSError as exc:
            if exc.errno not in _UNSUPPORTED:  # a full disk, or a real error
                raise
    zeros = bytes(min(size, _ZEROS))
    fh.seek(offset)
    left = size
    while left > 0:
        fh.write(zeros[:min(left, len(zeros))])
        left -= len(zeros)
    fh.flush()
