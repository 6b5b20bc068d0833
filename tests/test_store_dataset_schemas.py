"""A Parquet dataset's files must agree: a payload column of another kind of value in a later file was
cast silently (the int 100 migrated as the text '100', True as 'true', 'x' as b'x'), or refused after half
the migration was written; a file without the key columns was reported healthy by ``check``. A rerun of
a finished migration through another ``?vector=`` column took it for the same one and crashed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from store_fixtures import cli, fct_upgrade, one_line

from embridge.core.connectors.arrow_kinds import castable


@pytest.fixture(scope="module")
def upgrade(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return fct_upgrade(tmp_path_factory.mktemp("dataset-schemas"))


def _fsl(vectors: np.ndarray) -> Any:
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.astype(np.float32).ravel()), vectors.shape[1])


def _two_files(folder: Path, vectors: np.ndarray, first: pa.Array, second: pa.Array, **extra: Any) -> str:
    """part-0 and part-1 of (id, vector, label) rows, their labels ``first`` and ``second``."""
    folder.mkdir(parents=True)
    half = len(vectors) // 2
    for n, (rows, label) in enumerate(((slice(0, half), first), (slice(half, None), second))):
        ids = np.arange(len(vectors))[rows]
        pq.write_table(pa.table({"id": pa.array(ids, pa.int64()), "vector": _fsl(vectors[rows]), "label": label,
                                 **{k: v[rows] for k, v in extra.items()}}), folder / f"part-{n}.parquet")
    return f"parquet://{folder}"


@pytest.mark.parametrize(("first", "second", "said"), [
    ("text", 7, "holds int64 values, but part-0.parquet holds string ones"),
    ("text", True, "holds bool values, but part-0.parquet holds string ones"),
    (b"x", "x", "holds string values, but part-0.parquet holds binary ones"),
    (7, "text", "holds string values, but part-0.parquet holds int64 ones"),
])
def test_files_whose_column_holds_another_kind_of_value_are_refused_before_any_write(
        upgrade: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str], first: Any, second: Any, said: str) -> None:
    vectors = upgrade["vectors"]["v1"][:40]
    src = _two_files(tmp_path / "src", vectors, pa.array([first] * 20), pa.array([second] * 20))
    before = {f.name: f.read_bytes() for f in (tmp_path / "src").iterdir()}
    assert cli(capsys, "init", "--workspace", str(tmp_path / "ws"))[0] == 0
    for argv in (["migrate", "--bundle", str(upgrade["bundle"]), "--from", src, "--to", f"parquet://{tmp_path / 'dst'}"],
                 ["check", "--uri", src], ["import", "--workspace", str(tmp_path / "ws"), "--from", src]):
        code, _, err = cli(capsys, *argv)
        one_line(code, err, f"{tmp_path / 'src' / 'part-1.parquet'}: column 'label' {said}")
    assert not (tmp_path / "dst").exists()
    assert {f.name: f.read_bytes() for f in (tmp_path / "src").iterdir()} == before


def test_an_integer_column_beside_a_float_one_is_widened_and_kept(upgrade: dict, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    vectors = upgrade["vectors"]["v1"][:40]
    src = _two_files(tmp_path / "src", vectors, pa.array(range(20), pa.int64()), pa.array([0.5] * 20))
    code, out, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", src,
                         "--to", f"parquet://{tmp_path / 'dst'}")
    assert code == 0, err
    shadow = pq.read_table(tmp_path / "dst").sort_by("id")
    assert shadow.schema.field("label").type == pa.float64()
    assert shadow.column("label").to_pylist() == [float(i) for i in range(20)] + [0.5] * 20
    assert castable(pa.list_(pa.int64()), pa.list_(pa.float64())) and not castable(pa.list_(pa.int64()),
                                                                                    pa.list_(pa.string()))


def test_check_names_a_file_without_the_key_columns(upgrade: dict, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    vectors = upgrade["vectors"]["v1"][:20]
    folder = tmp_path / "src"
    _two_files(folder, vectors, pa.array(["a"] * 10), pa.array(["b"] * 10))
    pq.write_table(pa.table({"key": pa.array([99]), "cat": pa.array(["c"])}), folder / "part-2.parquet")
    code, _, err = cli(capsys, "check", "--uri", f"parquet://{folder}")
    one_line(code, err, f"{folder / 'part-2.parquet'}: no column 'id' and 'vector' (columns: key, cat)")


def test_a_finished_migration_rerun_through_another_vector_column_is_another_migration(
        upgrade: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vectors = upgrade["vectors"]["v1"][:40]
    src = _two_files(tmp_path / "src", vectors, pa.array(["a"] * 20), pa.array(["b"] * 20),
                     other=_fsl(vectors[::-1].copy()))
    argv = ["migrate", "--bundle", str(upgrade["bundle"]), "--to", f"parquet://{tmp_path / 'dst'}"]
    assert cli(capsys, *argv, "--from", src)[0] == 0
    assert cli(capsys, *argv, "--from", src)[0] == 0  # the same one again: already complete
    code, _, err = cli(capsys, *argv, "--from", f"{src}?vector=other")
    one_line(code, err, "other columns of the source: it read its default columns, this reads ?vector=other")


def _one_file(folder: Path, vectors: np.ndarray, **columns: Any) -> str:
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"id": pa.array(np.arange(len(vectors)), pa.int64()), "vector": _fsl(vectors), **columns}),
                   folder / "part-0.parquet")
    return f"parquet://{folder}"


def test_a_map_column_migrates_unchanged(upgrade: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Map values come back as lists of pairs, which infer as lists of lists: the check of kinds refused them."""
    vectors = upgrade["vectors"]["v1"][:20]
    maps = [[("k", f"v{i}")] for i in range(20)]
    src = _one_file(tmp_path / "src", vectors, m=pa.array(maps, pa.map_(pa.string(), pa.string())))
    code, _, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", src,
                       "--to", f"parquet://{tmp_path / 'dst'}")
    assert code == 0, err
    shadow = pq.read_table(tmp_path / "dst").sort_by("id")
    assert shadow.schema.field("m").type == pa.map_(pa.string(), pa.string())
    assert shadow.column("m").to_pylist() == maps


@pytest.mark.parametrize(("first", "second", "said"), [
    (pa.array([{"a": 1}] * 20), pa.array([{"a": "20"}] * 20), "struct<a: string>"),
    (pa.array([1_700_000_000_000] * 20, pa.timestamp("ms")), pa.array([1_700_000_000_000] * 20, pa.timestamp("ms", "UTC")),
     "timestamp[ms, tz=UTC]"),
])
def test_members_of_another_kind_and_a_zone_are_refused_naming_both_files(
        upgrade: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str], first: Any, second: Any, said: str) -> None:
    """{'a': '20'} was written as {'a': 20}, and a naive 12:00 as 12:00 UTC."""
    src = _two_files(tmp_path / "src", upgrade["vectors"]["v1"][:40], first, second)
    code, _, err = cli(capsys, "check", "--uri", src)
    one_line(code, err, f"{tmp_path / 'src' / 'part-1.parquet'}: column 'label' holds {said} values, but part-0")


def test_naming_the_default_columns_is_the_same_migration(upgrade: dict, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    src = _two_files(tmp_path / "src", upgrade["vectors"]["v1"][:40], pa.array(["a"] * 20), pa.array(["b"] * 20))
    argv = ["migrate", "--bundle", str(upgrade["bundle"]), "--to", f"parquet://{tmp_path / 'dst'}"]
    assert cli(capsys, *argv, "--from", src)[0] == 0
    code, out, err = cli(capsys, *argv, "--from", f"{src}?id=id&vector=vector")
    assert code == 0 and out["status"] == "already complete" and out["written"] == 0, err


def test_an_import_through_an_alias_link_waits_for_one_through_the_dataset(upgrade: dict, tmp_path: Path) -> None:
    """The lock took the collection as written: the alias's name, so both imports ran and collided."""
    from embridge.core.connectors import open_store
    from embridge.core.connectors.import_lock import one_import_of
    from embridge.core.connectors.store_pair import collection_read
    from embridge.core.errors import WorkspaceBusyError

    _two_files(tmp_path / "data" / "docs_v1", upgrade["vectors"]["v1"][:20], pa.array(["a"] * 10), pa.array(["b"] * 10))
    (tmp_path / "data" / "docs").symlink_to("docs_v1")  # as --switch --alias docs makes it
    (tmp_path / "ws" / "vectors").mkdir(parents=True)
    real, alias = (open_store(f"parquet://{tmp_path / 'data' / name}", "--from") for name in ("docs_v1", "docs"))
    with one_import_of(tmp_path / "ws", real.uri, collection_read(real)):
        with pytest.raises(WorkspaceBusyError):
            with one_import_of(tmp_path / "ws", alias.uri, collection_read(alias)):
                pass


def test_payload_values_keep_their_kind_and_their_nanoseconds() -> None:
    """True was written into a float column as 1.0 (Python takes True for 1.0), and a nanosecond timestamp
    was cut to microseconds by inference before its cast back to nanoseconds."""
    import pandas as pd

    from embridge.core.connectors.arrow_common import _column
    from embridge.core.connectors.connector import VectorStoreError

    for values, column in (([True, False], pa.float64()), ([1.0, 2.5], pa.int64()), ([True, 0.5], pa.float64())):
        with pytest.raises(VectorStoreError, match=r"payload field 'c' holds values that do not fit its column"):
            _column(values, column, "c", [1, 2])
    stamp, span = pd.Timestamp(1_000_000_001), pd.Timedelta(1)
    assert _column([stamp], pa.timestamp("ns"), "c", [1]).to_pylist() == [stamp]
    assert _column([span], pa.duration("ns"), "c", [1]).to_pylist() == [span]
    assert _column([1, 2], pa.float64(), "c", [1, 2]).to_pylist() == [1.0, 2.0]  # integers widen, as before


def test_a_column_all_null_in_one_file_takes_the_others_type(upgrade: dict, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """pandas writes an all-NaT column as naive timestamps beside zoned ones in another file: refused."""
    zoned = pa.array([1_700_000_000_000_000] * 20, pa.timestamp("us", "UTC"))
    src = _two_files(tmp_path / "src", upgrade["vectors"]["v1"][:40], zoned, pa.nulls(20, pa.timestamp("ns")))
    code, out, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", src,
                         "--to", f"parquet://{tmp_path / 'dst'}")
    assert code == 0, err
    shadow = pq.read_table(tmp_path / "dst").sort_by("id")
    assert shadow.column("label").to_pylist()[:20] == zoned.to_pylist() and shadow.column("label").null_count == 20
