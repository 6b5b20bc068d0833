"""What a store's own files may hold, and what an interrupted import was started with.

A Parquet folder is read as pyarrow reads a dataset: every ``*.parquet`` file whatever the case of
its suffix, names starting with '.' or '_' skipped, and any other file refused (read past, it would
leave points out of a migration that still verifies). An interrupted ``import --from`` resumes only
with the settings it was started with, and a float64 value beyond the float32 range is named as
such. Each refusal is one line, exit 1, with the store and the workspace as they were.
"""

from __future__ import annotations

import re
import sqlite3
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers.workspace_files import tree_snapshot
from store_fixtures import cli, fct_upgrade, fill_source

from embridge.core.connectors import open_store
from embridge.core.connectors.gallery_import import import_from_store
from embridge.core.progress import Cancelled
from embridge.core.store import Workspace


@pytest.fixture(scope="module")
def upgrade(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return fct_upgrade(tmp_path_factory.mktemp("store-source-files"))


def one_line(code: int, err: str, *needles: str) -> str:
    """Exit 1 and one error line (besides progress lines) holding every needle; that line."""
    lines = [line for line in err.splitlines() if not re.match(r"\S+: \d+/\d+ ", line)]
    assert code == 1 and len(lines) == 1 and lines[0].startswith("embridge: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, err)
    return lines[0]


def workspace_state(ws: Path) -> tuple[list[str], dict[str, str]]:
    """The workspace's rows (an SQL dump) and its other files by content."""
    conn = sqlite3.connect(ws / "embridge.db")
    try:
        rows = list(conn.iterdump())
    finally:
        conn.close()
    files = {k: v for k, v in tree_snapshot(ws).items() if not k.startswith("embridge.db")}
    return rows, files


def write_part(file: Path, ids: range, vectors: np.ndarray, dtype: Any = None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    flat = pa.array(vectors.ravel(), dtype or pa.float32())
    pq.write_table(pa.table({"id": pa.array(list(ids), pa.int64()),
                             "vector": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])}), file)


def new_workspace(capsys: pytest.CaptureFixture[str], path: Path) -> Path:
    assert cli(capsys, "init", "--workspace", str(path))[0] == 0
    return path


def count(uri: str) -> int:
    with open_store(uri) as store:
        return store.count() if store.exists() else 0


def test_a_file_not_ending_in_parquet_is_refused_by_migrate_import_and_check(
        upgrade: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """300 points in part-0.parquet and 700 in part-1.pq: migrating 300 and switching the alias to them
    would lose 700 while verification says the counts match."""
    v1 = upgrade["vectors"]["v1"].astype(np.float32)
    vectors = np.resize(v1, (100, v1.shape[1]))
    root = tmp_path / "pq"
    folder = root / "mixed"
    folder.mkdir(parents=True)
    write_part(folder / "part-0.parquet", range(30), vectors[:30])
    write_part(folder / "part-1.pq", range(30, 100), vectors[30:])
    uri, target = f"parquet://{folder}", f"parquet://{root / 'mixed_v2'}"
    ws = new_workspace(capsys, tmp_path / "ws")
    before, ws_before = tree_snapshot(root), workspace_state(ws)

    code, _, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", uri, "--to", target,
                       "--switch", "--alias", "live")
    one_line(code, err, str(folder / "part-1.pq"), "only the *.parquet files")
    code, _, err = cli(capsys, "import", "--workspace", str(ws), "--from", uri, "--model", "m")
    one_line(code, err, str(folder / "part-1.pq"), "only the *.parquet files")
    code, _, err = cli(capsys, "check", "--uri", uri)
    one_line(code, err, str(folder / "part-1.pq"), "only the *.parquet files")
    assert tree_snapshot(root) == before and workspace_state(ws) == ws_before  # no shadow, no alias, no item

    # a partitioned dataset stays refused, whatever the case of its files' suffix
    nested = root / "nested"
    (nested / "shard=0").mkdir(parents=True)
    write_part(nested / "shard=0" / "PART-0.PARQUET", range(30), vectors[:30])
    before = tree_snapshot(root)
    code, _, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", f"parquet://{nested}",
                       "--to", f"parquet://{root / 'nested_v2'}", "--switch", "--alias", "live")
    one_line(code, err, str(nested), "a subfolder (shard=0/)", "partitioned")
    assert tree_snapshot(root) == before


def test_upper_case_suffixes_are_read_and_metadata_files_skipped(upgrade: dict, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """PART-0.PARQUET is a data file (pyarrow reads it); _SUCCESS, _metadata and .crc files are not."""
    v1 = upgrade["vectors"]["v1"].astype(np.float32)
    root = tmp_path / "pq"
    upper = root / "upper"
    upper.mkdir(parents=True)
    write_part(upper / "PART-0.PARQUET", range(20), v1[:20])
    write_part(upper / "part-1.Parquet", range(20, 40), v1[20:40])
    (upper / "_SUCCESS").write_bytes(b"")
    (upper / "_metadata").write_bytes(b"not read")
    (upper / ".PART-0.PARQUET.crc").write_bytes(b"\x00crc")
    uri, target = f"parquet://{upper}", f"parquet://{root / 'upper_v2'}"

    code, out, err = cli(capsys, "check", "--uri", uri)
    assert code == 0 and out["count"] == 40, err
    code, out, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", uri, "--to", target,
                         "--switch", "--alias", "live")
    assert code == 0 and out["total"] == 40 and out["verification"]["ok"], err
    assert count(target) == 40 and count(f"parquet://{root / 'live'}") == 40
    ws = new_workspace(capsys, tmp_path / "ws")
    code, out, err = cli(capsys, "import", "--workspace", str(ws), "--from", uri, "--model", "m")
    assert code == 0 and out["count"] == 40 and out["new_items"] == 40, err


def test_an_interrupted_import_resumes_only_with_the_options_it_was_started_with(
        upgrade: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    v1 = upgrade["vectors"]["v1"]
    source = fill_source("parquet", tmp_path, list(range(len(v1))), v1, upgrade["labels"]).source
    ws = new_workspace(capsys, tmp_path / "ws")
    calls = {"n": 0}

    def stop_after_the_first_batches() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    with Workspace.open(ws) as opened:
        with pytest.raises(Cancelled):
            import_from_store(opened, source, "v1", "label", batch_size=40, should_stop=stop_after_the_first_batches)
        partial = len(opened.item_ids())
    assert 0 < partial < len(v1)
    store_before, ws_before = tree_snapshot(tmp_path / "pq"), workspace_state(ws)

    base = ["import", "--workspace", str(ws), "--from", source]
    for extra, option, earlier in (
            (["--model", "other", "--label-field", "label"], "--model", "--model v1 (this run: --model other)"),
            (["--model", "v1"], "--label-field", "--label-field label (this run: no --label-field)"),
            (["--model", "v1", "--label-field", "body"], "--label-field", "--label-field label"),
            (["--model", "v1", "--label-field", "label", "--text-field", "body"], "--text-field",
             "no --text-field"),
            (["--model", "v1", "--label-field", "label", "--split", "train"], "--split", "--split gallery")):
        code, _, err = cli(capsys, *base, *extra)
        line = one_line(code, err, f"embridge: error: {option}: ", earlier,
                        "re-run with the same options (--model v1 --label-field label)")
        assert source in line
        assert tree_snapshot(tmp_path / "pq") == store_before and workspace_state(ws) == ws_before

    code, out, err = cli(capsys, *base, "--model", "v1", "--label-field", "label")
    assert code == 0 and out["count"] == len(v1) and out["new_items"] == len(v1) - partial, err
    with Workspace.open(ws) as opened:
        keys = [str(i) for i in range(len(v1))]
        assert opened.labels(opened.ids_for_keys(keys)) == upgrade["labels"]
        np.testing.assert_allclose(opened.vectors_for("v1", opened.ids_for_keys(keys)), v1)
        assert [m["name"] for m in opened.models()] == ["v1"]
    # a finished import is no longer held to its options: the same store again is answered from what is stored
    code, out, err = cli(capsys, *base, "--model", "v1")
    assert code == 0 and out["new_items"] == 0, err


def test_a_float64_value_beyond_the_float32_range_is_named(upgrade: dict, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """1e300 is finite: one line saying it is beyond float32's range, no numpy overflow warning."""
    import pyarrow as pa

    vectors = upgrade["vectors"]["v1"][:30].astype(np.float64)
    vectors[4, 2] = 1e300
    root = tmp_path / "pq"
    folder = root / "wide"
    folder.mkdir(parents=True)
    write_part(folder / "part-0.parquet", range(30), vectors, pa.float64())
    uri = f"parquet://{folder}"
    ws = new_workspace(capsys, tmp_path / "ws")
    before, ws_before = tree_snapshot(root), workspace_state(ws)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, _, err = cli(capsys, "import", "--workspace", str(ws), "--from", uri, "--model", "m")
        line = one_line(code, err, str(folder / "part-0.parquet"), "point 4 holds 1e+300",
                        "a value beyond the float32 range")
        code, _, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", uri,
                           "--to", f"parquet://{root / 'wide_v2'}")
        one_line(code, err, "point 4 holds 1e+300", "a value beyond the float32 range")
    assert "NaN" not in line and "RuntimeWarning" not in err
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in caught]
    assert tree_snapshot(root) == before and workspace_state(ws) == ws_before


def test_a_float64_row_too_small_for_float32_is_named_not_called_all_zero(upgrade: dict, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A row of 1e-50s rounds to zeros in float32: it was refused as 'an all-zero vector', which it is not."""
    import pyarrow as pa

    vectors = upgrade["vectors"]["v1"][:30].astype(np.float64)
    vectors[7] = 1e-50
    folder = tmp_path / "pq" / "tiny"
    folder.mkdir(parents=True)
    write_part(folder / "part-0.parquet", range(30), vectors, pa.float64())
    ws = new_workspace(capsys, tmp_path / "ws")
    ws_before = workspace_state(ws)
    code, _, err = cli(capsys, "import", "--workspace", str(ws), "--from", f"parquet://{folder}", "--model", "m")
    line = one_line(code, err, "row 7: point 7 holds values of at most 1e-50, too small for float32")
    assert "all-zero" not in line and workspace_state(ws) == ws_before
