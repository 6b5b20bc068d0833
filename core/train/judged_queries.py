"""Queries with judged documents as plain arrays: a validation task for fits without a workspace.

A :class:`JudgedQueries` holds dev (or test) queries under both models, the whole old gallery
(every document, distractors included), the new vectors of the documents the new model has
embedded (``new_rows``: their gallery rows), and each query's relevant gallery rows. Every
serving option (old/old, a layer, fusion, a cascade, new/new) is scored on it by the same number,
top-1 (the first result is relevant, i.e. success@1), so choices are like for like. Passed as
``PairData.dev`` it is the validator of a fit (the array counterpart of
:func:`embridge.core.evaluation.selection.workspace_validator`, with the same interface).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from embridge.core.adapters.adapt_arrays import adapt_queries
from embridge.core.adapters.adapter import Adapter
from embridge.core.adapters.cascade import cascade_rank
from embridge.core.errors import InputError
from embridge.core.retrieval import exact_topk, l2_normalize


def _rows(name: str, value: np.ndarray, dim: int | None = None) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float32)
    if arr.ndim != 2 or len(arr) == 0 or (dim is not None and arr.shape[1] != dim):
        raise InputError(name, f"expected a non-empty 2-D array of vectors{f' of dim {dim}' if dim else ''}, "
                               f"got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise InputError(name, "contains NaN or infinite values")
    return l2_normalize(arr)


@dataclass
class JudgedQueries:
    """Queries (``old_queries``, ``new_queries``, one row per query) against the old gallery.

    ``relevant`` is (n_queries,) or (n_queries, r) gallery row indices, -1 padding. ``new_gallery``
    holds new vectors of the gallery rows ``new_rows`` (None: the new model embedded no document).
    """

    old_queries: np.ndarray
    new_queries: np.ndarray
    old_gallery: np.ndarray
    relevant: np.ndarray
    new_gallery: np.ndarray | None = None
    new_rows: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.old_gallery = _rows("old_gallery", self.old_gallery)
        self.old_queries = _rows("old_queries", self.old_queries, self.old_gallery.shape[1])
        self.new_queries = _rows("new_queries", self.new_queries)
        if len(self.new_queries) != len(self.old_queries):
            raise InputError("new_queries", f"has {len(self.new_queries)} rows but old_queries has "
                                            f"{len(self.old_queries)}")
        rel = np.asarray(self.relevant, dtype=np.int64)
        rel = rel[:, None] if rel.ndim == 1 else rel
        if rel.ndim != 2 or len(rel) != len(self.old_queries) or rel.max(initial=-1) >= len(self.old_gallery):
            raise InputError("relevant", "expected one row of gallery indices per query, each below the gallery size")
        if not (rel >= 0).any(axis=1).all():
            raise InputError("relevant", "every query needs at least one relevant gallery row")
        self.relevant = rel
        if self.new_gallery is not None:
            self.new_gallery = _rows("new_gallery", self.new_gallery, self.new_queries.shape[1])
            rows = np.arange(len(self.old_gallery)) if self.new_rows is None else np.asarray(self.new_rows, np.int64)
            if rows.shape != (len(self.new_gallery),) or rows.min() < 0 or rows.max() >= len(self.old_gallery):
                raise InputError("new_rows", "expected one gallery row index per new gallery vector")
            self.new_rows = rows

    def __len__(self) -> int:
        return int(len(self.old_queries))

    metric_name = "judged_top1"
    metric_label = "top-1"  # binary relevant rows: success@1 (a workspace's graded judgments use nDCG@10)

    @property
    def protocol(self) -> str:
        return (f"{len(self)} dev queries (judged) against the whole old gallery ({len(self.old_gallery)} items), "
                "exact cosine search")

    @property
    def has_new_gallery(self) -> bool:
        return self.new_gallery is not None

    @property
    def gallery_size(self) -> int:
        return int(len(self.old_gallery))

    @property
    def new_gallery_share(self) -> float:
        return 0.0 if self.new_gallery is None else len(self.new_gallery) / len(self.old_gallery)

    def value(self, adapter: Adapter) -> float:
        """Top-1 of the upgraded system's queries (mapped, or fused for fusion) against the old gallery."""
        return self.score_queries(adapt_queries(adapter, self.new_queries, self.old_queries))

    def old_old_value(self) -> float:
        return self.old_old()

    def cascade_value(self, base: Adapter, k: int, new_vectors: bool = True) -> float:
        return self.cascade_score(k, lambda x: adapt_queries(base, x), new_vectors)

    @property
    def full_new_gallery(self) -> bool:
        """True when the new model embedded every gallery row (new/new can be measured)."""
        return self.new_gallery is not None and len(self.new_gallery) == len(self.old_gallery)

    def success_at_1(self, ranked: np.ndarray) -> float:
        """Share of queries whose first result (gallery row ``ranked[:, 0]``) is relevant."""
        first = np.asarray(ranked)[:, :1]
        return float((first == self.relevant).any(axis=1).mean())

    def old_old(self) -> float:
        """Today's system: old queries against the old gallery."""
        return self.success_at_1(exact_topk(self.old_queries, self.old_gallery, 1)[0])

    def new_new(self) -> float | None:
        """Full backfill: new queries against the new gallery (None unless every row has a new vector)."""
        if not self.full_new_gallery:
            return None
        ranked = exact_topk(self.new_queries, self.new_gallery, 1)[0]
        return self.success_at_1(self.new_rows[ranked])

    def score_queries(self, queries: np.ndarray) -> float:
        """Success@1 of query vectors in the old space (mapped or fused) against the old gallery."""
        return self.success_at_1(exact_topk(l2_normalize(queries), self.old_gallery, 1)[0])

    def cascade_score(self, k: int, layer: Callable[[np.ndarray], np.ndarray] | None,
                      new_vectors: bool = True) -> float:
        """Success@1 of the cascade: old index recalls ``k``, new vectors (with ``new_vectors``; else
        ``layer``) re-rank."""
        gallery, rows = (self.new_gallery, self.new_rows) if new_vectors else (None, None)
        ranking = cascade_rank(self.old_queries, self.old_gallery, self.new_queries, gallery, rows, k, layer)
        return self.success_at_1(ranking.ids)
