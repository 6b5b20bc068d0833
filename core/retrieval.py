"""Exact top-k retrieval by inner product, in blocks, with label-based hit counting.

This is the numpy exact search the training loop uses for early stopping and held-out numbers,
and the reference the report's faiss search measures its recall against. Conventions:
queries and gallery are 2-D float arrays (rows L2-normalised by the caller when cosine is meant),
``exclude`` pairs each query with a gallery row to skip (the query itself when Q is inside G).
"""

from __future__ import annotations

import numpy as np

from embridge.core.l2 import l2_normalize

__all__ = ["exact_topk", "l2_normalize", "merge_topk", "rows_lost_to_exclusion", "top1_accuracy"]


def rows_lost_to_exclusion(exclude: np.ndarray | None) -> int:
    """How many gallery rows every query's ranking lacks: 1 when each query excludes a row (its own item),
    else 0, so a query that excludes nothing still ranks the whole gallery when only some queries exclude
    (a judged query sharing a document's key) and its last relevant document is not cut off."""
    if exclude is None:
        return 0
    ex = np.asarray(exclude)
    return int(ex.size > 0 and bool((ex >= 0).all()))


def exact_topk(
    queries: np.ndarray,
    gallery: np.ndarray,
    k: int,
    exclude: np.ndarray | None = None,
    block: int = 1024,
    gallery_chunk: int = 16_384,
    normalize_gallery: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices and scores of the k best gallery rows per query, best first.

    ``exclude[i]`` is a gallery row index that query i must not retrieve (or -1 for none). The
    gallery may be a memmap of any float dtype: it is read ``gallery_chunk`` rows at a time and
    a running top-k is kept, so memory stays at one block x chunk score tile. k = 1 (the pair and
    label top-1 of validation) takes a plain argmax, larger k merges only the scores above each
    query's current k-th best: both cost about the product itself.
    ``normalize_gallery`` L2-normalises each chunk as it is read (cosine against a raw gallery
    without a normalised copy of all of it).
    """
    q = np.ascontiguousarray(queries, dtype=np.float32)
    shape = getattr(gallery, "shape", ())
    if q.ndim != 2 or len(shape) != 2 or q.shape[1] != shape[1]:
        raise ValueError(f"query dim {q.shape} and gallery dim {tuple(shape)} do not match")
    n_q, n = q.shape[0], int(shape[0])
    ex = None if exclude is None else np.asarray(exclude, dtype=np.int64)
    k = min(k, n - rows_lost_to_exclusion(ex))
    if k <= 0:
        raise ValueError("the gallery is too small to retrieve anything")
    best_idx = np.full((n_q, k), -1, dtype=np.int64)
    best_score = np.full((n_q, k), -np.inf, dtype=np.float32)
    merge = _merge_best if k == 1 else merge_topk
    for g_start in range(0, n, gallery_chunk):
        g_stop = min(g_start + gallery_chunk, n)
        g = np.ascontiguousarray(gallery[g_start:g_stop], dtype=np.float32)
        if normalize_gallery:
            g = l2_normalize(g)
        for start in range(0, n_q, block):
            stop = min(start + block, n_q)
            scores = q[start:stop] @ g.T
            if ex is not None:
                local = ex[start:stop] - g_start
                inside = np.flatnonzero((local >= 0) & (local < g_stop - g_start))
                scores[inside, local[inside]] = -np.inf
            merge(scores, g_start, best_idx[start:stop], best_score[start:stop])
    if k > 1:
        order = np.argsort(-best_score, axis=1, kind="stable")
        best_idx = np.take_along_axis(best_idx, order, axis=1)
        best_score = np.take_along_axis(best_score, order, axis=1)
    best_idx[best_score == -np.inf] = -1  # an excluded row merged into a query's last slot is an empty slot
    return best_idx, best_score


def _merge_best(scores: np.ndarray, offset: int, best_idx: np.ndarray, best_score: np.ndarray) -> None:
    """Fold one score tile (gallery rows from ``offset``) into the running best match, in place."""
    col = scores.argmax(axis=1)
    top = scores[np.arange(len(scores)), col]
    better = top > best_score[:, 0]
    best_idx[better, 0] = col[better] + offset
    best_score[better, 0] = top[better]


def merge_topk(scores: np.ndarray, offset: int, best_idx: np.ndarray, best_score: np.ndarray,
               ids: np.ndarray | None = None) -> None:
    """Fold one score tile (gallery rows from ``offset``, or the rows ``ids`` names per column) into
    the running top k, in place, in the one canonical order: score descending, equal scores by lower
    gallery row (so a tie group larger than k keeps the same items whatever order the tiles come in).

    Only scores at or above a query's current k-th best can enter (in the first tile, its own k-th
    best), and after the first chunks a handful per query do: those are packed into a narrow
    (queries, most candidates) block and merged with the k kept, instead of sorting the whole tile.
    """
    k = best_idx.shape[1]
    kth = best_score.min(axis=1, keepdims=True)
    width = scores.shape[1]
    if width >= k and not np.isfinite(kth).all():  # the first tile bounds itself by its own k-th best
        kth = np.maximum(kth, np.partition(scores, width - k, axis=1)[:, width - k:width - k + 1])
    flat = np.flatnonzero(scores >= kth)  # row-major: each query's candidates together
    if not len(flat):
        return
    rows, cols = np.divmod(flat, width)
    counts = np.bincount(rows, minlength=len(scores))
    most = int(counts.max())
    slot = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    cand_score = np.full((len(scores), most), -np.inf, dtype=np.float32)
    cand_idx = np.full((len(scores), most), -1, dtype=np.int64)
    cand_score[rows, slot] = scores[rows, cols]
    cand_idx[rows, slot] = cols + offset if ids is None else ids[cols]
    merged_score = np.concatenate([best_score, cand_score], axis=1)
    merged_idx = np.concatenate([best_idx, cand_idx], axis=1)
    key_id = np.where(merged_idx < 0, np.iinfo(np.int64).max, merged_idx)  # empty slots after every item
    order = np.lexsort((key_id, -merged_score.astype(np.float64)), axis=1)[:, :k]
    best_score[:] = np.take_along_axis(merged_score, order, axis=1)
    best_idx[:] = np.take_along_axis(merged_idx, order, axis=1)


def label_topk_hits(topk_idx: np.ndarray, query_labels: np.ndarray, gallery_labels: np.ndarray) -> np.ndarray:
    """Boolean matrix: is the j-th retrieved item of query i of the same label?"""
    return np.asarray(gallery_labels)[topk_idx] == np.asarray(query_labels)[:, None]


def top1_accuracy(
    queries: np.ndarray,
    gallery: np.ndarray,
    query_labels: np.ndarray,
    gallery_labels: np.ndarray,
    exclude: np.ndarray | None = None,
) -> float:
    """Share of queries whose nearest gallery item has the same label (CMC top-1)."""
    idx, _ = exact_topk(l2_normalize(queries), l2_normalize(gallery), 1, exclude)
    return float(label_topk_hits(idx, query_labels, gallery_labels)[:, 0].mean())
