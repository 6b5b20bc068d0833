"""Relevance judgments through the app: a BEIR folder and a qrels file imported from the Gallery
page, the Train page's pair choice and validation protocol, and nDCG@10 / MRR@10 on Reports."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pytest
from app_fixtures import close_error_dialogs, error_dialogs, no_threads_left, wait_for_jobs, window
from judged_fixtures import build_judged_workspace
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from embridge.app import dialogs
from embridge.app.main_window import MainWindow
from embridge.app.pages.page import format_value
from embridge.core.formatting import format_share as pct
from embridge.core.report.number_source import source_of_report, source_of_run

__all__ = ["no_threads_left", "window"]
pytestmark = pytest.mark.usefixtures("no_threads_left")


def write_tiny_beir(root: Path) -> Path:
    """Four documents, three queries (one per split) and graded judgments, in BEIR's layout."""
    (root / "qrels").mkdir(parents=True)
    docs = [{"_id": f"d{i}", "title": f"Doc {i}", "text": f"document number {i}"} for i in range(4)]
    queries = [{"_id": f"q{i}", "text": f"query {i}"} for i in range(3)]
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    for i, split in enumerate(("train", "dev", "test")):
        (root / "qrels" / f"{split}.tsv").write_text(f"query-id\tcorpus-id\tscore\nq{i}\td{i}\t2\nq{i}\td3\t0\n")
    return root


def test_gallery_page_imports_a_beir_folder_and_a_qrels_file(qtbot: QtBot, window: MainWindow, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    window.ctx.open_workspace(tmp_path / "ws", create=True)
    folder = write_tiny_beir(tmp_path / "beir")
    monkeypatch.setattr(dialogs, "choose_directory", lambda *a, **k: str(folder))
    page = window.show_page("gallery")
    qtbot.mouseClick(page.beir_button, Qt.MouseButton.LeftButton)
    wait_for_jobs(qtbot, window)
    assert not error_dialogs()
    ws = window.ctx.ws
    assert len(ws.items("gallery")) == 4 and len(ws.items("query")) == 3
    for split, query in (("train", "q0"), ("dev", "q1"), ("test", "q2")):
        judged = ws.judgments(split)
        assert judged.query_ids.tolist() == [int(ws.query_ids_for_keys([query])[0])] * 2
        assert sorted(judged.grades.tolist()) == [0, 2]

    # a qrels file stored together with a plain import (the --qrels option of other imports)
    queries = tmp_path / "more-queries.jsonl"
    queries.write_text("".join(json.dumps({"key": f"m{i}", "text": f"more {i}"}) + "\n" for i in range(6)))
    qrels = tmp_path / "more.tsv"
    qrels.write_text("".join(f"m{i}\td{i % 4}\t1\ttest\n" for i in range(6)))
    page.import_path.edit.setText(str(queries))
    page.import_split.setCurrentText("query")
    page.import_qrels.edit.setText(str(qrels))
    qtbot.mouseClick(page.import_button, Qt.MouseButton.LeftButton)
    wait_for_jobs(qtbot, window)
    assert not error_dialogs()
    assert len(ws.judgments("test")) == 2 + 6 and page.import_qrels.text() == ""

    # judgments alone, their split given by the Split field (the form asked for a file to import first)
    alone = tmp_path / "alone.tsv"
    alone.write_text("".join(f"m{i}\td{(i + 1) % 4}\t2\n" for i in range(6)))
    page.import_split.setCurrentText("test")
    page.import_qrels.edit.setText(str(alone))
    qtbot.mouseClick(page.import_button, Qt.MouseButton.LeftButton)
    wait_for_jobs(qtbot, window)
    assert not error_dialogs()
    assert len(ws.judgments("test")) == 2 + 6 + 6 and "stored 6 judgments" in page.import_result.text().lower()

    # a broken folder is one error and stores nothing
    before = len(ws.items())
    (folder / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tnope\t1\n")
    page.import_beir(str(folder))
    qtbot.waitUntil(lambda: bool(error_dialogs()), timeout=60_000)
    wait_for_jobs(qtbot, window)
    (dialog,) = error_dialogs()
    assert "qrels/dev.tsv: line 2: corpus id 'nope'" in dialog.message and len(ws.items()) == before
    close_error_dialogs()


def test_train_page_pairs_protocol_and_judged_report(qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    build_judged_workspace(tmp_path / "judged", n_docs=300, n_queries=200)
    window.ctx.open_workspace(tmp_path / "judged")
    train = window.show_page("train")
    qtbot.waitUntil(lambda: train.pair_describer.shown_for is not None, timeout=30_000)  # described in the background
    kinds = [train.pairs.itemText(i) for i in range(train.pairs.count())]
    assert kinds == ["both", "documents", "queries"] and train.pairs.currentText() == "both"  # core's default
    assert train.protocol_label.text().startswith("40 dev queries (judged) against the whole gallery")
    train.select_method("procrustes")
    train.pairs.setCurrentText("queries")
    train.pairs.setProperty("chosen", True)
    qtbot.mouseClick(train.train_button, Qt.MouseButton.LeftButton)
    wait_for_jobs(qtbot, window)
    assert not error_dialogs()
    run = window.ctx.ws.runs("train")[-1]
    assert run["metrics"]["pairs_used"] == "queries" and train.pairs.currentText() == "queries"
    header = [train.runs_table.horizontalHeaderItem(c).text() for c in range(train.runs_table.columnCount())]
    assert train.runs_table.item(0, header.index("Pairs")).text() == "queries"
    pairs = run["metrics"]["pairs"]["train"]  # the words `embridge train` prints
    assert f"Fitted on {pairs} query pairs of the train fold; items per fold" in train.result_label.text()
    assert f"Validated on {run['metrics']['val_protocol']}" in train.result_label.text()
    assert "dev queries (judged)" in run["metrics"]["val_protocol"]

    reports = window.show_page("reports")
    reports.n_boot.setValue(50)
    qtbot.mouseClick(reports.build_button, Qt.MouseButton.LeftButton)
    wait_for_jobs(qtbot, window, 120_000)
    assert not error_dialogs()
    report = reports.report
    head = report.headline
    assert source_of_report(report).label() == source_of_run(run).label()
    assert "relevance judgments (test split)" in source_of_run(run).label()
    assert head["ndcg@10"] == run["metrics"]["ndcg@10"] and head["mrr@10"] == run["metrics"]["mrr@10"]
    assert head["ndcg@10"] > head["old_old_ndcg@10"]  # the fitted layer beats today's system on judged queries
    text = html.unescape(reports.verdict.text())
    assert f"nDCG@10 {pct(head['ndcg@10'])} (old/old {pct(head['old_old_ndcg@10'])})" in text
    assert f"MRR@10 {pct(head['mrr@10'])}" in text
    # the policies' ranking, as the command line prints it (the page showed only the figure, unnamed)
    best = report.backfill["best_policy"]
    assert f"Partial backfill: best policy by area under the nDCG@10 curve: {best}" in text
    rows = [reports.metrics.item(r, 0).text() for r in range(reports.metrics.rowCount())]
    assert "ndcg@10" in rows and "mrr@10" in rows
    column = [reports.metrics.horizontalHeaderItem(c).text()
              for c in range(reports.metrics.columnCount())].index(report.upgraded_cell)
    assert reports.metrics.item(rows.index("ndcg@10"), column).text() == format_value(head["ndcg@10"])


def test_reports_say_gain_retained_is_undefined_when_the_new_model_is_not_better(
        qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    from embridge.core.report.build import ReportOptions, build_report
    from embridge.core.store import Workspace
    from embridge.core.train.runs import train_run

    build_judged_workspace(tmp_path / "worse", n_docs=300, n_queries=200, old_noise=0.3, new_noise=0.9)
    with Workspace.open(tmp_path / "worse") as ws:
        summary = train_run(ws, "procrustes", device="cpu")
        report = build_report(ws, summary["run_id"], ReportOptions(n_boot=50))
    head = report.headline
    assert head["new_new_top1"] <= head["old_old_top1"] and head["gain_retained"] is None  # measured, not assumed
    window.ctx.open_workspace(tmp_path / "worse")
    train = window.show_page("train")
    header = [train.runs_table.horizontalHeaderItem(c).text() for c in range(train.runs_table.columnCount())]
    assert train.runs_table.item(0, header.index("Gain retained (top-1)")).text() == \
        f"undefined — {summary['gain_retained_note']}"
    reports = window.show_page("reports")
    assert reports.report is not None and reports.report.report_id == report.report_id
    assert f"gain retained (top-1): undefined — {head['gain_retained_note']}" in html.unescape(reports.verdict.text())
    assert head["gain_retained_note"].startswith("the new model is not better")


def test_the_train_result_states_the_gain_and_verdict_on_the_deciding_ndcg(tmp_path: Path) -> None:
    """With graded judgments nDCG@10 decides: the sentence the Train page shows when a run ends gives its
    gain and the criterion's verdict as `embridge train` does, and names top-1's gain as top-1's (it gave
    top-1's gain as "the" gain retained and left nDCG@10's out)."""
    from test_judged_criterion import build

    from embridge.app.pages.train_result import result_text
    from embridge.core.store import Workspace
    from embridge.core.train.runs import train_run

    build(tmp_path / "ws")  # top-1 rises through the layer while nDCG@10 falls
    with Workspace.open(tmp_path / "ws") as ws:
        summary = train_run(ws, "procrustes", device="cpu")
    text = result_text(summary)
    assert summary["gain_retained_ndcg@10"] is None  # the new model itself ranks the judged documents worse
    assert f"gain retained (nDCG@10): undefined — {summary['gain_retained_ndcg@10_note']}" in text
    assert summary["compatible"] is True and "Compatibility criterion: FAILS (nDCG@10)" in text
    assert f"gain retained (top-1) {pct(summary['gain_retained'])}" in text
