"""The Train page's time budget: shown for the automatic choice only, and passed to a real run."""

from __future__ import annotations

from pathlib import Path

import pytest
from app_fixtures import error_dialogs, no_threads_left, wait_for_jobs, window
from pytestqt.qtbot import QtBot

from embridge.app.main_window import MainWindow

__all__ = ["no_threads_left", "window"]
pytestmark = pytest.mark.usefixtures("no_threads_left")


def test_time_budget_box_is_shown_for_auto_only_and_bounds_the_run(qtbot: QtBot, window: MainWindow,
                                                                   demo_copy: Path) -> None:
    window.ctx.open_workspace(demo_copy)
    train = window.show_page("train")
    train.select_method("procrustes")
    assert train.time_budget.isHidden() and train.form.editor("time_budget") is None
    train.select_method("auto")
    assert not train.time_budget.isHidden() and train.time_budget.specialValueText() == "no limit"
    train.device.setCurrentText("cpu")
    train.time_budget.setValue(1)
    train.train_from_form()
    wait_for_jobs(qtbot, window, timeout_ms=300_000)
    assert not error_dialogs()
    summary = window.ctx.ws.runs("train")[-1]["metrics"]  # what the run recorded
    budget = summary["budget"]
    assert budget["seconds"] == 1.0 and budget["spent_s"] >= budget["candidates_s"] > 0
    statuses = [c["status"] for c in summary["candidates"]]
    assert statuses[0] == "completed"  # the cheapest candidate always runs
    skipped = [c["kind"] for c in summary["candidates"] if str(c.get("reason", "")).startswith("time budget of 1 s")]
    assert skipped == budget["skipped"]
    assert all(c["duration_s"] == 0.0 for c in summary["candidates"] if c["kind"] in skipped)
    assert "Time budget 1 s" in train.result_label.text()
