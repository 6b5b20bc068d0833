"""The evaluation package on hand-made cases: ties, gain retained, relevance rules and judged scoring."""

from __future__ import annotations

import numpy as np
import pytest

from embridge.core.evaluation.choice import all_tied, choose
from embridge.core.evaluation.compat import NOT_BETTER, compare, gain_note, gain_retained
from embridge.core.evaluation.relevance import JUDGMENTS, LABELS, OWN_ITEM, RelevanceRule, judged_rule
from embridge.core.evaluation.scoring import score, scoring_plan, selection_plan
from embridge.core.evaluation.task import GallerySet, QuerySet, RetrievalTask, own_item_gallery
from embridge.core.report.judged_metrics import score_rankings
from embridge.core.retrieval import l2_normalize
from embridge.core.store.judgments import Judgments


def test_gain_retained_is_undefined_when_the_new_model_is_not_better() -> None:
    # the case of the issue: new/new below old/old flipped the ratio's sign into a "gain" of 1.90
    assert gain_retained(0.30, 0.40, 0.35) is None and gain_note(0.40, 0.35) == NOT_BETTER
    assert gain_retained(0.45, 0.40, 0.40) is None and gain_note(0.40, 0.40) == NOT_BETTER
    assert gain_retained(0.45, 0.40, 0.50) == pytest.approx(0.5) and gain_note(0.40, 0.50) is None
    row = compare({"top1": 0.3}, {"top1": 0.4}, {"top1": 0.35})["top1"]
    assert row["gain_retained"] is None and row["gain_retained_note"] == NOT_BETTER and row["passes"] is False
    assert NOT_BETTER == "the new model is not better than the old one on this metric here"


def test_a_tie_names_no_winner_and_keeps_the_stated_default() -> None:
    choice = choose(["procrustes", "affine", "mlp"], [0.0, 0.0, 1e-13], "10 dev queries against X", default=0,
                    default_why="the simplest")
    assert not choice.decided and choice.index == 0
    assert choice.reason == ("no choice was made: every candidate scored top-1 0.000 on 10 dev queries against X; "
                             "kept procrustes (the simplest)")
    won = choose(["a", "b", "c"], [0.2, 0.5, 0.5], "P")
    assert won.decided and won.index == 1
    assert won.reason == "b won with validation top-1 0.500, level with c (0.500): a tie goes to the earlier candidate, on P"
    close = choose(["a", "b"], [0.70004, 0.7], "P")  # apart, though both read 0.700 at three decimals
    assert close.reason == "a won with validation top-1 0.70004, ahead of b (0.70000), on P"
    assert all_tied([float("nan"), float("nan")]) and not all_tied([0.1, float("nan")])
    nothing = choose(["a", "b"], [float("nan"), float("nan")], "P")
    assert not nothing.decided and "no validation query has a relevant item" in nothing.reason


def _task(rule: RelevanceRule, q: np.ndarray, g: np.ndarray, name: str = "queries") -> RetrievalTask:
    return RetrievalTask(QuerySet(name, q), GallerySet("gallery", g), rule)


def test_label_relevance_excludes_a_query_from_its_own_ranking() -> None:
    ids = np.arange(6, dtype=np.int64)
    rule = RelevanceRule(LABELS, labels={0: "a", 1: "a", 2: "b", 3: "b", 4: "c", 5: None})
    task = _task(rule, ids[:5], ids)
    assert task.exclude.tolist() == [0, 1, 2, 3, 4]
    vecs = l2_normalize(np.eye(6, dtype=np.float32) + 0.1)
    vecs[1] = vecs[0] * 0.9 + vecs[1] * 0.1  # 0 and 1 (label a) are near each other
    result = score(task, vecs[:5], l2_normalize(vecs), scoring_plan(task))
    # item 4 (label c) has no other relevant item: unscorable, left out of the mean
    assert result.cell.n_queries == 4 and result.cell.n_without_relevant == 1
    assert result.protocol.describe().startswith(
        "4 of 5 queries (the others have no relevant item in this gallery) against gallery (6 items), "
        "relevance: same label")


def test_queries_without_a_label_are_named_as_such_not_as_the_gallerys_lack() -> None:
    """Unlabelled queries were left out "(the others have no relevant item in this gallery)", as if a
    larger gallery would score them."""
    ids = np.arange(8, dtype=np.int64)
    rule = RelevanceRule(LABELS, labels={0: "a", 1: "a", 2: "b", 3: "b", 4: "c", 5: None, 6: None, 7: "a"})
    vecs = l2_normalize(np.eye(8, dtype=np.float32) + 0.1)
    for queries, words, unlabelled in ((ids[[0, 2, 5, 6]], "2 of 4 queries (the others have no label)", 2),
                                       (ids[[0, 4, 5]], "1 of 3 queries (1 has no label, the others no relevant "
                                                        "item in this gallery)", 1)):
        result = score(_task(rule, queries, ids), vecs[queries], vecs, scoring_plan(_task(rule, queries, ids)))
        assert result.protocol.describe().startswith(words), result.protocol.describe()
        assert result.protocol.to_dict()["n_unlabelled"] == unlabelled


def test_own_item_relevance_adds_the_queries_to_the_gallery() -> None:
    rule = RelevanceRule(OWN_ITEM)
    gallery = own_item_gallery(QuerySet("q", np.array([7, 8])), GallerySet("g", np.array([1, 2, 3])), rule)
    assert gallery.ids.tolist() == [1, 2, 3, 7, 8] and "plus the 2 query items" in gallery.name
    assert _task(rule, np.array([7, 8]), gallery.ids).exclude is None


def _random_judgments(rng: np.random.Generator, q_ids: np.ndarray, g_ids: np.ndarray,
                      lowest_grade: int) -> Judgments:
    """Four judged documents per query, grades from ``lowest_grade`` to 3, all in the test split."""
    rows = [(q, g, int(rng.integers(lowest_grade, 4))) for q in q_ids for g in rng.choice(g_ids, 4, replace=False)]
    return Judgments.from_arrays([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                                 ["test"] * len(rows))


def test_judged_scoring_matches_the_reference_judged_metrics() -> None:
    rng = np.random.default_rng(3)
    n_q, n_g, dim = 40, 60, 8
    q_ids, g_ids = np.arange(100, 100 + n_q), np.arange(n_g)
    judgments = _random_judgments(rng, q_ids, g_ids, lowest_grade=0)
    rule = judged_rule(judgments, "test")
    assert rule.source == JUDGMENTS and rule.graded()
    task = _task(rule, q_ids, g_ids)
    queries = l2_normalize(rng.standard_normal((n_q, dim)))
    gallery = l2_normalize(rng.standard_normal((n_g, dim)))
    result = score(task, queries, gallery, scoring_plan(task))
    ranked_ids = g_ids[np.argsort(-(queries @ gallery.T), axis=1, kind="stable")]
    reference = score_rankings(ranked_ids, q_ids, judgments, ks=(1, 10)).mean()
    assert result.metrics["top1"] == pytest.approx(reference["success@1"])
    assert result.metrics["ndcg@10"] == pytest.approx(reference["ndcg@10"])
    assert result.metrics["mrr@10"] == pytest.approx(reference["mrr@10"])
    cheap = score(task, queries, gallery, selection_plan(task))
    assert cheap.metrics["top1"] == result.metrics["top1"] and cheap.metrics["ndcg@10"] == result.metrics["ndcg@10"]


def test_judged_documents_missing_from_the_gallery_count_as_misses_in_every_metric() -> None:
    """recall_frac@k and mAP divided by the relevant documents the searched gallery held while nDCG@10's
    ideal counted every judgment: on a gallery lacking a third of the documents they read 0.87 and 0.65
    against trec_eval's 0.69 and 0.53. All three now count every judged-relevant document."""
    rng = np.random.default_rng(5)
    n_q, n_g, dim = 30, 60, 8
    q_ids, all_ids = np.arange(100, 100 + n_q), np.arange(n_g)
    judgments = _random_judgments(rng, q_ids, all_ids, lowest_grade=1)
    g_ids = all_ids[:40]  # the searched gallery lacks 20 judged documents
    task = _task(judged_rule(judgments, "test"), q_ids, g_ids)
    queries = l2_normalize(rng.standard_normal((n_q, dim)))
    gallery = l2_normalize(rng.standard_normal((len(g_ids), dim)))
    result = score(task, queries, gallery, scoring_plan(task))
    ranked_ids = g_ids[np.argsort(-(queries @ gallery.T), axis=1, kind="stable")]
    reference = score_rankings(ranked_ids, q_ids, judgments, ks=(10,))
    scored = np.array([any(g in g_ids for g in judgments.relevant_sets().get(int(q), {})) for q in q_ids])
    assert result.cell.n_queries == int(scored.sum())
    lacking = np.array([any(g not in g_ids for g in judgments.relevant_sets()[int(q)]) for q in q_ids]) & scored
    assert lacking.sum() >= 10  # the case at stake: most scored queries miss a relevant document
    assert result.metrics["recall_frac@10"] == pytest.approx(reference.recall_at[10][scored].mean(), abs=1e-12)
    assert result.metrics["mAP"] == pytest.approx(reference.average_precision[scored].mean(), abs=1e-12)
    assert result.metrics["ndcg@10"] == pytest.approx(reference.ndcg_at_10[scored].mean(), abs=1e-12)
