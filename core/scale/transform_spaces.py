"""The model version a dataset transform's rows are in: checked on its input, written on its output.

A store migration records every point's space in the ``embridge_space`` field and refuses points its
bundle cannot map (already in the new space, or in another model's). A dataset transform carried that
column along unchanged, so its output claimed the space its input was in, and a second transform (or a
migration) of that output was accepted and wrote vectors transformed twice. Here the same rule as a
migration's (:func:`embridge.core.connectors.source_checks.check_space_counts`) is applied to the input's
column, and every output row is marked ``<version>@bundle:<layer sha>``, as a migration marks it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from embridge.core.connectors.connector import SPACE_FIELD
from embridge.core.connectors.source_checks import check_space_counts
from embridge.core.connectors.transform import StoreTransform, spaces_of
from embridge.core.scale.layer import layer_fingerprint, loaded_layer
from embridge.core.scale.partitions import Partition, read_partition
from embridge.core.scale.partitions import read_schema as partition_schema


def layer_spaces(bundle: str | Path) -> StoreTransform:
    """The layer seen as a map between spaces (:func:`embridge.core.connectors.transform.spaces_of`)."""
    return spaces_of(bundle, loaded_layer(bundle), layer_fingerprint(bundle))


def output_marker(spaces: StoreTransform) -> str:
    """What every output row's ``embridge_space`` says: the output's model version, made by this layer."""
    return f"{spaces.new_space}@bundle:{spaces.adapter_sha256[:12]}"


def check_input_spaces(partitions: list[Partition], spaces: StoreTransform, where: str) -> str | None:
    """Refuse input rows whose ``embridge_space`` says this layer cannot map them (see the module docstring);
    a note when some are vectors an earlier bundle made; None where no partition has the column."""
    counts: Counter[str] = Counter()
    for part in partitions:
        if SPACE_FIELD not in partition_schema(part).names:
            continue
        column = read_partition(part, [SPACE_FIELD]).column(SPACE_FIELD)
        if _countable(column.type):
            for entry in column.value_counts().to_pylist():
                value = entry["values"]
                counts["" if value is None else str(value)] += int(entry["counts"])
        else:  # a list or struct: no Arrow kernel counts it; its values read as a store's would (str)
            counts.update("" if value is None else str(value) for value in column.to_pylist())
    return check_space_counts(dict(counts), where, spaces, "transform", "dataset") if counts else None


def _countable(kind: Any) -> bool:
    import pyarrow as pa

    return not (pa.types.is_nested(kind) or pa.types.is_dictionary(kind) and pa.types.is_nested(kind.value_type))


def with_output_marker(table: Any, marker: str) -> Any:
    """``table`` with its ``embridge_space`` column (replaced, or added last) saying ``marker`` on every row."""
    import pyarrow as pa

    column = pa.array([marker] * table.num_rows, pa.string())
    if SPACE_FIELD in table.column_names:
        return table.set_column(table.column_names.index(SPACE_FIELD), pa.field(SPACE_FIELD, pa.string()), column)
    return table.append_column(pa.field(SPACE_FIELD, pa.string()), column)
