"""Invariants of the ranking metrics and flips on arbitrary rankings (hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from embridge.core.evaluation.metrics import Relevance, ap_at_r, average_precision, evaluate, recall_fraction
from embridge.core.report.flips import flips


@st.composite
def rankings(draw) -> Relevance:
    """A hits matrix plus relevant counts at least as large as the hits listed."""
    n_q = draw(st.integers(1, 8))
    k = draw(st.integers(1, 12))
    flat = draw(st.lists(st.booleans(), min_size=n_q * k, max_size=n_q * k))
    hits = np.array(flat, dtype=bool).reshape(n_q, k)
    extra = np.array(draw(st.lists(st.integers(0, 5), min_size=n_q, max_size=n_q)))
    return Relevance(hits=hits, n_relevant=hits.sum(axis=1) + extra)


@settings(max_examples=150, deadline=None)
@given(rankings())
def test_metric_ranges_and_orderings(rel: Relevance) -> None:
    cell = evaluate(rel, topk=(1, 5), recall_ks=(3, 10), map_mode="full")
    s = cell.per_query
    ok = cell.valid
    assert np.all(s["top1"] <= s["top5"])
    assert np.all(s["recall@3"] <= s["recall@10"])
    ap = average_precision(rel)[ok]
    assert np.all((ap >= 0) & (ap <= 1 + 1e-12))
    # AP is positive exactly when something relevant is listed, and 1 when all R lead the ranking
    listed = rel.hits.any(axis=1)[ok]
    assert np.array_equal(ap > 0, listed)
    leading = np.array([h[:r].all() and r <= h.size for h, r in zip(rel.hits, rel.n_relevant, strict=True)])[
        ok
    ]
    np.testing.assert_allclose(ap[leading], 1.0)
    # top-1 correct implies AP ≥ 1/R
    assert np.all(ap[s["top1"][ok] > 0] >= 1 / rel.n_relevant[ok][s["top1"][ok] > 0] - 1e-12)
    frac = recall_fraction(rel, 3)[ok]
    assert np.all((frac >= 0) & (frac <= 1))
    # any-hit recall is at least as large as the fraction found
    assert np.all(s["recall@3"][ok] >= frac - 1e-12)
    if rel.hits.shape[1] >= rel.n_relevant.max():
        apr = ap_at_r(rel)[ok]
        assert np.all((apr >= 0) & (apr <= ap + 1e-12))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=60))
def test_flip_rates_account_for_top1_change(pairs: list[tuple[bool, bool]]) -> None:
    before = np.array([p[0] for p in pairs])
    after = np.array([p[1] for p in pairs])
    f = flips(before, after)
    assert np.isclose(after.mean() - before.mean(), f.positive_rate - f.negative_rate)
    assert f.negative.size + f.positive.size == int((before != after).sum())
    assert 0 <= f.negative_rate <= 1 - f.error_rate_old + 1e-12
    assert f.negative_rate <= f.error_rate_new + 1e-12
    if f.relative_nfr is not None:
        assert f.relative_nfr >= 0
