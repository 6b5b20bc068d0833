"""PostgreSQL with pgvector: ``postgresql://user@host:5432/db?table=docs&column=embedding``.

``table`` names the table (or view), ``SCHEMA.TABLE`` one of a schema (see :mod:`~embridge.core.connectors.pg_catalog`),
``column`` its vector column (default ``embedding``), ``id`` its key column (default ``id``); every other column is
payload. Other query parameters (``host=`` for a socket folder, ``sslmode=``...) go to the server unchanged. Rows are
read in key order with keyset paging, written with binary ``COPY`` (one transaction per batch). An alias is a view: a
switch drops and recreates it inside one transaction, so a reader sees the old table or the new one. Migration
checkpoints live in an ``embridge_state`` table of the table's schema. A ``vector`` column declared without a
dimension is read at the width of its rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np

from embridge.core.connectors import pg_binary, pg_catalog, pg_columns, pg_payload
from embridge.core.connectors.connector import (
    SPACE_FIELD,
    Batch,
    Connector,
    PointId,
    StoreURI,
    VectorStoreError,
    check_write_batch,
    encode_query,
)
from embridge.core.connectors.pg_quiet import quiet_interrupts
from embridge.core.credentials import masked, scrubbed

OUR_PARAMS = ("table", "collection", "column", "id", "alias")
TEXT_KEYS = ("text", "character varying", "character", "varchar")


class PgVectorConnector(Connector):
    scheme = "postgresql"
    single_client = False
    aliases_may_be_users = one_id_type = True  # its id column is typed by the first id written

    def __init__(self, uri: StoreURI) -> None:
        import psycopg

        super().__init__(uri)
        self.schema = pg_catalog.name_parts(self.collection, None)[0] if "." in self.collection else None
        self.vec_col = uri.param("column", "vector", default="embedding") or "embedding"
        self.id_col = uri.param("id", default="id") or "id"
        rest, shown = {k: v for k, v in uri.params.items() if k not in OUR_PARAMS}, uri.shown.split("?", 1)[0]
        # libpq takes the scheme in lower case only, where the parser took 'PostgreSQL://' as this store
        self.conninfo = uri.scheme + uri.raw.split("?", 1)[0][len(uri.scheme):] + (f"?{encode_query(rest)}" if rest else "")
        quiet_interrupts()
        try:
            self.conn = psycopg.connect(self.conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise VectorStoreError(f"{shown}: cannot connect to PostgreSQL "
                                   f"({scrubbed(str(exc).strip().splitlines()[0], uri.raw)})") from None  # libpq's quotes it
        try:
            from pgvector.psycopg import register_vector

            register_vector(self.conn)
            pg_payload.finite_json(self.conn)
        except psycopg.ProgrammingError as exc:
            raise VectorStoreError(f"{shown}: the pgvector extension is not installed in this database "
                                   "(CREATE EXTENSION vector)") from exc

    @staticmethod
    def collection_name(uri: StoreURI) -> str:
        name = uri.param("table", "collection")
        if not name:
            raise VectorStoreError(f"{uri.shown}: no table named (add ?table=NAME&column=VECTOR_COLUMN)")
        return name

    def describe(self) -> str:
        return f"PostgreSQL {self.uri.shown.split('?', 1)[0]} table '{self.collection}'"

    def location(self) -> str:
        return masked(self.conninfo)  # it names the store in checkpoints and messages: never its password

    def _ident(self, *names: str) -> Any:
        from psycopg import sql

        return sql.SQL(", ").join(sql.Identifier(n) for n in names)

    def with_collection(self, name: str) -> Connector:
        """A table of the same database: ``SCHEMA.TABLE`` in its own schema (and its checkpoints in that
        schema's ``embridge_state``), a bare name beside this table."""
        other = super().with_collection(name)
        if "." in name:
            assert isinstance(other, PgVectorConnector)
            other.schema = pg_catalog.name_parts(name, None)[0]
        return other

    def checkpoint_holder(self, collection: str) -> Connector:
        return self.with_collection(collection) if "." in collection else self  # another schema's state table

    def _rel(self, name: str | None = None) -> Any:
        """A relation of this store as an SQL identifier: a bare name lies in this table's schema."""
        return pg_catalog.identifier(name or self.collection, self.schema)

    def _columns(self) -> list[tuple[str, str]]:
        return pg_catalog.columns(self.conn, self.collection, self.schema)

    def exists(self) -> bool:
        return bool(self._columns())

    def missing(self) -> str:
        return pg_catalog.missing(self.conn, self.collection, self.schema)

    def _writable(self) -> None:
        super()._writable()
        parts = pg_catalog.name_parts(self.collection, self.schema)
        if len(parts) == 2 and not pg_catalog.schema_exists(self.conn, parts[0]):
            raise VectorStoreError(f"{self.describe()}: {self.missing()}")
        pg_catalog.require_writable(self.conn, self.schema, self.describe(), self.exists,
                                    f"migrate-{self.collection}")

    def _lock_name(self, key: str) -> str:
        return f"embridge job {self.schema or 'public'} {key}"  # advisory locks are per database

    def server_lock(self, key: str) -> bool | None:
        return pg_catalog.try_advisory_lock(self.conn, self._lock_name(key))

    def server_unlock(self, key: str) -> None:
        pg_catalog.advisory_unlock(self.conn, self._lock_name(key))

    def alias_key(self, alias: str) -> str:
        return "alias-" + ".".join(pg_catalog.name_parts(alias, self.schema))

    def _need(self) -> list[tuple[str, str]]:
        cols = self._columns()
        if not cols:
            raise VectorStoreError(f"{self.describe()}: {self.missing()}")
        names = [c for c, _ in cols]
        for col, what in ((self.id_col, "id (?id=COLUMN)"), (self.vec_col, "vector (?column=COLUMN)")):
            if col not in names:
                raise VectorStoreError(f"{self.describe()}: no {what} column '{col}' (columns: {', '.join(names)})")
        return cols

    def count(self) -> int:
        from psycopg import sql

        self._need()
        return int(self.conn.execute(sql.SQL("select count(*) from {}").format(self._rel()))
                   .fetchone()[0])

    def dim(self) -> int | None:
        types = dict(self._need())
        self._key_kind(types)
        return self._vector_dim(types)

    def _key_kind(self, types: dict[str, str]) -> str:
        """int, text or uuid: the id column's kind; ids of other types (numeric, dates...) are refused,
        as they cannot be carried as point ids and checkpoint cursors."""
        kind = types[self.id_col]
        if kind in ("bigint", "integer", "smallint"):
            return "int"
        if kind == "uuid":
            return "uuid"
        if kind.split("(", 1)[0] in TEXT_KEYS:
            return "text"
        raise VectorStoreError(f"{self.describe()}: the id column '{self.id_col}' has type {kind}; point ids must "
                               "be integers, text or uuid (name another column with ?id=COLUMN)")

    def _keys(self, ids: list[PointId], types: dict[str, str] | None = None) -> list[Any]:
        """Ids as the id column takes them (text ids of a uuid column become UUIDs)."""
        if self._key_kind(types or dict(self._need())) != "uuid":
            return list(ids)
        try:
            return [uuid.UUID(str(i)) for i in ids]
        except ValueError as exc:
            raise VectorStoreError(f"{self.describe()}: the id column '{self.id_col}' is uuid, and an id is not a "
                                   f"UUID ({exc})") from exc

    def _no_null_ids(self) -> None:
        pg_catalog.check_ids(self.conn, self.collection, self.schema, self.id_col, self.describe())

    def _vector_dim(self, types: dict[str, str]) -> int | None:
        """The vector column's dimension from its type; a bare ``vector`` has its rows' (None: no rows)."""
        kind = types[self.vec_col]
        if kind.startswith("vector(") and kind.endswith(")"):
            return int(kind[len("vector("):-1])
        if kind == "vector":
            return pg_catalog.vector_width(self.conn, self._rel(), self._ident(self.vec_col),
                                           self._ident(self.id_col))
        raise VectorStoreError(f"{self.describe()}: column '{self.vec_col}' has type {kind}, not a pgvector vector(n)")

    def read_batches(self, batch_size: int, cursor: Any = None) -> Iterator[Batch]:
        """Cursor: the last id read (rows come in id order).

        Integer keys are read a page at a time as a binary COPY decoded by numpy
        (:mod:`~embridge.core.connectors.pg_binary`), with the payload columns from the same snapshot;
        other keys, or a page with a NULL vector, go row by row through the cursor.
        """
        from psycopg import sql

        types = dict(self._need())
        uuids = self._key_kind(types) == "uuid"
        if cursor is None:
            self._no_null_ids()
        cols = list(types)
        others = [c for c in cols if c not in (self.id_col, self.vec_col)]
        select = sql.SQL("select {} from {}").format(pg_payload.select_list(self.conn, self.collection, self.schema, [self.id_col, self.vec_col], others),
                                                     self._rel())
        order = sql.SQL(" order by {} limit %s").format(self._ident(self.id_col))
        where = sql.SQL(" where {} > %s").format(self._ident(self.id_col))
        width = self._vector_dim(types)
        dim = width if types[self.id_col] in pg_binary.INTEGER_KEYS else None
        last = cursor
        while True:
            page = self._fast_page(last, batch_size, others, dim) if dim else None
            if page is None:
                query = select + (where if last is not None else sql.SQL("")) + order
                args = [*self._keys([last], types), batch_size] if last is not None else [batch_size]
                with self.conn.cursor(binary=True) as cur:
                    with pg_payload.python_values(self.describe()):
                        rows = cur.execute(query, args).fetchall()
                if any(r[0] is None for r in rows):
                    raise VectorStoreError(f"{self.describe()}: a row has a NULL id (column '{self.id_col}'); "
                                           "every point needs an id")
                ids = [str(r[0]) if uuids else r[0] for r in rows]
                missing = next((r[0] for r in rows if r[1] is None), None)
                if missing is not None:
                    raise VectorStoreError(f"{self.describe()}: row {self.id_col}={missing!r} has no vector "
                                           f"(column '{self.vec_col}' is NULL)")
                vectors = pg_binary.stack_rows(rows, width, pg_binary.vector_array, f"{self.describe()}: row {self.id_col}=",
                                                f"(column '{self.vec_col}')")
                payloads = [dict(zip(others, r[2:], strict=True)) for r in rows]
                page = (ids, vectors, payloads)
            ids, vectors, payloads = page
            if not ids:
                return
            last = ids[-1]
            yield Batch(ids, vectors, payloads, last if len(ids) == batch_size else None)
            if len(ids) < batch_size:
                return

    def _fast_page(self, last: Any, batch_size: int, others: list[str],
                   dim: int) -> tuple[list[int], np.ndarray, list[dict[str, Any]]] | None:
        """One page as a binary COPY of (key, vector) plus its payload columns, in one snapshot.

        None when the page does not decode (a NULL vector): the caller then reads it row by row.
        """
        from psycopg import sql

        table, key = self._rel(), self._ident(self.id_col)
        where = sql.SQL(" where {} > {}").format(key, sql.Literal(last)) if last is not None else sql.SQL("")
        tail = where + sql.SQL(" order by {} limit {}").format(key, sql.Literal(int(batch_size)))
        with self.conn.transaction():
            self.conn.execute("set transaction isolation level repeatable read")
            with self.conn.cursor() as cur:
                copy = sql.SQL("copy (select {}::bigint, {} from {}{}) to stdout (format binary)").format(
                    key, self._ident(self.vec_col), table, tail)
                blocks = []
                with cur.copy(copy) as cp:
                    while block := cp.read():
                        blocks.append(block)
                decoded = pg_binary.decode_page(b"".join(blocks), dim)
                del blocks
                if decoded is None:
                    return None
                ids = decoded[0].tolist()
                if not others or not ids:
                    return ids, decoded[1], [{} for _ in ids]
                with pg_payload.python_values(self.describe()):
                    rows = cur.execute(sql.SQL("select {} from {}{}").format(
                        pg_payload.select_list(self.conn, self.collection, self.schema, [self.id_col], others), table, tail)).fetchall()
        if [r[0] for r in rows] != ids:
            return None
        return ids, decoded[1], [dict(zip(others, r[1:], strict=True)) for r in rows]

    def read_ids(self, ids: list[PointId]) -> Batch:
        from psycopg import sql

        types = dict(self._need())
        others = [c for c in types if c not in (self.id_col, self.vec_col)]
        query = sql.SQL("select {} from {} where {} = any(%s)").format(
            pg_payload.select_list(self.conn, self.collection, self.schema, [self.id_col, self.vec_col], others), self._rel(), self._ident(self.id_col))
        with self.conn.cursor(binary=True) as cur:
            with pg_payload.python_values(self.describe()):
                found = cur.execute(query, [self._keys(list(ids), types)]).fetchall()
        uuids = self._key_kind(types) == "uuid"
        rows = {str(r[0]) if uuids else r[0]: r for r in found}
        order = [i for i in ids if i in rows]
        vectors = np.stack([pg_binary.vector_array(rows[i][1]) for i in order]) if order else \
            np.zeros((0, self.dim() or 0), np.float32)
        return Batch(order, vectors, [dict(zip(others, rows[i][2:], strict=True)) for i in order])

    def space_counts(self) -> dict[str, int]:
        from psycopg import sql

        if SPACE_FIELD not in dict(self._need()):
            count = self.count()
            return {"": count} if count else {}
        rows = self.conn.execute(sql.SQL("select coalesce({}::text, ''), count(*) from {} group by 1").format(
            self._ident(SPACE_FIELD), self._rel())).fetchall()
        return {str(k): int(v) for k, v in rows}

    def create(self, dim: int, like: Connector | None = None, sample: Batch | None = None) -> None:
        from psycopg import sql

        self._writable()
        if self.exists():
            raise VectorStoreError(f"{self.describe()}: the table already exists")
        table = self._rel()
        with pg_catalog.denied(self.conn, self.describe(), self.schema), self.conn.transaction():
            if isinstance(like, PgVectorConnector) and like.conninfo == self.conninfo and like.exists():
                source = like.alias_target(like.collection) or like.collection
                pg_columns.check_copied_columns(self.conn, self.describe(), source, like.schema,
                                                self.id_col, self.vec_col)
                self.made_notes = tuple(pg_columns.create_like(self.conn, table, like._rel(source), self.vec_col, dim))
                if not any(c == SPACE_FIELD for c, _ in self._columns()):
                    self.conn.execute(sql.SQL("alter table {} add column {} text").format(table,
                                                                                           self._ident(SPACE_FIELD)))
                if not pg_catalog.has_primary_key(self.conn, self.collection, self.schema):
                    self.conn.execute(sql.SQL("alter table {} add primary key ({})").format(
                        table, self._ident(self.id_col)))
                return
            id_type, payload_types = pg_payload.sample_types(sample)
            columns = [sql.SQL("{} {} primary key").format(self._ident(self.id_col), sql.SQL(id_type)),
                       sql.SQL("{} vector({})").format(self._ident(self.vec_col), sql.Literal(int(dim)))]
            columns += [sql.SQL("{} {}").format(self._ident(k), sql.SQL(t)) for k, t in payload_types.items()
                        if k not in (self.id_col, self.vec_col)]
            self.conn.execute(sql.SQL("create table {} ({})").format(table, sql.SQL(", ").join(columns)))

    def drop(self) -> None:
        from psycopg import sql

        self.conn.execute(sql.SQL("drop table if exists {}").format(self._rel()))

    def write(self, batch: Batch) -> None:
        if not len(batch):
            return
        check_write_batch(self, batch, batch.vectors.shape[1])
        types = dict(self._need())
        if pg_columns.add_payload_columns(self.conn, self._rel(), types, batch.payloads):
            types = dict(self._need())
        computed = pg_catalog.generated_columns(self.conn, self.collection, self.schema)  # the table computes them
        payload_cols = [c for c in types if c not in (self.id_col, self.vec_col) and c not in computed]
        keys = self._keys(batch.ids, types)
        pg_columns.check_payload_fits(self.describe(), keys, batch.payloads, types)
        with pg_payload.refused_rows(self.describe(), batch.vectors.shape[1]):
            pg_payload.copy_rows(self.conn, self._rel(), self.collection, self.schema, self.vec_col,
                                 [self.id_col, self.vec_col, *payload_cols],
                                 ([pid, vec, *[payload.get(c) for c in payload_cols]]
                                  for pid, vec, payload in zip(keys, batch.vectors, batch.payloads, strict=True)))
        pg_columns.advance_identity(self.conn, self.collection, self.schema, self.id_col)

    def delete_ids(self, ids: list[PointId]) -> None:
        from psycopg import sql

        if ids and self.exists():
            self.conn.execute(sql.SQL("delete from {} where {} = any(%s)").format(
                self._rel(), self._ident(self.id_col)), [self._keys(list(ids))])

    def alias_target(self, alias: str) -> str | None:
        return pg_catalog.view_target(self.conn, alias, self.schema)

    def metric(self) -> str | None:
        return pg_catalog.index_metric(self.conn, self.collection, self.schema, self.vec_col)

    def alias_definition(self, alias: str) -> str | None:
        return pg_catalog.view_definition(self.conn, alias, self.schema)

    def alias_extras(self, alias: str) -> str | None:
        return pg_catalog.view_extras(self.conn, alias, self.schema)

    def alias_blocked(self, alias: str) -> str | None:
        built_on = pg_catalog.view_dependents(self.conn, alias, self.schema)
        if pg_catalog.relkind(self.conn, alias, self.schema) == "v" and built_on:
            return (f"the view '{alias}' has views built on it ({', '.join(built_on)}), so a switch cannot drop "
                    "and recreate it; point them at a table, or choose another alias name")
        return None

    def alias_what(self, alias: str) -> str:
        return f"a view of table '{self.alias_target(alias)}' in {self.uri.shown.split('?', 1)[0]}"

    def set_alias(self, alias: str, target: str) -> None:
        if pg_catalog.relkind(self.conn, target, self.schema) not in ("r", "p"):
            raise VectorStoreError(f"{self.describe()}: no table '{target}' to serve")
        if pg_catalog.relkind(self.conn, alias, self.schema) not in (None, "v"):
            raise VectorStoreError(f"{self.describe()}: '{alias}' is a table, not an alias view; choose another name")
        blocked = self.alias_blocked(alias)
        if blocked:
            raise VectorStoreError(f"{self.describe()}: {blocked}")
        with pg_catalog.denied(self.conn, self.describe(), self.schema):
            pg_catalog.replace_view(self.conn, alias, target, self.schema)

    # -- checkpoints in the database itself ---------------------------------------------------
    def load_state(self, key: str) -> dict[str, Any] | None:
        return pg_catalog.load_state(self.conn, self.schema, key, self.describe())

    def save_state(self, key: str, state: dict[str, Any] | None) -> None:
        pg_catalog.save_state(self.conn, self.schema, key, state, self.describe())

    def close(self) -> None:
        if not self.borrowed:
            self.conn.close()

