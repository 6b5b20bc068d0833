"""Flips, the compatibility criterion, gain retained, ARR, AC/AM and the formal compatibility rate."""

from __future__ import annotations

import numpy as np
import pytest

from embridge.core.errors import InputError
from embridge.core.evaluation.compat import (
    arr,
    compare,
    compatibility_rate,
    criterion,
    gain_retained,
    matrix_scores,
)
from embridge.core.evaluation.metrics import evaluate, relevance
from embridge.core.report.flips import cell_flips, flip_cis, flips


def test_flips_hand_worked() -> None:
    # before 1 1 0 0 1, after 1 0 1 0 0: negative at 1 and 4, positive at 2
    # NFR = 0.4, PFR = 0.2, ER_old = 0.4, ER_new = 0.6, relative NFR = 0.4 / (0.6 * 0.6)
    f = flips([1, 1, 0, 0, 1], [1, 0, 1, 0, 0], query_index=[10, 11, 12, 13, 14])
    assert f.negative.tolist() == [11, 14] and f.positive.tolist() == [12]
    assert f.negative_rate == pytest.approx(0.4) and f.positive_rate == pytest.approx(0.2)
    assert f.error_rate_old == pytest.approx(0.4) and f.error_rate_new == pytest.approx(0.6)
    assert f.relative_nfr == pytest.approx(0.4 / 0.36)
    d = f.to_dict(max_listed=1)
    assert d["n_negative"] == 2 and d["negative"] == [11]


def test_relative_nfr_undefined_when_new_never_errs() -> None:
    assert flips([1, 0, 1], [1, 1, 1]).relative_nfr is None
    with pytest.raises(InputError):
        flips([1, 0], [1, 0, 1])


def test_cell_flips_use_scorable_queries_only() -> None:
    gallery = np.array(["a", "b", "a"])
    q_labels = np.array(["a", "b", "z", "a"])  # 'z' has no relevant item
    before = evaluate(relevance(np.array([[0, 1], [1, 0], [0, 1], [1, 0]]), q_labels, gallery))
    after = evaluate(relevance(np.array([[1, 0], [1, 0], [1, 0], [2, 1]]), q_labels, gallery))
    f = cell_flips(before, after)
    assert f.n_queries == 3 and f.negative.tolist() == [0] and f.positive.tolist() == [3]
    diff = after.summary()["top1"] - before.summary()["top1"]
    assert diff == pytest.approx(f.positive_rate - f.negative_rate)


def test_flip_confidence_intervals() -> None:
    rng = np.random.default_rng(2)
    before = rng.random(500) < 0.7
    after = np.where(rng.random(500) < 0.1, ~before, before)
    f = flips(before, after)
    cis = flip_cis(before, after, n_boot=300, seed=4)
    assert cis == flip_cis(before, after, n_boot=300, seed=4)
    for name, value in (("negative_flip_rate", f.negative_rate), ("positive_flip_rate", f.positive_rate),
                        ("relative_nfr", f.relative_nfr)):  # fmt: skip
        lo, hi = cis.intervals[name]
        assert lo < value < hi, name
    assert cis.relative_nfr_defined == 1.0  # 500 queries: every resample holds errors of both systems


def test_a_relative_nfr_interval_says_over_how_many_resamples_it_is_defined() -> None:
    """Where the one flip is the new system's only error, resamples without it have no relative NFR: the
    interval came from the rest, which the report did not say."""
    before = np.ones(20, dtype=bool)
    before[:3] = False  # old misses 3
    after = np.ones(20, dtype=bool)
    after[5] = False  # new misses one query old got right: its only error, and the only negative flip
    cis = flip_cis(before, after, n_boot=400, seed=1)
    relative = [flips(before[r], after[r]).relative_nfr for r in _rows(20, 400, 1)]
    defined = np.mean([v is not None for v in relative])
    assert 0.5 < cis.relative_nfr_defined < 1.0 and cis.relative_nfr_defined == pytest.approx(defined)
    from embridge.core.report.html_page import _ci  # the HTML headline table says so beside the interval

    lo, hi = cis.intervals["relative_nfr"]
    assert _ci([lo, hi], cis.relative_nfr_defined) == \
        f" [{lo:.3f}, {hi:.3f} over the {cis.relative_nfr_defined:.0%} of resamples where it is defined]"
    assert _ci([lo, hi], 1.0) == f" [{lo:.3f}, {hi:.3f}]"


def _rows(n: int, n_boot: int, seed: int) -> list[np.ndarray]:
    from embridge.core.evaluation.metrics import _resample_indices

    return [row for block in _resample_indices(n, n_boot, seed) for row in block]


def test_criterion_gain_and_arr() -> None:
    assert criterion(0.41, 0.40) and not criterion(0.40, 0.40)
    assert gain_retained(0.5, 0.4, 0.8) == pytest.approx(0.25)
    assert gain_retained(0.5, 0.4, 0.4) is None
    assert gain_retained(0.3, 0.4, 0.8) == pytest.approx(-0.25)
    assert arr(0.45, 0.9) == pytest.approx(0.5)
    assert arr(0.45, 0.0) is None
    table = compare(
        {"top1": 0.5, "recall@10": 0.9}, {"top1": 0.4, "recall@10": 0.85}, {"top1": 0.8, "recall@10": 0.95}
    )
    assert table["top1"]["passes"] and table["top1"]["gain_retained"] == pytest.approx(0.25)
    assert "arr" not in table["top1"]
    assert table["recall@10"]["arr"] == pytest.approx(0.9 / 0.95)
    assert table["recall@10"]["gain_retained"] == pytest.approx(0.5)


def test_compatibility_matrix_hand_worked() -> None:
    # i>j: C10 0.6 > C00 0.5 yes, C20 0.4 > C00 no, C21 0.8 > C11 0.7 yes -> AC = 2/3
    # AM = mean(0.5, 0.6, 0.7, 0.4, 0.8, 0.9) = 0.65
    nan = float("nan")
    scores = matrix_scores([[0.5, nan, nan], [0.6, 0.7, nan], [0.4, 0.8, 0.9]])
    assert scores["versions"] == 3
    assert scores["ac"] == pytest.approx(2 / 3)
    assert scores["am"] == pytest.approx(0.65)
    with pytest.raises(InputError, match="finite"):
        matrix_scores([[0.5, nan], [nan, 0.7]])
    with pytest.raises(InputError, match="square"):
        matrix_scores([[0.5, 0.2]])


def test_compatibility_rate_hand_worked() -> None:
    # old points on a line at 0, 1, 5 with labels 0 0 1; upgraded item 0 moved onto old item 1.
    # positives (0,1): 0 <= 1 ok, (1,0): 1 <= 1 ok -> rate 1
    # negatives (0,2): 4 >= 5 no, (2,0) 5 >= 5, (1,2) 4 >= 4, (2,1) 4 >= 4 ok. Item i is drawn
    # uniformly, then j among the other label: i=0 always fails, i=1 and i=2 always pass -> 2/3
    old = np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0]])
    up = np.array([[1.0, 0.0], [1.0, 0.0], [5.0, 0.0]])
    res = compatibility_rate(up, old, np.array([0, 0, 1]), n_pairs=4000, seed=0)
    assert res["n_positive"] == 4000 and res["positive_rate"] == 1.0
    assert res["negative_rate"] == pytest.approx(2 / 3, abs=0.03)
    assert res["rate"] == pytest.approx((1.0 + res["negative_rate"]) / 2)
    assert compatibility_rate(old, old, np.array([0, 0, 1]), n_pairs=100)["rate"] == 1.0


def test_compatibility_rate_matches_exhaustive_pairs() -> None:
    rng = np.random.default_rng(5)
    n, dim = 60, 8
    labels = rng.integers(0, 6, n)
    old = rng.normal(size=(n, dim))
    up = old + 0.8 * rng.normal(size=(n, dim))
    # Expected rates under the sampling scheme: item i uniform, then j uniform among the other
    # items with the same (positive) or a different (negative) label.
    pos_by_i, neg_by_i = [], []
    for i in range(n):
        pos, neg = [], []
        for j in range(n):
            if j == i:
                continue
            cross, within = np.linalg.norm(up[i] - old[j]), np.linalg.norm(old[i] - old[j])
            if labels[i] == labels[j]:
                pos.append(cross <= within)
            else:
                neg.append(cross >= within)
        if pos:
            pos_by_i.append(np.mean(pos))
        neg_by_i.append(np.mean(neg))
    res = compatibility_rate(up, old, labels, n_pairs=20000, seed=1)
    # 20000 Bernoulli draws: standard error below 0.0036
    assert res["positive_rate"] == pytest.approx(np.mean(pos_by_i), abs=0.015)
    assert res["negative_rate"] == pytest.approx(np.mean(neg_by_i), abs=0.015)
    assert 0.05 < res["positive_rate"] < 0.95 and 0.05 < res["negative_rate"] < 0.95
    assert res == compatibility_rate(up, old, labels, n_pairs=20000, seed=1)
