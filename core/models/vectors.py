"""Embeddings-only models: precomputed vectors keyed by item, for users who have no model at hand.

The file is one ``.npz`` with a string array ``ids`` (the item keys) and a float matrix
``vectors`` (N x d), the same layout ``embridge import`` reads, so the workspace can copy a single
file. Embedding such a model means looking the items up by key.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from core.errors import CheckpointError, VectorFileError
from core.importers import read_vector_file
from core.store.files import atomic_target


class VectorTable:
    """One vector per item key; see the module docstring."""

    def __init__(self, keys: Sequence[str], vectors: np.ndarray, source: str | Path) -> None:
        self.source = Path(source)
        self.vectors = vectors
        self.index = {k: n for n, k in enumerate(keys)}

    @classmethod
    def load(cls, path: str | Path) -> VectorTable:
        p = Path(path)
        if p.suffix.lower() != ".npz":
            raise CheckpointError(p, "an embeddings-only model is one .npz file with arrays 'ids' and 'vectors'")
        try:
            keys, vectors = read_vector_file(p)
        except VectorFileError as exc:
            raise CheckpointError(p, exc.problem) from exc
        return cls(keys, vectors, p)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return len(self.index)

    def missing(self, keys: Sequence[str]) -> list[str]:
        return [k for k in keys if k not in self.index]

    def lookup(self, keys: Sequence[str]) -> np.ndarray:
        """float32 rows for ``keys`` in order; every key must be present."""
        keys = [unicodedata.normalize("NFC", k) for k in keys]  # as the importers store keys
        absent = self.missing(keys)
        if absent:
            raise CheckpointError(self.source, f"{len(absent)} of {len(keys)} items have no vector in this file "
                                  f"(e.g. {', '.join(absent[:5])})")
        rows = np.fromiter((self.index[k] for k in keys), dtype=np.int64, count=len(keys))
        return np.asarray(self.vectors[rows], dtype=np.float32)


def save_vectors_model(path: str | Path, keys: Sequence[str], vectors: np.ndarray) -> Path:
    """Write an embeddings-only model file (temp file + rename)."""
    final = Path(path)
    if final.suffix.lower() != ".npz":
        raise CheckpointError(final, "an embeddings-only model file must end in .npz")
    matrix = np.asarray(vectors)
    if matrix.ndim != 2 or matrix.shape[0] != len(keys):
        raise CheckpointError(final, f"{len(keys)} keys but vectors of shape {matrix.shape}")
    with atomic_target(final) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, ids=np.asarray([str(k) for k in keys]), vectors=matrix)
    return final
