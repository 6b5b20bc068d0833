"""Exact top-k retrieval by inner product, in blocks, with label-based hit counting.

This is the small exact search the training loop uses for early stopping and held-out numbers;
the report module builds faiss-backed exact and approximate search on the same conventions:
queries and gallery are 2-D float arrays (rows L2-normalised by the caller when cosine is meant),
``exclude`` pairs each query with a gallery row to skip (the query itself when Q is inside G).
"""

from __future__ import annotations

import numpy as np


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Row-normalise to unit length as float32 (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, eps)


def exact_topk(
    queries: np.ndarray,
    gallery: np.ndarray,
    k: int,
    exclude: np.ndarray | None = None,
    block: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices and scores of the k best gallery rows per query, best first.

    ``exclude[i]`` is a gallery row index that query i must not retrieve (or -1 for none).
    """
    q = np.asarray(queries, dtype=np.float32)
    g = np.asarray(gallery, dtype=np.float32)
    if q.ndim != 2 or g.ndim != 2 or q.shape[1] != g.shape[1]:
        raise ValueError(f"query dim {q.shape} and gallery dim {g.shape} do not match")
    k = min(k, g.shape[0] - (1 if exclude is not None else 0))
    if k <= 0:
        raise ValueError("the gallery is too small to retrieve anything")
    idx_out = np.empty((q.shape[0], k), dtype=np.int64)
    score_out = np.empty((q.shape[0], k), dtype=np.float32)
    for start in range(0, q.shape[0], block):
        stop = min(start + block, q.shape[0])
        scores = q[start:stop] @ g.T
        if exclude is not None:
            rows = np.arange(stop - start)
            ex = np.asarray(exclude[start:stop])
            valid = ex >= 0
            scores[rows[valid], ex[valid]] = -np.inf
        part = np.argpartition(-scores, kth=k - 1, axis=1)[:, :k]
        part_scores = np.take_along_axis(scores, part, axis=1)
        order = np.argsort(-part_scores, axis=1, kind="stable")
        idx_out[start:stop] = np.take_along_axis(part, order, axis=1)
        score_out[start:stop] = np.take_along_axis(part_scores, order, axis=1)
    return idx_out, score_out


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
