"""Notes on imported vectors: lengths that vary widely (Embridge compares by cosine, a served index may
not), and directions so close that float32 scores cannot rank them.

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
RANKED_SPREAD = 1.1  # the same, for vectors whose store is known to rank by their lengths too (dot, L2, L1)
RANKED_BY = {"dot": "inner product", "l2": "L2 distance", "l1": "L1 distance"}
NARROW = 1e-5  # median 1 - cos between sampled rows below which float32 scores rank by rounding


def _sample_shape(matrix: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(the sampled rows' L2 lengths, 1 - cos between neighbouring sampled rows of one block), in one read
    of a seeded sample of ``SAMPLE_ROWS`` rows, ``BLOCK_ROWS`` at a time (memory: one block)."""
    n = len(matrix)
    rows = np.sort(np.random.default_rng(seed).choice(n, size=min(n, SAMPLE_ROWS), replace=False))
    lengths, gaps = [], []
    for at in range(0, len(rows), BLOCK_ROWS):
        block = np.asarray(matrix[rows[at:at + BLOCK_ROWS]], dtype=np.float64)
        norms = np.linalg.norm(block, axis=1)
        unit = block[norms > 0] / norms[norms > 0, None]
        lengths.append(norms)
        gaps.append(1.0 - np.einsum("ij,ij->i", unit[:-1], unit[1:]))
    empty = np.zeros(0)
    return (np.concatenate(lengths) if lengths else empty), (np.concatenate(gaps) if gaps else empty)


def length_note(matrix: np.ndarray, seed: int = 0) -> str | None:
    """'lengths vary from 0.8 to 75.7 ...' when the rows' L2 lengths spread widely, else None."""
    return _length_sentence(_sample_shape(matrix, seed)[0]) if len(matrix) >= 2 else None


def narrow_note(matrix: np.ndarray, seed: int = 0) -> str | None:
    """A note when the rows point so nearly one way (a large common offset, say) that the float32 cosine
    scores every search uses differ between items by less than their rounding: rankings are then noise."""
    return _narrow_sentence(_sample_shape(matrix, seed)[1]) if len(matrix) >= 3 else None


def vector_notes(matrix: np.ndarray, metric: str | None = None) -> str | None:
    """The notes that apply to a stored vector set, as one sentence, or None (the sample read once).
    ``metric``: how the store the vectors came from ranks them, where it says (see Connector.metric)."""
    if len(matrix) < 2:
        return None
    lengths, gaps = _sample_shape(matrix, 0)
    notes = (_length_sentence(lengths, metric), _narrow_sentence(gaps) if len(matrix) >= 3 else None)
    return "; ".join(n for n in notes if n) or None


def _spread(lengths: np.ndarray, at_least: float) -> tuple[float, float] | None:
    """(5th, 95th percentile) of the non-zero ``lengths`` when the second is at least ``at_least`` times the
    first, else None."""
    lengths = lengths[lengths > 0]
    if len(lengths) < 2:
        return None
    low, high = np.percentile(lengths, [5, 95])
    return (float(low), float(high)) if low > 0 and high / low >= at_least else None


def _length_sentence(lengths: np.ndarray, metric: str | None = None) -> str | None:
    if metric == "cosine":  # a store said to rank by cosine ranks as Embridge measures
        return None
    ranked = RANKED_BY.get(metric or "")
    spread = _spread(lengths, RANKED_SPREAD if ranked else SPREAD)
    if spread is None:
        return None
    low, high = spread
    if ranked:  # the store said so: not a possibility but what it serves
        return (f"the store ranks by {ranked}, and these vectors' lengths vary (5th to 95th percentile {low:.3g} "
                f"to {high:.3g}); Embridge measures by cosine (every vector L2-normalised), so its numbers are not "
                "what this store serves: normalise the store's vectors, or read `embridge check --label-field` "
                "there, which ranks as the store does")
    return (f"the vectors' lengths vary widely (5th to 95th percentile {low:.3g} to {high:.3g}); Embridge "
            "measures by cosine (every vector L2-normalised), so an index that ranks these vectors by raw inner "
            "product ranks differently from what its reports measure")


def unit_output_note(vectors: np.ndarray, metric: str | None) -> str | None:
    """What a migration's unit-length outputs change in a store that ranks by length too (``metric`` dot, L2
    or L1) when the source's ``vectors`` (a sample) vary in length; None otherwise."""
    ranked = RANKED_BY.get(metric or "")
    lengths = np.linalg.norm(np.asarray(vectors, dtype=np.float64), axis=1) if len(vectors) else np.zeros(0)
    spread = _spread(lengths, RANKED_SPREAD) if ranked else None
    if spread is None:
        return None
    low, high = spread
    return (f"the source store ranks by {ranked}, and its vectors' lengths vary (5th to 95th percentile {low:.3g} to "
            f"{high:.3g} in the {len(vectors)} points verified); the shadow holds the bundle's unit-length vectors, "
            "so it ranks them as cosine does: what those lengths carried (popularity, say) no longer counts there")


def _narrow_sentence(gaps: np.ndarray) -> str | None:
    if gaps.size < 2:
        return None
    gap = float(np.median(gaps))
    if gap >= NARROW:
        return None
    return (f"the vectors point almost the same way (median 1 - cosine between sampled rows {gap:.2g}), closer than "
            "float32 scores resolve, so searches rank them partly by rounding; subtract their mean vector (centre "
            "them) before importing")
