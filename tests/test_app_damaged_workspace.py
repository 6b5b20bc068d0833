"""Files of an open workspace damaged by another program: the app says what is wrong in one line, never
with a traceback dialog, and keeps working on what it can still read."""

from __future__ import annotations

from pathlib import Path

import pytest
from app_fixtures import close_error_dialogs, error_dialogs, no_threads_left, wait_for_jobs, window
from pytestqt.qtbot import QtBot

from embridge.app.main_window import MainWindow
from embridge.core.report.build import ReportOptions, build_report
from embridge.core.store import Workspace
from embridge.core.train.runs import train_run

__all__ = ["no_threads_left", "window"]
pytestmark = pytest.mark.usefixtures("no_threads_left")


def test_a_database_overwritten_while_open_closes_the_workspace_with_one_line(qtbot: QtBot, window: MainWindow,
                                                                               demo_copy: Path) -> None:
    """The database check saw the change and refreshed every page, each raising SQLite's own error in
    an 'Unexpected error' dialog with a traceback (eight of them)."""
    assert window.ctx.open_workspace(demo_copy)
    window.show_page("models")
    wait_for_jobs(qtbot, window)
    db = demo_copy / "embridge.db"
    db.write_bytes(b"this is not a database, a program wrote over it " * 200)
    window._check_workspace()  # what the watch's next tick does
    assert window.ctx.ws is None and window.workspace_label.text() == "No workspace"
    qtbot.waitUntil(lambda: bool(error_dialogs()), timeout=5_000)
    (dialog,) = error_dialogs()
    assert dialog.details is None and dialog.windowTitle() == "Workspace closed"
    assert str(db) in dialog.message and "corrupt or not a database" in dialog.message
    close_error_dialogs()
    for key in ("workspace", "train", "reports", "plan", "export", "models"):
        window.show_page(key)
    assert not error_dialogs()


def test_the_plan_page_says_a_damaged_report_cannot_be_read(qtbot: QtBot, window: MainWindow,
                                                            demo_copy: Path) -> None:
    """report.json garbled by hand: the Reports page said so, the Plan page raised a traceback dialog on
    every refresh (and a second one after its Plan job's own clean error)."""
    with Workspace.open(demo_copy) as ws:
        run_id = int(train_run(ws, "procrustes", device="cpu")["run_id"])
        report_id = int(build_report(ws, run_id, ReportOptions(n_boot=20)).report_id or 0)
    (demo_copy / "reports" / str(report_id) / "report.json").write_text("{not json")
    window.ctx.reporter.install()
    try:
        assert window.ctx.open_workspace(demo_copy)
        window.show_page("plan")
        wait_for_jobs(qtbot, window)
        plan = window.pages["plan"]
        qtbot.waitUntil(lambda: "cannot be read" in plan.plot.placeholder.text(), timeout=10_000)
        assert plan.plot.placeholder.text().startswith(f"Report {report_id} cannot be read: ")
        assert "report.json" in plan.plot.placeholder.text()
        assert not error_dialogs()
        window.refresh_pages()
        assert not error_dialogs()
    finally:
        window.ctx.reporter.uninstall()
