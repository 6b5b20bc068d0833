"""The app's pages say when a run's numbers were measured on data the workspace has since outgrown,
as ``embridge runs`` does, and a report whose file went missing is named, not raised as a bug."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pytest
from app_fixtures import error_dialogs, no_threads_left, window
from pytestqt.qtbot import QtBot

from embridge.app.main_window import MainWindow
from embridge.app.pages.train_result import RUN_COLUMNS
from embridge.core.report.build import ReportOptions, build_report
from embridge.core.store import Workspace
from embridge.core.train.runs import train_run

__all__ = ["no_threads_left", "window"]
pytestmark = pytest.mark.usefixtures("no_threads_left")
CHANGED = "easured before the workspace changed (model 'old-mlp' has vectors of 5 more items ("


def _train_report_and_grow(path: Path) -> tuple[int, int]:
    """What `train` and `report` do, then an import of five gallery items and their old-model vectors."""
    with Workspace.open(path) as ws:
        run_id = int(train_run(ws, "procrustes", device="cpu")["run_id"])
        report_id = int(build_report(ws, run_id, ReportOptions(n_boot=20)).report_id or 0)
    _grow(path)
    return run_id, report_id


def _grow(path: Path) -> None:
    with Workspace.open(path) as ws:
        ids = ws.add_items([{"key": f"late-{n}", "label": "3", "split": "gallery", "modality": "vector"}
                            for n in range(5)], source="late")
        ws.add_vector_set("old-mlp", ids, np.random.default_rng(0).normal(size=(5, ws.vector_dim("old-mlp"))))


def test_a_plan_on_screen_says_when_its_report_was_outgrown(qtbot: QtBot, window: MainWindow,
                                                            demo_copy: Path) -> None:
    from embridge.core.plan import plan_upgrade

    with Workspace.open(demo_copy) as ws:
        run_id = int(train_run(ws, "procrustes", device="cpu")["run_id"])
        plan = plan_upgrade(ws, run_id, device="cpu")
    window.ctx.open_workspace(demo_copy)
    window.watch.stop()
    page = window.show_page("plan")
    page.show_plan(plan)
    assert "This plan weighs" not in page.summary.text()
    _grow(demo_copy)
    window.show_page("workspace")
    page = window.show_page("plan")
    assert f"This plan weighs report {plan.report_id}, m{CHANGED}" in html.unescape(page.summary.text())


def test_pages_name_numbers_the_data_has_outgrown(qtbot: QtBot, window: MainWindow, demo_copy: Path) -> None:
    window.ctx.open_workspace(demo_copy)
    window.watch.stop()  # only the page changes re-read here
    run_id, report_id = _train_report_and_grow(demo_copy)

    reports = window.show_page("reports")
    assert reports.report is not None and reports.report.report_id == report_id
    assert f"M{CHANGED}" in reports.verdict.text()
    train = window.show_page("train")
    note = train.runs_table.item(0, RUN_COLUMNS.index("Note")).text()
    assert note.startswith(f"m{CHANGED}") and f"'embridge report --run {run_id}' measures it as it is now" in note
    assert f"M{CHANGED}" in train.result_label.text()
    assert f"M{CHANGED}" in window.show_page("export").run_info.text()

    with Workspace.open(demo_copy) as ws:  # a fresh report measures the workspace as it is
        fresh = int(build_report(ws, run_id, ReportOptions(n_boot=20)).report_id or 0)
    reports = window.show_page("reports")
    assert reports.report is not None and reports.report.report_id == report_id and CHANGED in reports.verdict.text()
    reports.report_combo.setCurrentIndex(0)  # the newest report
    assert reports.report is not None and reports.report.report_id == fresh
    assert CHANGED not in reports.verdict.text() and "(1002 items)" in reports.verdict.text()
    note = window.show_page("train").runs_table.item(0, RUN_COLUMNS.index("Note")).text()
    assert note.startswith(f"m{CHANGED}") and f"report {fresh} measures it as it is now" in note


def test_a_report_whose_file_is_gone_is_named_on_the_page(qtbot: QtBot, window: MainWindow, demo_copy: Path) -> None:
    with Workspace.open(demo_copy) as ws:
        run_id = int(train_run(ws, "procrustes", device="cpu")["run_id"])
        report = build_report(ws, run_id, ReportOptions(n_boot=20))
    (demo_copy / report.files["json"]).unlink()
    window.ctx.open_workspace(demo_copy)
    reports = window.show_page("reports")
    assert reports.report is None and not error_dialogs(window)
    text = reports.verdict.text()
    assert text.startswith(f"Report {report.report_id} cannot be read: ") and "report.json" in text
