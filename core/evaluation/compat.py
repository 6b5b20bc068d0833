"""Compatibility figures of merit: the BCT criterion, gain retained, ARR, the T-version matrix and
the formal compatibility rate of Stationary Representations.

Undefined ratios are returned as None, which JSON writes as null, so a report never shows a
made-up number: gain retained is undefined when the new model is not better than the old one
(new/new at or below old/old: the ratio's sign would flip and read as a large gain), ARR when
recall@k(new, new) is 0. :data:`NOT_BETTER` is the sentence shown in place of such a gain.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from embridge.core.errors import InputError
from embridge.core.evaluation.headline import METRIC_NOISE, exceeds
from embridge.core.evaluation.metrics import CellMetrics, bootstrap_ci
from embridge.core.l2 import l2_normalize

NOT_BETTER = "the new model is not better than the old one on this metric here"


def criterion(upgraded: float, old_old: float) -> bool:
    """BCT's empirical compatibility criterion for one metric: M(upgraded) > M(old, old), by more than float
    noise (two equal means can differ in their last bit by the order they were summed in)."""
    return exceeds(upgraded, old_old)


def gain_retained(upgraded: float, old_old: float, new_new: float) -> float | None:
    """(M(up) − M(oo)) / (M(nn) − M(oo)), the share of the full-backfill gain kept; None when the new
    model is not better (M(nn) <= M(oo)) or a value is missing. All three on one gallery: where new/new
    searched a sample of it, the caller passes old/old and the upgraded system on that sample."""
    if upgraded is None or old_old is None or new_new is None:
        return None
    denom = new_new - old_old
    if not np.isfinite(denom) or denom < METRIC_NOISE or not np.isfinite(upgraded):
        return None
    kept = upgraded - old_old
    # two means that differ only by their summation order (2e-16 apart) are equal: no gain either way
    return 0.0 if abs(kept) < METRIC_NOISE else float(kept / denom)


IMPROVEMENT_BOOT, IMPROVEMENT_LEVEL = 1000, 0.95  # fixed, so training and every report state the same interval


def improvement_ci(old: CellMetrics, upgraded: CellMetrics, metric: str) -> list[float] | None:
    """The paired bootstrap interval of M(upgraded) − M(old, old) over the queries both scored (seeded, 95%):
    whether the upgraded system beats today's by more than which queries happened to be drawn. None when
    the metric is missing or no query was scored by both."""
    if metric not in old.per_query or metric not in upgraded.per_query:
        return None
    both = old.valid & upgraded.valid
    if not both.any():
        return None
    diff = np.asarray(upgraded.per_query[metric], np.float64)[both] - np.asarray(old.per_query[metric], np.float64)[both]
    lo, hi = bootstrap_ci(diff, IMPROVEMENT_BOOT, IMPROVEMENT_LEVEL, seed=0)
    return [lo, hi]


def gain_note(old_old: float | None, new_new: float | None) -> str | None:
    """:data:`NOT_BETTER` when gain retained is undefined because new/new is not above old/old."""
    if old_old is None or new_new is None or not np.isfinite(new_new - old_old):
        return None
    return NOT_BETTER if new_new - old_old < METRIC_NOISE else None


def arr(recall_upgraded: float, recall_new_new: float) -> float | None:
    """Drift-Adapter's ARR = recall@k(upgraded) / recall@k(new, new); None when the latter is 0."""
    if not np.isfinite(recall_new_new) or recall_new_new < METRIC_NOISE:
        return None
    return float(recall_upgraded / recall_new_new)


def compare(
    upgraded: dict[str, float], old_old: dict[str, float], new_new: dict[str, float] | None = None,
    on_sample: tuple[dict[str, float], dict[str, float]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per metric: the three values, criterion pass/fail, gain retained and (recall@k) ARR.

    ``on_sample``: (upgraded, old/old) on new/new's gallery where that is a sample of theirs; gain retained
    and ARR are then measured there, the criterion on the whole gallery."""
    out: dict[str, dict[str, Any]] = {}
    for name, up in upgraded.items():
        if name not in old_old:
            continue
        oo = old_old[name]
        row: dict[str, Any] = {"upgraded": up, "old_old": oo, "passes": criterion(up, oo)}
        if new_new is not None and name in new_new:
            row["new_new"] = new_new[name]
            up_s, oo_s = (up, oo) if on_sample is None else (on_sample[0].get(name), on_sample[1].get(name))
            if on_sample is not None:
                row["upgraded_sample"], row["old_old_sample"] = up_s, oo_s
            row["gain_retained"] = gain_retained(up_s, oo_s, new_new[name])
            if row["gain_retained"] is None and gain_note(oo_s, new_new[name]):
                row["gain_retained_note"] = NOT_BETTER
            if name.startswith("recall@"):
                row["arr"] = None if up_s is None else arr(up_s, new_new[name])
        out[name] = row
    return out


def matrix_scores(matrix: Any) -> dict[str, float | int]:
    """AC and AM of a T×T compatibility matrix C[i][j] = M(query model i, gallery model j), j ≤ i.

    AC = 2/(T(T−1)) Σ_{i>j} 1[C[i][j] > C[j][j]]; AM = mean of C[i][j] over i ≥ j. Entries above the
    diagonal are ignored (they may be NaN).
    """
    c = np.asarray(matrix, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1] or c.shape[0] < 2:
        raise InputError("compatibility matrix", f"must be square with at least 2 versions, got {c.shape}")
    t = c.shape[0]
    lower = np.tril_indices(t)
    if not np.isfinite(c[lower]).all():
        raise InputError("compatibility matrix", "entries on or below the diagonal must be finite")
    below = np.tril_indices(t, k=-1)
    wins = c[below] - np.diag(c)[below[1]] >= METRIC_NOISE  # the criterion's margin, as criterion() tests it
    return {"versions": t, "ac": float(2.0 * wins.sum() / (t * (t - 1))), "am": float(c[lower].mean())}


def _positive_pairs(labels: np.ndarray, m: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    _, starts, counts = np.unique(sorted_labels, return_index=True, return_counts=True)
    group = np.repeat(np.arange(starts.size), counts)
    eligible = np.flatnonzero(counts[group] >= 2)
    if eligible.size == 0 or m == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    pos_i = rng.choice(eligible, size=m)
    s, c = starts[group[pos_i]], counts[group[pos_i]]
    pos_j = s + (pos_i - s + rng.integers(1, c)) % c
    return order[pos_i], order[pos_j]


def _negative_pairs(labels: np.ndarray, m: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n = labels.size
    i, j = rng.integers(0, n, size=m), rng.integers(0, n, size=m)
    for _ in range(100):
        same = labels[i] == labels[j]
        if not same.any():
            break
        j[same] = rng.integers(0, n, size=int(same.sum()))
    keep = labels[i] != labels[j]
    return i[keep], j[keep]


def _pair_distance(a: np.ndarray, b: np.ndarray, distance: str) -> np.ndarray:
    if distance == "euclidean":
        return np.linalg.norm(a - b, axis=1)
    if distance == "cosine":
        return 1.0 - (l2_normalize(a) * l2_normalize(b)).sum(axis=1)
    raise InputError("distance", f"unknown {distance!r}; use 'euclidean' or 'cosine'")


def compatibility_rate(
    upgraded: Any,
    old: Any,
    labels: Any,
    n_pairs: int = 10_000,
    seed: int = 0,
    distance: str = "euclidean",
) -> dict[str, Any]:
    """Formal compatibility rate (Stationary Representations) on seeded, label-stratified pairs.

    A pair (i, j) of distinct items complies when y_i = y_j ⇒ d(up_i, old_j) ≤ d(old_i, old_j) and
    y_i ≠ y_j ⇒ d(up_i, old_j) ≥ d(old_i, old_j), ``up`` being the upgraded query-side vectors in the
    old space. ``n_pairs`` same-label and ``n_pairs`` different-label pairs are drawn, each as an item
    i chosen uniformly, then j uniformly among the other items with the same (different) label, so
    rare positives are not swamped; ``rate`` is the share over all drawn pairs, with each kind's
    own share alongside (None for a kind that cannot occur, e.g. no label has two items).
    """
    up = np.asarray(upgraded, dtype=np.float64)
    o = np.asarray(old, dtype=np.float64)
    y = np.asarray(labels)
    if up.shape != o.shape or up.ndim != 2 or y.shape != (up.shape[0],):
        raise InputError(
            "compatibility rate", f"shapes differ: upgraded {up.shape}, old {o.shape}, labels {y.shape}"
        )
    rng = np.random.default_rng(seed)
    result: dict[str, Any] = {"distance": distance}
    ok_all = []
    for kind, sampler, op in (
        ("positive", _positive_pairs, np.less_equal),
        ("negative", _negative_pairs, np.greater_equal),
    ):
        i, j = sampler(y, n_pairs, rng)
        cross = _pair_distance(up[i], o[j], distance)
        within = _pair_distance(o[i], o[j], distance)
        ok = op(cross, within)
        ok_all.append(ok)
        result[f"n_{kind}"] = int(ok.size)
        result[f"{kind}_rate"] = float(ok.mean()) if ok.size else None
    both = np.concatenate(ok_all)
    result["rate"] = float(both.mean()) if both.size else None
    return result
