"""Refuse a vector set in which every vector points the same way: nothing can be searched by it.

A model with zero (or constant) weights, a broken export or a file of repeated rows gives every item
one vector. Cosine search then ranks by ties alone, and every number measured on the set is an
artefact of the gallery's order (all recalls equal, a "gain" over the old model out of nothing). The
rows are read on a seeded sample, so a large set pays almost nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

SAMPLE_ROWS = 4_096
BLOCK_ROWS = 256  # rows read at a time: memory stays a few blocks whatever the width
MIN_ROWS = 3  # two items may be duplicates; three alike are a model that ignores its input
TOLERANCE = 1e-6  # on unit vectors: float32 rounding of one direction stays far below it


class DirectionWatch:
    """Fed blocks of rows, tells whether every row seen so far points one way (or is zero)."""

    def __init__(self) -> None:
        self.first: np.ndarray | None = None
        self.rows = 0
        self.alike = True
        self.zero = True

    def feed(self, block: np.ndarray) -> None:
        if not self.alike or len(block) == 0:
            return
        # one direction stored at the block's precision: float16 rounds a unit vector's values by ~1e-3
        stored = np.asarray(block).dtype
        tolerance = max(TOLERANCE, 8 * float(np.finfo(stored).eps)) if np.issubdtype(stored, np.floating) \
            else TOLERANCE
        block = np.asarray(block, dtype=np.float64)
        lengths = np.linalg.norm(block, axis=1, keepdims=True)
        unit = np.divide(block, lengths, out=np.zeros_like(block), where=lengths > 0)
        self.first = unit[0] if self.first is None else self.first
        self.alike = bool(np.abs(unit - self.first).max(initial=0.0) <= tolerance)
        self.zero = self.zero and not lengths.any()
        self.rows += len(block)

    def found(self, minimum: int = MIN_ROWS) -> str | None:
        """'are zero' / 'point the same way' when every row fed does (of at least ``minimum``), else None."""
        if not self.alike or self.rows < minimum:
            return None
        return "are zero" if self.zero else "point the same way"


def one_direction(matrix: np.ndarray, seed: int = 0, minimum: int = MIN_ROWS) -> str | None:
    """'are zero' / 'point the same way' when every sampled row does (of at least ``minimum``), else None."""
    n = len(matrix)
    if n < minimum:
        return None
    rows = np.sort(np.random.default_rng(seed).choice(n, size=min(n, SAMPLE_ROWS), replace=False))
    watch = DirectionWatch()
    for at in range(0, len(rows), BLOCK_ROWS):
        watch.feed(matrix[rows[at:at + BLOCK_ROWS]])
    return watch.found(minimum)


def spread_problem(matrix: np.ndarray, seed: int = 0) -> str | None:
    """The refusal's sentence for a set whose vectors share one direction, else None."""
    found = one_direction(matrix, seed)
    n = len(matrix)
    return None if found is None else problem_sentence(found, n, min(n, SAMPLE_ROWS))


def problem_sentence(found: str, rows: int, read: int) -> str:
    which = f"all {rows:,} vectors" if read >= rows else f"all {read:,} vectors sampled of {rows:,}"
    return (f"{which} {found}: the model gives one vector whatever the item, so cosine search can only rank "
            "by ties and every number measured on them would be meaningless")


def blocks_problem(blocks: Iterable[np.ndarray], read_all: bool = True) -> str | None:
    """The refusal's sentence for rows, fed a block at a time, that all share one direction, else None.
    ``read_all=False`` stops at the first block that tells otherwise (one block, for any usable file)."""
    watch = DirectionWatch()
    for block in blocks:
        watch.feed(block)
        if not read_all and not watch.alike:
            break
    found = watch.found()
    return None if found is None else problem_sentence(found, watch.rows, watch.rows)
