"""Chroma, embedded persistent client: ``chroma:///path/to/db?collection=docs``.

Chroma ids are strings, payloads are its metadata (plain values only) plus a record's document, the
text a RAG collection keeps beside each vector, under ``document`` (so ``import --text-field document``
reads it, and a migration writes it back as the shadow's document). Chroma has no aliases and
no atomic rename, so a migration into Chroma writes and verifies the new collection but cannot
switch readers over; Embridge says so instead of renaming in two visible steps.

``chroma://host:port?collection=docs`` opens a Chroma server (``chroma run --path DIR --port P``)
through its HTTP client. A server has no folder beside it for migration checkpoints, so they live
in the server itself, one record per job in a small ``embridge_state`` collection.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np

from embridge.core.connectors.connector import (
    SPACE_FIELD,
    Batch,
    Connector,
    PointId,
    StoreURI,
    VectorStoreError,
    check_write_batch,
    space_key,
)
from embridge.core.connectors.payload_values import check_payloads
from embridge.core.connectors.store_uri import DEFAULT_PORTS
from embridge.core.errors import first_line

DOCUMENT_FIELD = "document"  # a record's Chroma document, as a payload field
STATE_COLLECTION = "embridge_state"  # checkpoints on a server: id = job key, metadata 'state' = JSON
DEFAULT_PORT = DEFAULT_PORTS["chroma"]


def index_configuration(col: Any) -> dict[str, Any] | None:
    """A collection's distance space and vector index settings (``hnsw`` or ``spann``), as
    ``create_collection(configuration=...)`` takes them; None when the client does not say (then the
    metadata's ``hnsw:*`` keys, copied, or Chroma's defaults, the same for both, decide).

    Read from the configuration Chroma resolved, so a collection made with ``configuration=`` or with no
    metadata at all (space l2) is described as faithfully as one made with ``hnsw:space`` metadata. The
    embedding function is left out: the shadow holds another model's vectors, which Embridge writes itself."""
    resolved = getattr(col, "configuration_json", None) or {}
    found = {key: {k: v for k, v in part.items() if v is not None} for key in ("hnsw", "spann")
             if isinstance(part := resolved.get(key), dict) and part}
    return found or None


class ChromaConnector(Connector):
    scheme = "chroma"
    supports_alias = False
    snapshot_reads = False  # pages by offset: a point deleted below the cursor shifts the next page over one

    def __init__(self, uri: StoreURI) -> None:
        import chromadb
        from chromadb.config import Settings

        super().__init__(uri)
        self.single_client = not uri.netloc  # a server takes many clients; an embedded store one
        if uri.netloc:
            host, port = uri.server(DEFAULT_PORT)
            self.local_path = None
            try:
                self.client = chromadb.HttpClient(host=host, port=port, ssl=uri.tls,
                                                  settings=Settings(anonymized_telemetry=False))
                self.client.heartbeat()
            except Exception as exc:  # an unreachable server: chromadb raises several types
                raise VectorStoreError(f"{uri.shown}: cannot reach the Chroma server ({first_line(exc)})") from exc
        else:
            if not uri.path or uri.path == "/":
                raise VectorStoreError(f"{uri.shown}: name the database folder, e.g. chroma:///data/chroma?collection=docs")
            self.local_path = uri.path
            try:
                self.client = chromadb.PersistentClient(path=uri.path, settings=Settings(anonymized_telemetry=False))
            except Exception as exc:  # a read-only folder, a foreign database: chromadb raises its own types
                raise VectorStoreError(f"{uri.shown}: cannot open the Chroma store ({first_line(exc)})") from exc
        self._col: Any = None

    def describe(self) -> str:
        return f"Chroma {self.local_path or self.uri.host} collection '{self.collection}'"

    def with_collection(self, name: str) -> ChromaConnector:
        other = super().with_collection(name)
        assert isinstance(other, ChromaConnector)
        other._col = None
        return other

    def state_dir(self) -> str | None:
        return self.local_path

    def _names(self) -> list[str]:
        return [c if isinstance(c, str) else c.name for c in self.client.list_collections()]

    def col(self) -> Any:
        if self._col is None:
            if self.collection not in self._names():
                raise VectorStoreError(f"{self.describe()}: no such collection (collections: "
                                       f"{', '.join(self._names()) or 'none'})")
            self._col = self.client.get_collection(self.collection)
        return self._col

    def metric(self) -> str | None:
        col = self.col()
        spaces = [part.get("space") for part in (index_configuration(col) or {}).values()]
        space = next((s for s in spaces if s), None) or (col.metadata or {}).get("hnsw:space") or "l2"  # its default
        return {"cosine": "cosine", "ip": "dot", "l2": "l2"}.get(str(space))

    def exists(self) -> bool:
        return self.collection in self._names()

    def count(self) -> int:
        return int(self.col().count())

    def dim(self) -> int | None:
        got = self.col().get(limit=1, include=["embeddings"])
        embeddings = got.get("embeddings")
        return int(len(embeddings[0])) if embeddings is not None and len(embeddings) else None

    def read_batches(self, batch_size: int, cursor: Any = None) -> Iterator[Batch]:
        """Cursor: the number of points already read (Chroma lists them in insertion order)."""
        col, offset, total = self.col(), int(cursor or 0), self.count()
        while offset < total:
            try:
                got = col.get(limit=batch_size, offset=offset, include=["embeddings", "metadatas", "documents"])
            except Exception as exc:  # chromadb's own errors (a record removed while the page was being read)
                raise VectorStoreError(f"{self.describe()}: cannot read points {offset} onwards "
                                       f"({first_line(exc)}); was the collection written meanwhile? run the "
                                       "command again once it is not") from exc
            if not got["ids"]:
                return
            offset += len(got["ids"])
            payloads = self._payloads(got)
            yield Batch(list(got["ids"]), np.asarray(got["embeddings"], dtype=np.float32), payloads,
                        offset if offset < total else None)

    def read_ids(self, ids: list[PointId]) -> Batch:
        got = self.col().get(ids=[str(i) for i in ids], include=["embeddings", "metadatas", "documents"])
        found = {i: (e, m) for i, e, m in zip(got["ids"], got["embeddings"], self._payloads(got), strict=True)}
        order = [i for i in ids if str(i) in found]
        vectors = np.asarray([found[str(i)][0] for i in order], dtype=np.float32).reshape(len(order), -1)
        return Batch(order, vectors, [dict(found[str(i)][1] or {}) for i in order])

    def _payloads(self, got: Any) -> list[dict[str, Any]]:
        """Each record's metadata, with its document (if any) under :data:`DOCUMENT_FIELD`."""
        documents = got.get("documents") or [None] * len(got["ids"])
        out = []
        for point, meta, document in zip(got["ids"], got["metadatas"], documents, strict=True):
            payload = dict(meta) if meta else {}
            if document is not None:
                if DOCUMENT_FIELD in payload:
                    raise VectorStoreError(f"{self.describe()}: point '{point}' has both a document and a metadata "
                                           f"field '{DOCUMENT_FIELD}'; Embridge reads the document under that name")
                payload[DOCUMENT_FIELD] = document
            out.append(payload)
        return out

    def space_counts(self) -> dict[str, int]:
        """From the metadata alone, a page at a time (the vectors are not needed)."""
        col, offset = self.col(), 0
        counts: dict[str, int] = {}
        while True:
            got = col.get(limit=8192, offset=offset, include=["metadatas"])
            if not got["ids"]:
                return counts
            offset += len(got["ids"])
            for meta in got["metadatas"]:
                key = space_key((meta or {}).get(SPACE_FIELD))
                counts[key] = counts.get(key, 0) + 1

    def create(self, dim: int, like: Connector | None = None, sample: Batch | None = None) -> None:
        self._writable()
        if self.exists():
            raise VectorStoreError(f"{self.describe()}: the collection already exists")
        metadata: dict[str, Any] | None = {"hnsw:space": "cosine"}
        configuration = None
        if isinstance(like, ChromaConnector) and like.exists():  # the source's own metadata, space and index
            source = like.col()
            metadata, configuration = dict(source.metadata or {}) or None, index_configuration(source)
        self._col = self.client.create_collection(self.collection, metadata=metadata, configuration=configuration)

    def drop(self) -> None:
        if self.exists():
            self.client.delete_collection(self.collection)
        self._col = None

    def write(self, batch: Batch) -> None:
        if not len(batch):
            return
        check_write_batch(self, batch, batch.vectors.shape[1])
        for pid in batch.ids:
            if (problem := self.id_problem(pid)) is not None:
                raise VectorStoreError(f"{self.describe()}: point id {pid!r}: {problem}")
        check_payloads(self.describe(), batch.ids, batch.payloads, nested=False, store="Chroma metadata")
        step = int(self.client.get_max_batch_size())
        col = self.col()
        for start in range(0, len(batch), step):
            end = start + step
            metadatas, documents = [], []
            for payload in batch.payloads[start:end]:
                meta = dict(payload or {})
                document = meta.pop(DOCUMENT_FIELD, None) if isinstance(meta.get(DOCUMENT_FIELD), str) else None
                metadatas.append(meta or None)
                documents.append(document)
            try:
                col.upsert(ids=[str(i) for i in batch.ids[start:end]], embeddings=batch.vectors[start:end],
                           metadatas=metadatas, documents=documents if any(d is not None for d in documents) else None)
            except ValueError as exc:  # Chroma's own check of a value (a nested or non-plain metadata field)
                hint = ("; Chroma metadata holds plain values and flat lists of one type only"
                        if "metadata" in str(exc).lower() else "")
                raise VectorStoreError(f"{self.describe()}: cannot write the batch ({first_line(exc)}){hint}") from exc

    def id_problem(self, pid: PointId) -> str | None:
        return "Chroma ids are text of at least one character" if str(pid) == "" else None

    def delete_ids(self, ids: list[PointId]) -> None:
        if ids and self.exists():
            self.col().delete(ids=[str(i) for i in ids])

    def alias_target(self, alias: str) -> str | None:
        return None

    # -- checkpoints: beside an embedded store, inside a server ---------------------------------
    def _state_col(self) -> Any:
        return self.client.get_or_create_collection(STATE_COLLECTION, embedding_function=None)

    def load_state(self, key: str) -> dict[str, Any] | None:
        if self.local_path:
            return super().load_state(key)
        if STATE_COLLECTION not in self._names():
            return None
        got = self._state_col().get(ids=[key], include=["metadatas"])
        if not got["ids"]:
            return None
        try:
            return dict(json.loads(str((got["metadatas"][0] or {})["state"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise VectorStoreError(f"{self.describe()}: unreadable checkpoint '{key}' in collection "
                                   f"'{STATE_COLLECTION}' ({exc})") from exc

    def save_state(self, key: str, state: dict[str, Any] | None) -> None:
        if self.local_path:
            super().save_state(key, state)
        elif state is None:
            if STATE_COLLECTION in self._names():
                self._state_col().delete(ids=[key])
        else:  # one record, replaced in one upsert
            self._state_col().upsert(ids=[key], embeddings=[[1.0]], metadatas=[{"state": json.dumps(state)}])

    def close(self) -> None:
        """Release the shared in-process system, so the next open sees other processes' writes."""
        if not self.borrowed:
            self.client.close()

    def set_alias(self, alias: str, target: str) -> None:
        raise VectorStoreError(f"{self.describe()}: Chroma has no aliases or atomic renames, so Embridge cannot "
                               f"switch readers over; point the application at collection '{target}'")
