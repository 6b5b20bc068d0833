"""A report's Cancel reaches the long loops of its stages: the self search behind the least-confident
backfill order and the bootstrap intervals (10.8 s and 5.6 s without a stop check on a 50k-item gallery
and at 100,000 resamples)."""

from __future__ import annotations

import numpy as np
import pytest

from embridge.core.errors import Cancelled
from embridge.core.evaluation.metrics import bootstrap_ci, bootstrap_statistic_ci
from embridge.core.progress import stop_checks
from embridge.core.report.backfill_curve import BackfillOptions, partial_backfill, self_margins


class _StopAfter:
    """A stop request that comes after ``n`` checks; counts the checks."""

    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.calls > self.n


def _vectors(n: int, d: int = 16, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_the_self_search_of_the_least_confident_order_stops_when_asked() -> None:
    gallery = _vectors(3_000)
    adapted = _vectors(3_000, seed=1)
    full = self_margins(adapted, gallery)
    assert np.array_equal(self_margins(adapted, gallery, should_stop=_StopAfter(10**6)), full)
    with pytest.raises(Cancelled):
        self_margins(adapted, gallery, should_stop=_StopAfter(0))


def test_the_backfill_orders_stop_before_the_curves_start() -> None:
    """Every order was computed (the self search among them) before the first stop check of the curves."""
    q, g = _vectors(50, seed=2), _vectors(400, seed=3)
    targets_q, targets_g = np.arange(50) % 7, np.arange(400) % 7
    steps: list[int] = []
    stop = _StopAfter(1)  # the first order goes on; the second is not computed
    with pytest.raises(Cancelled):
        partial_backfill(q, q, g, g, targets_q, targets_g, BackfillOptions(steps=3), gallery_adapted=g,
                         on_progress=lambda done, total, info: steps.append(done), should_stop=stop)
    assert steps == [] and stop.calls == 2


def test_the_bootstrap_intervals_stop_inside_a_report_stage() -> None:
    values = np.random.default_rng(0).random(200)
    assert bootstrap_ci(values, 2_000) == bootstrap_ci(values, 2_000)  # no stage: nothing to stop
    for interval in (lambda: bootstrap_ci(values, 100_000),
                     lambda: bootstrap_statistic_ci(lambda v: float(v.mean()), [values], 100_000)):
        stop = _StopAfter(3)
        with stop_checks(stop), pytest.raises(Cancelled):
            interval()
        assert stop.calls == 4  # stopped at the fourth check, long before 100,000 resamples
