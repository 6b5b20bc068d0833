"""Ranking metrics on a hand-worked example and against a brute-force reference on random data."""

from __future__ import annotations

import numpy as np
import pytest

from embridge.core.errors import InputError
from embridge.core.evaluation.metrics import (
    ap_at_r,
    average_precision,
    bootstrap_ci,
    bootstrap_statistic_ci,
    evaluate,
    per_label,
    ranking_depth,
    recall_fraction,
    relevance,
    summary_with_ci,
    topk_correct,
)
from embridge.core.evaluation.search import search
from embridge.core.retrieval import l2_normalize

# Gallery rows 0..4 with labels a b a c a.
GALLERY = np.array(["a", "b", "a", "c", "a"])


def test_hand_worked_ranking() -> None:
    # q0 (a): ranks 1 0 3 2 4 -> b a c a a -> hits 0 1 0 1 1, R = 3
    #   top1 = 0, top5 = 1, AP = (1/2 + 2/4 + 3/5) / 3 = 0.5333.., AP@R = (1/2) / 3 = 1/6
    #   recall_frac@2 = 1/3
    # q1 (b): ranks 1 2 0 3 4 -> hit at rank 1, R = 1: top1 = 1, AP = AP@R = 1
    # q2 (d): no relevant item in the gallery -> not scorable
    ranked = np.array([[1, 0, 3, 2, 4], [1, 2, 0, 3, 4], [0, 1, 2, 3, 4]])
    rel = relevance(ranked, np.array(["a", "b", "d"]), GALLERY)
    assert rel.n_relevant.tolist() == [3, 1, 0]
    assert topk_correct(rel, 1).tolist() == [False, True, False]
    assert topk_correct(rel, 5).tolist() == [True, True, False]
    np.testing.assert_allclose(average_precision(rel)[:2], [1.6 / 3, 1.0])
    np.testing.assert_allclose(ap_at_r(rel)[:2], [1 / 6, 1.0])
    np.testing.assert_allclose(recall_fraction(rel, 2)[:2], [1 / 3, 1.0])
    assert np.isnan(average_precision(rel)[2])

    full = evaluate(rel, topk=(1, 5), recall_ks=(2,), map_mode="full")
    assert full.n_queries == 2 and full.n_without_relevant == 1
    summary = full.summary()
    assert summary["top1"] == pytest.approx(0.5)
    assert summary["top5"] == pytest.approx(1.0)
    assert summary["recall@2"] == pytest.approx(1.0)
    assert summary["recall_frac@2"] == pytest.approx((1 / 3 + 1) / 2)
    assert summary["mAP"] == pytest.approx((1.6 / 3 + 1) / 2)
    at_r = evaluate(rel, map_mode="at_r").summary()
    assert at_r["mAP@R"] == pytest.approx((1 / 6 + 1) / 2)
    # with R capped at 1, q0 needs rank 1 only: a miss -> AP@R = 0
    assert evaluate(rel, map_mode="at_r", r_cap=1).summary()["mAP@R"] == pytest.approx(0.5)


def test_query_inside_gallery_is_excluded_from_relevant_count() -> None:
    # query = gallery item 0 (a), excluded: relevant are items 2 and 4 (R = 2)
    # ranking without item 0: 1 3 2 4 -> hits 0 0 1 1, AP = (1/3 + 2/4) / 2
    rel = relevance(np.array([[1, 3, 2, 4]]), np.array(["a"]), GALLERY, exclude=np.array([0]))
    assert rel.n_relevant.tolist() == [2]
    assert average_precision(rel)[0] == pytest.approx((1 / 3 + 2 / 4) / 2)


def test_missing_results_count_as_misses() -> None:
    rel = relevance(np.array([[-1, -1, 0]]), np.array(["a"]), GALLERY)
    assert rel.hits.tolist() == [[False, False, True]]


def test_bad_rankings_are_refused() -> None:
    with pytest.raises(InputError, match="ranking"):
        relevance(np.array([[7]]), np.array(["a"]), GALLERY)
    with pytest.raises(InputError, match="mAP@R needs the first 3"):
        ap_at_r(relevance(np.array([[0, 1]]), np.array(["a"]), GALLERY))
    with pytest.raises(InputError, match="map mode"):
        evaluate(relevance(np.array([[0]]), np.array(["a"]), GALLERY), map_mode="bogus")


def _brute_force(scores: np.ndarray, q_labels, g_labels, exclude, cap: int) -> dict[str, float]:
    """Reference: full argsort per query, metrics by their textbook definitions in plain loops."""
    top1, top5, aps, apr, rfrac = [], [], [], [], []
    for i in range(scores.shape[0]):
        order = [g for g in np.argsort(-scores[i], kind="stable") if g != exclude[i]]
        is_rel = [g_labels[g] == q_labels[i] for g in order]
        r = sum(is_rel)
        if r == 0:
            continue
        top1.append(float(is_rel[0]))
        top5.append(float(any(is_rel[:5])))
        rfrac.append(sum(is_rel[:10]) / r)
        precisions = [sum(is_rel[: j + 1]) / (j + 1) for j in range(len(order)) if is_rel[j]]
        aps.append(sum(precisions) / r)
        rr = min(r, cap)
        apr.append(sum(sum(is_rel[: j + 1]) / (j + 1) for j in range(rr) if is_rel[j]) / rr)
    return {
        "top1": np.mean(top1),
        "top5": np.mean(top5),
        "recall_frac@10": np.mean(rfrac),
        "mAP": np.mean(aps),
        "mAP@R": np.mean(apr),
    }


def test_metrics_match_brute_force_on_random_data() -> None:
    rng = np.random.default_rng(3)
    n_g, dim, classes, cap = 300, 16, 12, 20
    centers = rng.normal(size=(classes, dim))
    g_labels = rng.integers(0, classes, n_g)
    gallery = l2_normalize(centers[g_labels] + 1.2 * rng.normal(size=(n_g, dim)))
    # the first 40 queries are gallery items (excluded from their own ranking), 20 are new;
    # new labels >= classes have no gallery item (R = 0, not scorable)
    new_labels = rng.integers(0, classes + 2, 20)
    q_labels = np.concatenate([g_labels[:40], new_labels])
    queries = np.concatenate(
        [gallery[:40], l2_normalize(centers[new_labels % classes] + rng.normal(size=(20, dim)))]
    )
    exclude = np.concatenate([np.arange(40), np.full(20, -1)])

    expected = _brute_force(queries @ gallery.T, q_labels, g_labels, exclude, cap)
    ranked, _, info = search(queries, gallery, n_g, exclude=exclude)
    assert info.exact
    rel = relevance(ranked, q_labels, g_labels, exclude)
    assert (rel.n_relevant == 0).any()  # unscorable queries are part of the case
    full = evaluate(rel, topk=(1, 5), recall_ks=(10,), map_mode="full").summary()
    for name in ("top1", "top5", "recall_frac@10", "mAP"):
        assert full[name] == pytest.approx(expected[name], abs=1e-12), name
    # mAP@R from a ranking only as deep as needed
    depth = ranking_depth("at_r", n_g, int(rel.n_relevant.max()), (1, 5, 10), r_cap=cap)
    assert depth == cap
    rel_short = relevance(ranked[:, :depth], q_labels, g_labels, exclude)
    short = evaluate(rel_short, map_mode="at_r", r_cap=cap).summary()
    assert short["mAP@R"] == pytest.approx(expected["mAP@R"], abs=1e-12)
    assert short["top1"] == pytest.approx(expected["top1"])


def test_bootstrap_is_seeded_and_brackets_the_mean() -> None:
    values = (np.random.default_rng(0).random(400) < 0.7).astype(float)
    lo, hi = bootstrap_ci(values, n_boot=500, seed=1)
    assert (lo, hi) == bootstrap_ci(values, n_boot=500, seed=1)
    assert lo < values.mean() < hi
    # the percentile CI of a proportion from 400 draws spans about ±1.96·sqrt(p(1−p)/n) ≈ ±0.045
    assert 0.06 < hi - lo < 0.12
    # paired statistic: the CI of a difference of two columns resampled together
    other = values.copy()
    lo_d, hi_d = bootstrap_statistic_ci(lambda a, b: a.mean() - b.mean(), [values, other], n_boot=200)
    assert lo_d == hi_d == 0.0


def test_a_statistic_undefined_in_every_resample_has_no_interval_and_no_warning() -> None:
    import warnings

    values = np.ones(50)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "All-NaN slice" warning would fail here
        lo, hi = bootstrap_statistic_ci(lambda a: float("nan"), [values], n_boot=100)
    assert np.isnan(lo) and np.isnan(hi)


def test_summary_with_ci_and_per_label() -> None:
    ranked = np.array([[1, 0, 3, 2, 4], [1, 2, 0, 3, 4], [0, 1, 2, 3, 4], [0, 1, 2, 3, 4]])
    q_labels = np.array(["a", "b", "d", "a"])
    cell = evaluate(relevance(ranked, q_labels, GALLERY))
    ci = summary_with_ci(cell, n_boot=200)
    assert ci["top1"]["value"] == pytest.approx(2 / 3)
    assert ci["top1"]["ci_low"] <= 2 / 3 <= ci["top1"]["ci_high"]
    rows = per_label(cell.per_query, q_labels, cell.valid)
    assert [r["label"] for r in rows] == ["a", "b"]  # 'd' has no scorable query
    assert rows[0]["n"] == 2 and rows[0]["top1"] == pytest.approx(0.5)
    assert rows[1]["top1"] == pytest.approx(1.0)
