"""Qdrant: ``qdrant:///path/to/db?collection=docs`` (embedded local mode) or ``qdrant://host:6333?collection=docs``.

With an empty host the store is Qdrant's embedded local mode on that folder; with a host it is a
server (``?https=1`` for TLS, the API key from ``$QDRANT_API_KEY``). ``?vector=NAME`` picks a named
vector. Point ids are what Qdrant allows: unsigned integers or UUID strings. Aliases are Qdrant's
own, and a switch is one ``update_collection_aliases`` call (delete and create together).

A server has no folder beside it for migration checkpoints, so they live in the server itself: one
point per job in a small ``embridge_state`` collection (its id derived from the job key, the state
as JSON in the payload).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from embridge.core.connectors.connector import (
    Batch,
    Connector,
    PointId,
    StoreURI,
    VectorStoreError,
    check_write_batch,
)
from embridge.core.connectors.payload_values import check_payloads
from embridge.core.connectors.qdrant_local import check_local_folder
from embridge.core.connectors.store_uri import DEFAULT_PORTS
from embridge.core.errors import EmbridgeError, first_line

STATE_COLLECTION = "embridge_state"
DEFAULT_PORT = DEFAULT_PORTS["qdrant"]


def server_url(uri: StoreURI) -> str:
    """``qdrant://host:port?...`` -> the client's URL (``https`` with ``?https=1``, port 6333 when none)."""
    host, port = uri.server(DEFAULT_PORT)
    host = f"[{host}]" if ":" in host else host
    return f"{'https' if uri.tls else 'http'}://{host}:{port}"


def load_server_state(client: Any, key: str) -> dict[str, Any] | None:
    """A job's checkpoint from the ``embridge_state`` collection (None when there is none)."""
    if not client.collection_exists(STATE_COLLECTION):
        return None
    found = client.retrieve(STATE_COLLECTION, ids=[_state_id(key)], with_payload=True, with_vectors=False)
    if not found:
        return None
    try:
        return dict(json.loads(str((found[0].payload or {})["state"])))
    except (KeyError, TypeError, ValueError) as exc:
        raise VectorStoreError(f"unreadable checkpoint '{key}' in Qdrant collection '{STATE_COLLECTION}' "
                               f"({exc})") from exc


def save_server_state(client: Any, key: str, state: dict[str, Any] | None) -> None:
    """Replace (or with None remove) a job's checkpoint in one upsert."""
    from qdrant_client import models

    if not client.collection_exists(STATE_COLLECTION):
        if state is None:
            return
        client.create_collection(STATE_COLLECTION, vectors_config=models.VectorParams(
            size=1, distance=models.Distance.DOT))
    if state is None:
        client.delete(STATE_COLLECTION, points_selector=models.PointIdsList(points=[_state_id(key)]), wait=True)
        return
    client.upsert(STATE_COLLECTION, points=[models.PointStruct(
        id=_state_id(key), vector=[1.0], payload={"key": key, "state": json.dumps(state)})], wait=True)


def _state_id(key: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"embridge-state:{key}"))


class QdrantConnector(Connector):
    scheme = "qdrant"

    def __init__(self, uri: StoreURI) -> None:
        from qdrant_client import QdrantClient

        super().__init__(uri)
        self.single_client = not uri.netloc  # a server takes many clients; an embedded store one
        self.vector_name = uri.param("vector")
        self._vector_checked: str | None = None  # the collection whose vectors ?vector= was checked against
        try:
            if uri.netloc:
                self.local_path = None
                self.client = QdrantClient(url=server_url(uri), api_key=os.environ.get("QDRANT_API_KEY"),
                                           check_compatibility=False)
                self.client.get_collections()  # an unreachable server or a refused key fails here, named
            else:
                if not uri.path or uri.path == "/":
                    raise VectorStoreError(f"{uri.shown}: name the database folder, e.g. qdrant:///data/qdrant?collection=docs")
                self.local_path = uri.path
                check_local_folder(Path(uri.path), uri.shown)  # its pickles, before qdrant-client unpickles them
                self.client = QdrantClient(path=uri.path)
        except EmbridgeError:
            raise
        except Exception as exc:  # a locked folder, an unreachable server...
            raise VectorStoreError(f"{uri.shown}: cannot open the Qdrant store ({first_line(exc)})") from exc

    def describe(self) -> str:
        return f"Qdrant {self.local_path or self.uri.host} collection '{self.collection}'"

    def take_uri_columns(self, uri: StoreURI) -> None:
        if uri.param("vector") is not None:  # the target's own named vector
            self.vector_name, self._vector_checked = uri.param("vector"), None

    def state_dir(self) -> str | None:
        return self.local_path

    def _real_name(self) -> str:
        return self.alias_target(self.collection) or self.collection

    def exists(self) -> bool:
        return bool(self.client.collection_exists(self._real_name()))

    def _need(self) -> str:
        """The collection's real name; a ``?vector=`` it has no vector of is refused here, before any read."""
        name = self._real_name()
        if not self.client.collection_exists(name):
            names = ", ".join(c.name for c in self.client.get_collections().collections) or "none"
            raise VectorStoreError(f"{self.describe()}: no such collection (collections: {names})")
        if self._vector_checked != name:
            vectors = self.client.get_collection(name).config.params.vectors
            if self.vector_name or not isinstance(vectors, dict):  # a vector is picked: check it now
                self._params_of(name)
            self._vector_checked = name
        return name

    def count(self) -> int:
        return int(self.client.count(self._need(), exact=True).count)

    def _params_of(self, name: str) -> Any:
        """The vector settings ``?vector=`` picks: a name the collection has, none for one unnamed vector.
        A multivector (several vectors per point, e.g. MAX_SIM late interaction) is refused: Embridge reads,
        imports and migrates one vector per point."""
        vectors = self.client.get_collection(name).config.params.vectors
        if not vectors:  # sparse vectors only
            raise VectorStoreError(f"{self.describe()}: the collection holds no dense vectors (only sparse ones), and "
                                   "Embridge reads one dense vector per point")
        if isinstance(vectors, dict):
            names = ", ".join(repr(n) for n in sorted(vectors))
            if self.vector_name is None:
                raise VectorStoreError(f"{self.describe()}: named vectors {names}; pick one with ?vector=NAME")
            if self.vector_name not in vectors:
                raise VectorStoreError(f"{self.describe()}: ?vector={self.vector_name}: the collection has no vector "
                                       f"'{self.vector_name}'; its named vectors are {names}")
            params = vectors[self.vector_name]
        elif self.vector_name:
            raise VectorStoreError(f"{self.describe()}: ?vector={self.vector_name}: the collection has a single unnamed "
                                   "vector, so there is no vector of that name to pick; leave ?vector= out")
        else:
            params = vectors
        if int(getattr(params, "size", 0) or 0) < 1:
            raise VectorStoreError(f"{self.describe()}: the collection's settings give vectors of size "
                                   f"{getattr(params, 'size', None)}; the store is damaged")
        if getattr(params, "multivector_config", None) is not None:
            which = f"vector '{self.vector_name}'" if self.vector_name else "vector"
            comparator = getattr(params.multivector_config.comparator, "name", params.multivector_config.comparator)
            raise VectorStoreError(f"{self.describe()}: its {which} is a multivector (several vectors per point, "
                                   f"compared by {comparator}); multivector collections are not supported: Embridge "
                                   "reads, imports and migrates one vector per point")
        return params

    def _vector_params(self) -> Any:
        return self._params_of(self._need())

    def normalises(self) -> bool:
        from qdrant_client import models

        return self._vector_params().distance == models.Distance.COSINE

    def metric(self) -> str | None:
        distance = self._vector_params().distance
        return {"Cosine": "cosine", "Dot": "dot", "Euclid": "l2", "Manhattan": "l1"}.get(
            str(getattr(distance, "value", distance)))

    def dim(self) -> int | None:
        return int(self._vector_params().size)

    def _vector(self, record: Any) -> Any:
        """A record's vector (the named one with ``?vector=``); a point without it is refused by id."""
        raw = record.vector
        if isinstance(raw, dict):  # named vectors, or the unnamed one ('') beside sparse vectors
            raw = raw.get(self.vector_name) if self.vector_name else \
                raw.get("", next((v for v in raw.values() if isinstance(v, list)), None))
        if raw is None:
            which = f"vector '{self.vector_name}'" if self.vector_name else "vector"
            raise VectorStoreError(f"{self.describe()}: point {record.id!r} has no {which}; every point needs one")
        return raw

    def _matrix(self, records: list[Any], dim: int) -> np.ndarray:
        """The records' vectors as rows; one whose length is not the collection's vector size is named."""
        rows = [self._vector(r) for r in records]
        for record, row in zip(records, rows, strict=True):
            if len(row) != dim:  # a size under 1 was refused with the collection's settings
                raise VectorStoreError(f"{self.describe()}: point {record.id!r} holds a {len(row)}-long vector where "
                                       f"the collection's settings give vectors of size {dim}")
        return np.asarray(rows, dtype=np.float32).reshape(-1, dim)

    def read_batches(self, batch_size: int, cursor: Any = None) -> Iterator[Batch]:
        """Cursor: Qdrant's own next-page offset (the next point id)."""
        name, dim = self._need(), self.dim() or 0
        offset = cursor
        while True:
            records, offset = self.client.scroll(name, limit=batch_size, offset=offset, with_payload=True,
                                                 with_vectors=True)
            if not records:
                return
            vectors = self._matrix(records, dim)
            yield Batch([r.id for r in records], vectors, [dict(r.payload or {}) for r in records], offset)
            if offset is None:
                return

    def read_ids(self, ids: list[PointId]) -> Batch:
        name, dim = self._need(), self.dim() or 0
        found = {r.id: r for r in self.client.retrieve(name, ids=list(ids), with_payload=True, with_vectors=True)}
        order = [i for i in ids if i in found]
        vectors = self._matrix([found[i] for i in order], dim)
        return Batch(order, vectors, [dict(found[i].payload or {}) for i in order])

    def space_counts(self) -> dict[str, int]:
        from embridge.core.connectors.connector import SPACE_FIELD, space_key

        counts: dict[str, int] = {}
        name, offset = self._need(), None
        while True:
            records, offset = self.client.scroll(name, limit=8192, offset=offset, with_payload=[SPACE_FIELD],
                                                 with_vectors=False)
            for r in records:
                key = space_key((r.payload or {}).get(SPACE_FIELD))
                counts[key] = counts.get(key, 0) + 1
            if offset is None or not records:
                return counts

    def create(self, dim: int, like: Connector | None = None, sample: Batch | None = None) -> None:
        from qdrant_client import models

        self._writable()
        if self.client.collection_exists(self.collection):
            raise VectorStoreError(f"{self.describe()}: the collection already exists")
        params, settings = models.VectorParams(size=int(dim), distance=models.Distance.COSINE), {}
        if isinstance(like, QdrantConnector) and like.exists():
            params, settings = like.shadow_settings(int(dim))
        self.client.create_collection(self.collection, vectors_config={self.vector_name: params}
                                      if self.vector_name else params, **settings)
        indexes = like.payload_indexes() if isinstance(like, QdrantConnector) and like.exists() else {}
        try:
            for field_name, schema in indexes.items():  # a server's payload indexes (local mode keeps none)
                self.client.create_payload_index(self.collection, field_name, field_schema=schema, wait=True)
        except Exception as exc:
            self.client.delete_collection(self.collection)
            raise VectorStoreError(f"{self.describe()}: cannot make the payload indexes of {like.describe()} "
                                   f"({first_line(exc)})") from exc

    def check_carried(self) -> None:
        """Refuse a source holding vectors a migration does not carry (other named vectors, sparse vectors):
        its shadow, in any store, once switched to, would serve points without them."""
        self._params_of(self._need())  # named vectors with none picked: the same line an import gives
        config = self.client.get_collection(self._need()).config
        vectors = config.params.vectors
        others = [f"named vector '{n}'" for n in sorted(vectors) if n != self.vector_name] \
            if isinstance(vectors, dict) else []
        others += [f"sparse vector '{n}'" for n in sorted(config.params.sparse_vectors or {})]
        if others:
            which = f"vector '{self.vector_name}'" if self.vector_name else "unnamed vector"
            them = "them" if len(others) > 1 else "it"
            raise VectorStoreError(f"{self.describe()}: holds the {' and the '.join(others)} besides the migrated "
                                   f"{which}; a migration carries only that vector, so the shadow would lose {them} "
                                   f"(and serve points without {them} after --switch): migrate a collection that "
                                   "holds only the migrated vector")

    def shadow_settings(self, dim: int) -> tuple[Any, dict[str, Any]]:
        """The migrated vector's settings with ``dim`` as its size, and the collection-level settings, for a
        shadow of this collection (a migration has refused sources it cannot carry: :meth:`check_carried`)."""
        from qdrant_client import models

        name = self._need()
        config = self.client.get_collection(name).config
        params = self._params_of(name)
        # float32 storage: the shadow is verified against the bundle's output at 1e-4, which a float16 or uint8
        # datatype would round away
        shadow = params.model_copy(update={"size": int(dim), "datatype": None})
        settings: dict[str, Any] = {"quantization_config": config.quantization_config}
        for key, value, diff in (("hnsw_config", config.hnsw_config, models.HnswConfigDiff),
                                 ("optimizers_config", config.optimizer_config, models.OptimizersConfigDiff),
                                 ("wal_config", config.wal_config, models.WalConfigDiff)):
            if value is not None:
                settings[key] = diff(**{k: v for k, v in value.model_dump(exclude_none=True).items()
                                        if k in diff.model_fields})
        for key in ("shard_number", "replication_factor", "write_consistency_factor", "on_disk_payload"):
            settings[key] = getattr(config.params, key, None)
        if getattr(config, "metadata", None):
            settings["metadata"] = config.metadata
        return shadow, {k: v for k, v in settings.items() if v is not None}

    def payload_indexes(self) -> dict[str, Any]:
        """The collection's payload indexes, field -> schema (a server's; Qdrant's local mode keeps none)."""
        schema = self.client.get_collection(self._need()).payload_schema or {}
        return {field_name: info.params or info.data_type for field_name, info in schema.items()}

    def drop(self) -> None:
        if self.client.collection_exists(self.collection):
            self.client.delete_collection(self.collection)

    def write(self, batch: Batch) -> None:
        from qdrant_client import models

        if not len(batch):
            return
        check_write_batch(self, batch, self.dim() or batch.vectors.shape[1])  # the collection's own width
        for pid in batch.ids:
            if (problem := self.id_problem(pid)) is not None:  # a negative int too: a server refuses it
                raise VectorStoreError(f"{self.describe()}: point id {pid!r}: {problem}")
        check_payloads(self.describe(), batch.ids, batch.payloads, nested=True, store="a Qdrant payload")
        vectors = batch.vectors.tolist()
        if self.vector_name:
            vectors = {self.vector_name: vectors}
        try:
            self.client.upsert(self.collection, points=models.Batch(ids=list(batch.ids), vectors=vectors,
                                                                    payloads=batch.payloads), wait=True)
        except ValueError as exc:
            hint = ("; Qdrant ids must be unsigned integers or UUIDs"  # the word, not 'invalid utf-8'
                    if re.search(r"\bids?\b", str(exc), re.IGNORECASE) else "")
            raise VectorStoreError(f"{self.describe()}: cannot write the batch ({first_line(exc)}){hint}") from exc

    def id_problem(self, pid: PointId) -> str | None:
        if isinstance(pid, int) and not isinstance(pid, bool):
            return None if 0 <= pid < 2**64 else "Qdrant ids are unsigned 64-bit integers or UUIDs"
        try:
            canonical = str(uuid.UUID(str(pid)))
        except ValueError:
            return "Qdrant ids are unsigned integers or UUIDs"
        if canonical != str(pid):  # Qdrant keeps a UUID in this form: the point could not be found by its id
            return f"Qdrant stores this UUID as '{canonical}', so the point would not keep its id"
        return None

    def delete_ids(self, ids: list[PointId]) -> None:
        from qdrant_client import models

        if ids and self.client.collection_exists(self.collection):
            self.client.delete(self.collection, points_selector=models.PointIdsList(points=list(ids)), wait=True)

    def alias_target(self, alias: str) -> str | None:
        for entry in self.client.get_aliases().aliases:
            if entry.alias_name == alias:
                return str(entry.collection_name)
        return None

    def set_alias(self, alias: str, target: str) -> None:
        from qdrant_client import models

        if not self.client.collection_exists(target):
            raise VectorStoreError(f"{self.describe()}: no collection '{target}' to serve")
        if alias in {c.name for c in self.client.get_collections().collections}:
            raise VectorStoreError(f"{self.describe()}: '{alias}' is a collection, not an alias; choose another "
                                   "alias name")
        ops: list[Any] = []
        if self.alias_target(alias) is not None:
            ops.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)))
        ops.append(models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=target,
                                                                                alias_name=alias)))
        self.client.update_collection_aliases(change_aliases_operations=ops)

    def load_state(self, key: str) -> dict[str, Any] | None:
        return super().load_state(key) if self.local_path else load_server_state(self.client, key)

    def save_state(self, key: str, state: dict[str, Any] | None) -> None:
        if self.local_path:
            super().save_state(key, state)
        else:
            save_server_state(self.client, key, state)

    def close(self) -> None:
        if self.borrowed:
            return
        try:
            self.client.close()
        except Exception:  # noqa: S110 - closing a client that is already gone
            pass
