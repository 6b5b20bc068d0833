"""Judged queries whose key also names a document (BEIR's ArguAna and Quora put each query in the
corpus under its own id): that document is left out of the query's ranking, as BEIR's evaluation
ignores a document whose id is the query's, so a query does not find its own text first."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embridge.core.evaluation.scoring import score, scoring_plan
from embridge.core.evaluation.tasks import upgrade_tasks
from embridge.core.l2 import l2_normalize
from embridge.core.store import Workspace
from embridge.core.store.judgments import Judgments

N_DOCS, N_QUERIES = 200, 60


def _workspace(path: Path, twin_judged: int = 0, shared_keys: int = N_QUERIES,
               last: int | None = None) -> tuple[Path, dict[str, np.ndarray]]:
    """Query i and document i share a vector, and key k<i> for the first ``shared_keys`` queries (the others
    are q<i>); document 100 + i, near it, is the one judged (for the first ``twin_judged`` queries, document
    i, the one with the query's key, instead). Query ``last`` points away from its judged document."""
    rng = np.random.default_rng(0)
    latent = rng.standard_normal((N_DOCS, 32))
    latent[100:100 + N_QUERIES] = latent[:N_QUERIES] + 0.6 * rng.standard_normal((N_QUERIES, 32))
    queries_latent = latent[:N_QUERIES].copy()
    if last is not None:
        queries_latent[last] = -latent[100 + last]
    ws = Workspace.create(path)
    docs = np.asarray(ws.add_items([{"key": f"k{i}", "split": "gallery"} for i in range(N_DOCS)]), dtype=np.int64)
    queries = np.asarray(ws.add_items([{"key": f"k{i}" if i < shared_keys else f"q{i}", "split": "query"}
                                       for i in range(N_QUERIES)]), dtype=np.int64)
    splits = np.array(["test"] * 40 + ["dev"] * 10 + ["train"] * 10)
    judged = docs[100:100 + N_QUERIES].copy()
    judged[:twin_judged] = docs[:twin_judged]
    ws.add_judgments(Judgments(queries, judged, np.ones(N_QUERIES, np.int32), splits))
    vectors = {}
    for k, (name, dim) in enumerate((("old", 16), ("new", 24))):
        spec = {"name": name, "kind": "vectors", "modality": "vector", "dim": dim, "sha256": f"{k:064d}", "path": ""}
        ws.add_model(name, name, spec, None)
        project = rng.standard_normal((32, dim))
        vectors[name] = (latent @ project).astype(np.float32), (queries_latent @ project).astype(np.float32)
        ws.add_vector_set(name, np.concatenate([docs, queries]), np.concatenate(vectors[name]))
    ws.close()
    return path, {"docs": docs, "queries": queries, **{f"{m}_{s}": v for m, pair in vectors.items()
                                                        for s, v in zip(("docs", "queries"), pair, strict=True)}}


def test_a_document_with_the_querys_key_is_not_ranked_for_it(tmp_path: Path) -> None:
    path, data = _workspace(tmp_path / "ws")
    with Workspace.open(path) as ws:
        tasks = upgrade_tasks(ws, ["old", "new"])
    task = tasks.full
    test_queries = data["queries"][:40]
    assert task.queries.ids.tolist() == test_queries.tolist()
    # each test query's excluded gallery row is the document with its key
    assert task.gallery.ids[task.exclude].tolist() == data["docs"][:40].tolist()
    assert "a document with its query's key is not ranked for that query" in task.protocol().describe()
    for model in ("old", "new"):
        q = l2_normalize(data[f"{model}_queries"][:40])
        g = l2_normalize(data[f"{model}_docs"])
        result = score(task, q, g)
        sims = q @ g.T
        sims[np.arange(40), np.arange(40)] = -np.inf  # brute force: the query's own document never ranks
        expected = float(np.mean(sims.argmax(axis=1) == np.arange(100, 140)))
        assert result.value("top1") == expected > 0.5, (model, result.value("top1"), expected)
        with_twin = float(np.mean((q @ g.T).argmax(axis=1) == np.arange(100, 140)))
        assert with_twin == 0.0  # ranked, every query would find its own text first


def test_a_query_without_a_same_key_document_ranks_the_whole_gallery_when_others_have_one(tmp_path: Path) -> None:
    """Every ranking was cut one row short as soon as any query had a document with its key, so a query
    whose relevant document ranks last (test query 30 here) never found it and full mAP came out low."""
    path, data = _workspace(tmp_path / "ws", shared_keys=20, last=30)
    with Workspace.open(path) as ws:
        task = upgrade_tasks(ws, ["old", "new"]).full
    assert (task.exclude[:20] >= 0).all() and (task.exclude[20:] == -1).all()
    assert scoring_plan(task).depth == N_DOCS
    for model in ("old", "new"):
        q = l2_normalize(data[f"{model}_queries"][:40])
        g = l2_normalize(data[f"{model}_docs"])
        result = score(task, q, g)
        sims = q @ g.T
        sims[np.arange(20), np.arange(20)] = -np.inf  # only the first 20 queries have a document with their key
        relevant = sims[np.arange(40), np.arange(100, 140)]
        ranks = 1 + (sims > relevant[:, None]).sum(axis=1)  # one relevant document each: AP = 1 / its rank
        assert ranks[30] == N_DOCS  # query 30's document is last of the 200 it ranks
        assert result.value("mAP") == pytest.approx(float(np.mean(1.0 / ranks)), abs=1e-12), model


def test_the_report_counts_same_key_documents_apart_from_queries_in_the_gallery(tmp_path: Path) -> None:
    """The report said '40 queries are also gallery items' where none was: it counted every excluded row."""
    import json

    from embridge.core.report.build import ReportOptions, build_report
    from embridge.core.train.runs import train_run

    path, _ = _workspace(tmp_path / "ws")
    with Workspace.open(path) as ws:
        run = train_run(ws, "affine", device="cpu")
        report = build_report(ws, run["run_id"], ReportOptions(n_boot=20, backfill_steps=3))
        stored = json.loads((path / ws.report(report.report_id)["json_file"]).read_text())
    sizes, protocol = stored["sizes"], " ".join(stored["protocol"])
    assert sizes["queries_in_gallery"] == 0 and sizes["same_key_documents_left_out"] == 40
    assert "also gallery items" not in protocol
    assert "40 queries have a document with their own key in the gallery; it is left out" in protocol


def _direction(deg: float, lift: float = 0.0) -> list[float]:
    r = np.deg2rad(deg)
    return [float(np.cos(r)), float(np.sin(r)), lift]


def _edge_workspace(path: Path) -> dict[str, object]:
    """Six judged test queries: 'c' is judged relevant only to the document with its own key, 'Q4' has only
    a grade-0 judgment, and 'Q5''s best document 'h' is embedded by the new model alone."""
    rng = np.random.default_rng(1)
    docs = {"a": _direction(0), "b": _direction(10), "c": _direction(20), "d": _direction(30), "e": _direction(90),
            "f": _direction(200), "g": _direction(0), "h": _direction(85)}
    docs.update({f"z{i:02d}": [*(0.05 * rng.standard_normal(2)).tolist(), -1.0] for i in range(40)})
    queries = {"Q1": _direction(12, 0.3), "Q2": _direction(95, 0.3), "b": _direction(12, 0.3),
               "Q4": _direction(50, 0.3), "Q5": _direction(85, 0.3), "c": _direction(20, 0.3)}
    qrels = [("Q1", "a", 3), ("Q1", "c", 1), ("Q1", "d", 0), ("Q1", "e", 2), ("Q2", "a", 1), ("Q2", "g", 2),
             ("b", "b", 3), ("b", "c", 1), ("Q4", "d", 0), ("Q5", "h", 2), ("Q5", "e", 1), ("c", "c", 2)]
    ws = Workspace.create(path)
    doc_ids = dict(zip(docs, ws.add_items([{"key": k, "split": "gallery"} for k in docs]), strict=True))
    query_ids = dict(zip(queries, ws.add_items([{"key": k, "split": "query"} for k in queries]), strict=True))
    ws.add_judgments(Judgments(np.array([query_ids[q] for q, _, _ in qrels]), np.array([doc_ids[d] for _, d, _ in qrels]),
                               np.array([g for _, _, g in qrels], np.int32), np.array(["test"] * len(qrels))))
    for k, name in enumerate(("old", "new")):
        covered = [d for d in docs if name == "new" or d != "h"]  # the old model never embedded 'h'
        ids = [doc_ids[d] for d in covered] + list(query_ids.values())
        rows = np.array([docs[d] for d in covered] + list(queries.values()), np.float32)
        if name == "new":
            rows = np.hstack([rows, np.zeros((len(rows), 1), np.float32)])
        spec = {"name": name, "kind": "vectors", "modality": "vector", "dim": rows.shape[1], "sha256": f"{k:064d}",
                "path": ""}
        ws.add_model(name, name, spec, None)
        ws.add_vector_set(name, np.array(ids, np.int64), rows)
    ws.close()
    return {"docs": docs, "queries": queries, "qrels": qrels}


def _ndcg10(query: str, case: dict[str, object]) -> float:
    """Textbook nDCG@10 of the old model's ranking for ``query``: cosine over the old gallery, the document
    with the query's key left out of the ranking (ties in gallery order), ideal from every positive grade."""
    docs: dict[str, list[float]] = case["docs"]  # type: ignore[assignment]
    grades = {d: g for q, d, g in case["qrels"] if q == query}  # type: ignore[attr-defined]
    keys = [d for d in docs if d != "h" and d != query]
    q = l2_normalize(np.array([case["queries"][query]], np.float32))[0]  # type: ignore[index]
    scores = l2_normalize(np.array([docs[d] for d in keys], np.float32)) @ q
    ranked = [keys[i] for i in np.argsort(-scores, kind="stable")[:10]]
    dcg = sum(grades.get(d, 0) / np.log2(r + 2) for r, d in enumerate(ranked))
    ideal = sorted((g for g in grades.values() if g > 0), reverse=True)[:10]
    return float(dcg / sum(g / np.log2(r + 2) for r, g in enumerate(ideal)))


def test_a_query_judged_only_against_its_own_key_is_scored_and_a_document_one_model_lacks_leaves_its_query_out(
        tmp_path: Path) -> None:
    """BEIR scores a query whose only relevant document has its own key (0: never ranked); Embridge counted it
    as having no relevant item and dropped it. And a query whose relevant document only the new model embedded
    stayed in, scored by new/new on a sample without that document."""
    case = _edge_workspace(tmp_path / "ws")
    with Workspace.open(tmp_path / "ws") as ws:
        tasks = upgrade_tasks(ws, ["old", "new"])
        keys = dict(zip(tasks.full.queries.ids.tolist(), ws.keys_of(tasks.full.queries.ids), strict=True))
    assert sorted(keys.values()) == ["Q1", "Q2", "Q4", "b", "c"] and tasks.left_out == 1  # Q5 left out
    assert "(1 of 6 left out: not every compared model has embedded their relevant items)" in tasks.full.queries.name
    docs = case["docs"]
    old_q = l2_normalize(np.array([case["queries"][keys[i]] for i in tasks.full.queries.ids.tolist()], np.float32))
    gallery = [k for k in docs if k != "h"]  # type: ignore[union-attr]
    result = score(tasks.full, old_q, l2_normalize(np.array([docs[k] for k in gallery], np.float32)))  # type: ignore[index]
    scored = ["Q1", "Q2", "b", "c"]  # Q4 has only a grade-0 judgment
    assert result.cell.n_queries == 4
    expected = float(np.mean([_ndcg10(q, case) for q in scored]))
    assert abs(result.value("ndcg@10") - expected) < 1e-9 and _ndcg10("c", case) == 0.0
    # the report's protocol line gives the cell's reason: Q4 has no relevant judgment (it said "no relevant
    # item in the gallery (say a label no gallery item has, or none)")
    from embridge.core.report.build import _unscored_line

    assert result.protocol.unscored_reason() == "the others have no relevant judgment"
    assert _unscored_line(5, 4, result.protocol) == [
        "Scored: 4 of the 5 queries (the others have no relevant judgment), so no metric counts the other 1."]


def test_the_backfill_curves_score_a_query_judged_only_against_its_own_key_as_the_cells_do(tmp_path: Path) -> None:
    """The curves dropped such a query (the cells score it 0): at β = 1 they read 33/46 where new/new read
    33/47, and the plan's partial option passed a target it misses."""
    from embridge.core.report.build import ReportOptions, build_report
    from embridge.core.train.runs import train_run

    path, _ = _workspace(tmp_path / "ws", twin_judged=3)
    with Workspace.open(path) as ws:
        run = train_run(ws, "affine", device="cpu")
        report = build_report(ws, run["run_id"], ReportOptions(n_boot=20, backfill_steps=4))
    head, curve = report.headline, report.backfill["policies"]["random"]["values"]
    assert report.cells["new/new"]["n_queries"] == 40  # the three are scored, with a miss
    for metric, upgraded in (("top1", "upgraded_top1"), ("ndcg@10", "ndcg@10")):
        assert curve[metric][-1] == pytest.approx(head[f"new_new_{metric}"])  # β = 1: the full backfill
        assert curve[metric][0] == pytest.approx(head[upgraded])  # β = 0: the layer alone
