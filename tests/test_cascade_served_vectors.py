"""A cascade re-ranks by the new vectors a system would serve with: a backfill's, never the evaluation sample's.

An evaluation sample smaller than the gallery holds the relevant items of every query scored (the
others are left out), so re-ranking by its new vectors moves exactly the right answers, up or down
with the gap between raw new cosines and the layer's: a cascade measured that way read new/new's
number on one judged gallery and far below old/old's on another.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
from judged_fixtures import build_judged_workspace
from report_fixtures import old_gallery_ids

from embridge.core.adapters import adapt_queries, load_adapter
from embridge.core.cli.main import main
from embridge.core.report.build import ReportOptions, build_report
from embridge.core.retrieval import l2_normalize
from embridge.core.store import Workspace
from embridge.core.train.runs import train_run


def _cascade_ranking(q_old: np.ndarray, q_up: np.ndarray, g_old: np.ndarray, k: int,
                     new_scores: np.ndarray | None = None) -> np.ndarray:
    """Gallery rows best first, by plain numpy: the old index's order, its first ``k`` re-scored by the mapped
    query against old vectors, or by ``new_scores`` where those are not NaN (items with a served new vector)."""
    order = np.argsort(-(l2_normalize(q_old) @ l2_normalize(g_old).T), axis=1, kind="stable")
    head = order[:, :k]
    scores = np.take_along_axis(l2_normalize(q_up) @ l2_normalize(g_old).T, head, axis=1).astype(np.float32)
    if new_scores is not None:
        served = np.take_along_axis(new_scores, head, axis=1)
        scores = np.where(np.isnan(served), scores, served)
    return np.hstack([np.take_along_axis(head, np.argsort(-scores, axis=1, kind="stable"), axis=1), order[:, k:]])


def test_a_cascade_on_a_judged_sample_does_not_re_rank_by_the_sample(tmp_path: Path) -> None:
    case = build_judged_workspace(tmp_path / "ws", new_docs_share=0.3)
    with Workspace.open(case["path"]) as ws:
        run = train_run(ws, "cascade", device="cpu", config={"base": "affine"})
        report = build_report(ws, run["run_id"], ReportOptions(backfill_steps=3, n_boot=20), write=False)
        adapter = load_adapter(ws.adapter_path(run["adapter_id"]))
        gallery = old_gallery_ids(ws, "old")
        n_new = int(round(0.3 * len(case["doc_ids"])))
        # test queries whose one relevant document the sample holds (the others are left out of every cell)
        test = np.flatnonzero((case["splits"] == "test") & (case["relevant"] < n_new))
        queries = case["query_ids"][test]
        q_old, q_new = ws.vectors_for("old", queries), ws.vectors_for("new", queries)
        g_old = ws.vectors_for("old", gallery)
    head = report.headline
    cell = report.cells["new→old"]
    assert cell["protocol"]["new_vectors"] == 0 and "through the affine layer" in cell["protocol"]["search"]
    assert "nothing backfilled" in run["reason"]
    k = int(adapter.k)
    ranking = _cascade_ranking(q_old, adapt_queries(adapter.base, l2_normalize(q_new)), g_old, k)
    relevant_row = np.searchsorted(gallery, case["doc_ids"][case["relevant"][test]])
    position = np.argmax(ranking[:, :10] == relevant_row[:, None], axis=1)
    found = (ranking[:, :10] == relevant_row[:, None]).any(axis=1)
    ndcg = float(np.where(found, 1.0 / np.log2(position + 2), 0.0).mean())
    assert cell["protocol"]["n_queries"] == len(queries)
    assert head["ndcg@10"] == np.float64(ndcg)  # the whole gallery, re-ranked through the layer alone
    # re-ranked by the sample's raw new cosines, which sit on another scale than the mapped query's against old
    # vectors, the sample's documents (every relevant one among them) sank: nDCG@10 0.210 against old/old's
    # 0.669, "not compatible"; through the layer it reads 0.947, as the affine layer alone does (0.945)
    assert head["ndcg@10"] > head["old_old_ndcg@10"] + 0.2 and head["compatible_ndcg@10"]


def test_after_a_backfill_a_cascade_re_ranks_by_the_backfilled_items(demo_copy: Path) -> None:
    with Workspace.open(demo_copy) as ws:
        run = train_run(ws, "cascade", device="cpu")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["backfill", "-w", str(demo_copy), "--model", "new-cnn", "--order", "planner",
                     "--fraction", "0.3"]) == 0
    with Workspace.open(demo_copy) as ws:
        report = build_report(ws, run["run_id"], ReportOptions(backfill_steps=3, n_boot=20), write=False)
        backfilled = ws.vector_set_ids(int(ws.runs("backfill")[-1]["metrics"]["vector_set"]))
        adapter = load_adapter(ws.adapter_path(run["adapter_id"]))
        gallery = old_gallery_ids(ws, "old-mlp")
        queries = np.asarray(ws.item_ids("query"), dtype=np.int64)
        q_old, q_new = ws.vectors_for("old-mlp", queries), ws.vectors_for("new-cnn", queries)
        g_old = ws.vectors_for("old-mlp", gallery)
        rows = np.flatnonzero(np.isin(gallery, backfilled))
        new_scores = np.full((len(queries), len(gallery)), np.nan, dtype=np.float32)
        new_scores[:, rows] = l2_normalize(q_new) @ l2_normalize(ws.vectors_for("new-cnn", gallery[rows])).T
        labels = np.array(ws.labels(gallery)), np.array(ws.labels(queries))
        # the evaluation sample: gallery items the new model embedded (its sample, and now the backfill's)
        sample = gallery[np.isin(gallery, ws.ids_with_vectors("new-cnn"))]
        s_rows = np.flatnonzero(np.isin(sample, backfilled))
        s_scores = np.full((len(queries), len(sample)), np.nan, dtype=np.float32)
        s_scores[:, s_rows] = l2_normalize(q_new) @ l2_normalize(ws.vectors_for("new-cnn", sample[s_rows])).T
        s_old, s_labels = ws.vectors_for("old-mlp", sample), np.array(ws.labels(sample))
    cell = report.cells["new→old"]
    assert cell["protocol"]["new_vectors"] == rows.size == round(0.3 * len(gallery))  # not the 600 of the sample
    mapped = adapt_queries(adapter.base, l2_normalize(q_new))
    ranking = _cascade_ranking(q_old, mapped, g_old, int(adapter.k), new_scores)
    assert cell["metrics"]["top1"] == np.float64((labels[0][ranking[:, 0]] == labels[1]).mean())
    assert report.served is None  # the cascade's own cell is the served gallery
    # the planner picked the backfilled items: the cascade's report says what that does to its sample, as a
    # layer's report does
    assert any("chose in the planner's order" in line and "(the upgraded cell measures the whole gallery)" in line
               for line in report.protocol)
    # on the sample too, only the backfilled items re-rank by their new vectors (not every sample item's)
    assert 0 < s_rows.size < sample.size
    ranking = _cascade_ranking(q_old, mapped, s_old, int(adapter.k), s_scores)
    assert report.headline["upgraded_sample_top1"] == np.float64((s_labels[ranking[:, 0]] == labels[1]).mean())


def _cli(*argv: str) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert main([*argv, "--json"]) == 0
    return json.loads(out.getvalue())


def test_the_latest_backfill_is_what_a_cascade_serves_and_a_new_one_outdates_its_run(demo_copy: Path) -> None:
    ws_arg = ("-w", str(demo_copy))
    assert _cli("backfill", *ws_arg, "--model", "new-cnn", "--order", "stored")["items"] == 997
    cascade = _cli("train", *ws_arg, "--method", "cascade", "--device", "cpu")
    layer = _cli("train", *ws_arg, "--method", "procrustes", "--device", "cpu")
    # every item already holds its new vector: the plan says the full backfill is done, as a layer's plan does
    plan = _cli("plan", *ws_arg, "--run", str(cascade["run_id"]), "--device", "cpu")
    assert plan["recommendation"] == "full_backfill", plan["reason"]
    assert plan["reason"].startswith("Backfill run #1 already re-embedded all 997 gallery items with the new model")
    assert "the full backfill is done" in plan["reason"]
    # a backfill of a tenth, every vector copied from the stored one: what a cascade serves is now those 100
    later = _cli("backfill", *ws_arg, "--model", "new-cnn", "--order", "planner", "--fraction", "0.1",
                 "--run", str(layer["run_id"]))
    assert later["items"] == 100 and later["embedded"] == 0
    runs = {r["id"]: r for r in _cli("runs", *ws_arg)["runs"]}
    assert "was backfilled" in runs[cascade["run_id"]]["stale"]  # its number stood on the 997
    assert runs[layer["run_id"]]["stale"] is None  # a layer's numbers stand on no backfill
    with Workspace.open(demo_copy) as ws:
        report = build_report(ws, cascade["run_id"], ReportOptions(backfill_steps=3, n_boot=20), write=False)
    assert report.cells["new→old"]["protocol"]["new_vectors"] == 100


def test_auto_says_its_cascade_won_on_stored_new_vectors(demo_copy: Path) -> None:
    ws_arg = ("-w", str(demo_copy))
    assert _cli("backfill", *ws_arg, "--model", "new-cnn", "--order", "stored")["items"] == 997
    run = _cli("train", *ws_arg, "--method", "auto", "--device", "cpu", "--set",
               'candidates=["procrustes", "cascade"]', "--set", "rerank_new_vectors=true")
    assert run["kind"] == "cascade"
    k = run["candidates"][-1]["k"]
    assert (f"re-ranks {k} items per query, 100% of the gallery by stored new vectors (it was scored with them, "
            "beside layers that re-embed nothing)") in run["reason"]


def test_a_cascade_over_a_gallery_the_new_model_embedded_whole_is_told_its_recall_limits_it(tmp_path: Path) -> None:
    """Re-embedding more buys such a cascade nothing: the report no longer points it to the plan's backfills."""
    case = build_judged_workspace(tmp_path / "ws", new_docs_share=1.0)
    with Workspace.open(case["path"]) as ws:
        run = train_run(ws, "cascade", device="cpu", config={"base": "affine", "k_grid": [2]})
        report = build_report(ws, run["run_id"], ReportOptions(backfill_steps=3, n_boot=20), write=False)
    cell = report.cells["new→old"]
    assert cell["protocol"]["new_vectors"] == cell["protocol"]["n_gallery"] == len(case["doc_ids"])
    assert report.headline["compatible_ndcg@10"] and report.headline["gain_retained_ndcg@10"] < 0.9
    assert report.verdicts[-1].startswith("Every gallery item already has its new-model vector")
    assert "recall of 2 candidates" in report.verdicts[-1]
    assert not any("see the plan" in line for line in report.verdicts)
