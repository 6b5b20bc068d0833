"""A note when imported vectors' lengths vary widely: Embridge compares by cosine, a served index may not.

Every number Embridge reports is measured on L2-normalised vectors (cosine similarity). Models that
emit unit or near-unit vectors lose nothing to that; vectors whose lengths carry meaning (popularity in
a recommender served by raw inner product, say) rank differently in the index that serves them than in
the reports. The spread is read on a seeded sample of rows, so a large import pays almost nothing.
"""

from __future__ import annotations

import numpy as np

SAMPLE_ROWS = 4_096
BLOCK_ROWS = 256  # rows read at a time: memory stays a few blocks whatever the width
SPREAD = 4.0  # 95th over 5th percentile of the lengths above which the note is given


def length_note(matrix: np.ndarray, seed: int = 0) -> str | None:
    """'lengths vary from 0.8 to 75.7 ...' when the rows' L2 lengths spread widely, else None."""
    n = len(matrix)
    if n < 2:
        return None
    rows = np.sort(np.random.default_rng(seed).choice(n, size=min(n, SAMPLE_ROWS), replace=False))
    lengths = np.concatenate([np.linalg.norm(np.asarray(matrix[rows[at:at + BLOCK_ROWS]], dtype=np.float64), axis=1)
                              for at in range(0, len(rows), BLOCK_ROWS)])
    lengths = lengths[lengths > 0]
    if len(lengths) < 2:
        return None
    low, high = np.percentile(lengths, [5, 95])
    if low <= 0 or high / low < SPREAD:
        return None
    return (f"the vectors' lengths vary widely (5th to 95th percentile {low:.3g} to {high:.3g}); Embridge "
            "measures by cosine (every vector L2-normalised), so an index that ranks these vectors by raw inner "
            "product ranks differently from what its reports measure")
