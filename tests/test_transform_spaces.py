"""A dataset transform records and respects the model version its rows are in, as a store migration does.

It carried ``embridge_space`` along unchanged: the output of a v1 -> v3 transform still said v1 (or the
version its input said), so transforming it again, or migrating it, was accepted and wrote vectors mapped
twice (a mean cosine of 0.02 against the right ones), labelled as if mapped once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.dataset as pads
import pytest
from store_fixtures import fct_upgrade, fill_source

from embridge.core.connectors.connector import SPACE_FIELD, VectorStoreError
from embridge.core.connectors.migration import migrate_store
from embridge.core.errors import InputError
from embridge.core.scale.gallery_transform import transform_gallery


@pytest.fixture(scope="module")
def upgrade(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return fct_upgrade(tmp_path_factory.mktemp("transform-spaces"))


def _spaces(folder: Path) -> dict[str, int]:
    column = pads.dataset(folder, format="parquet").to_table(columns=[SPACE_FIELD]).column(SPACE_FIELD)
    return {str(e["values"]): int(e["counts"]) for e in column.value_counts().to_pylist()}


def test_the_output_is_marked_as_a_migration_marks_it_and_is_not_mapped_twice(upgrade: dict[str, Any],
                                                                              tmp_path: Path) -> None:
    v1 = upgrade["vectors"]["v1"]
    case = fill_source("parquet", tmp_path, list(range(len(v1))), v1, upgrade["labels"])  # unmarked v1 points
    source = Path(case.source.removeprefix("parquet://"))
    out, migrated = tmp_path / "v3", tmp_path / "migrated"
    result = transform_gallery(upgrade["bundle"], case.source, f"parquet://{out}")
    assert result.rows == len(v1) and result.note is None
    migrate_store(upgrade["bundle"], case.source, f"parquet://{migrated}")
    marker = next(iter(_spaces(migrated)))
    assert marker.startswith("v3@bundle:")
    assert _spaces(out) == {marker: len(v1)}  # the value the migration writes, on every row
    stored = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    for again, advice in (
            (lambda: transform_gallery(upgrade["bundle"], f"parquet://{out}", f"parquet://{tmp_path / 'twice'}"),
             "transform the dataset of v1 vectors they came from"),
            (lambda: migrate_store(upgrade["bundle"], f"parquet://{out}", f"parquet://{tmp_path / 'twice-m'}"),
             "migrate the collection of v1 vectors they came from")):
        with pytest.raises((InputError, VectorStoreError), match=rf"{len(v1)} points are already in v3 \(field "
                                                                 rf"'{SPACE_FIELD}' = '{marker}'\); this bundle would "
                                                                 f"transform them a second time: {advice}"):
            again()
    assert not (tmp_path / "twice").exists() and not (tmp_path / "twice-m").exists()
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == stored
    assert SPACE_FIELD not in pads.dataset(source, format="parquet").schema.names  # the input is left as it was


def test_rows_another_model_version_says_it_holds_are_refused(upgrade: dict[str, Any], tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    v1 = upgrade["vectors"]["v1"].astype(np.float32)
    folder = tmp_path / "v2-space"
    folder.mkdir()
    table = pa.table({"id": pa.array(range(len(v1)), pa.int64()),
                      "vector": pa.FixedSizeListArray.from_arrays(pa.array(v1.ravel()), v1.shape[1]),
                      SPACE_FIELD: ["v2"] * len(v1)})
    pq.write_table(table, folder / "part-0.parquet")
    with pytest.raises(VectorStoreError, match=rf"the field '{SPACE_FIELD}' holds 'v2' \({len(v1)} points\), which is not "
                                         "an Embridge space marker of v1"):
        transform_gallery(upgrade["bundle"], f"parquet://{folder}", f"parquet://{tmp_path / 'out'}")
    assert not (tmp_path / "out").exists()


def test_a_nested_space_column_is_refused_as_a_store_would_refuse_it(upgrade: dict[str, Any], tmp_path: Path) -> None:
    """A list column had no counting kernel: 'unexpected ArrowNotImplementedError' (exit 3)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    v1 = upgrade["vectors"]["v1"].astype(np.float32)
    folder = tmp_path / "listed"
    folder.mkdir()
    pq.write_table(pa.table({"id": pa.array(range(len(v1)), pa.int64()),
                             "vector": pa.FixedSizeListArray.from_arrays(pa.array(v1.ravel()), v1.shape[1]),
                             SPACE_FIELD: [["v1"]] * len(v1)}), folder / "part-0.parquet")
    with pytest.raises(VectorStoreError, match=rf"the field '{SPACE_FIELD}' holds \"\['v1'\]\" \({len(v1)} points\)"):
        transform_gallery(upgrade["bundle"], f"parquet://{folder}", f"parquet://{tmp_path / 'out'}")


def test_an_output_begun_by_a_version_that_marked_no_rows_is_not_resumed(upgrade: dict[str, Any],
                                                                         tmp_path: Path) -> None:
    """Its finished partitions were kept beside marked ones: a dataset read as one lost the column."""
    import json

    from embridge.core.scale.output_folder import STATE_FILE

    v1 = upgrade["vectors"]["v1"]
    case = fill_source("parquet", tmp_path, list(range(len(v1))), v1, upgrade["labels"])
    out = tmp_path / "out"
    transform_gallery(upgrade["bundle"], case.source, f"parquet://{out}")
    state = json.loads((out / STATE_FILE).read_text())
    del state["marks"]  # what an earlier version recorded
    (out / STATE_FILE).write_text(json.dumps(state))
    with pytest.raises(InputError, match=r"holds the output of another transform \(other Embridge version \(its output "
                                         r"rows carry no embridge_space\)\); choose a new folder"):
        transform_gallery(upgrade["bundle"], case.source, f"parquet://{out}")
