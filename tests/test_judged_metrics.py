"""Metrics on graded judgments, checked against trec_eval (pytrec-eval-terrier) to 1e-9 on random
runs with tied scores and several relevant items per query, plus properties any ranking obeys."""

from __future__ import annotations

import numpy as np
import pytest
import pytrec_eval
from hypothesis import given, settings
from hypothesis import strategies as st

from embridge.core.errors import InputError
from embridge.core.report.judged_metrics import score_rankings
from embridge.core.store.judgments import Judgments

KS = (1, 3, 5, 10, 100)
MEASURES = {"success.1,3,5,10,100", "recall.1,3,5,10,100", "ndcg_cut.10", "map"}


def _random_task(seed: int, n_queries: int = 40, n_docs: int = 300, depth: int = 120):
    """Qrels with graded, multi-relevant and all-zero queries, and a run whose scores have many ties."""
    rng = np.random.default_rng(seed)
    q, d, g = [], [], []
    for query in range(n_queries):
        judged = rng.choice(n_docs, size=int(rng.integers(1, 25)), replace=False)
        grades = rng.integers(0, 4, size=len(judged))
        if query % 7 == 3:
            grades[:] = 0  # judged, nothing relevant
        q += [1000 + query] * len(judged)
        d += judged.tolist()
        g += grades.tolist()
    judgments = Judgments.from_arrays(q, d, g, ["test"] * len(q))
    run_scores = {}
    for query in range(n_queries):
        pool = rng.choice(n_docs, size=depth, replace=False)
        scores = rng.integers(0, 30, size=depth).astype(float)  # 30 distinct values for 120 docs: ties
        run_scores[1000 + query] = dict(zip(pool.tolist(), scores.tolist(), strict=True))
    return judgments, run_scores


def _trec_order(scores: dict[int, float]) -> list[int]:
    """trec_eval's order: score descending, ties by document id (as text) descending."""
    return [doc for doc, _ in sorted(scores.items(), key=lambda kv: (kv[1], _docno(kv[0])), reverse=True)]


def _docno(doc: int) -> str:
    return f"d{doc}"


def _trec(judgments: Judgments, run: dict[int, dict[int, float]], measures: set[str]) -> dict[str, dict]:
    qrel: dict[str, dict[str, int]] = {}
    for qid, doc, grade in zip(judgments.query_ids.tolist(), judgments.item_ids.tolist(),
                               judgments.grades.tolist(), strict=True):
        qrel.setdefault(str(qid), {})[_docno(doc)] = grade
    trec_run = {str(qid): {_docno(doc): s for doc, s in docs.items()} for qid, docs in run.items()}
    return pytrec_eval.RelevanceEvaluator(qrel, measures).evaluate(trec_run)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_trec_eval_on_random_runs_with_ties(seed: int) -> None:
    judgments, run = _random_task(seed)
    qids = np.array(sorted(run), dtype=np.int64)
    ranked = np.array([_trec_order(run[q]) for q in qids], dtype=np.int64)
    ranked[5, 100:] = -1  # a short ranking, padded
    run[int(qids[5])] = {doc: run[int(qids[5])][doc] for doc in ranked[5, :100].tolist()}
    ours = score_rankings(ranked, qids, judgments, ks=KS)
    ref = _trec(judgments, run, MEASURES)
    # MRR@10 is trec_eval's reciprocal rank over the first 10 documents of each ranking
    top10 = {q: {doc: run[q][doc] for doc in _trec_order(run[q])[:10]} for q in run}
    ref_rr = _trec(judgments, top10, {"recip_rank"})
    tied = sum(len(set(s.values())) < len(s) for s in run.values())
    assert tied == len(run)  # every ranking really has ties
    multi = sum(n > 1 for n in ours.n_relevant.tolist())
    assert multi >= 25 and ours.n_without_relevant >= 5
    checked = 0
    for row, qid in enumerate(qids.tolist()):
        expected = ref[str(qid)]
        if ours.n_relevant[row] == 0:  # trec_eval scores these 0 too; our means leave them out
            assert expected["ndcg_cut_10"] == expected["map"] == 0
            assert ours.ndcg_at_10[row] == ours.average_precision[row] == 0
            continue
        for k in KS:
            assert ours.success_at[k][row] == pytest.approx(expected[f"success_{k}"], abs=1e-9)
            assert ours.recall_at[k][row] == pytest.approx(expected[f"recall_{k}"], abs=1e-9)
        assert ours.ndcg_at_10[row] == pytest.approx(expected["ndcg_cut_10"], abs=1e-9)
        assert ours.average_precision[row] == pytest.approx(expected["map"], abs=1e-9)
        assert ours.mrr_at_10[row] == pytest.approx(ref_rr[str(qid)]["recip_rank"], abs=1e-9)
        checked += 1
    assert checked >= 30
    means = ours.mean()
    scored = [str(q) for q, r in zip(qids.tolist(), ours.n_relevant.tolist(), strict=True) if r > 0]
    assert means["ndcg@10"] == pytest.approx(np.mean([ref[q]["ndcg_cut_10"] for q in scored]), abs=1e-9)
    assert means["map"] == pytest.approx(np.mean([ref[q]["map"] for q in scored]), abs=1e-9)
    assert means["recall@100"] == pytest.approx(np.mean([ref[q]["recall_100"] for q in scored]), abs=1e-9)


def test_worked_example_by_hand() -> None:
    # query 7 judges a: 3, b: 1, c: 0, d: 2; ranking b, x, d, c, then padding
    a, b, c, d, x = 1, 2, 3, 4, 9
    judgments = Judgments.from_arrays([7] * 4, [a, b, c, d], [3, 1, 0, 2], ["dev"] * 4)
    s = score_rankings(np.array([[b, x, d, c, -1]]), np.array([7]), judgments, ks=(1, 2, 3))
    assert s.success_at[1][0] == 1 and s.recall_at[1][0] == pytest.approx(1 / 3)
    assert s.recall_at[3][0] == pytest.approx(2 / 3) and s.mrr_at_10[0] == 1
    assert s.average_precision[0] == pytest.approx((1 / 1 + 2 / 3) / 3)
    dcg = 1 / np.log2(2) + 2 / np.log2(4)
    idcg = 3 / np.log2(2) + 2 / np.log2(3) + 1 / np.log2(4)
    assert s.ndcg_at_10[0] == pytest.approx(dcg / idcg)


def test_unscorable_queries_are_left_out_of_means() -> None:
    judgments = Judgments.from_arrays([1, 1, 2], [10, 11, 10], [1, 0, 0], ["test"] * 3)
    s = score_rankings(np.array([[11, 10], [10, 11], [10, 11]]), np.array([1, 2, 3]), judgments, ks=(1,))
    assert s.scorable.tolist() == [True, False, False] and s.n_without_relevant == 2
    assert s.mean()["success@1"] == 0 and s.mean()["mrr@10"] == 0.5
    with pytest.raises(InputError, match=r"shape \(1, 2\) does not match 2 queries"):
        score_rankings(np.array([[1, 2]]), np.array([1, 2]), judgments)


@st.composite
def _task(draw):
    n_docs = draw(st.integers(1, 30))
    grades = draw(st.lists(st.integers(0, 4), min_size=n_docs, max_size=n_docs))
    order = draw(st.permutations(list(range(n_docs))))
    depth = draw(st.integers(1, n_docs + 3))
    return np.array(grades), np.array(order), depth


@settings(max_examples=200, deadline=None)
@given(_task())
def test_bounds_and_perfect_ranking(task) -> None:
    grades, order, depth = task
    judgments = Judgments.from_arrays([5] * len(grades), np.arange(len(grades)), grades, ["train"] * len(grades))
    ranking = np.full(depth, -1)
    ranking[:min(depth, len(order))] = order[:depth]
    s = score_rankings(ranking[None, :], np.array([5]), judgments, ks=(1, 5, 10))
    values = [s.mrr_at_10[0], s.ndcg_at_10[0], s.average_precision[0]]
    values += [v[0] for v in s.success_at.values()] + [v[0] for v in s.recall_at.values()]
    assert all(0.0 <= v <= 1.0 + 1e-12 for v in values)
    relevant = int((grades > 0).sum())
    assert s.recall_at[10][0] <= s.success_at[10][0]
    ideal = np.argsort(-grades, kind="stable")  # every judged item, best grade first
    p = score_rankings(ideal[None, :], np.array([5]), judgments, ks=(1, 5, 10))
    if relevant:
        assert p.ndcg_at_10[0] == pytest.approx(1.0) and p.average_precision[0] == pytest.approx(1.0)
        assert p.mrr_at_10[0] == 1.0 and p.success_at[1][0] == 1.0
        assert p.recall_at[10][0] == pytest.approx(min(relevant, 10) / relevant)
        assert p.ndcg_at_10[0] >= s.ndcg_at_10[0] - 1e-12 and p.average_precision[0] >= s.average_precision[0] - 1e-12
    else:
        assert not p.scorable[0] and p.ndcg_at_10[0] == 0


def test_relevant_counts_match_counting_each_querys_judged_items_in_the_gallery() -> None:
    from embridge.core.evaluation.relevance import RelevanceRule

    rng = np.random.default_rng(4)
    gallery = np.sort(rng.choice(5_000, 2_000, replace=False)).astype(np.int64)
    judged = {q: {int(d): int(rng.integers(1, 3)) for d in rng.integers(0, 5_000, rng.integers(1, 6))}
              for q in range(10_000, 10_300) if q % 7}  # every 7th query has no judgments
    rule = RelevanceRule("judgments", judged=judged)
    queries = np.arange(10_000, 10_300, dtype=np.int64)
    expect = [len(set(judged.get(int(q), {})) & set(gallery.tolist())) for q in queries]
    assert rule.relevant_counts(queries, gallery, None).tolist() == expect
    ranked = rng.integers(-1, gallery.size, (queries.size, 20))
    assert rule.relevance(ranked, queries, gallery, None)[0].n_relevant.tolist() == expect
