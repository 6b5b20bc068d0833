"""FAISS index files, read-only: ``faiss:///path/to/index.faiss``.

Ids are the index's own (an ``IndexIDMap`` keeps them, an IVF index holds those it was given, read in
id order; otherwise the row numbers), vectors are
reconstructed from the index (exact for flat indexes, the stored codes for compressed ones).
FAISS files hold no payload, so every point's payload is empty.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from embridge.core.connectors.connector import Batch, Connector, PointId, StoreURI, VectorStoreError


class FaissConnector(Connector):
    scheme = "faiss"
    writable = False
    supports_alias = False
    has_payload = False

    def __init__(self, uri: StoreURI) -> None:
        self.path = Path(uri.path)
        self.uri = uri
        self.collection = self.path.stem
        self._index: Any = None
        self._ids: np.ndarray | None = None
        self._by_key = False  # vectors found by id (an IVF index's own ids), not by row

    def describe(self) -> str:
        return f"FAISS index {self.path}"

    def _load(self) -> Any:
        import faiss

        if self._index is None:
            if not self.path.is_file():
                raise VectorStoreError(f"{self.path}: no such FAISS index file")
            try:
                index = faiss.read_index(str(self.path))
            except RuntimeError as exc:
                raise VectorStoreError(f"{self.path}: not a readable FAISS index ({str(exc).splitlines()[0]})") from exc
            if index.d < 1:
                raise VectorStoreError(f"{self.path}: the index's vectors have dimension {index.d}")
            inner = index
            if hasattr(index, "id_map"):
                self._ids = faiss.vector_to_array(index.id_map).astype(np.int64)
                inner = faiss.downcast_index(index.index)
            else:
                self._ids = np.arange(index.ntotal, dtype=np.int64)
            kind = faiss.downcast_index(inner)
            if isinstance(kind, faiss.IndexIVFFastScan):  # faiss crashes reconstructing one
                raise VectorStoreError(f"{self.path}: an IVF fast-scan index ({type(kind).__name__}) "
                                       "cannot give back its vectors (its packed codes have no reconstruction); read "
                                       "the gallery from the store or file the index was built from")
            ivf = faiss.try_extract_index_ivf(inner)
            try:
                if ivf is not None and inner is index:  # an IVF index's ids are its own (add_with_ids)
                    self._ids = self._ivf_ids(faiss, ivf)
                elif ivf is not None:  # inside an IDMap: ids 0..n-1, mapped by the IDMap
                    ivf.make_direct_map()
            except RuntimeError as exc:  # e.g. an IDMap over an IVF whose own ids are not 0..n-1
                raise VectorStoreError(f"{self.path}: this index cannot find its vectors by id "
                                       f"({str(exc).splitlines()[0]})") from exc
            self._index, self._inner = index, inner
        return self._index

    def _ivf_ids(self, faiss: Any, ivf: Any) -> np.ndarray:
        """The ids an IVF index holds, sorted, with a direct map that finds each one's vector: an array
        when they are 0..n-1, else a hash table (an array map takes sequential ids only)."""
        lists = ivf.invlists
        parts = []
        for number in range(lists.nlist):
            size = lists.list_size(number)
            if size:
                pointer = lists.get_ids(number)
                parts.append(faiss.rev_swig_ptr(pointer, size).astype(np.int64))
                lists.release_ids(number, pointer)
        ids = np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)
        repeated = ids[1:][ids[1:] == ids[:-1]]
        if len(repeated):
            raise VectorStoreError(f"{self.path}: the id {int(repeated[0])} appears more than once in the index; "
                                   "every point needs a unique id")
        if np.array_equal(ids, np.arange(len(ids))):
            ivf.make_direct_map()
        else:
            ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
            self._by_key = True
        return ids

    def exists(self) -> bool:
        return self.path.is_file()

    def missing(self) -> str:
        return "is a folder, not a FAISS index file" if self.path.is_dir() else "no such FAISS index file"

    def lossy_note(self) -> str | None:
        import faiss

        self._load()
        inner = faiss.downcast_index(self._inner)
        if isinstance(inner, faiss.IndexFlat | faiss.IndexIVFFlat | faiss.IndexHNSWFlat):
            return None
        return (f"{self.path} is an index of type {type(inner).__name__}, which keeps compressed codes: its vectors "
                "come back approximate, not as they were embedded")

    def count(self) -> int:
        return int(self._load().ntotal)

    def dim(self) -> int | None:
        return int(self._load().d)

    def read_batches(self, batch_size: int, cursor: Any = None) -> Iterator[Batch]:
        """Cursor: the number of vectors already read."""
        self._load()
        assert self._ids is not None
        total, start = len(self._ids), int(cursor or 0)
        while start < total:
            end = min(start + batch_size, total)
            try:
                vectors = (self._inner.reconstruct_batch(self._ids[start:end]) if self._by_key
                           else self._inner.reconstruct_n(start, end - start))
            except RuntimeError as exc:
                raise VectorStoreError(f"{self.path}: this index type cannot give back its vectors "
                                       f"({str(exc).splitlines()[0]})") from exc
            ids: list[PointId] = [int(i) for i in self._ids[start:end]]
            yield Batch(ids, vectors, [{} for _ in ids], end if end < total else None)
            start = end

    def space_counts(self) -> dict[str, int]:
        """FAISS files hold no payload, so no point carries a space (and no vector needs reading)."""
        count = self.count()
        return {"": count} if count else {}

    def create(self, dim: int, like: Connector | None = None, sample: Batch | None = None) -> None:
        self._writable()

    def drop(self) -> None:
        self._writable()

    def write(self, batch: Batch) -> None:
        self._writable()

    def delete_ids(self, ids: list[PointId]) -> None:
        self._writable()
