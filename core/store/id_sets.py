"""Sets of item ids as sorted arrays: numpy's set operations without the sort when it is already done.

Item ids come out of the workspace sorted and unique almost everywhere (SQLite ``order by id``,
vector-set id lists), yet ``np.unique`` and ``np.intersect1d`` sort again every time: at a million
ids that is a third of a second per call, and a training run makes dozens. These check the order
in one pass and only sort when they must; the results are those of numpy's functions.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def is_sorted_unique(ids: np.ndarray) -> bool:
    """Strictly ascending (so sorted and without repeats)."""
    return ids.ndim == 1 and (len(ids) < 2 or bool(np.all(ids[1:] > ids[:-1])))


def unique_ids(ids: Any) -> np.ndarray:
    """``np.unique(ids)``, without the sort when ``ids`` is already strictly ascending."""
    arr = np.asarray(ids)
    return arr if is_sorted_unique(arr) else np.unique(arr)


def intersect_ids(a: Any, b: Any) -> np.ndarray:
    """``np.intersect1d(a, b)``: the sorted ids in both, by binary search of the smaller in the larger."""
    small, large = unique_ids(a), unique_ids(b)
    if len(small) > len(large):
        small, large = large, small
    if not len(small) or not len(large):
        return np.intersect1d(small, large)
    pos = np.minimum(np.searchsorted(large, small), len(large) - 1)
    common = small[large[pos] == small]
    return common.astype(np.result_type(small, large), copy=False)
