"""A Parquet dataset's files agree on their columns, checked from their schemas before a point is read.

A dataset is many files written at different times, and nothing makes them agree. A file without the id
or vector column, ids of another kind (integers in one file, text in another: 1 and '1' would be two
points), or a payload column holding another kind of value than the same column in an earlier file
(Arrow would read 100 as '100', True as 'true', 'x' as b'x') is refused here, naming both files, so an
import, a migration or a ``check`` never reads such a dataset as something it is not, and a migration
does not stop half-way through one for this.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from embridge.core.connectors.arrow_common import check_key_columns, id_kind
from embridge.core.connectors.arrow_kinds import castable
from embridge.core.connectors.connector import VectorStoreError


def check_file_schemas(files: list[Path], schema_of: Callable[[Path], Any], id_col: str, vec_col: str) -> list[Any]:
    """Refuse files whose key columns are missing or whose ids or payload values are of another kind than
    an earlier file's (see the module docstring); a column all null in a file takes any type. Returns the
    files' schemas, read once."""
    import pyarrow as pa

    first_id: tuple[Path, str] | None = None
    seen: dict[str, tuple[Path, Any]] = {}  # each payload column: the first file that gives it a type
    schemas = []
    for file in files:
        schema = schema_of(file)
        schemas.append(schema)
        check_key_columns(schema.names, id_col, vec_col, str(file))
        kind = id_kind(schema.field(id_col).type)
        if kind not in (None, "null"):  # an unusable id type is named by the batch reader, with the row
            if first_id is None:
                first_id = (file, kind)
            elif kind != first_id[1]:
                raise VectorStoreError(f"{file}: column '{id_col}' holds {kind} ids, but {first_id[0].name} holds "
                                       f"{first_id[1]} ones; every file needs the same id type")
        for field in schema:
            if field.name in (id_col, vec_col) or pa.types.is_null(field.type):
                continue
            earlier = seen.get(field.name)
            if earlier is None or castable(field.type, earlier[1]) or castable(earlier[1], field.type):
                seen.setdefault(field.name, (file, field.type))
                continue
            if all_null(earlier[0], field.name):  # a column of nulls says nothing of its kind (read on a mismatch)
                seen[field.name] = (file, field.type)
                continue
            if not all_null(file, field.name):
                raise VectorStoreError(f"{file}: column '{field.name}' holds {field.type} values, but "
                                       f"{earlier[0].name} holds {earlier[1]} ones; a column holds one kind of "
                                       "value in every file (write the files again with one type)")
    return schemas


def all_null(file: Path, column: str) -> bool:
    """Whether every row of ``column`` in ``file`` is null, from the row groups' statistics (False when a
    writer kept none): such a column's declared type (pandas writes an all-NaT column as naive timestamps)
    holds no value a cast could change."""
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(file).metadata
        index = meta.schema.to_arrow_schema().get_field_index(column)
        nulls = 0
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            leaf = next(i for i in range(group.num_columns) if group.column(i).path_in_schema.split(".")[0] == column)
            stats = group.column(leaf).statistics
            if stats is None or not stats.has_null_count:
                return False
            nulls += stats.null_count
        return index >= 0 and nulls == meta.num_rows
    except (OSError, ValueError, StopIteration):
        return False
