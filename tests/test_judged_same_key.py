"""Judged queries whose key also names a document (BEIR's ArguAna and Quora put each query in the
corpus under its own id): that document is left out of the query's ranking, as BEIR's evaluation
ignores a document whose id is the query's, so a query does not find its own text first."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from embridge.core.evaluation.scoring import score
from embridge.core.evaluation.tasks import upgrade_tasks
from embridge.core.l2 import l2_normalize
from embridge.core.store import Workspace
from embridge.core.store.judgments import Judgments

N_DOCS, N_QUERIES = 200, 60


def _workspace(path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """Query i and document i share key k<i> and a vector; document 100 + i, near it, is the one judged."""
    rng = np.random.default_rng(0)
    latent = rng.standard_normal((N_DOCS, 32))
    latent[100:100 + N_QUERIES] = latent[:N_QUERIES] + 0.6 * rng.standard_normal((N_QUERIES, 32))
    queries_latent = latent[:N_QUERIES].copy()
    ws = Workspace.create(path)
    docs = np.asarray(ws.add_items([{"key": f"k{i}", "split": "gallery"} for i in range(N_DOCS)]), dtype=np.int64)
    queries = np.asarray(ws.add_items([{"key": f"k{i}", "split": "query"} for i in range(N_QUERIES)]),
                         dtype=np.int64)
    splits = np.array(["test"] * 40 + ["dev"] * 10 + ["train"] * 10)
    ws.add_judgments(Judgments(queries, docs[100:100 + N_QUERIES], np.ones(N_QUERIES, np.int32), splits))
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
