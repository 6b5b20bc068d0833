"""``cascade``: the old index recalls the top K, the new model re-ranks those K.

Stage one is today's search (old query against the old index), so recall never depends on a
layer. Stage two re-scores the K recalled items with the new query: against an item's new vector
where the new model has embedded it, otherwise through the layer (the mapped new query against
the item's old vector). Serving cost: both encoders during the transition and K re-scored items
per query. K is chosen on dev queries (see :func:`choose_k`); K = 1 is today's system.

``new_vectors`` False re-ranks every recalled item through the layer, even where a new vector is
stored: the cascade then re-embeds nothing, which is how ``auto`` measures it beside the layers
(new vectors in the re-rank are a backfill, a different and costlier option).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from embridge.core.adapters.adapter import Adapter
from embridge.core.retrieval import exact_topk, l2_normalize

K_GRID = [5, 10, 20, 50, 100]


class CascadeAdapter(Adapter):
    """Records a cascade's re-rank depth ``k`` and holds its fallback layer ``base`` (new -> old)."""

    def __init__(self, base: Adapter, k: int = 20, new_vectors: bool = True) -> None:
        if base.direction != "backward":
            raise ValueError(f"a cascade needs a new->old fallback layer, not {base.kind} ({base.direction})")
        super().__init__("cascade", "backward", base.in_dim, base.out_dim)
        self.base = base
        self.new_vectors = bool(new_vectors)
        self.register_buffer("k", torch.tensor(int(k)))

    def config(self) -> dict[str, Any]:
        return {"base": {"kind": self.base.kind, "config": self.base.config()}, "k": int(self.k),
                "new_vectors": self.new_vectors}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The fallback layer: new vectors mapped for items that have no new vector."""
        return self.base(x)


@dataclass
class CascadeRanking:
    """Gallery rows (best first) and their stage-two scores, one row per query."""

    ids: np.ndarray
    scores: np.ndarray


def cascade_rank(
    old_queries: np.ndarray,
    old_gallery: np.ndarray,
    new_queries: np.ndarray,
    new_gallery: np.ndarray | None,
    new_rows: np.ndarray | None,
    k: int,
    layer: Callable[[np.ndarray], np.ndarray] | None = None,
    exclude: np.ndarray | None = None,
    depth: int | None = None,
    recall: tuple[np.ndarray, np.ndarray] | None = None,
) -> CascadeRanking:
    """Rank the old index's top ``k`` per query by the new query (see the module doc).

    ``new_gallery[j]`` is the new vector of gallery row ``new_rows[j]`` (None: no item has one);
    ``layer`` maps new queries into the old space for items without a new vector, and is required
    only when some recalled item lacks one; ``exclude[i]`` is a gallery row query i may not recall
    (itself, when queries are gallery items), or -1. Vectors are compared by cosine. With ``depth``
    above ``k`` the ranking continues past the re-ranked head in the old index's order (tail
    scores are the old model's), so metrics deeper than K can be measured. ``recall`` is stage one
    already done (:func:`old_recall` at a depth of at least ``max(k, depth)``), so several K can share
    one search of the old gallery.
    """
    width = max(k, depth or 0)
    if recall is None:
        recall = old_recall(old_queries, old_gallery, width, exclude)
    recalled, old_scores = recall[0][:, :width], recall[1][:, :width]
    tail_ids, tail_scores = recalled[:, k:], old_scores[:, k:]
    recalled = recalled[:, :k]
    nq = l2_normalize(new_queries)
    where = np.full(len(old_gallery), -1, dtype=np.int64)
    if new_gallery is not None:
        rows = np.arange(len(new_gallery)) if new_rows is None else np.asarray(new_rows, dtype=np.int64)
        where[rows] = np.arange(len(rows))
    empty = recalled < 0  # a query that excludes a row recalls one fewer when k covers the whole gallery
    slot = np.where(empty, -1, where[recalled])  # (q, k) row of each recalled item's new vector, -1 for none
    scores = np.full(recalled.shape, -np.inf, dtype=np.float32)
    has = slot >= 0
    if has.any():
        unique, back = np.unique(slot[has], return_inverse=True)
        ng = l2_normalize(np.asarray(new_gallery[unique]))
        scores[has] = np.einsum("ij,ij->i", np.repeat(nq, has.sum(axis=1), axis=0), ng[back.reshape(-1)])
    lacks = ~has & ~empty
    if lacks.any():
        if layer is None:
            raise ValueError("some recalled items have no new vector and no layer was given to score them")
        mapped = l2_normalize(layer(np.asarray(new_queries, dtype=np.float32)))
        unique, back = np.unique(recalled[lacks], return_inverse=True)  # only the recalled old rows, normalised
        og = l2_normalize(np.asarray(old_gallery[unique]))
        scores[lacks] = np.einsum("ij,ij->i", np.repeat(mapped, lacks.sum(axis=1), axis=0), og[back.reshape(-1)])
    order = np.argsort(-scores, axis=1, kind="stable")
    ids = np.concatenate([np.take_along_axis(recalled, order, axis=1), tail_ids], axis=1)
    return CascadeRanking(ids, np.concatenate([np.take_along_axis(scores, order, axis=1), tail_scores], axis=1))


def old_recall(old_queries: np.ndarray, old_gallery: np.ndarray, width: int,
               exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Stage one: the old index's top ``width`` rows and cosine scores per query, best first (the
    gallery, array or memmap, is normalised chunk by chunk as it is read, never copied whole)."""
    return exact_topk(l2_normalize(old_queries), old_gallery, width, exclude, normalize_gallery=True)


@dataclass
class KChoice:
    """The chosen K, its dev score, and the score of every K tried."""

    k: int
    score: float
    scores: dict[int, float]


def choose_k(score_at: Callable[[int], float], grid: Sequence[int] = K_GRID) -> KChoice:
    """The K with the best dev score; on ties the smaller K (fewer re-ranks per query)."""
    scores = {int(k): float(score_at(int(k))) for k in sorted(set(grid))}
    best = max(scores, key=lambda k: (scores[k], -k))
    return KChoice(best, scores[best], scores)
