"""The id-set helpers give numpy's answers, sorted inputs or not."""

from __future__ import annotations

import numpy as np
import pytest

from embridge.core.store.id_sets import intersect_ids, is_sorted_unique, unique_ids


@pytest.mark.parametrize("seed", range(20))
def test_unique_and_intersect_equal_numpy_on_sorted_unsorted_repeated_and_empty_ids(seed: int) -> None:
    rng = np.random.default_rng(seed)
    make = [lambda n: np.sort(rng.choice(10_000, n, replace=False)),  # the usual: sorted, unique
            lambda n: rng.integers(0, 300, n),  # repeats, any order
            lambda n: rng.permutation(n) * 3]
    a = make[seed % 3](int(rng.integers(0, 400)))
    b = make[(seed // 3) % 3](int(rng.integers(0, 400)))
    np.testing.assert_array_equal(unique_ids(a), np.unique(a))
    got, want = intersect_ids(a, b), np.intersect1d(a, b)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == want.dtype


def test_sorted_unique_means_strictly_ascending() -> None:
    assert is_sorted_unique(np.array([], np.int64)) and is_sorted_unique(np.array([5]))
    assert is_sorted_unique(np.array([1, 2, 9]))
    assert not is_sorted_unique(np.array([1, 1, 2])) and not is_sorted_unique(np.array([2, 1]))
    empty = np.zeros(0, np.int64)
    assert intersect_ids(empty, np.arange(3)).size == 0 and intersect_ids(np.arange(3), empty).size == 0
    already = np.arange(5)
    assert unique_ids(already) is already  # nothing sorted or copied
