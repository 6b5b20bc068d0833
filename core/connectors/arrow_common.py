"""Arrow conversions shared by the table-shaped stores (Parquet datasets and LanceDB)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from embridge.core.connectors.arrow_kinds import castable, same_values
from embridge.core.connectors.connector import SPACE_FIELD, Batch, PointId, VectorStoreError
from embridge.core.formatting import shown_name


@contextmanager
def reading_parquet(file: Any, as_input: bool = False) -> Iterator[None]:
    """Arrow's errors for a damaged or foreign Parquet file become one line naming the file: an
    InputError for a file the user gave (``as_input``), else a VectorStoreError (a file of a store)."""
    import pyarrow as pa

    from embridge.core.errors import InputError, first_line

    try:
        yield
    except (OSError, pa.ArrowException) as exc:
        problem = f"is not a readable Parquet file ({first_line(exc)})"
        if as_input:
            raise InputError(file, problem) from exc
        raise VectorStoreError(f"{file}: {problem}") from exc


def release_arrow_memory() -> None:
    """Hand Arrow's freed buffers back to the system now (its pools keep them for reuse otherwise)."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()


def vector_array(vectors: np.ndarray) -> Any:
    import pyarrow as pa

    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel(), type=pa.float32())
    return pa.FixedSizeListArray.from_arrays(flat, int(vectors.shape[1]))


def batch_to_table(batch: Batch, id_col: str, vec_col: str, schema: Any = None, where: str = "") -> Any:
    """An Arrow table of the batch: id, vector, then one column per payload field.

    A column ``schema`` names is built in its type (a payload read back as Python values would be inferred
    as int64, double, timestamp[us] or a narrower decimal); other columns are inferred. The table is not
    fitted to ``schema`` here: :func:`widen_schema` and :func:`fit_table` do that, so a new field or a
    column null so far is seen rather than dropped or fixed as null. A refusal starts with ``where`` (the
    store written) and names a point whose value does not fit."""
    import pyarrow as pa

    names: list[str] = []
    for pid, payload in zip(batch.ids, batch.payloads, strict=True):
        for key in payload:
            if key not in names and key not in (id_col, vec_col):
                names.append(key)
        _check_no_shadowed_field(pid, payload, id_col, vec_col)
    known = {f.name: f.type for f in schema} if schema is not None else {}
    try:
        columns = {id_col: _column(batch.ids, known.get(id_col), id_col, batch.ids, what="id column"),
                   vec_col: vector_array(batch.vectors)}
        for name in names:
            columns[name] = _column([p.get(name) for p in batch.payloads], known.get(name), name, batch.ids)
        for name, column in columns.items():
            if (empty := empty_object(column.type, name)) is not None:
                raise VectorStoreError(f"payload field '{empty}' is an empty object ({{}}) in every point of the "
                                       "batch: an Arrow column cannot hold an object with no keys (its rows would "
                                       "read back shifted); drop the field or give it a key")
    except VectorStoreError as exc:
        raise VectorStoreError(f"{where}: {exc}" if where else str(exc)) from exc
    return pa.table(columns)


def empty_object(arrow_type: Any, path: str) -> str | None:
    """The path of an object type with no fields inside ``arrow_type`` (``opts``, ``meta.tags[]``), if any."""
    import pyarrow as pa

    if pa.types.is_struct(arrow_type):
        if arrow_type.num_fields == 0:
            return path
        return next((found for i in range(arrow_type.num_fields)
                     if (found := empty_object(arrow_type.field(i).type, f"{path}.{arrow_type.field(i).name}"))), None)
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type) or pa.types.is_fixed_size_list(arrow_type):
        return empty_object(arrow_type.value_type, f"{path}[]")
    return None


def lost_key(source: Any, target: Any, path: str) -> str | None:
    """The path of an object key that holds values in ``source`` but that ``target`` lacks: Arrow casts
    objects by key name, so casting would drop its values (a key seen first in a later batch)."""
    import pyarrow as pa

    if pa.types.is_struct(source) and pa.types.is_struct(target):
        keys = {target.field(i).name: target.field(i).type for i in range(target.num_fields)}
        for i in range(source.num_fields):
            field = source.field(i)
            if field.name not in keys:
                if not pa.types.is_null(field.type):
                    return f"{path}.{field.name}"
            elif (deeper := lost_key(field.type, keys[field.name], f"{path}.{field.name}")) is not None:
                return deeper
    elif all(pa.types.is_list(t) or pa.types.is_large_list(t) for t in (source, target)):
        return lost_key(source.value_type, target.value_type, f"{path}[]")
    return None


def _refuse_lost_key(source: Any, target: Any, name: str) -> None:
    key = lost_key(source, target, name)
    if key is not None:
        raise VectorStoreError(f"payload field '{key}' holds values, but the column the earlier points made for "
                               f"'{name}' has no such key, so they would be dropped; give every point's '{name}' "
                               "the same keys (or a key holding null where it has no value)")


def _odd_one(values: list[Any], ids: list[Any]) -> str:
    """'point 7 holds a str where point 1 holds an int; ': the first value whose Python type differs."""
    first = next(((i, v) for i, v in enumerate(values) if v is not None), None)
    if first is None:
        return ""
    for i, value in enumerate(values):
        if value is not None and type(value) is not type(first[1]):
            return (f"point {shown_name(str(ids[i]))} holds {_a(type(value).__name__)} where point "
                    f"{shown_name(str(ids[first[0]]))} holds {_a(type(first[1]).__name__)}; ")
    return ""


def _a(noun: str) -> str:
    return f"{'an' if noun[:1] in 'aeiou' else 'a'} {noun}"


def _unsigned(values: list[Any]) -> Any:
    """The values as a uint64 column when every one is a whole number from 0 to 2^64 - 1 (or null), else None."""
    import pyarrow as pa

    if all(v is None or (type(v) is int and 0 <= v < 2**64) for v in values):
        return pa.array(values, pa.uint64())
    return None


def _column(values: list[Any], arrow_type: Any, name: str, ids: list[Any], what: str = "payload field") -> Any:
    """The values in the column's type when known: inferred, then cast safely (an int64 fits an int8 or
    uint32 column, a timestamp[us] one of ms, only when no value changes), else converted straight to it
    (a map, which inference cannot make) when no value changes. Values that fit no type are refused naming
    the field."""
    import pyarrow as pa

    inferred, problem = None, None
    if getattr(arrow_type, "unit", None) == "ns":  # inference takes microseconds: nanoseconds would be cut
        try:
            exact = pa.array(values, type=arrow_type)
            if same_values(exact.to_pylist(), values):
                return exact
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            pass
    try:
        inferred = pa.array(values)
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
        problem = exc
        inferred = _unsigned(values)  # integers from 2^63 on (a Qdrant id, a uint64 field): inference stops at int64
    if arrow_type is None or pa.types.is_null(arrow_type) or (inferred is not None and inferred.type == arrow_type):
        if inferred is None:
            raise VectorStoreError(f"{what} '{name}' holds values of types that no one Arrow column "
                                   f"holds ({_odd_one(values, ids)}{problem})")
        return inferred  # a null-typed column takes what comes (widen_schema)
    if inferred is not None:
        _refuse_lost_key(inferred.type, arrow_type, name)
    if inferred is not None and castable(inferred.type, arrow_type):  # never 100 as '100', True as 'true'
        try:
            return inferred.cast(arrow_type)  # safe: a value the column cannot hold as it is fails here
        except pa.ArrowInvalid:
            return inferred  # fit_table refuses it, naming the column and both types
        except (pa.ArrowNotImplementedError, pa.ArrowTypeError):
            pass
    try:
        converted = pa.array(values, type=arrow_type)
        if same_values(converted.to_pylist(), values):  # a straight conversion truncates (2.5 into int64)
            return converted
        problem = ValueError("a value would change")
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
        problem = exc
    raise VectorStoreError(f"{what} '{name}' holds values that do not fit its column's type {arrow_type} "
                           f"({problem})")


def widen_schema(known: Any, got: Any, promote: bool = False) -> Any:
    """``known`` grown to hold ``got``: a column null in every row so far takes the type a later batch
    brings, and a field new in ``got`` becomes a column (null in the earlier rows), so that the first
    batch's all-null column does not fix its type as null. With ``promote`` a column of another type
    widens too where Arrow can (int64 then double), for a store that rewrites what it wrote."""
    import pyarrow as pa

    fields = []
    for field in known:
        if field.name in got.names:
            other = got.field(field.name).type
            if pa.types.is_null(field.type) and not pa.types.is_null(other):
                field = field.with_type(other).with_nullable(True)
            elif promote and pa.types.is_int64(field.type) and pa.types.is_uint64(other):
                # ids from 2^63 on after smaller ones (a Qdrant collection read in id order): Arrow would keep
                # int64; the files written so far are rewritten as uint64, which refuses a negative value
                field = field.with_type(other)
            elif promote and other != field.type and not pa.types.is_null(other):
                try:
                    field = field.with_type(pa.unify_schemas([pa.schema([field]), pa.schema([got.field(field.name)])],
                                                             promote_options="permissive").field(0).type)
                except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                    pass  # fit_table refuses the batch, naming the column
        fields.append(field)
    fields += [f.with_nullable(True) for f in got if f.name not in known.names]
    return pa.schema(fields, metadata=known.metadata)


def fit_table(table: Any, schema: Any) -> Any:
    """The table in ``schema``'s columns, order and types; a column it lacks is all null."""
    import pyarrow as pa

    columns = []
    for field in schema:
        if field.name not in table.column_names:
            columns.append(pa.nulls(len(table), field.type))
            continue
        column = table.column(field.name)
        _refuse_lost_key(column.type, field.type, field.name)
        try:
            if column.null_count < len(column) and not castable(column.type, field.type):  # 100 as '100'
                raise ValueError("another kind of value, which a cast would change")
            columns.append(column.cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, ValueError) as exc:
            raise VectorStoreError(f"the batch does not fit the table's columns: column '{field.name}' is "
                                   f"{field.type}, the batch holds {column.type} values ({exc})") from exc
    return pa.Table.from_arrays(columns, schema=schema)


def shadow_schema(like: Any, id_col: str, vec_col: str, dim: int) -> Any:
    """The columns of a shadow of an Arrow-typed source (Parquet, LanceDB): the source's id and payload
    columns in their own types, so the switched table takes the rows its application writes, with
    ``dim``-wide float32 vectors and the space column as text. None for another source, or one whose id
    column is not integers or text (its payloads are Python values; the batches' types are used then)."""
    import pyarrow as pa

    read = getattr(like, "arrow_schema", None)
    source = read() if callable(read) else None
    src_id, src_vec = getattr(like, "id_col", "id"), getattr(like, "vec_col", "vector")
    if source is None or src_id not in source.names or id_kind(source.field(src_id).type) not in ("integer", "text"):
        return None
    fields = [source.field(src_id).with_name(id_col), pa.field(vec_col, pa.list_(pa.float32(), dim))]
    for field in source:
        if field.name == SPACE_FIELD:
            fields.append(pa.field(SPACE_FIELD, pa.string()))
        elif field.name not in (src_id, src_vec, id_col, vec_col):
            fields.append(field)
    if SPACE_FIELD not in source.names:
        fields.append(pa.field(SPACE_FIELD, pa.string()))
    return pa.schema(fields)


def _check_no_shadowed_field(pid: Any, payload: dict[str, Any], id_col: str, vec_col: str) -> None:
    """A payload field named as the table's id or vector column would be dropped for it: refused, unless
    it only repeats the point's id (as a payload often does)."""
    if vec_col in payload or (id_col in payload and payload[id_col] != pid):
        name = vec_col if vec_col in payload else id_col
        raise VectorStoreError(f"point {pid!r} has a payload field '{name}', the name of the target's "
                               f"{'vector' if name == vec_col else 'id'} column, which would replace it; name the "
                               f"target's columns otherwise (?id=... and ?vector=... on --to)")


def id_kind(arrow_type: Any) -> str | None:
    """'integer' or 'text' for an id column's type (every width of each counts as one), 'null' for a column
    of nulls only, None for any other: bytes, floats or times would be keyed by their Python repr, and a
    checkpoint could not hold them."""
    import pyarrow as pa

    kind = arrow_type.value_type if pa.types.is_dictionary(arrow_type) else arrow_type
    if pa.types.is_integer(kind):
        return "integer"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or (
            hasattr(pa.types, "is_string_view") and pa.types.is_string_view(kind)):
        return "text"
    return "null" if pa.types.is_null(kind) else None


def non_numeric_values(list_type: Any) -> str | None:
    """The value type of a list column when it is not numbers (strings, booleans, decimals, nested lists),
    which no vector is made of ('abc' failed deep in numpy; True or a decimal was read as a float)."""
    import pyarrow as pa

    value = getattr(list_type, "value_type", None)
    if value is None or pa.types.is_floating(value) or pa.types.is_integer(value):
        return None
    return str(value)


def check_key_columns(names: list[str], id_col: str, vec_col: str, where: str = "") -> None:
    """Refuse columns without the id or the vector column, naming what there is and the URI keys that name them."""
    missing = [(col, key) for col, key in ((id_col, "id"), (vec_col, "vector")) if col not in names]
    if missing:
        which = " and ".join(f"'{col}'" for col, _ in missing)
        keys = "&".join(f"?{key}=COLUMN" if n == 0 else f"{key}=COLUMN" for n, (_, key) in enumerate(missing))
        raise VectorStoreError(f"{where + ': ' if where else ''}no column {which} (columns: {', '.join(names)}); "
                               f"name the {' and '.join(key for _, key in missing)} column with {keys}")


def table_to_batch(table: Any, id_col: str, vec_col: str, cursor: Any, where: str = "",
                   first_row: int = 0) -> Batch:
    """A Batch from an Arrow table or record batch with an id and a list vector column.

    Null ids, null vectors and vectors of another length than the first are refused naming
    ``where`` (the store or file), the column and the row (``first_row`` is the table's first row)."""
    import pyarrow as pa

    names = table.schema.names
    check_key_columns(names, id_col, vec_col, where)
    column = table.column(id_col) if hasattr(table, "column") else table[id_col]
    prefix = f"{where}: " if where else ""
    if id_kind(column.type) is None:
        raise VectorStoreError(f"{prefix}column '{id_col}' holds {column.type} ids; point ids must be integers or "
                               "text (cast the column, or name another with ?id=COLUMN)")
    ids: list[PointId] = column.to_pylist()
    vec = table.column(vec_col)
    vec = vec.combine_chunks() if hasattr(vec, "combine_chunks") else vec
    if None in ids:
        row = ids.index(None)
        raise VectorStoreError(f"{prefix}column '{id_col}' row {first_row + row}: a null id; every point needs an id")
    if not (pa.types.is_list(vec.type) or pa.types.is_large_list(vec.type) or pa.types.is_fixed_size_list(vec.type)):
        raise VectorStoreError(f"{prefix}column '{vec_col}' holds {vec.type}, not lists of floats")
    if (value_type := non_numeric_values(vec.type)) is not None:
        raise VectorStoreError(f"{prefix}column '{vec_col}' holds lists of {value_type}, not lists of floats; "
                               "cast it to floats")
    if vec.null_count:
        row = vec.is_null().to_pylist().index(True)
        raise VectorStoreError(f"{prefix}column '{vec_col}' row {first_row + row} (id {ids[row]!r}): a null vector")
    if len(vec) == 0:
        vectors = np.zeros((0, vec.type.list_size if hasattr(vec.type, "list_size") else 0), np.float32)
    else:
        if hasattr(vec.type, "list_size"):
            width = vec.type.list_size
        else:
            lengths = np.asarray(vec.value_lengths().to_numpy(zero_copy_only=False))
            width = int(lengths[0])
            if (lengths != width).any() or not width:
                row = int(np.argmax(lengths != width)) if width else 0
                what = (f"a {int(lengths[row])}-long vector among {width}-long ones" if width and lengths[row]
                        else "an empty vector")
                raise VectorStoreError(f"{prefix}column '{vec_col}' row {first_row + row} (id {ids[row]!r}): {what}")
        values = vec.flatten()
        if values.null_count:  # numpy would read a null element as NaN, and the point be called NaN
            row = int(np.flatnonzero(np.asarray(values.is_null().to_numpy(zero_copy_only=False)))[0]) // width
            raise VectorStoreError(f"{prefix}column '{vec_col}' row {first_row + row} (id {ids[row]!r}): a null "
                                   "element in its vector")
        vectors = float32_rows(values.to_numpy(zero_copy_only=False), len(vec), width,
                                f"{prefix}column '{vec_col}'", ids, first_row)
    others = [n for n in names if n not in (id_col, vec_col)]
    if others:
        cols = {n: table.column(n).to_pylist() for n in others}
        payloads = [{n: cols[n][i] for n in others} for i in range(len(ids))]
    else:
        payloads = [{} for _ in ids]
    return Batch(ids, vectors, payloads, cursor)


def float32_rows(flat: np.ndarray, rows: int, width: int, where: str, ids: list[PointId],
                  first_row: int) -> np.ndarray:
    """The values as float32 rows; a finite value too large for float32 (1e300 in a float64 column) is
    refused naming its point, rather than becoming inf and being called NaN or inf further on."""
    with np.errstate(over="ignore"):
        vectors = np.asarray(flat, dtype=np.float32).reshape(rows, width)
    if flat.dtype.kind == "f" and flat.dtype.itemsize > 4:
        over = np.isinf(vectors) & np.isfinite(flat.reshape(rows, width))
        if over.any():
            row, col = (int(i) for i in np.argwhere(over)[0])
            raise VectorStoreError(f"{where} row {first_row + row}: point {ids[row]!r} holds "
                                   f"{float(flat[row * width + col]):g}, a value beyond the float32 range "
                                   f"(±{float(np.finfo(np.float32).max):.4g}) vectors are stored in")
        lost = ~vectors.any(axis=1) & flat.reshape(rows, width).any(axis=1)  # every value rounds to zero
        if lost.any():
            row = int(np.flatnonzero(lost)[0])
            top = float(np.abs(flat.reshape(rows, width)[row]).max())
            raise VectorStoreError(f"{where} row {first_row + row}: point {ids[row]!r} holds values of at most "
                                   f"{top:g}, too small for float32 (they would all round to zero)")
    return vectors


def list_width(field_type: Any, first: Any) -> int | None:
    """The vector width of a list column: its fixed size, or the first row's length for a plain list."""
    size = getattr(field_type, "list_size", None)
    if size:
        return int(size)
    batch = next(iter(first), None)
    return int(batch.vectors.shape[1]) if batch is not None and len(batch) else None
