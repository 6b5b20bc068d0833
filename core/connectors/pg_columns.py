"""The columns of a table Embridge makes in PostgreSQL: a type for each payload value, a column added
as a field first appears, the check that a batch fits them, and a shadow made like its source.

A shadow made in the source's database copies the source's definition (columns, defaults, constraints,
indexes, identity); one made elsewhere takes its columns from the values it is given.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import Any

from embridge.core.connectors.connector import VectorStoreError
from embridge.core.connectors.pg_catalog import column_oids, identifier, regclass_text


def check_copied_columns(conn: Any, target: str, source: str, schema: str | None, id_col: str, vec_col: str) -> None:
    """A shadow made like its source keeps the source's columns: an id or vector column the target URI
    names that the source lacks is refused before anything is made (it failed on an 'unexpected' error)."""
    have = column_oids(conn, source, schema)
    missing = [f"{what} column '{col}' (?{key}=)" for what, col, key in
               (("id", id_col, "id"), ("vector", vec_col, "column")) if col not in have]
    if missing:
        raise VectorStoreError(f"{target}: names the {' and the '.join(missing)}, which the source table "
                               f"'{source}' lacks; a shadow in the source's database keeps the source's "
                               "columns, so name them as the source does")


def create_like(conn: Any, table: Any, source: Any, vec_col: Any, dim: int) -> None:
    """``table`` made like ``source`` (quoted relations), its vector column ``dim`` wide: defaults,
    constraints, generated columns, indexes (a vector index too, rebuilt at the new width) and an identity,
    so the shadow serves the alias once switched as the source served it."""
    from psycopg import sql

    conn.execute(sql.SQL("create table {} (like {} including defaults including constraints including generated "
                         "including indexes including identity)").format(table, source))
    conn.execute(sql.SQL("alter table {} alter column {} type vector({})").format(table, vec_col, sql.Literal(int(dim))))


def advance_identity(conn: Any, name: str, schema: str | None, id_col: str) -> None:
    """Move an identity (or serial) id column's sequence past the ids written, so rows the application
    inserts without an id after the switch get new ones, as they did in the source."""
    from psycopg import sql

    row = conn.execute("select pg_get_serial_sequence(%s, %s)", [regclass_text(conn, name, schema), id_col]).fetchone()
    if row and row[0]:
        with conn.transaction():
            conn.execute(sql.SQL("select setval(%s, greatest((select max({}) from {}), 1))").format(
                sql.Identifier(id_col), identifier(name, schema)), [row[0]])


def pg_type(value: Any) -> str:
    """The column type a payload value of this Python type is stored in (JSON objects and lists, as
    Qdrant and Chroma payloads hold them, in ``jsonb``; decimals, times and UUIDs, as PostgreSQL and
    Parquet sources hold them, in their own types)."""
    for kinds, name in _TYPES:
        if isinstance(value, kinds):
            return name(value) if callable(name) else name
    return "text"


def _timestamp(value: dt.datetime) -> str:
    return "timestamp with time zone" if value.tzinfo is not None else "timestamp without time zone"


def _time(value: dt.time) -> str:
    return "time with time zone" if value.tzinfo is not None else "time without time zone"


# in this order: a bool is an int, a datetime is a date
_TYPES: tuple[tuple[Any, Any], ...] = (
    (bool, "boolean"), (int, "bigint"), (float, "double precision"), (dict | list, "jsonb"),
    (decimal.Decimal, "numeric"), (dt.datetime, _timestamp), (dt.date, "date"), (dt.time, _time),
    (dt.timedelta, "interval"), (uuid.UUID, "uuid"))


def add_payload_columns(conn: Any, table: Any, types: dict[str, str], payloads: list[dict[str, Any]]) -> bool:
    """Give the shadow a column for each payload field first seen with a value in this batch (schemaless
    stores leave a field out of, or null in, the points that lack it, so the first batch may not show it);
    True when any was added. A field null in every point so far needs none: nothing is written for it."""
    from psycopg import sql

    new: dict[str, str] = {}
    for payload in payloads:
        for key, value in payload.items():
            if value is not None and key not in types and key not in new:
                new[key] = pg_type(value)
    if new:
        with conn.transaction():
            for key, kind in new.items():
                conn.execute(sql.SQL("alter table {} add column {} {}").format(table, sql.Identifier(key),
                                                                                 sql.SQL(kind)))
    return bool(new)


_FITS = {"boolean": (bool,), "bigint": (int,), "integer": (int,), "smallint": (int,), "text": (str,),
         "double precision": (int, float), "real": (int, float), "numeric": (int, decimal.Decimal),
         "date": (dt.date,), "uuid": (uuid.UUID,), "timestamp with time zone": (dt.datetime,),
         "timestamp without time zone": (dt.datetime,), "time without time zone": (dt.time,),
         # read from PostgreSQL as their text form (pg_payload.BINARY_TYPES leaves them out), which a text
         # COPY hands back to the server to parse
         "interval": (dt.timedelta, str), "time with time zone": (dt.time, str)}


def check_payload_fits(where: str, ids: list[Any], payloads: list[dict[str, Any]], types: dict[str, str]) -> None:
    """Refuse a batch holding a point whose payload cannot be written to columns of ``types`` (a field whose
    type differs from point to point, as schemaless stores allow), naming the point and field, before any
    of it is written; only the column types Embridge makes are judged, and only those fields read."""
    judged = {field: want for field, kind in types.items() if (want := _FITS.get(kind)) is not None}
    for pid, payload in zip(ids, payloads, strict=True):
        for field, want in judged.items():
            value = payload.get(field)
            if value is not None and (not isinstance(value, want) or (isinstance(value, bool) and bool not in want)):
                raise VectorStoreError(f"{where}: point {pid!r}: payload field '{field}' holds "
                                       f"{type(value).__name__} {value!r:.40}, but its column is {types[field]} "
                                       "(taken from the points before it); a table column holds one type")
