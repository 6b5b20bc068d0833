"""Filling a trained IVF index with every inverted list sized once, before the vectors go in.

``IndexIVFFlat.add`` appends each chunk's vectors to their lists, and every list regrows its storage
as it fills: at a million 384-d rows the index then held about 570 MB of spare capacity beyond its
1.5 GB of vectors. Here the coarse assignment of every row is computed first (the work ``add``
would do anyway), each list's storage is reserved for exactly the rows it will hold, and the rows
are added with their assignment (``add_core``), so the index is bit-identical and holds no slack.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from embridge.core.progress import ProgressFn, StopFn, check_stop


def add_presized(index: Any, faiss: Any, n: int, chunk: int,
                 rows_of: Callable[[int, int], np.ndarray], on_progress: ProgressFn,
                 should_stop: StopFn | None) -> None:
    """Add the gallery's rows [0, n) (read by ``rows_of(start, stop)`` as checked float32) to the
    trained, empty IVF ``index``; progress counts both passes (assignment, then adding)."""
    assignment = np.empty(n, dtype=np.int64)
    for start in range(0, n, chunk):
        check_stop(should_stop)
        stop = min(start + chunk, n)
        assignment[start:stop] = index.quantizer.assign(rows_of(start, stop), 1).ravel()
        on_progress(stop, 2 * n, {"stage": "index"})
    lists = index.invlists
    for list_no, size in enumerate(np.bincount(assignment, minlength=index.nlist).tolist()):
        if size:  # grown to its final size and emptied again: the capacity stays reserved
            lists.resize(list_no, size)
            lists.resize(list_no, 0)
    for start in range(0, n, chunk):
        check_stop(should_stop)
        stop = min(start + chunk, n)
        block = rows_of(start, stop)
        index.add_core(stop - start, faiss.swig_ptr(block), None, faiss.swig_ptr(assignment[start:stop]))
        on_progress(n + stop, 2 * n, {"stage": "index"})
