"""NpyRows reads .npy rows with plain file reads and serves search exactly as a memmap does."""

from __future__ import annotations

import numpy as np
import pytest

from embridge.core.errors import VectorFileError
from embridge.core.evaluation.npy_rows import NpyRows
from embridge.core.evaluation.search import SearchConfig, search
from embridge.core.retrieval import l2_normalize


@pytest.fixture
def matrix(tmp_path):
    data = np.random.default_rng(0).normal(size=(70_001, 5)).astype(np.float32)
    path = tmp_path / "m.npy"
    np.save(path, data)
    return path, data


def test_slices_rows_and_index_arrays(matrix) -> None:
    path, data = matrix
    with NpyRows(path) as rows:
        assert rows.shape == data.shape and len(rows) == 70_001 and rows.dtype == np.float32
        np.testing.assert_array_equal(rows[3:66_000], data[3:66_000])
        np.testing.assert_array_equal(rows[-4:], data[-4:])
        np.testing.assert_array_equal(rows[::9_999], data[::9_999])
        np.testing.assert_array_equal(rows[7], data[7])
        assert rows[10:10].shape == (0, 5)
        idx = np.random.default_rng(1).choice(70_001, 3_000, replace=False)  # unsorted, spans blocks
        np.testing.assert_array_equal(rows[idx], data[idx])
        mask = np.zeros(70_001, bool)
        mask[[0, 65_536, 70_000]] = True
        np.testing.assert_array_equal(rows[mask], data[mask])
        with pytest.raises(IndexError):
            rows[np.array([70_001])]


def test_bad_files_name_the_file(tmp_path, matrix) -> None:
    path, _ = matrix
    cut = tmp_path / "cut.npy"
    cut.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(VectorFileError, match="truncated"):
        NpyRows(cut)
    fortran = tmp_path / "f.npy"
    np.save(fortran, np.asfortranarray(np.ones((4, 3), np.float32)))
    with pytest.raises(VectorFileError, match="f.npy"):
        NpyRows(fortran)
    text = tmp_path / "t.npy"
    text.write_text("not an array")
    with pytest.raises(VectorFileError, match="header"):
        NpyRows(text)


@pytest.mark.parametrize("method", ["exact", "ivf"])
def test_search_gives_the_memmap_results(tmp_path, method: str) -> None:
    gallery = l2_normalize(np.random.default_rng(2).normal(size=(6_000, 16)))
    np.save(tmp_path / "g.npy", gallery)
    queries = gallery[:300] + 0.05
    config = SearchConfig(method=method, nlist=40, add_chunk=1_000)
    ref_idx, ref_scores, ref_info = search(queries, np.load(tmp_path / "g.npy"), 5, config=config)
    with NpyRows(tmp_path / "g.npy") as rows:
        runs = [search(queries, rows, 5, config=config),
                search(queries, np.load(tmp_path / "g.npy", mmap_mode="r"), 5, config=config)]
    for idx, scores, info in runs:
        np.testing.assert_array_equal(idx, ref_idx)
        np.testing.assert_array_equal(scores, ref_scores)
        assert info.recall_vs_exact == ref_info.recall_vs_exact


def test_whole_file_memmaps_are_read_through_their_file(tmp_path, matrix) -> None:
    path, data = matrix
    mm = np.load(path, mmap_mode="r")
    with NpyRows.of_memmap(mm) as rows:
        assert rows.shape == data.shape
        np.testing.assert_array_equal(rows[65_000:70_001], data[65_000:])
    raw = tmp_path / "raw.f16"
    raw.write_bytes(b"\0" * 100 + data.astype(np.float16).tobytes())
    offset_map = np.memmap(raw, dtype=np.float16, mode="r", offset=100, shape=data.shape)
    with NpyRows.of_memmap(offset_map) as rows:
        np.testing.assert_array_equal(rows[[5, 70_000, 1]], data.astype(np.float16)[[5, 70_000, 1]])
    written = np.memmap(tmp_path / "w.f32", dtype=np.float32, mode="w+", shape=(10, 5))
    written[:] = data[:10]  # not flushed: the reads still see it
    with NpyRows.of_memmap(written) as rows:
        np.testing.assert_array_equal(rows[:], data[:10])
    # views, slices, plain arrays and 1-D maps have no whole-file layout to read
    for other in (mm[10:], mm[:, :3], mm.T, data, np.load(path, mmap_mode="r").reshape(-1)):
        assert NpyRows.of_memmap(other) is None
