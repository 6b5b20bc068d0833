"""Which Arrow types hold the same kind of value, so that a cast between them changes no value.

Arrow casts far more than it keeps: an integer or a boolean casts to text (100 to '100'), text to bytes,
a naive time to a zoned one. A store migration writes a point's payload in its column's type, and a
Parquet dataset's files are read as one table, so every such cast is checked here first: within a
family (int8 to int64, float32 to float64, string to large_string, members of lists, maps and structs
alike), or integers into floats, and nothing else.
"""

from __future__ import annotations

from typing import Any


def _family(arrow_type: Any) -> str:
    """What a plain type holds, whatever its width or unit: a cast keeps values only within one family."""
    import pyarrow as pa

    t = pa.types
    for family, test in (("integer", t.is_integer), ("floating", t.is_floating), ("boolean", t.is_boolean),
                         ("text", lambda x: t.is_string(x) or t.is_large_string(x) or _view(x, "string")),
                         ("bytes", lambda x: t.is_binary(x) or t.is_large_binary(x) or t.is_fixed_size_binary(x)
                          or _view(x, "binary")),
                         ("date", t.is_date), ("time", t.is_time), ("duration", t.is_duration),
                         ("decimal", t.is_decimal)):
        if test(arrow_type):
            return family
    if t.is_timestamp(arrow_type):  # a naive wall-clock time is not an instant: a cast would move it
        return "timestamp" if arrow_type.tz is None else "zoned timestamp"
    return str(arrow_type)


def castable(given: Any, column: Any) -> bool:
    """Whether values of type ``given`` may be cast into a column of type ``column``: within one family
    (int64 into int8 when every value fits, a struct's or list's members alike), or integers into a float
    column; never into another kind of value, which Arrow's casts allow (an integer or a bool into text,
    text into bytes, a naive time into a zoned one)."""
    import pyarrow as pa

    t = pa.types
    given = given.value_type if t.is_dictionary(given) else given
    column = column.value_type if t.is_dictionary(column) else column
    if t.is_null(given):  # a column of nulls takes any type
        return True
    lists = (t.is_list, t.is_large_list, t.is_fixed_size_list)
    if any(test(given) for test in lists) and any(test(column) for test in lists):
        return castable(given.value_type, column.value_type)  # lists cast element by element
    if t.is_map(given) and t.is_map(column):
        return castable(given.key_type, column.key_type) and castable(given.item_type, column.item_type)
    if t.is_struct(given) and t.is_struct(column):  # keys one side lacks are said where structs are fitted
        names = {column.field(i).name: column.field(i).type for i in range(column.num_fields)}
        return all(castable(given.field(i).type, names[given.field(i).name])
                   for i in range(given.num_fields) if given.field(i).name in names)
    held, holds = _family(given), _family(column)
    return held == holds or (held, holds) == ("integer", "floating")


def _view(arrow_type: Any, kind: str) -> bool:
    """Whether the type is Arrow's ``string_view`` / ``binary_view`` (newer pyarrow releases only)."""
    import pyarrow as pa

    test = getattr(pa.types, f"is_{kind}_view", None)
    return bool(test and test(arrow_type))


def same_values(got: Any, given: Any) -> bool:
    """Equal values of the same kinds: Python takes True for 1.0 and 2.0 for 2, a column must not."""
    if isinstance(got, list | tuple) and isinstance(given, list | tuple):
        return len(got) == len(given) and all(same_values(a, b) for a, b in zip(got, given, strict=True))
    if isinstance(got, dict) and isinstance(given, dict):
        return got.keys() == given.keys() and all(same_values(got[k], given[k]) for k in got)
    numbers = (bool, int, float)
    if isinstance(got, numbers) or isinstance(given, numbers):
        return type(got) is type(given) and got == given
    return bool(got == given)
