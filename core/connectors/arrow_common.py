"""Arrow conversions shared by the table-shaped stores (Parquet datasets and LanceDB)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from embridge.core.connectors.connector import Batch, PointId, VectorStoreError


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


def batch_to_table(batch: Batch, id_col: str, vec_col: str, schema: Any = None) -> Any:
    """An Arrow table of the batch: id, vector, then one column per payload field."""
    import pyarrow as pa

    names: list[str] = []
    for pid, payload in zip(batch.ids, batch.payloads, strict=True):
        for key in payload:
            if key not in names and key not in (id_col, vec_col):
                names.append(key)
        _check_no_shadowed_field(pid, payload, id_col, vec_col)
    columns = {id_col: pa.array(batch.ids), vec_col: vector_array(batch.vectors)}
    for name in names:
        columns[name] = pa.array([p.get(name) for p in batch.payloads])
    table = pa.table(columns)
    if schema is not None:
        missing = [f.name for f in schema if f.name not in table.column_names]
        for name in missing:
            table = table.append_column(name, pa.nulls(len(table), schema.field(name).type))
        try:
            table = table.select(schema.names).cast(schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError, ValueError) as exc:
            raise VectorStoreError(f"the batch does not fit the table's columns ({exc})") from exc
    return table


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


def table_to_batch(table: Any, id_col: str, vec_col: str, cursor: Any, where: str = "",
                   first_row: int = 0) -> Batch:
    """A Batch from an Arrow table or record batch with an id and a list vector column.

    Null ids, null vectors and vectors of another length than the first are refused naming
    ``where`` (the store or file), the column and the row (``first_row`` is the table's first row)."""
    import pyarrow as pa

    names = table.schema.names
    if id_col not in names or vec_col not in names:
        raise VectorStoreError(f"no '{id_col}' and '{vec_col}' columns (columns: {', '.join(names)}); name "
                               "them with ?id=COLUMN&vector=COLUMN")
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
                raise VectorStoreError(f"{prefix}column '{vec_col}' row {first_row + row} (id {ids[row]!r}): a "
                                       f"{int(lengths[row])}-long vector among {width}-long ones")
        vectors = float32_rows(vec.flatten().to_numpy(zero_copy_only=False), len(vec), width,
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
    return vectors


def list_width(field_type: Any, first: Any) -> int | None:
    """The vector width of a list column: its fixed size, or the first row's length for a plain list."""
    size = getattr(field_type, "list_size", None)
    if size:
        return int(size)
    batch = next(iter(first), None)
    return int(batch.vectors.shape[1]) if batch is not None and len(batch) else None
