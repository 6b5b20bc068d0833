"""Payload values that a JSON-like store (Qdrant, Chroma) keeps as they are, checked before a write.

Such a store converts what it cannot hold on its own: qdrant-client writes a timestamp, date, decimal or
duration as text and bytes as text (or fails on bytes that are not UTF-8), and Chroma stores an integer
beyond 64 bits as a rounded float, so distinct values become one. A migration must never change what it
copies, so such a value is refused before the batch is written, naming the point and the field.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections.abc import Sequence
from typing import Any

from embridge.core.connectors.connector import VectorStoreError
from embridge.core.formatting import shown_name

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def value_problem(value: Any, nested: bool) -> str | None:
    """What is wrong with one payload value for a store of JSON-like values (None: nothing); ``nested``:
    the store holds objects and lists of any depth (Qdrant), else plain values and flat lists (Chroma)."""
    if value is None or isinstance(value, bool | str):
        return None
    if isinstance(value, float):  # Chroma drops a NaN or infinite value's key (and fails on one in a list)
        return None if nested or math.isfinite(value) else f"the number {value}"
    if isinstance(value, int):
        return None if INT64_MIN <= value <= INT64_MAX else f"the integer {value}, beyond 64 bits"
    if isinstance(value, list):
        if not nested and (problem := _flat_list_problem(value)) is not None:
            return problem
        return next((p for item in value if (p := value_problem(item, nested)) is not None), None)
    if isinstance(value, dict):
        if not nested:
            return "a nested object"
        return next((p for v in value.values() if (p := value_problem(v, nested)) is not None), None)
    return f"a {_kind(value)}"


def _flat_list_problem(value: list[Any]) -> str | None:
    """What Chroma refuses in a list (in its own words, naming no point): an empty one, a null or a list or
    object in it, or values of more than one type."""
    if not value:
        return "an empty list"
    if any(item is None or isinstance(item, list | dict) for item in value):
        return "a list holding nulls, lists or objects"
    if len({type(item) for item in value}) > 1:
        return "a list of values of several types"
    return None


def _kind(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return "timestamp"
    if isinstance(value, dt.date):
        return "date"
    if isinstance(value, dt.time):
        return "time of day"
    if isinstance(value, dt.timedelta):
        return "duration"
    if isinstance(value, decimal.Decimal):
        return "decimal"
    if isinstance(value, bytes | bytearray | memoryview):
        return "binary value"
    if isinstance(value, tuple):
        return "map or tuple"
    return type(value).__name__


def check_payloads(describe: str, ids: Sequence[Any], payloads: Sequence[dict[str, Any] | None], nested: bool,
                   store: str) -> None:
    """Refuse the first payload value ``store`` would not keep as it is, naming its point and field."""
    for pid, payload in zip(ids, payloads, strict=True):
        for field, value in (payload or {}).items():
            problem = value_problem(value, nested)
            if problem is not None:
                raise VectorStoreError(f"{describe}: point {pid!r}: payload field '{shown_name(str(field))}' holds "
                                       f"{problem}, which {store} would not keep as it is (it would be stored as "
                                       "something else); convert the field in the source, then migrate again")
