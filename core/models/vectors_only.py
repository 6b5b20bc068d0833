"""Embeddings-only models: precomputed vectors keyed by item, for users who have no model at hand.

The file is one ``.npz`` with a string array ``ids`` (document keys) and a float matrix ``vectors``
(N x d), optionally ``query_ids`` / ``query_vectors`` for query items: the layout ``embridge import``
reads. The file is never loaded whole (see :mod:`embridge.core.vector_files`): only its keys are, and rows
are read on demand. Embedding with such a model means looking items up by key.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from embridge.core.errors import CheckpointError, VectorFileError
from embridge.core.store.files import atomic_target
from embridge.core.vector_files import VectorFile


class VectorTable:
    """One vector per item key (documents, and queries when the file has them)."""

    def __init__(self, file: VectorFile) -> None:
        self.file = file
        self.source = file.path
        self.index = {k: n for n, k in enumerate(file.keys)}
        self.query_index = {k: n for n, k in enumerate(file.query_keys or [])}

    @classmethod
    def load(cls, path: str | Path) -> VectorTable:
        p = Path(path)
        if p.suffix.lower() != ".npz":
            raise CheckpointError(p, "an embeddings-only model is one .npz file with arrays 'ids' and 'vectors'")
        try:
            return cls(VectorFile.open(p))
        except VectorFileError as exc:
            raise CheckpointError(p, exc.problem) from exc

    @property
    def dim(self) -> int:
        return self.file.dim

    def check_values(self) -> None:
        """Stream every row once, refusing NaN or inf (what adding the model checks)."""
        try:
            self.file.check_spread(read_all=True)
        except VectorFileError as exc:
            raise CheckpointError(self.source, exc.problem) from exc

    def __len__(self) -> int:
        return len(self.index)

    def missing(self, keys: Sequence[str], queries: bool = False) -> list[str]:
        index = self.query_index if queries else self.index
        return [k for k in keys if k not in index]

    def lookup(self, keys: Sequence[str], queries: bool = False) -> np.ndarray:
        """float32 rows for document ``keys`` (or query keys) in order; every key must be present."""
        keys = [unicodedata.normalize("NFC", k) for k in keys]  # as the importers store keys
        absent = self.missing(keys, queries)
        if absent:
            raise CheckpointError(self.source, f"{len(absent)} of {len(keys)} items have no vector in this file "
                                  f"(e.g. {', '.join(absent[:5])})")
        index = self.query_index if queries else self.index
        reader = self.file.query_vectors if queries else self.file.vectors
        assert reader is not None  # a query index is only non-empty when the file has query vectors
        rows = np.fromiter((index[k] for k in keys), dtype=np.int64, count=len(keys))
        try:
            return np.asarray(reader.lookup(rows), dtype=np.float32)
        except VectorFileError as exc:
            raise CheckpointError(self.source, exc.problem) from exc


def save_vectors_model(path: str | Path, keys: Sequence[str], vectors: np.ndarray,
                       query_keys: Sequence[str] | None = None, query_vectors: np.ndarray | None = None) -> Path:
    """Write an embeddings-only model file (temp file + rename), uncompressed so it can be memory-mapped."""
    final = Path(path)
    if final.suffix.lower() != ".npz":
        raise CheckpointError(final, "an embeddings-only model file must end in .npz")
    matrix = np.asarray(vectors)
    if matrix.ndim != 2 or matrix.shape[0] != len(keys):
        raise CheckpointError(final, f"{len(keys)} keys but vectors of shape {matrix.shape}")
    arrays = {"ids": np.asarray([str(k) for k in keys]), "vectors": matrix}
    if query_keys is not None and query_vectors is not None:
        arrays.update(query_ids=np.asarray([str(k) for k in query_keys]), query_vectors=np.asarray(query_vectors))
    with atomic_target(final) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    return final
