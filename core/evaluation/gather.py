"""Gathering normalised (and optionally adapted) vectors of many items, chunk by chunk.

Training's held-out numbers and the report gather their matrices through the same
:class:`MatrixMaker`, so both score bit-identical vectors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from embridge.core.errors import InputError
from embridge.core.l2 import l2_normalize, prepare_input
from embridge.core.store import Workspace
from embridge.core.store.vector_matrix import release_pages

Transform = Callable[..., np.ndarray]


class MatrixMaker:
    """Gathers (optionally transformed) normalised vectors chunk by chunk, spilling large ones to disk.

    A matrix larger than ``budget_bytes`` is written into a float32 memmap under ``scratch``, each
    block flushed and released from memory as it is written (searches read the file with plain
    reads); smaller ones stay in memory. ``transform`` receives one block per model named, in order, prepared by the
    layer's input policy ``input_normalised`` (:func:`embridge.core.l2.prepare_input`: L2-normalised, or as
    stored); every matrix returned is L2-normalised.
    """

    def __init__(self, ws: Workspace, scratch: Path | None = None, budget_bytes: int = 512 << 20,
                 chunk: int = 65_536, input_normalised: bool = True, share: bool = False) -> None:
        self.ws, self.scratch, self.budget, self.chunk = ws, scratch, budget_bytes, chunk
        self.input_normalised = input_normalised
        self._count = 0
        self._shared: dict[tuple[object, ...], np.ndarray] | None = {} if share else None

    def matrix(self, ids: np.ndarray, models: Sequence[str], transform: Transform | None = None) -> np.ndarray:
        """The rows of ``ids`` under ``models``; with ``share`` an untransformed matrix asked for again
        (same ids, same model) is the same array, read once (and one index can serve it)."""
        if self._shared is None or transform is not None:
            return self._gather(ids, models, transform)
        key = (tuple(models), int(ids.size), hashlib.sha1(np.ascontiguousarray(ids).tobytes()).hexdigest())
        if key not in self._shared:
            self._shared[key] = self._gather(ids, models, None)
        return self._shared[key]

    def _gather(self, ids: np.ndarray, models: Sequence[str], transform: Transform | None) -> np.ndarray:
        out: np.ndarray | None = None
        n = int(ids.size)
        for start in range(0, n, self.chunk):
            part = ids[start:start + self.chunk]
            if transform is None:  # read straight into the matrix and normalised where it lies
                if out is None:
                    out = self._allocate(n, self.ws.vector_dim(models[0]))
                rows = np.asarray(out[start:start + len(part)])  # a plain view, also of a memmap
                normed = l2_normalize(self.ws.vectors_for(models[0], part, out=rows), in_place=True)
                if normed is not rows:
                    rows[...] = normed
            else:
                blocks = [prepare_input(self.ws.vectors_for(m, part), self.input_normalised, in_place=True)
                          for m in models]
                block = l2_normalize(transform(*blocks))
                if out is None:
                    out = self._allocate(n, block.shape[1])
                out[start:start + len(part)] = block
            if isinstance(out, np.memmap):  # written once: to disk, and out of this process's memory
                out.flush()
                release_pages(out, start, start + len(part))
        if out is None:
            raise InputError("evaluation sample", "no items to gather vectors for")
        return out

    def _allocate(self, rows: int, dim: int) -> np.ndarray:
        if self.scratch is None or rows * dim * 4 <= self.budget:
            return np.empty((rows, dim), dtype=np.float32)
        self.scratch.mkdir(parents=True, exist_ok=True)
        self._count += 1
        path = self.scratch / f"matrix-{self._count}.f32"
        return np.memmap(path, dtype=np.float32, mode="w+", shape=(rows, dim))
