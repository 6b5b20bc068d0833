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


def create_like(conn: Any, table: Any, source: Any, vec_col: str, dim: int) -> list[str]:
    """``table`` made like ``source`` (quoted relations), its vector column ``vec_col`` ``dim`` wide: defaults,
    constraints, generated columns, indexes (a vector index too, rebuilt at the new width) and an identity,
    so the shadow serves the alias once switched as the source served it.

    What described the old model's vectors does not carry over as it was: a default vector of the old
    width is dropped, a CHECK constraint on the vector column (its width, its norm) is left out, and a
    column generated from the vector is generated again from the new one. Returns a note for each.
    """
    from psycopg import sql

    conn.execute(sql.SQL("create table {} (like {} including defaults including constraints including generated "
                         "including indexes including identity)").format(table, source))
    rel, column = table.as_string(conn), sql.Identifier(vec_col)
    attnum = "(select attnum from pg_attribute where attrelid = %(rel)s::regclass and attname = %(col)s)"
    params = {"rel": rel, "col": vec_col}
    notes = []
    checks = conn.execute("select conname, pg_get_constraintdef(oid) from pg_constraint where conrelid = "
                          f"%(rel)s::regclass and contype = 'c' and {attnum} = any(conkey) order by conname",
                          params).fetchall()
    for name, definition in checks:
        conn.execute(sql.SQL("alter table {} drop constraint {}").format(table, sql.Identifier(name)))
        notes.append(f"the shadow leaves out the constraint '{name}' ({definition}): it tests the vector column, "
                     "whose vectors are now the new model's")
    generated = conn.execute(
        # the expression depends on the column through its pg_attrdef row (or, in some versions, the column)
        "select distinct a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), pg_get_expr(ad.adbin, ad.adrelid) "
        "from pg_attribute a join pg_attrdef ad on ad.adrelid = a.attrelid and ad.adnum = a.attnum "
        "join pg_depend d on (d.classid = 'pg_attrdef'::regclass and d.objid = ad.oid) or (d.classid = "
        "'pg_class'::regclass and d.objid = a.attrelid and d.objsubid = a.attnum) "
        "where a.attrelid = %(rel)s::regclass and a.attgenerated = 's' and d.refobjid = %(rel)s::regclass "
        f"and d.refobjsubid = {attnum} order by a.attnum", params).fetchall()
    for _, name, _, _ in generated:  # PostgreSQL cannot change the type of a column another is generated from
        conn.execute(sql.SQL("alter table {} drop column {}").format(table, sql.Identifier(name)))
    default = conn.execute("select pg_get_expr(adbin, adrelid) from pg_attrdef where adrelid = %(rel)s::regclass "
                           f"and adnum = {attnum}", params).fetchone()
    if default:
        conn.execute(sql.SQL("alter table {} alter column {} drop default").format(table, column))
        notes.append(f"the shadow leaves out the vector column's default ({default[0]}): a vector of the old model")
    conn.execute(sql.SQL("alter table {} alter column {} type vector({})").format(table, column, sql.Literal(int(dim))))
    for _, name, kind, expression in generated:
        conn.execute(sql.SQL("alter table {} add column {} {} generated always as ({}) stored").format(
            table, sql.Identifier(name), sql.SQL(kind), sql.SQL(expression)))
        notes.append(f"the shadow computes its column '{name}' ({expression}) from the new vectors")
    return notes


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
    (dt.timedelta, "interval"), (uuid.UUID, "uuid"), (bytes | bytearray | memoryview, "bytea"))


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
         "date": (dt.date,), "uuid": (uuid.UUID,), "bytea": (bytes, bytearray, memoryview), "timestamp with time zone": (dt.datetime,),
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
