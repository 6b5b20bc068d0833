"""Copying a model's rows out of a vector file's map into a gathered matrix.

Used by :meth:`embridge.core.store.Workspace.vectors_for`: find which requested ids a set holds,
then copy them in blocks whose pages are released as they are used.
"""

from __future__ import annotations

import numpy as np

from embridge.core.store.id_sets import is_sorted_unique
from embridge.core.store.vector_matrix import release_pages

GATHER_BLOCK = 16_384  # rows copied from a vector file between releases of its pages
SPARSE_BLOCK = 1_024  # the same for scattered rows, whose faults each map their neighbours too


def copy_rows(out: np.ndarray, slots: np.ndarray, matrix: np.ndarray, rows: np.ndarray) -> None:
    """``out[slots] = matrix[rows]`` for ascending rows of a file map, then the rows' pages let go.

    A map keeps every page it touched resident, and the kernel maps a cached file's neighbouring
    pages on each fault: gathering a sparse sample of a 1.5 GB gallery once put the whole file in
    the process's memory. Releasing each block's range keeps that to one block.
    """
    if rows[-1] - rows[0] + 1 == len(rows) and slots[-1] - slots[0] + 1 == len(slots):
        out[slots[0]:slots[-1] + 1] = matrix[rows[0]:rows[-1] + 1]  # a run of rows: a slice, not a gather
        release_pages(matrix, int(rows[0]), int(rows[-1]) + 1)
        return
    for start in range(0, len(rows), SPARSE_BLOCK):  # each fault maps up to 64 KB around a scattered row
        part = rows[start:start + SPARSE_BLOCK]
        out[slots[start:start + SPARSE_BLOCK]] = matrix[part]
        release_pages(matrix, int(part[0]), int(part[-1]) + 1)


def matching_rows(unique: np.ndarray, ids: np.ndarray, filled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positions in ``unique``, rows of the set) of the not-yet-filled requested ids the set holds.

    A set's id list is almost always ascending: then each requested id is looked up in it (a block
    of a large gallery costs its own size, not the set's); otherwise each set id is looked up in the request.
    """
    if len(ids) and is_sorted_unique(ids):
        pos = np.minimum(np.searchsorted(ids, unique), len(ids) - 1)
        slots = np.flatnonzero((ids[pos] == unique) & ~filled)
        return slots, pos[slots]
    slot = np.minimum(np.searchsorted(unique, ids), len(unique) - 1)  # unique is not empty here
    rows = np.flatnonzero((unique[slot] == ids) & ~filled[slot])
    return slot[rows], rows
