"""How a PostgreSQL table's payload columns travel: read into Python values, written back by ``COPY``.

Types whose values psycopg reads into Python objects that a binary ``COPY`` writes back unchanged
(``BINARY_TYPES``, by their fixed built-in oids) are read as themselves; the others (``char(n)``, enums,
bit strings, geometric and network types, arrays, intervals, domains, extension types) as their text
form, which a text ``COPY`` hands back to the server to parse with the column's own input function. A
table whose written columns are all of the first kind is written by a binary ``COPY``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from embridge.core.connectors import pg_catalog, pg_columns
from embridge.core.connectors.connector import SPACE_FIELD, VectorStoreError

BINARY_TYPES = frozenset({16, 17, 20, 21, 23, 25, 114, 700, 701, 1043, 1082, 1083, 1114, 1184, 1700, 2950,
                          3802})  # not interval (1186): psycopg reads its months as days
JSON_TYPES = frozenset({114, 3802})


def finite_json(conn: Any) -> None:
    """JSON numbers are read as doubles (as Qdrant and Chroma hold them); one beyond a double's range
    (``1e400``, valid in a ``json`` column) is refused naming it, not read as infinity, which no JSON
    column takes back (the migration failed midway on every rerun)."""
    from psycopg.types.json import set_json_loads

    set_json_loads(lambda data: json.loads(data, parse_float=_finite), conn)


class JsonNumberError(ValueError):
    """A JSON number no double holds (what a reader turns into one line naming the table)."""


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonNumberError(f"the JSON number {text[:40]} is beyond the range of a double, which Embridge reads "
                              "JSON numbers as; write it as text or bring it into range")
    return value


def select_list(conn: Any, name: str, schema: str | None, fixed: list[str], others: list[str]) -> Any:
    """``fixed`` columns, then the payload columns ``others``, those of a type outside ``BINARY_TYPES`` as
    their text form (a binary read would hand over raw bytes for an enum or a bit string)."""
    from psycopg import sql

    oids = pg_catalog.column_oids(conn, name, schema) if others else {}
    return sql.SQL(", ").join([*(sql.Identifier(c) for c in fixed), *(
        sql.Identifier(c) if oids.get(c) in BINARY_TYPES else sql.SQL("{}::text").format(sql.Identifier(c))
        for c in others)])


def sample_types(sample: Any) -> tuple[str, dict[str, str]]:
    """(the id column's type, each payload field's) for a new table, from the first batch's points (a
    field null in all of them gets its column when a later batch brings a value)."""
    payload_types: dict[str, str] = {}
    for payload in (sample.payloads if sample is not None else []):
        for key, value in payload.items():
            if value is not None and key not in payload_types:
                payload_types[key] = pg_columns.pg_type(value)
    payload_types.setdefault(SPACE_FIELD, "text")
    id_type = pg_columns.pg_type(sample.ids[0]) if sample is not None and len(sample) else "text"
    return id_type, payload_types


@contextmanager
def python_values(where: str) -> Iterator[None]:
    """A value psycopg cannot turn into Python (a date or timestamp of 'infinity') as one line naming
    ``where``, not an unexpected error."""
    import psycopg

    try:
        yield
    except JsonNumberError as exc:
        raise VectorStoreError(f"{where}: a row holds a value that cannot be read ({exc})") from exc
    except psycopg.DataError as exc:
        raise VectorStoreError(f"{where}: a row holds a value that cannot be read "
                               f"({str(exc).strip().splitlines()[0]}); dates and timestamps of 'infinity' are "
                               "such values: replace them in the source, or give that column a finite "
                               "value, before reading it") from exc


@contextmanager
def refused_rows(where: str, width: int) -> Iterator[None]:
    """Rows the server refuses (a constraint, a generated column or an index of the table that computes on the
    vectors at another width) as one line naming the table and the server's reason, not an unexpected error."""
    import psycopg

    try:
        yield
    except (psycopg.errors.DataException, psycopg.errors.IntegrityError) as exc:
        computed = isinstance(exc, psycopg.errors.DataException | psycopg.errors.CheckViolation)
        hint = (f"; a constraint, generated column or index of the table may compute on the vectors as the old "
                f"model's, where these are {width}-d") if computed else ""
        raise VectorStoreError(f"{where}: the server refused the rows ({str(exc).strip().splitlines()[0]}){hint}") \
            from exc


def copy_rows(conn: Any, rel: Any, name: str, schema: str | None, vec_col: str, cols: list[str],
              rows: Iterable[list[Any]]) -> None:
    """Write ``rows`` (values of ``cols``, the vector as an array) into the table in one transaction:
    a binary ``COPY`` when every column's type allows it, else a text one the server parses."""
    from psycopg import sql

    oids = pg_catalog.column_oids(conn, name, schema)
    binary = all(oids[c] in BINARY_TYPES for c in cols if c != vec_col)
    copy = sql.SQL("copy {} ({}) from stdin" + (" (format binary)" if binary else "")).format(
        rel, sql.SQL(", ").join(sql.Identifier(c) for c in cols))
    with conn.transaction(), conn.cursor() as cur, cur.copy(copy) as cp:
        if binary:
            cp.set_types([oids[c] if c != vec_col else "vector" for c in cols])
        for row in rows:
            cp.write_row(row if binary else [_text_value(v, oids[c]) for c, v in zip(cols, row, strict=True)])


def _text_value(value: Any, oid: int) -> Any:
    """A value for a text COPY: a JSON column's values as JSON (a list would otherwise be written as an
    array, a string without its quotes)."""
    if oid in JSON_TYPES and value is not None:
        from psycopg.types.json import Jsonb

        return Jsonb(value)
    return value
