"""Retrieval metrics on relevance judgments (graded qrels), computed as trec_eval and ranx do.

For each query q with judgments J_q (item -> grade; grade > 0 relevant) and R = |{grade > 0}|,
over a ranking r_1, r_2, ... (best first; -1 pads a short ranking and never matches):

- ``success@k``: 1 if some relevant item is among the first k, else 0.
- ``recall@k``: |relevant ∩ first k| / R.
- ``MRR@10``: 1 / rank of the first relevant item within the first 10, else 0.
- ``nDCG@10``: DCG@10 / IDCG@10 with DCG@10 = Σ_{i ≤ 10} grade(r_i) / log2(i + 1) (gain = grade,
  unjudged = 0) and IDCG@10 the same sum over the query's judged grades sorted best first (the
  ideal ranking uses every judgment of the query, retrieved or not).
- ``AP``: (1/R) Σ_{relevant r_i} precision@i over the ranking given; relevant items it misses
  count as misses, so pass rankings as deep as the metric should see.

The ranking is taken as given: ties in the scores that produced it must already be broken (the
reference tools break them by document id). A query with no relevant judgment (R = 0) cannot be
scored: its per-query values are 0, it is left out of :meth:`JudgedScores.mean` and counted in
``n_without_relevant``, as the label-based metrics in :mod:`embridge.core.evaluation.metrics` do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from embridge.core.errors import InputError
from embridge.core.store.judgments import Judgments

NDCG_DEPTH = 10
MRR_DEPTH = 10


@dataclass(frozen=True, eq=False)
class JudgedScores:
    """Per-query values (one row per ranked query) and their means over the scorable queries."""

    query_ids: np.ndarray  # (n,) int64
    success_at: dict[int, np.ndarray]  # k -> (n,) float64 in {0, 1}
    recall_at: dict[int, np.ndarray]  # k -> (n,) float64
    mrr_at_10: np.ndarray
    ndcg_at_10: np.ndarray
    average_precision: np.ndarray
    n_relevant: np.ndarray  # (n,) int64: R per query
    scorable: np.ndarray  # (n,) bool: R > 0

    @property
    def n_without_relevant(self) -> int:
        return int((~self.scorable).sum())

    def mean(self) -> dict[str, float]:
        """Means over queries with at least one relevant judgment (NaN when there are none)."""
        keep = self.scorable

        def avg(values: np.ndarray) -> float:
            return float(values[keep].mean()) if keep.any() else float("nan")

        out = {f"success@{k}": avg(v) for k, v in sorted(self.success_at.items())}
        out.update({f"recall@{k}": avg(v) for k, v in sorted(self.recall_at.items())})
        out.update({"mrr@10": avg(self.mrr_at_10), "ndcg@10": avg(self.ndcg_at_10),
                    "map": avg(self.average_precision)})
        return out


def score_rankings(ranked: np.ndarray, query_ids: np.ndarray, judgments: Judgments,
                   ks: Sequence[int] = (1, 5, 10, 100)) -> JudgedScores:
    """Score rankings of gallery item ids (n_queries x depth, best first, -1 padding) on judgments."""
    ranked = np.asarray(ranked, dtype=np.int64)
    qids = np.asarray(query_ids, dtype=np.int64).ravel()
    if ranked.ndim != 2 or ranked.shape[0] != len(qids):
        raise InputError("ranking", f"shape {ranked.shape} does not match {len(qids)} queries")
    if any(int(k) < 1 for k in ks):
        raise InputError("ranking", f"cut-offs must be positive, got {list(ks)}")
    n, depth = ranked.shape
    grades, per_query = _grades_of_ranking(ranked, qids, judgments)
    relevant = grades > 0
    n_rel = np.array([int((g > 0).sum()) for g in per_query], dtype=np.int64)
    scorable = n_rel > 0
    denom = np.maximum(n_rel, 1).astype(np.float64)
    hits_cum = np.cumsum(relevant, axis=1) if depth else np.zeros((n, 0), dtype=np.int64)

    def hits_within(k: int) -> np.ndarray:
        return hits_cum[:, min(k, depth) - 1] if depth else np.zeros(n, dtype=np.int64)

    success = {int(k): (hits_within(int(k)) > 0).astype(np.float64) for k in ks}
    recall = {int(k): hits_within(int(k)) / denom for k in ks}
    ranks = np.arange(1, depth + 1, dtype=np.float64)
    first = np.where(relevant.any(axis=1), relevant.argmax(axis=1) + 1, 0)
    mrr = np.where((first > 0) & (first <= MRR_DEPTH), 1.0 / np.maximum(first, 1), 0.0)
    ap = (relevant * (hits_cum / ranks)).sum(axis=1) / denom if depth else np.zeros(n)
    discount = 1.0 / np.log2(np.arange(2, NDCG_DEPTH + 2, dtype=np.float64))
    top = min(depth, NDCG_DEPTH)
    dcg = (grades[:, :top] * discount[:top]).sum(axis=1)
    idcg = np.array([(np.sort(g)[::-1][:NDCG_DEPTH] * discount[:min(len(g), NDCG_DEPTH)]).sum() for g in per_query])
    ndcg = np.where(idcg > 0, dcg / np.where(idcg > 0, idcg, 1.0), 0.0)
    return JudgedScores(query_ids=qids, success_at=success, recall_at=recall, mrr_at_10=mrr, ndcg_at_10=ndcg,
                        average_precision=ap, n_relevant=n_rel, scorable=scorable)


def _grades_of_ranking(ranked: np.ndarray, qids: np.ndarray,
                       judgments: Judgments) -> tuple[np.ndarray, list[np.ndarray]]:
    """Grade of every ranked slot (0 when unjudged or padding) and each query's judged grades."""
    order = np.argsort(judgments.query_ids, kind="stable")
    jq, ji, jg = judgments.query_ids[order], judgments.item_ids[order], judgments.grades[order]
    starts = np.searchsorted(jq, qids, side="left")
    stops = np.searchsorted(jq, qids, side="right")
    grades = np.zeros(ranked.shape, dtype=np.float64)
    per_query: list[np.ndarray] = []
    for row, (start, stop) in enumerate(zip(starts.tolist(), stops.tolist(), strict=True)):
        items, g = ji[start:stop], jg[start:stop].astype(np.float64)
        per_query.append(g)
        if stop == start:
            continue
        sort = np.argsort(items)
        items, g_sorted = items[sort], g[sort]
        slot = np.clip(np.searchsorted(items, ranked[row]), 0, len(items) - 1)
        match = (items[slot] == ranked[row]) & (ranked[row] >= 0)
        grades[row] = np.where(match, g_sorted[slot], 0.0)
    return grades, per_query
