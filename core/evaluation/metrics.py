"""Retrieval metrics from ranked gallery ids: CMC top-k, recall@k, mAP or mAP@R, with bootstrap CIs.

Relevance is by label (same class) or by explicit ground truth (the query's own item key); both
read "the gallery item's value equals the query's value", so :func:`relevance` serves both.
Definitions used in reports (all plain numpy, per query, then averaged):

- ``top{k}`` (CMC top-k) and ``recall@{k}``: 1 if any relevant item is among the first k. This is
  the deep-metric-learning Recall@K; at equal k the two names are the same number.
- ``recall_frac@{k}``: |relevant ∩ first k| / R, the information-retrieval recall (R = number of
  relevant gallery items for the query, the query itself excluded).
- ``mAP`` (full ranking): AP = (1/R) Σ_{relevant at rank j} precision@j. Relevant items past the end
  of the ranking count as misses, so pass the full ranking (k = gallery size) for an exact value.
- ``mAP@R`` (Musgrave et al. 2020): with R' = min(R, cap), AP@R = (1/R') Σ_{j ≤ R'} hit_j·precision@j;
  it needs rankings at least max R' long and suits large galleries.

A query with no relevant gallery item (R = 0) cannot be scored: it is left out of every mean and
counted in ``n_without_relevant``. Ranked ids of -1 (an approximate index found too few) are misses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from embridge.core.errors import InputError
from embridge.core.progress import check_ambient_stop


@dataclass(frozen=True)
class Relevance:
    """Which ranked items are relevant, and how many relevant items each query has in the gallery.

    ``judged_relevant``: with relevance judgments, every item judged relevant to the query, searched
    or not; recall and AP divide by it, as trec_eval does and as nDCG's ideal counts them, so an
    item the gallery lacks counts as a miss. A query is scored only with one in the gallery.
    """

    hits: np.ndarray  # (n_queries, k) bool
    n_relevant: np.ndarray  # (n_queries,) int64: relevant items the ranking can list
    judged_relevant: np.ndarray | None = None  # (n_queries,) int64, >= n_relevant
    # (n_queries,) bool, under judgments: a judged-relevant document is in the gallery, the query's own
    # unranked one included (BEIR leaves it out of the ranking, not out of the judgments); else R > 0
    scorable: np.ndarray | None = None

    @property
    def valid(self) -> np.ndarray:
        """Per query: is it scored (see ``scorable``)?"""
        return self.n_relevant > 0 if self.scorable is None else self.scorable

    @property
    def denominator(self) -> np.ndarray:
        """R of recall and AP: the judged relevant items when judgments say, else those in the gallery."""
        return self.n_relevant if self.judged_relevant is None else self.judged_relevant


def relevance(ranked: np.ndarray, query_targets: Any, gallery_targets: Any, exclude: Any = None) -> Relevance:
    """Relevance of a ranking by target equality (labels, or item keys as explicit ground truth)."""
    ranked = np.asarray(ranked, dtype=np.int64)
    qt, gt = np.asarray(query_targets), np.asarray(gallery_targets)
    if ranked.ndim != 2 or ranked.shape[0] != qt.shape[0]:
        raise InputError("ranking", f"shape {ranked.shape} does not match {qt.shape[0]} queries")
    if gt.shape[0] == 0:
        raise InputError("gallery", "holds no items to rank")
    if ranked.size and ranked.max() >= gt.shape[0]:
        raise InputError("ranking", f"refers to gallery row {ranked.max()} of {gt.shape[0]}")
    valid_slot = ranked >= 0
    hits = valid_slot & (gt[np.where(valid_slot, ranked, 0)] == qt[:, None])
    ordered = np.sort(gt)  # relevant items per query: the run of its target in the sorted gallery targets
    n_rel = (np.searchsorted(ordered, qt, side="right") - np.searchsorted(ordered, qt, side="left")).astype(np.int64)
    if exclude is not None:
        ex = np.asarray(exclude, dtype=np.int64)
        self_rel = (ex >= 0) & (gt[np.where(ex >= 0, ex, 0)] == qt)
        n_rel = n_rel - self_rel
    return Relevance(hits=hits, n_relevant=n_rel)


def first_hit_rank(rel: Relevance) -> np.ndarray:
    """0-based rank of each query's first relevant item; the ranking length when none is listed."""
    found = rel.hits.any(axis=1)
    return np.where(found, rel.hits.argmax(axis=1), rel.hits.shape[1])


def topk_correct(rel: Relevance, k: int) -> np.ndarray:
    """Per query: is a relevant item among the first k (CMC top-k, recall@k)?"""
    return first_hit_rank(rel) < k


def recall_fraction(rel: Relevance, k: int) -> np.ndarray:
    """Per query: share of its relevant items found in the first k (NaN when R = 0)."""
    found = rel.hits[:, :k].sum(axis=1).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(rel.valid, found / rel.denominator, np.nan)


def _precision_at_hits(hits: np.ndarray) -> np.ndarray:
    ranks = np.arange(1, hits.shape[1] + 1, dtype=np.float64)
    return np.cumsum(hits, axis=1) / ranks * hits


def average_precision(rel: Relevance) -> np.ndarray:
    """Per query AP over the given ranking, normalised by all R relevant items (NaN when none is in the gallery)."""
    total = _precision_at_hits(rel.hits).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(rel.valid, total / rel.denominator, np.nan)


def ap_at_r(rel: Relevance, cap: int | None = None) -> np.ndarray:
    """Per query AP@R with R capped at ``cap`` (NaN when no relevant item is in the gallery); the ranking
    must reach every R', or hold every relevant item the gallery has (judged items beyond it are misses)."""
    r = rel.denominator if cap is None else np.minimum(rel.denominator, cap)
    width = rel.hits.shape[1]
    short = (r > width) & (rel.hits.sum(axis=1) < rel.n_relevant)
    if short.any():
        raise InputError("ranking", f"mAP@R needs the first {int(r[short].max())} results per query, got {width}")
    within = np.arange(width)[None, :] < r[:, None]
    total = (_precision_at_hits(rel.hits) * within).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(rel.valid, total / r, np.nan)


def choose_map_mode(n_gallery: int, full_max: int = 10_000) -> str:
    """``"full"`` (mAP over the whole ranking) for small galleries, ``"at_r"`` (mAP@R) beyond."""
    return "full" if n_gallery <= full_max else "at_r"


def ranking_depth(
    map_mode: str, n_gallery: int, max_relevant: int, ks: Sequence[int], r_cap: int | None = 1000
) -> int:
    """How many results per query the search must return for these metrics."""
    if map_mode == "full":
        return n_gallery
    r = max_relevant if r_cap is None else min(max_relevant, r_cap)
    return min(n_gallery, max([r, *ks]))


@dataclass
class CellMetrics:
    """Per-query metrics of one (query side, gallery side) cell; means over scorable queries."""

    per_query: dict[str, np.ndarray]
    valid: np.ndarray  # R > 0

    @property
    def n_queries(self) -> int:
        return int(self.valid.sum())

    @property
    def n_without_relevant(self) -> int:
        return int((~self.valid).sum())

    def summary(self) -> dict[str, float]:
        """Mean of each metric over scorable queries (NaN when there are none)."""
        if not self.valid.any():
            return {name: float("nan") for name in self.per_query}
        return {name: float(np.mean(v[self.valid])) for name, v in self.per_query.items()}

    def correct(self, k: int = 1) -> np.ndarray:
        """Boolean top-k correctness of every query (R = 0 queries are never correct)."""
        return self.per_query[f"top{k}"] > 0.5


def evaluate(
    rel: Relevance,
    topk: Sequence[int] = (1, 5),
    recall_ks: Sequence[int] = (10,),
    map_mode: str = "full",
    r_cap: int | None = 1000,
) -> CellMetrics:
    """All per-query metrics of a ranking: top-k, recall@k, recall_frac@k and mAP or mAP@R."""
    if map_mode not in ("full", "at_r", "none"):
        raise InputError("map mode", f"unknown {map_mode!r}; use 'full', 'at_r' or 'none'")
    valid = rel.valid
    first = first_hit_rank(rel)
    per_query: dict[str, np.ndarray] = {f"top{k}": (first < k).astype(np.float64) for k in topk}
    for k in recall_ks:
        per_query[f"recall@{k}"] = (first < k).astype(np.float64)
        per_query[f"recall_frac@{k}"] = recall_fraction(rel, k)
    if map_mode == "full":
        per_query["mAP"] = average_precision(rel)
    elif map_mode == "at_r":
        per_query["mAP@R"] = ap_at_r(rel, r_cap)
    return CellMetrics(per_query=per_query, valid=valid)


def _resample_indices(n: int, n_boot: int, seed: int, chunk_elems: int = 2_000_000) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed)
    per_chunk = max(1, chunk_elems // max(n, 1))
    for start in range(0, n_boot, per_chunk):
        check_ambient_stop()  # a report's Cancel, between blocks of resamples
        yield rng.integers(0, n, size=(min(per_chunk, n_boot - start), n))


def percentile_ci(stats: np.ndarray, level: float) -> tuple[float, float]:
    if not 0 < level < 1:
        raise InputError("confidence level", f"must lie in (0, 1), got {level}")
    if np.isnan(stats).all():  # undefined in every resample (e.g. a ratio over a zero gain): no interval
        return float("nan"), float("nan")
    lo, hi = np.nanpercentile(stats, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def bootstrap_ci(
    values: np.ndarray, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of per-query values (NaNs dropped first)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    means = np.concatenate([v[idx].mean(axis=1) for idx in _resample_indices(v.size, n_boot, seed)])
    return percentile_ci(means, level)


def bootstrap_statistic_ci(
    statistic: Callable[..., float],
    arrays: Sequence[np.ndarray],
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``statistic(*arrays)``, resampling queries jointly (paired)."""
    stats = bootstrap_statistics(statistic, arrays, n_boot, seed)
    return (float("nan"), float("nan")) if stats.size == 0 else percentile_ci(stats, level)


def bootstrap_statistics(statistic: Callable[..., float], arrays: Sequence[np.ndarray], n_boot: int = 1000,
                         seed: int = 0) -> np.ndarray:
    """``statistic`` of each paired resample (NaN where it is undefined there); empty for no queries."""
    n = len(arrays[0])
    stats: list[float] = []
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    for idx in _resample_indices(n, n_boot, seed):
        for i, row in enumerate(idx):
            if i % 512 == 511:  # one statistic a resample: a block can hold thousands
                check_ambient_stop()
            stats.append(statistic(*(np.asarray(a)[row] for a in arrays)))
    return np.asarray(stats, dtype=np.float64)


def defined_share(stats: np.ndarray) -> float | None:
    """The share of resamples whose statistic is defined (a ratio over a gain or an error rate that a resample
    can lack): an interval taken over the rest says less than its width suggests. None without resamples."""
    return float(np.mean(~np.isnan(stats))) if stats.size else None


def summary_with_ci(
    cell: CellMetrics, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> dict[str, dict[str, float]]:
    """Each metric's mean over scorable queries with its bootstrap CI."""
    out = {}
    for name, values in cell.per_query.items():
        v = values[cell.valid]
        lo, hi = bootstrap_ci(v, n_boot, level, seed)
        out[name] = {"value": float(np.mean(v)) if v.size else float("nan"), "ci_low": lo, "ci_high": hi}
    return out


def per_label(
    values: dict[str, np.ndarray], labels: Any, valid: np.ndarray | None = None
) -> list[dict[str, Any]]:
    """Per-label means of per-query metrics: one row per label with its query count ``n``."""
    labels = np.asarray(labels)
    keep = np.ones(labels.shape[0], dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    uniq, inv = np.unique(labels[keep], return_inverse=True)
    counts = np.bincount(inv, minlength=uniq.size)
    rows: list[dict[str, Any]] = [
        {"label": lab.item() if hasattr(lab, "item") else lab, "n": int(c)}
        for lab, c in zip(uniq, counts, strict=True)
    ]
    for name, v in values.items():
        v = np.asarray(v, dtype=np.float64)[keep]
        ok = ~np.isnan(v)
        sums = np.bincount(inv[ok], weights=v[ok], minlength=uniq.size)
        n_ok = np.bincount(inv[ok], minlength=uniq.size)
        with np.errstate(divide="ignore", invalid="ignore"):
            means = np.where(n_ok > 0, sums / n_ok, np.nan)
        for row, m in zip(rows, means, strict=True):
            row[name] = float(m)
    return rows
