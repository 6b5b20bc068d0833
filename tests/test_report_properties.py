"""Invariants of the report's statistics on arbitrary inputs (hypothesis).

Complements ``test_metrics_properties.py`` (metric ranges, flips): bootstrap intervals bracket the
point estimate they are reported with; the partial-backfill curve starts at the upgraded cell
(β = 0) and ends at the new/new cell (β = 1) for every ordering policy; the gain-retained
ratio is 0 at old/old, 1 at new/new and agrees in sign with the compatibility criterion.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from embridge.core.errors import InputError
from embridge.core.evaluation.compat import NOT_BETTER, criterion, gain_note, gain_retained
from embridge.core.evaluation.metrics import bootstrap_ci, bootstrap_statistic_ci
from embridge.core.report.backfill_curve import POLICIES, backfill_curves, backfill_order

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=120, deadline=None)
@given(values=st.lists(finite, min_size=1, max_size=60), n_boot=st.integers(50, 300), seed=st.integers(0, 2**16),
       level=st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_bootstrap_ci_contains_the_mean_and_lies_within_the_data(values: list[float], n_boot: int, seed: int,
                                                                 level: float) -> None:
    v = np.asarray(values)
    lo, hi = bootstrap_ci(v, n_boot=n_boot, level=level, seed=seed)
    tol = 1e-9 * max(1.0, float(np.abs(v).max()))
    assert v.min() - tol <= lo <= hi <= v.max() + tol
    assert lo - tol <= v.mean() <= hi + tol
    assert (lo, hi) == bootstrap_ci(v, n_boot=n_boot, level=level, seed=seed)  # seeded: reproducible


@settings(max_examples=60, deadline=None)
@given(bits=st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=50), seed=st.integers(0, 999))
def test_paired_bootstrap_of_a_rate_difference_contains_the_observed_difference(
        bits: list[tuple[bool, bool]], seed: int) -> None:
    a = np.array([b[0] for b in bits], dtype=float)
    b = np.array([b[1] for b in bits], dtype=float)
    lo, hi = bootstrap_statistic_ci(lambda x, y: x.mean() - y.mean(), [a, b], n_boot=200, seed=seed)
    assert lo - 1e-12 <= a.mean() - b.mean() <= hi + 1e-12
    assert -1 <= lo <= hi <= 1


def _top_k(queries: np.ndarray, gallery: np.ndarray, q_labels: np.ndarray, g_labels: np.ndarray, k: int) -> float:
    """Top-k accuracy by brute force, over queries that have a relevant gallery item."""
    ranked = np.argsort(-(queries @ gallery.T), axis=1, kind="stable")[:, :k]
    hit = (g_labels[ranked] == q_labels[:, None]).any(axis=1)
    valid = (g_labels[None, :] == q_labels[:, None]).any(axis=1)
    return float(hit[valid].mean())


@settings(max_examples=20, deadline=None)
@given(n_q=st.integers(1, 25), n_g=st.integers(2, 60), d_new=st.integers(2, 8), d_old=st.integers(2, 8),
       classes=st.integers(1, 5), steps=st.integers(2, 7), seed=st.integers(0, 2**16))
@example(n_q=1, n_g=2, d_new=2, d_old=2, classes=2, steps=2, seed=1)  # its one query's label is not in the gallery
def test_partial_backfill_starts_at_the_upgraded_cell_and_ends_at_new_new(
        n_q: int, n_g: int, d_new: int, d_old: int, classes: int, steps: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    qn, gn = rng.normal(size=(n_q, d_new)), rng.normal(size=(n_g, d_new))
    qh, go = rng.normal(size=(n_q, d_old)), rng.normal(size=(n_g, d_old))
    gh = rng.normal(size=(n_g, d_old))
    qy, gy = rng.integers(0, classes, n_q), rng.integers(0, classes, n_g)
    orders = {p: backfill_order(p, n_g, seed, gallery_adapted=gh, gallery_old=go) for p in POLICIES}
    if not np.isin(qy, gy).any():  # no query has a relevant item: there is nothing to measure
        with pytest.raises(InputError, match="no query has a relevant gallery item"):
            backfill_curves(qn, qh, gn, go, qy, gy, orders, np.linspace(0, 1, steps), ks=(1, 5))
        return
    curves = backfill_curves(qn, qh, gn, go, qy, gy, orders, np.linspace(0, 1, steps), ks=(1, 5))
    f32 = np.float32  # the curves score in float32; so does the brute force, to share its ties
    for k in (1, 5):
        upgraded = _top_k(qh.astype(f32), go.astype(f32), qy, gy, k)
        new_new = _top_k(qn.astype(f32), gn.astype(f32), qy, gy, k)
        for policy, curve in curves.items():
            values = curve.values[f"top{k}"]
            assert values[0] == pytest.approx(upgraded, abs=1e-12), (policy, k)
            assert values[-1] == pytest.approx(new_new, abs=1e-12), (policy, k)
            assert np.all((values >= 0) & (values <= 1))


@settings(max_examples=200, deadline=None)
@given(old_old=st.floats(0, 1), new_new=st.floats(0, 1), upgraded=st.floats(0, 1))
def test_gain_retained_is_anchored_at_both_ends_and_agrees_with_the_criterion(
        old_old: float, new_new: float, upgraded: float) -> None:
    share = gain_retained(upgraded, old_old, new_new)
    if new_new - old_old < 1e-9:  # the new model is not better: no gain to retain, undefined
        assert share is None and gain_note(old_old, new_new) == NOT_BETTER
        return
    assert share is not None
    assert gain_retained(old_old, old_old, new_new) == 0.0
    assert gain_retained(new_new, old_old, new_new) == pytest.approx(1.0)
    if new_new > old_old:  # an upgrade that helps: keeping a positive share is passing the criterion
        assert (share > 0) == criterion(upgraded, old_old)
