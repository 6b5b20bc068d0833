"""The one top-k order: score descending, ties by lower gallery row, empty slots (-1) last.

Both the single-index search and the sharded search end here, so a gallery searched in one piece
or in many shards yields the same ids in the same order whenever the scores agree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def canonical_order(idx: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of (ids, scores) reordered best first, equal scores by ascending id, -1 slots last."""
    return merge_topk([idx], [scores], idx.shape[1])


def merge_topk(idx_parts: Sequence[np.ndarray], score_parts: Sequence[np.ndarray],
               k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k per row of several partial top-k lists over disjoint gallery rows.

    Each part is (n_queries, k_part) global gallery rows (-1 = empty) and float32 scores; since every
    part holds its own best k, the best k of their union is the exact top-k of the whole gallery.
    """
    idx = np.concatenate([np.asarray(p, dtype=np.int64) for p in idx_parts], axis=1)
    scores = np.concatenate([np.asarray(s, dtype=np.float32) for s in score_parts], axis=1)
    empty = idx < 0
    key_score = np.where(empty, np.inf, -scores.astype(np.float64))
    key_id = np.where(empty, np.iinfo(np.int64).max, idx)
    order = np.lexsort((key_id, key_score), axis=1)[:, :k]
    out_idx = np.take_along_axis(idx, order, axis=1)
    out_scores = np.take_along_axis(scores, order, axis=1)
    out_scores = np.where(out_idx >= 0, out_scores, -np.inf).astype(np.float32)
    return out_idx, out_scores


def tie_complete_search(search: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]], queries: np.ndarray,
                        want: int, ntotal: int) -> tuple[np.ndarray, np.ndarray]:
    """The canonical top ``want`` of an index search, with every tie at the cut resolved by lower id.

    ``search(q, n)`` is a faiss-style search returning (scores, ids) best first. An index may drop any
    of several equal scores at its cut, so rows whose last returned score still equals the score at
    position ``want`` are searched again with twice the depth until the tie group is complete.
    """
    n_q = queries.shape[0]
    out_idx = np.full((n_q, want), -1, dtype=np.int64)
    out_scores = np.full((n_q, want), -np.inf, dtype=np.float32)
    rows = np.arange(n_q)
    ask = min(want + 1, ntotal)
    while rows.size:
        scores, idx = search(queries[rows], ask)
        idx = idx.astype(np.int64, copy=False)
        scores = np.where(idx >= 0, scores, -np.inf).astype(np.float32)
        top_idx, top_scores = canonical_order(idx, scores)
        cut = min(want, ask) - 1
        open_tie = (idx[:, -1] >= 0) & (scores[:, -1] == top_scores[:, cut]) if ask < ntotal else np.zeros(
            len(rows), dtype=bool)
        done = rows[~open_tie]
        width = min(want, ask)
        out_idx[done, :width] = top_idx[~open_tie, :width]
        out_scores[done, :width] = top_scores[~open_tie, :width]
        rows, ask = rows[open_tie], min(2 * ask, ntotal)
    return out_idx, out_scores


def mask_excluded(idx: np.ndarray, scores: np.ndarray, exclude: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Results with each row's excluded id (``exclude[i]``, -1 for none) turned into an empty slot, reordered."""
    if exclude is None:
        return idx, scores
    hit = (idx == exclude[:, None]) & (exclude[:, None] >= 0)
    return canonical_order(np.where(hit, -1, idx), np.where(hit, -np.inf, scores).astype(np.float32))
