"""The one interface every vector-store connector implements.

A store holds *collections* (Qdrant collections, LanceDB/pgvector tables, Chroma collections,
Parquet dataset folders) of points: an id, a float vector and a payload of plain fields. A connector
is opened on a :class:`StoreURI` that names the store and one collection; ``with_collection`` gives
a connector on a sibling collection of the same store (the shadow a migration writes).

Reading is a stream of :class:`Batch` objects in a fixed order; every batch carries an opaque,
JSON-able ``cursor`` from which ``read_batches`` continues, so a resumed job never rereads what it
has already handled. Writing is an upsert by id, and ``delete_ids`` removes points, which together
make a retried batch land exactly once even on append-only stores.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# the URI's names, re-exported: the connectors import them from here
from embridge.core.connectors.store_uri import LOCAL_SCHEMES as LOCAL_SCHEMES
from embridge.core.connectors.store_uri import SERVER_URI_SCHEMES as SERVER_URI_SCHEMES
from embridge.core.connectors.store_uri import StoreURI as StoreURI
from embridge.core.connectors.store_uri import encode_query as encode_query
from embridge.core.connectors.store_uri import path_uri as path_uri
from embridge.core.errors import EmbridgeError, InputError

PointId = int | str
SPACE_FIELD = "embridge_space"  # payload field / column naming the model version of each point


METRICS = {"cosine": "cosine similarity", "dot": "inner product", "l2": "L2 distance", "l1": "L1 distance"}


def space_key(value: Any) -> str:
    """A space field's value as text ('' for none): a store may hold other types in a field of that name."""
    return "" if value is None or value == "" else str(value)


class VectorStoreError(EmbridgeError):
    """A vector store cannot be opened, read or written; the message names the URI."""


@dataclass
class Batch:
    """Points read from or written to a store: ids, an (n, d) float32 matrix, one payload dict each."""

    ids: list[PointId]
    vectors: np.ndarray
    payloads: list[dict[str, Any]]
    cursor: Any = None  # where the next read continues (JSON-able); None after the last batch

    def __post_init__(self) -> None:
        self.vectors = np.ascontiguousarray(self.vectors, dtype=np.float32)
        if self.vectors.ndim != 2 or len(self.ids) != self.vectors.shape[0] or len(self.payloads) != len(self.ids):
            raise VectorStoreError(f"a batch needs one vector and one payload per id (got {len(self.ids)} ids, "
                             f"vectors {self.vectors.shape}, {len(self.payloads)} payloads)")

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    count: int
    dim: int | None


class Connector(ABC):
    """A store opened on one collection; see the module docstring."""

    scheme: str = ""
    borrowed: bool = False
    writable: bool = True
    supports_alias: bool = True
    # an alias here is a view or a symbolic link, which a user may have made for ends of their own
    aliases_may_be_users: bool = False
    single_client: bool = True  # one open client per store (embedded stores lock their folder)
    has_payload: bool = True  # points may carry fields beside the vector (a FAISS index holds none)
    one_id_type: bool = False  # a table whose id column holds integers or text, not both
    even_batches: bool = True  # a read from a cursor comes in the asked sizes, as one from the start does
    snapshot_reads: bool = True  # a read sees one state of the collection (or pages by key): no point skipped
    made_notes: tuple[str, ...] = ()  # what :meth:`create` made differently from the source it copied

    def refresh(self) -> None:
        """See the collection as it is now: a store that reads one snapshot per open (LanceDB) reopens it."""
        return None

    def lossy_note(self) -> str | None:
        """Why the vectors read back differ from the ones stored (a compressed index), or None."""
        return None

    def __init__(self, uri: StoreURI) -> None:
        self.uri = uri
        self.collection = self.collection_name(uri)

    # -- naming -----------------------------------------------------------------------------
    @staticmethod
    def collection_name(uri: StoreURI) -> str:
        name = uri.param("collection", "table")
        if not name:
            raise InputError(uri.shown, "no collection named (add ?collection=NAME, or ?table=NAME)")
        return name

    def with_collection(self, name: str) -> Connector:
        """A connector on another collection of the same store (sharing the client)."""
        other = self.__class__.__new__(self.__class__)
        other.__dict__.update(self.__dict__)
        other.uri = self.uri.with_params(collection=name, table=None) if "table" not in self.uri.params \
            else self.uri.with_params(table=name)
        other.collection = name
        other.borrowed = True  # the client belongs to the connector it came from, which closes it
        return other

    def checkpoint_holder(self, collection: str) -> Connector:
        """The connector whose checkpoints tell of ``collection`` (one this store's alias serves): this one,
        unless the store keeps checkpoints per namespace (PostgreSQL, per schema)."""
        return self

    def take_uri_columns(self, uri: StoreURI) -> None:
        """Take the columns (or vector name) ``uri`` names, for a connector made by :meth:`with_collection`."""
        return None  # a store without columns to name (Chroma, Parquet folders open a connector of their own)

    def describe(self) -> str:
        return f"{self.scheme} store {self.location()} collection '{self.collection}'"

    def location(self) -> str:
        return self.uri.base

    def missing(self) -> str:
        """Why the collection is not there, for the one line that says so."""
        return "no such collection"

    def check_carried(self) -> None:  # noqa: B027 - most stores hold nothing a migration leaves behind
        """Refuse, as a migration's source, a collection holding data its shadow would not carry."""

    def state_dir(self) -> str | None:
        """A local folder beside the store for migration checkpoints (None for remote stores)."""
        return None

    def server_lock(self, key: str) -> bool | None:
        """Take the store server's own lock of job ``key`` for this connection: True when taken, False
        when another session holds it, None when the store offers no such lock."""
        return None

    def server_unlock(self, key: str) -> None:
        """Give back what :meth:`server_lock` took (nothing for a store without server locks)."""
        return None

    # -- reading ----------------------------------------------------------------------------
    @abstractmethod
    def exists(self) -> bool: ...

    @abstractmethod
    def count(self) -> int: ...

    @abstractmethod
    def dim(self) -> int | None: ...

    @abstractmethod
    def read_batches(self, batch_size: int, cursor: Any = None) -> Iterator[Batch]:
        """Batches in a fixed order, starting after ``cursor`` (None: from the start)."""

    def normalises(self) -> bool:
        """Whether the store may hand back a written vector scaled to unit length (cosine collections)."""
        return False

    def index_like(self, like: Connector) -> str | None:
        """Give the written collection the vector index ``like`` (its source) has, where the store trains one on
        data already written; a note when it cannot. Others copy their index settings at :meth:`create`."""
        return None

    def metric(self) -> str | None:
        """How the store's index ranks the vectors served (one of METRICS): what a number measured on them must
        rank by to be what the store serves; None where nothing says (a file format, a table without index)."""
        return None

    def read_ids(self, ids: list[PointId]) -> Batch:
        """The points with these ids (in that order); missing ids are left out."""
        wanted = set(ids)
        found: dict[PointId, tuple[np.ndarray, dict[str, Any]]] = {}
        for batch in self.read_batches(4096):
            for pid, vec, payload in zip(batch.ids, batch.vectors, batch.payloads, strict=True):
                if pid in wanted:
                    found[pid] = (vec, payload)
        order = [i for i in ids if i in found]
        dim = self.dim() or 0
        vectors = np.stack([found[i][0] for i in order]) if order else np.zeros((0, dim), np.float32)
        return Batch(order, vectors, [found[i][1] for i in order])

    def space_counts(self) -> dict[str, int]:
        """How many points carry each value of the space field ('' for none)."""
        counts: dict[str, int] = {}
        for batch in self.read_batches(8192):
            for payload in batch.payloads:
                key = space_key(payload.get(SPACE_FIELD))
                counts[key] = counts.get(key, 0) + 1
        return counts

    # -- writing ----------------------------------------------------------------------------
    def _writable(self) -> None:
        """Raise for a store Embridge only reads (FAISS index files)."""
        if not self.writable:
            raise VectorStoreError(f"{self.describe()}: this store is read-only in Embridge")

    @abstractmethod
    def create(self, dim: int, like: Connector | None = None, sample: Batch | None = None) -> None:
        """Create this (empty) collection for ``dim``-d vectors, settings from ``like``, fields from ``sample``."""

    @abstractmethod
    def drop(self) -> None: ...

    @abstractmethod
    def write(self, batch: Batch) -> None:
        """Upsert the batch's points (by id)."""

    @abstractmethod
    def delete_ids(self, ids: list[PointId]) -> None: ...

    def id_problem(self, pid: PointId) -> str | None:
        """Why this store cannot key a point by ``pid`` (None when it can), to refuse before work is done."""
        return None

    # -- aliases ----------------------------------------------------------------------------
    def alias_target(self, alias: str) -> str | None:
        """The collection an alias serves now (None when the alias does not exist)."""
        raise VectorStoreError(f"{self.describe()}: this store has no aliases")

    def set_alias(self, alias: str, target: str) -> None:
        """Point ``alias`` at ``target`` in one atomic step."""
        raise VectorStoreError(f"{self.describe()}: this store has no aliases")

    def alias_definition(self, alias: str) -> str | None:
        """What the alias is now (a view's SQL, a link's target): a switch records it, so a later switch
        can tell an alias it made from one of the same name made by someone else."""
        return self.alias_target(alias)

    def alias_extras(self, alias: str) -> str | None:
        """What the alias holds besides its definition that moving it would lose (a view's grants, triggers,
        the views built on it), recorded with each switch; None where an alias is nothing but its target."""
        return None

    def alias_blocked(self, alias: str) -> str | None:
        """Why the alias cannot be moved at all (None when it can), checked before anything is written."""
        return None

    def alias_key(self, alias: str) -> str:
        """The checkpoint key of the record of the alias's moves."""
        return f"alias-{alias}"

    def alias_what(self, alias: str) -> str:
        """The alias in words, for a refusal to move it."""
        return f"an alias of '{self.alias_target(alias)}'"

    # -- checkpoints --------------------------------------------------------------------------
    def _state_file(self, key: str) -> Path:
        folder = self.state_dir()
        if folder is None:
            raise VectorStoreError(f"{self.describe()}: has no local folder or database table for a migration's "
                                   "checkpoint; migrate into a store Embridge writes (a local folder or a database)")
        return Path(folder).with_name(Path(folder).name + ".embridge") / f"{key}.json"

    def load_state(self, key: str) -> dict[str, Any] | None:
        """A job's saved checkpoint (None when there is none: a store without a checkpoint folder has none)."""
        if self.state_dir() is None:
            return None
        file = self._state_file(key)
        try:
            return json.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise VectorStoreError(f"{file}: unreadable checkpoint ({exc})") from exc

    def save_state(self, key: str, state: dict[str, Any] | None) -> None:
        """Replace a job's checkpoint atomically (None removes it)."""
        from embridge.core.paths import TEMP_MAX_AGE_S, sweep_old_temps
        from embridge.core.store.files import atomic_write_text

        file = self._state_file(key)
        if state is None:
            file.unlink(missing_ok=True)
            return
        file.parent.mkdir(parents=True, exist_ok=True)
        sweep_old_temps(file.parent, time.time() - TEMP_MAX_AGE_S)  # checkpoints a killed migration was writing
        atomic_write_text(file, json.dumps(state))

    def close(self) -> None:  # noqa: B027 - most stores hold nothing to release
        """Release clients and connections."""

    def __enter__(self) -> Connector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_write_batch(connector: Connector, batch: Batch, dim: int) -> None:
    """Refuse a batch of the wrong width or with non-finite values before anything is written."""
    if batch.vectors.shape[1] != dim:
        raise VectorStoreError(f"{connector.describe()}: {batch.vectors.shape[1]}-d vectors for a {dim}-d collection")
    if not np.isfinite(batch.vectors).all():
        raise VectorStoreError(f"{connector.describe()}: a batch holds NaN or inf values")
