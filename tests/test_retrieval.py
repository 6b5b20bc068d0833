"""Exact top-k: the same ranking as a full sort, whatever the blocking, k, exclusions or dtype."""

from __future__ import annotations

import numpy as np
import pytest

from embridge.core.retrieval import exact_topk, l2_normalize, top1_accuracy


def _full_sort(q: np.ndarray, g: np.ndarray, k: int, exclude: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    scores = q.astype(np.float64) @ g.astype(np.float64).T
    if exclude is not None:
        rows = np.flatnonzero(exclude >= 0)
        scores[rows, exclude[rows]] = -np.inf
    idx = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(scores, idx, axis=1)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    gallery = l2_normalize(rng.normal(size=(1_013, 16)))
    queries = l2_normalize(rng.normal(size=(137, 16)))
    exclude = rng.integers(-1, 1_013, size=137)
    return queries, gallery, exclude


@pytest.mark.parametrize("k", [1, 2, 10])
@pytest.mark.parametrize(("block", "chunk"), [(1024, 16_384), (50, 100), (7, 1)])
@pytest.mark.parametrize("with_exclude", [False, True])
def test_blocked_search_equals_a_full_sort(data, k: int, block: int, chunk: int, with_exclude: bool) -> None:
    queries, gallery, exclude = data
    ex = exclude if with_exclude else None
    idx, scores = exact_topk(queries, gallery, k, ex, block=block, gallery_chunk=chunk)
    want_idx, want_scores = _full_sort(queries, gallery, k, ex)
    assert idx.shape == scores.shape == (len(queries), k)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_allclose(scores, want_scores, atol=1e-6)
    if ex is not None:
        assert not (idx == ex[:, None]).any()


def test_memmapped_float16_gallery_and_a_k_larger_than_the_gallery(tmp_path, data) -> None:
    queries, gallery, _ = data
    np.save(tmp_path / "g.npy", gallery[:40].astype(np.float16))
    mm = np.load(tmp_path / "g.npy", mmap_mode="r")
    idx, _ = exact_topk(queries, mm, 100, np.arange(len(queries)) % 40, gallery_chunk=16)
    assert idx.shape == (len(queries), 39)  # k clamps to the 39 rows each query may retrieve
    want, _ = _full_sort(queries, gallery[:40].astype(np.float16).astype(np.float32), 39, np.arange(len(queries)) % 40)
    np.testing.assert_array_equal(np.sort(idx, axis=1), np.sort(want, axis=1))


def test_top1_accuracy_counts_label_hits_with_the_query_left_out() -> None:
    x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]], dtype=np.float32)
    labels = np.array([0, 0, 1, 0])
    # each item's nearest other item: 1, 0, 3, 2 -> labels 0, 0, 0, 1: items 0 and 1 hit
    assert top1_accuracy(x, x, labels, labels, exclude=np.arange(4)) == 0.5


def test_mismatched_dims_and_empty_galleries_are_refused() -> None:
    with pytest.raises(ValueError, match="do not match"):
        exact_topk(np.zeros((2, 3), np.float32), np.zeros((4, 5), np.float32), 1)
    with pytest.raises(ValueError, match="too small"):
        exact_topk(np.zeros((1, 3), np.float32), np.zeros((1, 3), np.float32), 1, np.array([0]))


def test_a_tie_group_wider_than_k_keeps_its_lowest_rows_whatever_the_chunking() -> None:
    rng = np.random.default_rng(6)
    # small whole numbers: every product is exact, so chunked and whole products agree to the bit
    gallery = rng.integers(-3, 4, (90, 8)).astype(np.float32)
    queries = rng.integers(-3, 4, (12, 8)).astype(np.float32)
    group = rng.choice(90, size=25, replace=False)
    gallery[group] = queries[0]  # 25 rows tie exactly for query 0, and for every other query too
    scores = queries @ gallery.T
    canonical = np.lexsort((np.broadcast_to(np.arange(90), scores.shape), -scores.astype(np.float64)), axis=1)[:, :7]
    for chunk in (7, 16, 90):
        idx, _ = exact_topk(queries, gallery, 7, gallery_chunk=chunk, block=5)
        np.testing.assert_array_equal(idx, canonical)


def test_only_some_queries_excluding_a_row_leaves_the_others_the_whole_gallery() -> None:
    """With one query excluding its own row, every ranking was cut to n - 1: the others lost their last row."""
    rng = np.random.default_rng(3)
    gallery = l2_normalize(rng.standard_normal((9, 4)).astype(np.float32))
    queries = gallery[:3].copy()
    idx, scores = exact_topk(queries, gallery, 50, np.array([0, -1, -1]), gallery_chunk=4)
    assert idx.shape == (3, 9)
    assert sorted(idx[1].tolist()) == sorted(idx[2].tolist()) == list(range(9))  # the whole gallery, ranked
    assert 0 not in idx[0].tolist() and idx[0, -1] == -1 and scores[0, -1] == -np.inf  # an empty slot, last
    assert sorted(idx[0, :8].tolist()) == list(range(1, 9))
    every, _ = exact_topk(queries, gallery, 50, np.array([0, 1, 2]))
    assert every.shape == (3, 8)  # each query excludes a row: n - 1 ranked
