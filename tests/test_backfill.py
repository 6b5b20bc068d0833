"""Partial backfill: mixed-gallery scoring against an explicit mixed gallery, policies and areas."""

from __future__ import annotations

import numpy as np
import pytest

from embridge.core.errors import InputError
from embridge.core.evaluation.metrics import evaluate, relevance
from embridge.core.evaluation.relevance import JUDGMENTS, RelevanceRule
from embridge.core.evaluation.scoring import judged_metrics
from embridge.core.report.backfill_curve import (
    BackfillCurve,
    BackfillOptions,
    JudgedRelevance,
    backfill_curves,
    backfill_order,
    partial_backfill,
    residual_norms,
    self_margins,
)
from embridge.core.retrieval import l2_normalize


def _world(n_gallery: int, n_queries: int, seed: int, bad_share: float = 0.0) -> dict[str, np.ndarray]:
    """Old space (12-d) and new space (16-d) of labelled items, plus an imperfect linear adapter.

    A ``bad_share`` of gallery items have corrupted old vectors: the bridge serves them poorly
    and their adapter residual is large.
    """
    rng = np.random.default_rng(seed)
    classes, a, b = 15, 12, 16
    old_c, new_c = rng.normal(size=(classes, a)), rng.normal(size=(classes, b))
    y = rng.integers(0, classes, n_gallery + n_queries)
    old = l2_normalize(old_c[y] + 0.9 * rng.normal(size=(y.size, a)))
    new = l2_normalize(new_c[y] + 0.5 * rng.normal(size=(y.size, b)))
    w, *_ = np.linalg.lstsq(new, old, rcond=None)
    adapted = l2_normalize(new @ w + 0.2 * rng.normal(size=(y.size, a)))
    bad = rng.random(n_gallery) < bad_share
    old[:n_gallery][bad] = l2_normalize(rng.normal(size=(int(bad.sum()), a)))
    g, q = slice(0, n_gallery), slice(n_gallery, None)
    return {
        "qn": new[q], "qh": adapted[q], "qy": y[q],
        "gn": new[g], "go": old[g], "gh": adapted[g], "gy": y[g],
    }  # fmt: skip


def _explicit_mixed_top(w: dict, order: np.ndarray, beta: float, ks: tuple[int, ...]) -> dict[str, float]:
    """Build the mixed gallery in one joint space and rank by full argsort.

    Query = [n_q, h(n_q)]; a backfilled item = [n_g, 0], any other = [0, o_g]: the inner product is
    ⟨n_q, n_g⟩ or ⟨h(n_q), o_g⟩ exactly as the mixed system scores them.
    """
    n_g = w["gn"].shape[0]
    filled = np.zeros(n_g, dtype=bool)
    filled[order[: int(np.rint(beta * n_g))]] = True
    a, b = w["go"].shape[1], w["gn"].shape[1]
    gallery = np.zeros((n_g, a + b), dtype=np.float32)
    gallery[filled, :b] = w["gn"][filled]
    gallery[~filled, b:] = w["go"][~filled]
    queries = np.concatenate([w["qn"], w["qh"]], axis=1)
    ranked = np.argsort(-(queries @ gallery.T), axis=1, kind="stable")
    cell = evaluate(relevance(ranked, w["qy"], w["gy"]), topk=ks, recall_ks=(), map_mode="none")
    return cell.summary()


def test_mixed_gallery_matches_explicit_construction() -> None:
    w = _world(400, 150, seed=0, bad_share=0.3)
    betas = np.array([0.0, 0.13, 0.5, 0.77, 1.0])
    orders = {p: backfill_order(p, 400, seed=2, gallery_adapted=w["gh"], gallery_old=w["go"]) for p in
              ("random", "least_confident", "largest_residual")}  # fmt: skip
    curves = backfill_curves(
        w["qn"], w["qh"], w["gn"], w["go"], w["qy"], w["gy"], orders, betas, ks=(1, 5), block=64
    )
    for policy, order in orders.items():
        for i, beta in enumerate(betas):
            expected = _explicit_mixed_top(w, order, beta, (1, 5))
            assert curves[policy].values["top1"][i] == pytest.approx(expected["top1"], abs=1e-12)
            assert curves[policy].values["top5"][i] == pytest.approx(expected["top5"], abs=1e-12)
    # endpoints: β = 0 is the new→old cell, β = 1 the new/new cell (identical for every policy)
    ends = {p: (c.values["top1"][0], c.values["top1"][-1]) for p, c in curves.items()}
    assert len(set(ends.values())) == 1
    assert ends["random"][1] > ends["random"][0] + 0.1


def _judged_rule(w: dict, query_ids: np.ndarray, gallery_ids: np.ndarray, seed: int) -> RelevanceRule:
    """Graded judgments (1-3) of each query: its label's gallery items, a few of them unjudged, plus
    judgments of items outside the gallery that only the ideal DCG sees."""
    rng = np.random.default_rng(seed)
    judged: dict[int, dict[int, int]] = {}
    for q, y in zip(query_ids.tolist(), w["qy"].tolist(), strict=True):
        same = gallery_ids[(w["gy"] == y) & (rng.random(gallery_ids.size) < 0.8)]
        judged[q] = {int(g): int(rng.integers(1, 4)) for g in same}
        if rng.random() < 0.3:
            judged[q][10**6 + q] = 2  # a judged document this gallery does not hold
    ideal = {q: sorted(g.values(), reverse=True) for q, g in judged.items()}
    return RelevanceRule(JUDGMENTS, judged=judged, ideal=ideal, split="test")


def test_judged_curves_score_the_explicit_mixed_ranking_as_the_cells_do() -> None:
    """With relevance judgments each point is the cells' own scoring of the explicit mixed gallery."""
    w = _world(300, 90, seed=6, bad_share=0.2)
    gallery_ids, query_ids = np.arange(1000, 1300), np.arange(5000, 5090)
    rule = _judged_rule(w, query_ids, gallery_ids, seed=7)
    betas = np.array([0.0, 0.3, 0.65, 1.0])
    orders = {p: backfill_order(p, 300, seed=1, gallery_adapted=w["gh"], gallery_old=w["go"]) for p in
              ("random", "largest_residual")}  # fmt: skip
    curves = backfill_curves(w["qn"], w["qh"], w["gn"], w["go"], query_ids, gallery_ids, orders, betas, ks=(1, 5),
                             block=32, judged=JudgedRelevance(rule, query_ids, gallery_ids))
    for policy, order in orders.items():
        assert set(curves[policy].values) == {"top1", "top5", "ndcg@10", "mrr@10"}
        for i, beta in enumerate(betas):
            filled = np.zeros(300, dtype=bool)
            filled[order[: int(np.rint(beta * 300))]] = True
            scores = np.where(filled[None, :], w["qn"] @ w["gn"].T, w["qh"] @ w["go"].T)
            ranked = np.argsort(-scores, axis=1, kind="stable")
            rel, grades = rule.relevance(ranked, query_ids, gallery_ids, None)
            cell = evaluate(rel, topk=(1, 5), recall_ks=(), map_mode="none")
            judged = judged_metrics(rel.hits, grades, rule.ideal_dcg(query_ids, 10))
            valid = rel.n_relevant > 0
            expected = {**cell.summary(), **{k: v[valid].mean() for k, v in judged.items()}}
            for name in ("top1", "top5", "ndcg@10", "mrr@10"):
                assert curves[policy].values[name][i] == pytest.approx(expected[name], abs=1e-9), (policy, beta, name)
    ndcg = curves["random"].values["ndcg@10"]
    assert ndcg[-1] > ndcg[0] + 0.05 and 0 < ndcg.min() and ndcg.max() < 1  # graded, not a copy of top-1


def _curves_matching_the_explicit_gallery(w: dict[str, np.ndarray], betas: np.ndarray) -> dict[str, BackfillCurve]:
    """Every policy's curves, each point checked against the explicit mixed gallery's ranking."""
    orders = {p: backfill_order(p, len(w["gn"]), seed=3, gallery_adapted=w["gh"], gallery_old=w["go"]) for p in
              ("random", "least_confident", "largest_residual")}  # fmt: skip
    curves = backfill_curves(w["qn"], w["qh"], w["gn"], w["go"], w["qy"], w["gy"], orders, betas, ks=(1, 5), block=16)
    for policy, order in orders.items():
        for i, beta in enumerate(betas):
            expected = _explicit_mixed_top(w, order, beta, (1, 5))
            assert curves[policy].values["top1"][i] == pytest.approx(expected["top1"], abs=1e-12), (policy, beta)
            assert curves[policy].values["top5"][i] == pytest.approx(expected["top5"], abs=1e-12), (policy, beta)
    return curves


def test_tied_scores_rank_by_gallery_row_under_every_policy() -> None:
    """Duplicated gallery items tie exactly: every policy ranks them by row, as the cells' search does,
    so all policies meet at β = 1 and each point matches the explicit mixed gallery."""
    w = _world(120, 60, seed=8)
    for key in ("gn", "go", "gh"):
        w[key] = np.concatenate([w[key]] * 4)  # each item four times: ties at and across the k-th place
    w["gy"] = np.concatenate([w["gy"], (w["gy"] + 1) % 15, w["gy"], (w["gy"] + 2) % 15])  # copies differ in label
    betas = np.array([0.0, 0.5, 1.0])
    curves = _curves_matching_the_explicit_gallery(w, betas)
    assert len({c.values["top1"][-1] for c in curves.values()}) == 1


def test_tie_groups_larger_than_the_candidates_kept_still_rank_by_gallery_row() -> None:
    """A tie group wider than the k + slack candidates each curve keeps (30 gallery items sharing the
    queries' own vector): which of them survive must follow gallery rows, not the policy's order, so
    every policy starts at the upgraded cell and each point matches the explicit mixed gallery."""
    w = _world(120, 40, seed=4)
    rng = np.random.default_rng(4)
    group = rng.choice(120, size=30, replace=False)
    for key, query_key in (("gn", "qn"), ("go", "qh"), ("gh", "qh")):
        w[key][group] = w[query_key][0]  # every item of the group is the first query's vector
    w["qn"][:8], w["qh"][:8] = w["qn"][0], w["qh"][0]  # eight queries share it
    w["gy"][group] = np.where(np.arange(30) < 27, (w["qy"][0] + 1) % 15, w["qy"][0])  # 3 of 30 relevant
    betas = np.array([0.0, 0.3, 0.7, 1.0])
    curves = _curves_matching_the_explicit_gallery(w, betas)
    assert len({c.values["top1"][0] for c in curves.values()}) == 1  # β = 0: the upgraded system, whatever the order


def test_self_exclusion_in_mixed_gallery() -> None:
    w = _world(300, 0, seed=1)
    w.update(qn=w["gn"][:80], qh=w["gh"][:80], qy=w["gy"][:80])
    order = backfill_order("random", 300, seed=0)
    curve = backfill_curves(
        w["qn"], w["qh"], w["gn"], w["go"], w["qy"], w["gy"], {"random": order}, [0.0, 0.4, 1.0],
        ks=(1,), exclude=np.arange(80),
    )["random"]  # fmt: skip
    # brute force for β = 0.4 with the query's own row scored out
    filled = np.zeros(300, dtype=bool)
    filled[order[:120]] = True
    scores = np.where(filled[None, :], w["qn"] @ w["gn"].T, w["qh"] @ w["go"].T)
    scores[np.arange(80), np.arange(80)] = -np.inf
    top = np.argmax(scores, axis=1)
    valid = (w["gy"][None, :] == w["qy"][:, None]).sum(1) > 1
    expected = np.mean((w["gy"][top] == w["qy"])[valid])
    assert curve.values["top1"][1] == pytest.approx(expected, abs=1e-12)


def _keyed_world(n: int, n_queries: int, seed: int, bad_share: float) -> dict[str, np.ndarray]:
    """Items seen by both models from one latent; a query is another view of one item (its key).

    A ``bad_share`` of items have corrupted old vectors, which the bridge cannot serve.
    """
    rng = np.random.default_rng(seed)
    d, a, b = 16, 12, 16
    z = rng.normal(size=(n, d))
    to_old, to_new = rng.normal(size=(d, a)), rng.normal(size=(d, b))
    old = l2_normalize(z @ to_old + 0.3 * rng.normal(size=(n, a)))
    new = l2_normalize(z @ to_new + 0.2 * rng.normal(size=(n, b)))
    w, *_ = np.linalg.lstsq(new, old, rcond=None)
    bad = rng.random(n) < bad_share
    old[bad] = l2_normalize(rng.normal(size=(int(bad.sum()), a)))
    keys = rng.choice(n, n_queries, replace=False)
    qn = l2_normalize(z[keys] @ to_new + 0.2 * rng.normal(size=(n_queries, b)))
    return {
        "qn": qn, "qh": l2_normalize(qn @ w), "qy": keys,
        "gn": new, "go": old, "gh": l2_normalize(new @ w), "gy": np.arange(n),
    }  # fmt: skip


def test_policy_orders_and_informed_policies_help() -> None:
    w = _keyed_world(600, 300, seed=3, bad_share=0.3)
    res = residual_norms(w["gh"], w["go"])
    explicit = np.linalg.norm(w["gh"] - w["go"], axis=1)
    for block in (1, 7, 599, 600, 4096):  # blocks that split the rows unevenly, exactly, or not at all
        np.testing.assert_allclose(residual_norms(w["gh"], w["go"], block=block), explicit, rtol=1e-6)
    order = backfill_order("largest_residual", 600, gallery_adapted=w["gh"], gallery_old=w["go"])
    assert np.all(np.diff(res[order]) <= 0)
    margins = self_margins(w["gh"], w["go"])
    scores = w["gh"] @ w["go"].T
    np.fill_diagonal(scores, -np.inf)
    np.testing.assert_allclose(margins, (w["gh"] * w["go"]).sum(1) - scores.max(1), atol=1e-5)
    curves = partial_backfill(
        w["qn"], w["qh"], w["gn"], w["go"], w["qy"], w["gy"], BackfillOptions(steps=6, seed=4), gallery_adapted=w["gh"]
    )
    areas = {p: c.areas["top1"] for p, c in curves.items()}
    assert set(areas) == {"random", "least_confident", "largest_residual"}
    # the corrupted old vectors are backfilled first by both informed policies
    # (measured areas: random 0.856, least_confident 0.953, largest_residual 0.953)
    assert areas["largest_residual"] > areas["random"] + 0.05
    assert areas["least_confident"] > areas["random"] + 0.05
    c = curves["random"]
    assert c.values["top1"][-1] == 1.0 and c.values["top1"][0] < 0.8
    assert c.areas["top1"] == pytest.approx(np.trapezoid(c.values["top1"], c.betas))
    d = c.to_dict()
    assert d["betas"] == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0]) and len(d["values"]["top5"]) == 6


def test_bad_backfill_inputs() -> None:
    w = _world(50, 10, seed=5)
    with pytest.raises(InputError, match="adapted new vectors"):
        backfill_order("largest_residual", 50)
    with pytest.raises(InputError, match="unknown"):
        backfill_order("newest_first", 50)
    with pytest.raises(InputError, match="permutation"):
        backfill_curves(w["qn"], w["qh"], w["gn"], w["go"], w["qy"], w["gy"], {"x": np.zeros(50, int)})
    with pytest.raises(InputError, match="betas"):
        backfill_curves(w["qn"], w["qh"], w["gn"], w["go"], w["qy"], w["gy"], {"x": np.arange(50)}, [0, 1.5])
    assert isinstance(
        BackfillCurve("x", np.array([0.0, 1.0]), {"top1": np.array([0.2, 0.4])}).areas["top1"], float
    )


def test_a_large_sample_is_ordered_least_confident_first_by_an_approximate_self_search(monkeypatch) -> None:
    """The exact search of the sample against itself grew with its square: 65 s of a 200k-item report's 99 s.
    Beyond the threshold the order comes from an approximate search, close to the exact one on clustered data;
    a search asked to be exact stays exact."""
    import embridge.core.report.backfill_curve as curve
    from embridge.core.evaluation.search import SearchConfig

    rng = np.random.default_rng(4)
    centres = rng.standard_normal((60, 32)).astype(np.float32)
    old = centres[rng.integers(0, 60, 6000)] + 0.4 * rng.standard_normal((6000, 32)).astype(np.float32)
    adapted = old + 0.3 * rng.standard_normal(old.shape).astype(np.float32)
    old, adapted = (x / np.linalg.norm(x, axis=1, keepdims=True) for x in (old, adapted))
    exact = curve.self_margins(adapted, old, SearchConfig(method="exact"))
    brute = (adapted * old).sum(axis=1) - np.max(np.where(np.eye(6000, dtype=bool), -np.inf, adapted @ old.T), axis=1)
    np.testing.assert_allclose(exact, brute, atol=1e-5)
    seen: list[SearchConfig] = []
    real = curve.search
    monkeypatch.setattr(curve, "search", lambda *a, config, **k: seen.append(config) or real(*a, config=config, **k))
    monkeypatch.setattr(curve, "MARGIN_EXACT_MAX", 2000)
    approx = curve.self_margins(adapted, old)
    assert seen[-1].exact_max == 2000 and not seen[-1].measure_recall  # 6,000 > 2,000: the approximate search
    tenth = 600
    shared = np.intersect1d(np.argsort(approx)[:tenth], np.argsort(exact)[:tenth]).size / tenth
    assert shared > 0.9, shared  # the least-confident tenth is nearly the same items
    curve.self_margins(adapted, old, SearchConfig(method="exact"))
    assert seen[-1].method == "exact"


def test_the_random_curve_is_the_mean_of_several_draws_with_their_range() -> None:
    """One seeded draw made the curve: a plan took the first β whose curve reached its target, a lucky draw
    (97.0% planned, 94.0% served on the digits demo, where 500 other draws averaged 94.9%)."""
    from embridge.core.report.backfill_curve import RANDOM_DRAWS

    w = _world(300, 60, seed=3)
    options = BackfillOptions(policies=("random",), steps=5, ks=(1,), seed=7)
    curve = partial_backfill(w["qn"], w["qh"], w["gn"], w["go"], w["qy"], w["gy"], options)["random"]
    orders = {"0": backfill_order("random", 300, seed=7)}
    orders.update({str(j): backfill_order("random", 300, seed=7, draw=j) for j in range(1, RANDOM_DRAWS)})
    draws = backfill_curves(w["qn"], w["qh"], w["gn"], w["go"], w["qy"], w["gy"], orders, curve.betas, ks=(1,))
    each = np.stack([c.values["top1"] for c in draws.values()])
    assert curve.draws == RANDOM_DRAWS == len(draws) > 1
    np.testing.assert_allclose(curve.values["top1"], each.mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(curve.spread["top1"], np.stack([each.min(0), each.max(0)], axis=1), atol=1e-12)
    assert (np.ptp(each[:, 1:-1], axis=0) > 0).any()  # the draws differ part of the way through
    assert np.ptp(each[:, 0]) == 0 and np.ptp(each[:, -1]) == 0  # but not at β = 0 or 1
    assert curve.to_dict()["spread"]["top1"][2] == [each[:, 2].min(), each[:, 2].max()]


def test_a_large_curve_averages_fewer_random_draws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each draw is a full pass over the queries' scores: a large curve takes fewer, and says how many."""
    from embridge.core.report import backfill_curve

    monkeypatch.setattr(backfill_curve, "LARGE_CURVE", 60 * 300 - 1)
    w = _world(300, 60, seed=3)
    curve = partial_backfill(w["qn"], w["qh"], w["gn"], w["go"], w["qy"], w["gy"],
                             BackfillOptions(policies=("random",), steps=3, ks=(1,)))["random"]
    assert curve.draws == backfill_curve.RANDOM_DRAWS_LARGE == curve.to_dict()["draws"] == 3


def test_a_reports_curves_say_how_many_random_orders_the_random_curve_averages(demo_copy) -> None:
    from embridge.core.report.backfill_curve import RANDOM_DRAWS
    from embridge.core.report.build import ReportOptions, build_report
    from embridge.core.store import Workspace
    from embridge.core.train.runs import train_run

    with Workspace.open(demo_copy) as ws:
        run = train_run(ws, "procrustes", device="cpu")
        report = build_report(ws, run["run_id"], ReportOptions(n_boot=20, backfill_steps=3), write=False)
    curve = report.backfill["policies"]["random"]
    assert curve["draws"] == RANDOM_DRAWS and len(curve["spread"]["top1"]) == 3
    assert all(low - 1e-12 <= mean <= high + 1e-12 for (low, high), mean in zip(curve["spread"]["top1"], curve["values"]["top1"],
                                                                strict=True))
    assert f"its curve is the mean of {RANDOM_DRAWS} random orders" in " ".join(report.backfill["note"])
