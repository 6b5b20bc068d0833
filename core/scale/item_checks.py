"""Checks of an embed-dataset input before any chunk is written, so bad items are named, not embedded.

A dataset whose partitions disagree on the id or input column, an id that is missing or repeated,
a missing input, or an ``--order`` that is not a list of the dataset's ids would otherwise fail
deep inside Arrow or the model after some chunks were written, or pass bad ids into the output.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from embridge.core.connectors.arrow_common import id_kind, non_numeric_values
from embridge.core.errors import InputError


def check_item_schemas(files: list[Path], id_col: str, input_col: str) -> None:
    """Every partition has the id and input columns with the types of the first one (schemas only)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from embridge.core.connectors.arrow_common import reading_parquet

    first: tuple[Path, Any, Any] | None = None
    for file in files:
        with reading_parquet(file, as_input=True):
            schema = pq.read_schema(file)
        if id_col not in schema.names or input_col not in schema.names:
            raise InputError(file, f"{missing_columns([id_col, input_col], schema.names)} (columns: {', '.join(schema.names)}); "
                             "name them with --id-column/--input-column")
        id_type, input_type = schema.field(id_col).type, schema.field(input_col).type
        if id_kind(id_type) not in ("integer", "text"):
            raise InputError(file, f"column '{id_col}' is {id_type}; ids must be integers or text")
        if not (pa.types.is_fixed_size_list(input_type) and non_numeric_values(input_type) is None) \
                and id_kind(input_type) != "text":
            raise InputError(file, f"column '{input_col}' is {input_type}; an input must be a fixed-size list of "
                             "numbers (an image or array, flattened) or a text")
        if first is None:
            first = (file, id_type, input_type)
            continue
        for col, have, want in ((id_col, id_type, first[1]), (input_col, input_type, first[2])):
            same = id_kind(have) == id_kind(want) if col == id_col else _same_kind(have, want)
            if not same:
                raise InputError(file, f"column '{col}' is {have} but {first[0].name} has {want}; every "
                                 "partition needs the same columns and types")


def _same_kind(a: Any, b: Any) -> bool:
    """Equal types, counting every integer width as one kind and both string types as one."""
    import pyarrow as pa

    if pa.types.is_integer(a) and pa.types.is_integer(b):
        return True
    text = (pa.types.is_string, pa.types.is_large_string)
    if any(t(a) for t in text) and any(t(b) for t in text):
        return True
    return bool(a.equals(b))


def check_rows(file: Path, table: Any, id_col: str, input_col: str) -> None:
    """No null id and no null input (nor a null, NaN or inf value inside a list input) in one partition."""
    ids = table.column(id_col)
    if ids.null_count:
        row = first_null(ids)
        raise InputError(file, f"row {row}: the '{id_col}' column is empty (null); every item needs an id")
    col = table.column(input_col).combine_chunks()
    if col.null_count:
        row = first_null(col)
        raise InputError(file, f"row {row} (id {ids[row]}): the '{input_col}' column is empty (null); "
                         "every item needs an input")
    if hasattr(col.type, "list_size") and col.type.list_size > 0 and len(col):
        flat = np.asarray(col.flatten().is_null().to_numpy(zero_copy_only=False))
        per_row = flat.reshape(len(col), col.type.list_size).any(axis=1)
        if per_row.any():
            row = int(np.flatnonzero(per_row)[0])
            raise InputError(file, f"row {row} (id {ids[row]}): column '{input_col}' holds a null value")
        values = np.asarray(col.flatten().to_numpy(zero_copy_only=False), dtype=np.float64)
        bad = ~np.isfinite(values.reshape(len(col), col.type.list_size)).all(axis=1)
        if bad.any():  # named here, by file and row, rather than as a model output gone bad
            row = int(np.flatnonzero(bad)[0])
            raise InputError(file, f"row {row} (id {ids[row]}): column '{input_col}' holds NaN or inf values "
                             f"({int(bad.sum())} such rows)")
        top = float(np.finfo(np.float32).max)
        over = np.flatnonzero(np.abs(values) > top)  # inputs are read as float32: such a value became inf
        if over.size:
            row = int(over[0]) // col.type.list_size
            raise InputError(file, f"row {row} (id {ids[row]}): column '{input_col}' holds {values[over[0]]:g}, a "
                             f"value beyond the float32 range (±{top:.4g}) inputs are read in")


def first_null(column: Any) -> int:
    """The row of an Arrow column's first null."""
    return int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])


def id_array(values: list[Any], files: list[Path] | list[str], rows: list[int]) -> np.ndarray:
    """The ids as a numpy array, refusing a text id holding a NUL character: numpy's text arrays drop
    trailing NULs, so 'a\\0' would be written as 'a' and called a repeat of 'a'."""
    for pos, value in enumerate(values):
        if isinstance(value, str) and "\0" in value:
            file, row = _locate(pos, files, rows)
            raise InputError(file, f"row {row}: id {value!r} holds a NUL character; text ids must not")
    return np.asarray(values)


def check_unique(ids: np.ndarray, files: list[Path] | list[str], rows: list[int]) -> None:
    """No id twice in the dataset; the error names the partition file and row of the repeat."""
    _, first_at, counts = np.unique(ids, return_index=True, return_counts=True)
    if (counts == 1).all():
        return
    repeated = set(np.flatnonzero(counts > 1).tolist())
    seen_first = {int(first_at[k]) for k in repeated}
    value_set = {ids[int(first_at[k])].item() for k in repeated}
    for pos, value in enumerate(ids.tolist()):
        if value in value_set and pos not in seen_first:
            file, row = _locate(pos, files, rows)
            raise InputError(file, f"row {row}: id {value!r} appears more than once in the dataset; ids must be unique")


def _locate(pos: int, files: list[Path], rows: list[int]) -> tuple[Path, int]:
    start = 0
    for file, n in zip(files, rows, strict=True):
        if pos < start + n:
            return file, pos - start
        start += n
    return files[-1], pos - start


def check_order(order: Any, ids: np.ndarray) -> np.ndarray:
    """A 1-D array of unique ids of the dataset's kind (integers or text); one line naming --order."""
    order = np.asarray(order)
    if order.ndim != 1:
        raise InputError("--order", f"expected a 1-D array of ids, got shape {order.shape}")
    if len(order) == 0:
        raise InputError("--order", "holds no ids; give the ids to embed")
    text_ids = ids.dtype.kind in "US"
    if text_ids and order.dtype.kind != "U":
        raise InputError("--order", f"holds {order.dtype} values but the dataset's ids are text")
    if not text_ids and (order.dtype.kind not in "iu"):
        raise InputError("--order", f"holds {order.dtype} values; expected integer ids like the dataset's")
    if len(np.unique(order)) != len(order):
        values, counts = np.unique(order, return_counts=True)
        raise InputError("--order", f"id {values[counts > 1][0].item()!r} appears more than once")
    return order


def order_fingerprint(order: np.ndarray | None) -> str | None:
    """The exact content of the order (dtype, length and every id in place): a job's identity."""
    if order is None:
        return None
    arr = np.ascontiguousarray(order)
    digest = hashlib.sha256(f"{arr.dtype.str}:{arr.shape}".encode() + arr.tobytes())
    return digest.hexdigest()


def items_fingerprint(ids: np.ndarray, inputs: Any) -> str:
    """The exact items in embedding order (ids, and float rows or texts): what an embedding job's chunks
    hold, so a source rewritten in place is another job and a file merely copied or touched is not."""
    digest = hashlib.sha256()
    arr = np.ascontiguousarray(ids)
    if arr.dtype == object:
        _texts(digest, arr.tolist())
    else:
        digest.update(f"{arr.dtype.str}:{arr.shape}".encode() + arr.tobytes())
    if isinstance(inputs, np.ndarray):
        rows = np.ascontiguousarray(inputs, dtype=np.float32)
        digest.update(f"{rows.shape}".encode() + rows.tobytes())
    else:
        _texts(digest, inputs)
    return digest.hexdigest()


def _texts(digest: Any, texts: Any) -> None:
    for text in texts:  # each length-prefixed, so no two lists hash alike
        encoded = str(text).encode()
        digest.update(len(encoded).to_bytes(8, "little") + encoded)


def missing_columns(wanted: list[str], names: list[str]) -> str:
    """"no 'vec' column" (or "no 'id' and 'vec' columns"): only the columns that are missing are named."""
    missing = [c for c in wanted if c not in names]
    return f"no {' and '.join(repr(c) for c in missing)} column{'s' if len(missing) > 1 else ''}"
