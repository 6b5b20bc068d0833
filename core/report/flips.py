"""Negative and positive flips between two systems' top-1 results on the same queries.

A negative flip is a query the old system (old/old) got right at top-1 and the upgraded system gets
wrong; a positive flip the reverse. Rates are over the queries given, so top1(upgraded) − top1(old)
= PFR − NFR exactly. Relative NFR (Positive-Congruent Training; MUSCLE) divides NFR by the rate
expected if the two systems erred independently, (1 − ER_old)·ER_new, where ER is the top-1 error
rate and "new" is the upgraded system being compared; it is None when that product is 0.
Only queries with a relevant gallery item are compared (:func:`cell_flips`), the same queries the
top-1 means are taken over.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from embridge.core.errors import InputError
from embridge.core.evaluation.metrics import (
    CellMetrics,
    bootstrap_ci,
    bootstrap_statistics,
    defined_share,
    percentile_ci,
)


@dataclass(frozen=True)
class Flips:
    """Flip rates and the flipped queries (as indices into the caller's query list)."""

    n_queries: int
    negative_rate: float
    positive_rate: float
    relative_nfr: float | None
    error_rate_old: float
    error_rate_new: float
    negative: np.ndarray  # int64 query indices: right before, wrong after
    positive: np.ndarray  # int64 query indices: wrong before, right after

    def to_dict(self, max_listed: int | None = None) -> dict[str, Any]:
        """JSON-ready form; ``max_listed`` trims the query lists (their counts stay exact)."""
        return {
            "n_queries": self.n_queries,
            "negative_flip_rate": self.negative_rate,
            "positive_flip_rate": self.positive_rate,
            "relative_nfr": self.relative_nfr,
            "error_rate_old": self.error_rate_old,
            "error_rate_new": self.error_rate_new,
            "n_negative": int(self.negative.size),
            "n_positive": int(self.positive.size),
            "negative": self.negative[:max_listed].tolist(),
            "positive": self.positive[:max_listed].tolist(),
        }


def flip_indicators(correct_old: Any, correct_new: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-query booleans (negative flip, positive flip), e.g. for bootstrap CIs of the rates."""
    old = np.asarray(correct_old, dtype=bool)
    new = np.asarray(correct_new, dtype=bool)
    if old.shape != new.shape or old.ndim != 1:
        raise InputError("flips", f"correctness arrays differ in shape: {old.shape} vs {new.shape}")
    return old & ~new, ~old & new


def relative_nfr(nfr: float, error_rate_old: float, error_rate_new: float) -> float | None:
    """NFR / ((1 − ER_old)·ER_new); None when the denominator is 0 (no possible flip to compare)."""
    denom = (1.0 - error_rate_old) * error_rate_new
    return float(nfr / denom) if denom > 0 else None


def flips(correct_old: Any, correct_new: Any, query_index: Any = None) -> Flips:
    """Flip statistics of top-1 correctness before (old/old) and after (upgraded)."""
    negative, positive = flip_indicators(correct_old, correct_new)
    n = int(negative.size)
    if n == 0:
        raise InputError("flips", "no queries to compare")
    ids = np.arange(n, dtype=np.int64) if query_index is None else np.asarray(query_index, dtype=np.int64)
    if ids.shape != (n,):
        raise InputError("flips", f"query_index has shape {ids.shape}, expected ({n},)")
    er_old = 1.0 - float(np.mean(np.asarray(correct_old, dtype=bool)))
    er_new = 1.0 - float(np.mean(np.asarray(correct_new, dtype=bool)))
    nfr = float(negative.mean())
    return Flips(
        n_queries=n,
        negative_rate=nfr,
        positive_rate=float(positive.mean()),
        relative_nfr=relative_nfr(nfr, er_old, er_new),
        error_rate_old=er_old,
        error_rate_new=er_new,
        negative=ids[negative],
        positive=ids[positive],
    )


def cell_flips(before: CellMetrics, after: CellMetrics) -> Flips:
    """Top-1 flips between two cells on the queries scorable in both; indices refer to all queries.

    Cells on different galleries (the whole old gallery, the evaluation sample) may differ in which
    queries have a relevant item to find; only queries scorable in both can flip.
    """
    if before.valid.shape != after.valid.shape:
        raise InputError("flips", "the two cells were scored on different query sets")
    keep = np.flatnonzero(before.valid & after.valid)
    return flips(before.correct()[keep], after.correct()[keep], query_index=keep)


def _relative_nfr_stat(old: np.ndarray, new: np.ndarray) -> float:
    nfr = float(np.mean(old & ~new))
    value = relative_nfr(nfr, 1.0 - float(old.mean()), 1.0 - float(new.mean()))
    return float("nan") if value is None else value


@dataclass(frozen=True)
class FlipCIs:
    """Bootstrap intervals of NFR, PFR and relative NFR, and the share of resamples where the relative NFR is
    defined (it is not where a resample holds no error of one system): its interval is over those only."""

    intervals: dict[str, tuple[float, float]]
    relative_nfr_defined: float | None


def flip_cis(correct_old: Any, correct_new: Any, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> FlipCIs:
    """Percentile bootstrap CIs of NFR, PFR and relative NFR (queries resampled jointly)."""
    negative, positive = flip_indicators(correct_old, correct_new)
    old, new = np.asarray(correct_old, bool), np.asarray(correct_new, bool)
    relative = bootstrap_statistics(_relative_nfr_stat, [old, new], n_boot, seed)
    return FlipCIs({
        "negative_flip_rate": bootstrap_ci(negative, n_boot, level, seed),
        "positive_flip_rate": bootstrap_ci(positive, n_boot, level, seed),
        "relative_nfr": (float("nan"), float("nan")) if relative.size == 0 else percentile_ci(relative, level),
    }, defined_share(relative))
