"""Reading pgvector rows as a PostgreSQL binary ``COPY`` stream decoded with numpy.

Reading: through a cursor each row is decoded in Python (about 15 us a row: 15 s per million). A binary
``COPY ... TO STDOUT`` of just the key and the vector is a fixed-width record per row whenever the
key is an integer and no vector is NULL, so numpy views a whole page at once. A page that does
not fit that layout (a NULL vector, a stream this decoder does not recognise) returns None and the
caller reads it row by row: the fast path never guesses.

Writing stays with psycopg's ``write_row``: it streams rows to the server as it encodes them, so the
client's work overlaps the server's parsing, and the server's parse and index update dominate (a
whole batch encoded by numpy first and then sent was measured slower).

Format (PostgreSQL ``COPY``, binary): an 11-byte signature, int32 flags, int32 header extension
length and the extension; per row an int16 field count, then per field an int32 byte length (-1:
NULL) and the bytes; an int16 -1 trailer. All big-endian. The key is sent as ``bigint`` (8 bytes);
a pgvector ``vector`` is int16 dim, int16 unused, then dim float4.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import numpy as np

from embridge.core.connectors.connector import VectorStoreError

INTEGER_KEYS = ("bigint", "integer", "smallint")
SIGNATURE = b"PGCOPY\n\xff\r\n\x00"


def _record(dim: int) -> np.dtype:
    return np.dtype([("fields", ">i2"), ("id_len", ">i4"), ("id", ">i8"), ("vec_len", ">i4"),
                     ("vec_dim", ">i2"), ("vec_unused", ">i2"), ("vec", ">f4", (dim,))])


def decode_page(data: bytes, dim: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(int64 ids, float32 (n, dim) vectors) from a binary COPY of ``(id::bigint, vector)``; None if it does not fit."""
    head = len(SIGNATURE) + 8
    if len(data) < head + 2 or not data.startswith(SIGNATURE) or data[-2:] != b"\xff\xff":
        return None
    (extension,) = struct.unpack_from(">i", data, len(SIGNATURE) + 4)
    start, record = head + extension, _record(dim)
    body = len(data) - start - 2
    if extension < 0 or body < 0 or body % record.itemsize:
        return None
    rows = np.frombuffer(data, dtype=record, count=body // record.itemsize, offset=start)
    if len(rows) and not (np.all(rows["fields"] == 2) and np.all(rows["id_len"] == 8)
                          and np.all(rows["vec_len"] == 4 + 4 * dim) and np.all(rows["vec_dim"] == dim)):
        return None
    return rows["id"].astype(np.int64), rows["vec"].astype(np.float32)


def vector_array(value: Any) -> np.ndarray:
    """A vector read through psycopg as float32: pgvector's binary values come back as ``Vector`` objects."""
    return np.asarray(value.to_numpy() if hasattr(value, "to_numpy") else value, dtype=np.float32)


def stack_rows(rows: list[Any], width: int | None, array: Callable[[Any], np.ndarray], where: str,
               column: str) -> np.ndarray:
    """The vectors of rows read one by one, as (n, width) float32; a row of another width (a column
    declared ``vector`` without a dimension holds any) is refused naming its key."""
    vectors = [array(r[1]) for r in rows]
    for row, vec in zip(rows, vectors, strict=True):
        if width is not None and vec.shape[0] != width:
            raise VectorStoreError(f"{where}{row[0]!r} holds a {vec.shape[0]}-d vector among {width}-d ones "
                                   f"{column}")
    return np.stack(vectors) if vectors else np.zeros((0, width or 0), np.float32)
