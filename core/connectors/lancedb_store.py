"""LanceDB, embedded: ``lancedb:///path/to/db?table=docs``.

Tables hold an id column, a fixed-size-list vector column and payload columns (``?id=`` and
``?vector=`` name them when they differ from ``id`` and ``vector``). LanceDB OSS cannot rename a
table, so an alias is a symbolic link ``<alias>.lance`` beside the tables, which LanceDB opens like a
table; switching replaces the link in one atomic rename.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from embridge.core.connectors.arrow_common import (
    batch_to_table,
    fit_table,
    list_width,
    shadow_schema,
    table_to_batch,
    widen_schema,
)
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
from embridge.core.connectors.links import link_target, swap_link
from embridge.core.errors import EmbridgeError, first_line, os_error_number
from embridge.core.formatting import shown_name


def _sql_literal(value: PointId) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


class LanceDBConnector(Connector):
    scheme = "lancedb"
    aliases_may_be_users = True
    one_id_type = True

    def __init__(self, uri: StoreURI) -> None:
        import lancedb

        super().__init__(uri)
        if not uri.path or uri.path == "/":
            raise VectorStoreError(f"{uri.shown}: name the database folder, e.g. lancedb:///data/db?table=docs")
        self.root = Path(uri.path)
        self.id_col = uri.param("id", default="id") or "id"
        self.vec_col = uri.param("vector", default="vector") or "vector"
        try:
            self.db = lancedb.connect(os.path.realpath(self.root))  # it reads '..' by text, not through links
        except Exception as exc:  # lancedb raises several types for an unusable folder
            raise VectorStoreError(f"{self.root}: cannot open the LanceDB database ({exc})") from exc
        self._table: Any = None

    def describe(self) -> str:
        return f"LanceDB {self.root} table '{self.collection}'"

    def with_collection(self, name: str) -> LanceDBConnector:
        other = super().with_collection(name)
        assert isinstance(other, LanceDBConnector)
        other._table = None
        return other

    def take_uri_columns(self, uri: StoreURI) -> None:
        self.id_col = uri.param("id") or self.id_col
        self.vec_col = uri.param("vector") or self.vec_col

    def state_dir(self) -> str:
        return str(self.root)

    def _state_file(self, key: str) -> Path:
        # named for the kind of store: a folder holding Parquet datasets can be a LanceDB database too,
        # and a table and a dataset of one name must not share (or read) each other's checkpoint
        return super()._state_file(f"lancedb-{key}")

    def _link(self, name: str) -> Path:
        return self.root / f"{name}.lance"

    def table(self) -> Any:
        if self._table is None:
            if not self.exists():
                raise VectorStoreError(f"{self.describe()}: no such table (tables: "
                                       f"{', '.join(self._names()) or 'none'})")
            with self._readable():
                self._table = self.db.open_table(self.collection)
        return self._table

    @contextmanager
    def _readable(self) -> Iterator[None]:
        """Lance's own errors on a damaged table (a truncated data file, a broken manifest), named by the store."""
        try:
            yield
        except EmbridgeError:
            raise
        except (RuntimeError, ValueError, OSError) as exc:
            reason = re.sub(r",\s*/\S+\.rs:\d+:\d+", "", first_line(exc))  # not the Rust source line it came from
            raise VectorStoreError(f"{self.describe()}: the table cannot be read, its files are damaged "
                                   f"({reason})") from exc

    def _names(self) -> list[str]:
        listing = self.db.list_tables(limit=100_000)
        return list(getattr(listing, "tables", listing))

    def refresh(self) -> None:
        self._table = None  # an open table reads the version it opened

    def exists(self) -> bool:
        return self._link(self.collection).exists() or self.collection in self._names()

    def _vector_index(self) -> Any:
        """The statistics of the table's index on its vector column (its type and distance), or None."""
        table = self.table()
        with self._readable():
            name = next((ix.name for ix in table.list_indices() if list(ix.columns) == [self.vec_col]), None)
            return table.index_stats(name) if name is not None else None

    def metric(self) -> str | None:
        stats = self._vector_index()
        return {"cosine": "cosine", "dot": "dot", "l2": "l2"}.get(str(getattr(stats, "distance_type", "")).lower())

    def index_like(self, like: Connector) -> str | None:
        """The source's vector index, made again on the written shadow (Lance trains it on the data, so not at
        ``create``): same type and distance, its partitions sized by Lance for the shadow's rows."""
        import lancedb.index

        self.refresh()  # the handle opened to write reads the table as it was then: empty
        if not isinstance(like, LanceDBConnector) or self._vector_index() is not None:
            return None
        stats = like._vector_index()
        if stats is None:
            return None
        kind, distance = str(stats.index_type), like.metric() or "l2"
        config = getattr(lancedb.index, INDEX_CONFIGS.get(kind, ""), None)
        if config is None:
            return (f"the source's vector index ({kind}) was not made on the shadow, which Embridge cannot make: "
                    "create it there before serving the shadow")
        try:
            self.table().create_index(self.vec_col, config=config(distance_type=distance))
        except Exception as exc:  # Lance refuses too few rows to train on, among others: the shadow is whole without
            return (f"the shadow has no vector index: making one like the source's ({kind}, {distance}) failed "
                    f"({first_line(exc)}); create it there before serving the shadow")
        return None

    def count(self) -> int:
        with self._readable():
            return int(self.table().count_rows())

    def dim(self) -> int | None:
        schema = self.table().schema
        if self.vec_col not in schema.names:
            raise VectorStoreError(f"{self.describe()}: no vector column '{self.vec_col}' (columns: "
                                   f"{', '.join(schema.names)}); name it with ?vector=COLUMN")
        return list_width(schema.field(self.vec_col).type, self.read_batches(1))

    def read_batches(self, batch_size: int, cursor: Any = None) -> Iterator[Batch]:
        """Cursor: the number of rows already read (LanceDB scans in a fixed order).

        One query per batch: a streaming scan reads batches ahead of a slow consumer, and for
        a million 384-d rows in 65,536-row batches its peak held about 240 MB more than a page at a time."""
        total = self.count()
        offset = int(cursor or 0)
        while offset < total:
            with self._readable():
                page = self.table().search().offset(offset).limit(batch_size).to_arrow()
            if not page.num_rows:
                return
            offset += page.num_rows
            yield table_to_batch(page, self.id_col, self.vec_col, offset if offset < total else None,
                                 self.describe(), offset - page.num_rows)

    def read_ids(self, ids: list[PointId]) -> Batch:
        found: dict[PointId, tuple] = {}
        for start in range(0, len(ids), 1000):
            part = ", ".join(_sql_literal(v) for v in ids[start:start + 1000])
            with self._readable():
                table = self.table().search().where(f"{self.id_col} IN ({part})").limit(None).to_arrow()
            got = table_to_batch(table, self.id_col, self.vec_col, None, self.describe())
            found.update({i: (v, p) for i, v, p in zip(got.ids, got.vectors, got.payloads, strict=True)})
        order = [i for i in ids if i in found]
        vectors = np.stack([found[i][0] for i in order]) if order else np.zeros((0, self.dim() or 0), np.float32)
        return Batch(order, vectors, [found[i][1] for i in order])

    def space_counts(self) -> dict[str, int]:
        if SPACE_FIELD not in self.table().schema.names:
            return {"": self.count()} if self.count() else {}
        counts: dict[str, int] = {}
        with self._readable():
            for rb in self.table().search().select([SPACE_FIELD]).limit(None).to_batches(65_536):
                for value in map(space_key, rb.column(0).to_pylist()):
                    counts[value] = counts.get(value, 0) + 1
        return counts

    def create(self, dim: int, like: Connector | None = None, sample: Batch | None = None) -> None:
        import pyarrow as pa

        self._writable()
        if self.exists():
            raise VectorStoreError(f"{self.describe()}: the table already exists")
        # an Arrow source (Parquet, LanceDB) gives the shadow its columns and types now; for another, the table
        # is made by the first write (its columns follow the data) unless the source is empty, so that a
        # switch has a table to serve
        schema = shadow_schema(like, self.id_col, self.vec_col, dim)
        if schema is None and sample is None:
            schema = pa.schema([pa.field(self.id_col, pa.string()), pa.field(self.vec_col, pa.list_(pa.float32(), dim)),
                                pa.field(SPACE_FIELD, pa.string())])
        if schema is not None:
            self._check_names(schema.names)
            self._table = self.db.create_table(self.collection, schema=schema)

    def _check_names(self, names: list[str]) -> None:
        """Lance reads a '.' in a top-level name as a path into a struct and fails in its own words."""
        dotted = [n for n in names if "." in n]
        if dotted:
            raise VectorStoreError(f"{self.describe()}: column '{shown_name(dotted[0])}': LanceDB column names "
                                   "cannot contain '.' (it reads one as a path into a struct field); rename the "
                                   "field in the source, then migrate again")

    def arrow_schema(self) -> Any:
        """The table's columns and types, which a migration's shadow keeps."""
        return self.table().schema

    def drop(self) -> None:
        if self._link(self.collection).is_symlink():
            raise VectorStoreError(f"{self.describe()}: is an alias; drop the table it points at instead")
        if self.exists():
            self.db.drop_table(self.collection)
        self._table = None

    def write(self, batch: Batch) -> None:
        if not len(batch):
            return
        check_write_batch(self, batch, batch.vectors.shape[1])
        with lance_io(self.describe()):
            if self._table is None and not self.exists():
                data = batch_to_table(batch, self.id_col, self.vec_col, where=self.uri.raw)
                self._check_names(data.schema.names)
                self._table = self.db.create_table(self.collection, data=data)
                return
            table = self.table()
            data = batch_to_table(batch, self.id_col, self.vec_col, table.schema, self.uri.raw)
            self._check_names(data.schema.names)
            self._unsigned_ids(table, data.schema)
            wanted = widen_schema(table.schema, data.schema)
            if wanted != table.schema:
                self._widen(table, wanted)
            table.add(fit_table(data, wanted))

    def _unsigned_ids(self, table: Any, got: Any) -> None:
        """Ids from 2^63 on after smaller ones (a Qdrant collection read in id order): the int64 id column the
        first batches made becomes uint64 (Lance casts it safely: a negative id refuses)."""
        import pyarrow as pa

        if pa.types.is_int64(table.schema.field(self.id_col).type) and pa.types.is_uint64(got.field(self.id_col).type):
            try:
                table.alter_columns({"path": self.id_col, "data_type": pa.uint64()})
            except (RuntimeError, ValueError, OSError) as exc:
                raise VectorStoreError(f"{self.describe()}: ids from 2^63 on need an unsigned id column, and the "
                                       f"table's cannot become one ({first_line(exc)})") from exc

    def _widen(self, table: Any, wanted: Any) -> None:
        """Give a column null in every row so far the type a batch brings, and add the batch's new fields as
        columns (null before): one schema for the table, rather than the first batch's guess. An all-null
        column is dropped and added again in its type (Lance cannot cast a null column); nothing is lost."""
        import pyarrow as pa

        current = table.schema
        typed = [f for f in wanted if f.name in current.names and f.type != current.field(f.name).type]
        if typed:
            table.drop_columns([f.name for f in typed])
        added = typed + [f for f in wanted if f.name not in current.names]
        table.add_columns(pa.schema(added))

    def delete_ids(self, ids: list[PointId]) -> None:
        if not ids or not self.exists():
            return
        for start in range(0, len(ids), 1000):
            part = ", ".join(_sql_literal(v) for v in ids[start:start + 1000])
            self.table().delete(f"{self.id_col} IN ({part})")

    def alias_target(self, alias: str) -> str | None:
        target = link_target(self._link(alias))
        return target[:-len(".lance")] if target and target.endswith(".lance") else target

    def alias_definition(self, alias: str) -> str | None:
        return link_target(self._link(alias))

    def alias_what(self, alias: str) -> str:
        return f"a symbolic link {self._link(alias)} -> {link_target(self._link(alias))}"

    def set_alias(self, alias: str, target: str) -> None:
        if not self._link(target).is_dir():
            raise VectorStoreError(f"{self.root}: no table '{target}' to serve")
        swap_link(self._link(alias), f"{target}.lance")


INDEX_CONFIGS = {"IVF_PQ": "IvfPq", "IVF_FLAT": "IvfFlat", "IVF_SQ": "IvfSq", "IVF_RQ": "IvfRq",
                 "IVF_HNSW_PQ": "IvfHnswPq", "IVF_HNSW_SQ": "IvfHnswSq", "IVF_HNSW_FLAT": "IvfHnswFlat"}


@contextmanager
def lance_io(where: str) -> Iterator[None]:
    """A write Lance's Rust core failed for the machine's reason (a full disk, a permission), which it
    raises as a RuntimeError naming its own source file: one line naming the table and the reason."""
    try:
        yield
    except (RuntimeError, OSError) as exc:
        code = os_error_number(str(exc))
        if code is None:
            raise
        advice = "; free some space and run the same command again" if code == errno.ENOSPC else ""
        raise VectorStoreError(f"{where}: cannot write ({os.strerror(code)}){advice}") from exc
