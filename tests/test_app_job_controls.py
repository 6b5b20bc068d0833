"""Job controls of pages and dialogs: one job at a time, its buttons disabled while it runs, a new job
shown alone (no earlier bar, status or result), and a bundle build that leaves the window responsive."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from app_fixtures import no_threads_left, wait_for_jobs, window
from PySide6.QtCore import QElapsedTimer, Qt, QTimer
from pytestqt.qtbot import QtBot

from embridge.app.main_window import MainWindow
from embridge.app.store_dialogs import StoreImportDialog, StoreMigrateDialog
from embridge.core.store import Workspace
from embridge.core.train.runs import train_run

__all__ = ["no_threads_left", "window"]
pytestmark = pytest.mark.usefixtures("no_threads_left")


def click(qtbot: QtBot, button: object) -> None:
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def gated(gate: threading.Event, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` that first waits (in its worker) until the test opens ``gate``."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        gate.wait(30)
        return fn(*args, **kwargs)

    return wrapper


def count_starts(window: MainWindow) -> list[str]:
    started: list[str] = []
    window.ctx.jobs.job_started.connect(lambda job: started.append(job.title))
    return started


def test_a_new_job_in_a_dialog_shows_a_reset_bar_status_and_result(
        qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert window.ctx.open_workspace(tmp_path / "ws", create=True)
    monkeypatch.setattr(window.ctx.reporter, "report", lambda *args, **kwargs: None)
    dialog = StoreImportDialog(window.ctx, window)

    def first(on_progress: Any, should_stop: Any) -> str:
        on_progress(300, 300, {"stage": "importing"})
        return "Imported 300 points from Parquet"

    dialog._started(window.ctx.run_plain("first", first, dialog.show_result, on_progress=dialog._progressed))
    wait_for_jobs(qtbot, window)
    assert dialog.stage.text() == "completed (importing: 300 of 300)" and "Imported 300" in dialog.result.toPlainText()

    dialog.uri.setText(f"parquet://{tmp_path / 'nothing'}")
    click(qtbot, dialog.import_button)
    assert dialog.job is not None
    assert dialog.progress.maximum() == 0  # busy until its first progress, not 300 of 300
    assert "300" not in dialog.stage.text() and dialog.result.toPlainText() == ""
    wait_for_jobs(qtbot, window)
    assert dialog.stage.text().startswith("failed:") and dialog.stage.text().endswith("no such collection")
    assert dialog.result.toPlainText() == ""
    assert dialog.progress.value() < dialog.progress.maximum()  # a failed job never reads as done
    dialog.close()


def test_dialog_buttons_are_disabled_while_its_job_runs_and_it_holds_one_job(
        qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    dialog = StoreMigrateDialog(window.ctx, window)
    started = count_starts(window)
    gate = threading.Event()
    running = window.ctx.run_plain("held", gated(gate, lambda on_progress, should_stop: "held done"),
                                   dialog.show_result)
    dialog._started(running)
    buttons = [dialog.migrate_button, dialog.rollback_button, dialog.check_button]
    assert not any(b.isEnabled() for b in buttons) and dialog.cancel_button.isEnabled()
    dialog.source.setText("parquet:///nowhere")
    dialog.target.setText("parquet:///elsewhere")
    dialog.alias.setText("docs")
    dialog.start_rollback()
    dialog.start_check()
    assert dialog.job is running and started == ["held"]
    gate.set()
    wait_for_jobs(qtbot, window)
    assert all(b.isEnabled() for b in buttons) and not dialog.cancel_button.isEnabled()
    assert dialog.result.toPlainText() == "held done" and dialog.stage.text() == "completed"
    dialog.close()


def test_gallery_import_twice_starts_one_job_and_embed_waits(
        qtbot: QtBot, window: MainWindow, demo_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import embridge.core.importers as importers

    gate = threading.Event()
    monkeypatch.setattr(importers, "import_items", gated(gate, importers.import_items))
    items = tmp_path / "notes.csv"
    items.write_text("key,text\nn1,first note\nn2,second note\n")
    window.ctx.open_workspace(demo_copy)
    gallery = window.show_page("gallery")
    started = count_starts(window)
    gallery.import_path.setText(str(items))
    click(qtbot, gallery.import_button)
    click(qtbot, gallery.import_button)
    assert started == [f"Import {items}"]
    assert not any(b.isEnabled() for b in (gallery.import_button, gallery.beir_button, gallery.embed_button))
    gallery.embed("old-mlp")
    assert len(started) == 1
    gate.set()
    wait_for_jobs(qtbot, window)
    assert all(b.isEnabled() for b in (gallery.import_button, gallery.beir_button, gallery.embed_button))
    with Workspace.open(demo_copy) as ws:
        assert len(ws.ids_for_keys(["n1", "n2"])) == 2


def test_models_buttons_wait_for_the_model_being_added(
        qtbot: QtBot, window: MainWindow, demo_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import embridge.core.models.adding as adding
    from embridge.core.models import save_vectors_model

    with Workspace.open(demo_copy) as ws:
        keys = [it["key"] for it in ws.items("query")][:10]
    npz = save_vectors_model(tmp_path / "extra.npz", keys, np.random.default_rng(1).normal(size=(len(keys), 4)))
    gate = threading.Event()
    monkeypatch.setattr(adding, "add_model", gated(gate, adding.add_model))
    window.ctx.open_workspace(demo_copy)
    models = window.show_page("models")
    wait_for_jobs(qtbot, window)  # the page's background import of model support
    models.table.selectRow(0)
    buttons = [models.add_button, models.rename_button, models.set_role_button, models.remove_button]
    assert all(b.isEnabled() for b in buttons)
    started = count_starts(window)
    models.path.setText(str(npz))
    models.name.setText("extra")
    click(qtbot, models.add_button)
    click(qtbot, models.add_button)
    assert started == ["Add model extra"] and not any(b.isEnabled() for b in buttons)
    gate.set()
    wait_for_jobs(qtbot, window)
    assert all(b.isEnabled() for b in buttons)
    assert models.table.rowCount() == 3


def test_building_a_bundle_leaves_the_window_responsive(qtbot: QtBot, window: MainWindow, demo_copy: Path,
                                                        tmp_path: Path) -> None:
    with Workspace.open(demo_copy) as ws:
        train_run(ws, "fct", device="cpu")
    window.ctx.open_workspace(demo_copy)
    with qtbot.waitSignal(window.ctx.libraries_loaded, timeout=300_000):
        window.start()
    wait_for_jobs(qtbot, window, 300_000)
    assert "ml_dtypes" in sys.modules  # onnx's slow module set-up ran after start-up, not in the build
    page = window.show_page("export")
    page.out.setText(str(tmp_path / "fct.zip"))
    clock, last, worst = QElapsedTimer(), [0], [0]

    def tick() -> None:
        now = clock.elapsed()
        worst[0], last[0] = max(worst[0], now - last[0]), now

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)
    clock.start()
    timer.start()
    click(qtbot, page.build_button)
    assert not page.build_button.isEnabled()
    wait_for_jobs(qtbot, window, 300_000)
    timer.stop()
    assert (tmp_path / "fct.zip").is_file() and page.build_button.isEnabled()
    assert worst[0] < 300, f"the event loop stalled for {worst[0]} ms during the build"


def test_report_and_plan_buttons_wait_for_their_job(qtbot: QtBot, window: MainWindow, demo_copy: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Both stayed enabled while their job ran: a double click built two identical reports (two rows) and
    ran two plans."""
    import embridge.core.plan as plan_module
    import embridge.core.report.build as report_module

    with Workspace.open(demo_copy) as ws:
        train_run(ws, "procrustes", device="cpu")
    gate = threading.Event()
    monkeypatch.setattr(report_module, "build_report", gated(gate, report_module.build_report))
    monkeypatch.setattr(plan_module, "plan_upgrade", gated(gate, plan_module.plan_upgrade))
    window.ctx.open_workspace(demo_copy)
    reports = window.show_page("reports")
    qtbot.waitUntil(reports.build_button.isEnabled, timeout=60_000)  # once the libraries it needs are loaded
    started = count_starts(window)
    click(qtbot, reports.build_button)
    click(qtbot, reports.build_button)
    assert [t for t in started if t.startswith("Report on run")] == ["Report on run 1"]
    assert not reports.build_button.isEnabled()
    assert "a second click would build it twice" in reports.build_button.toolTip()
    reports.refresh()  # a refresh keeps it waiting
    assert not reports.build_button.isEnabled()
    gate.set()
    wait_for_jobs(qtbot, window)
    assert reports.build_button.isEnabled()
    with Workspace.open(demo_copy) as ws:
        assert len(ws.reports()) == 1
    gate.clear()
    plan = window.show_page("plan")
    qtbot.waitUntil(plan.plan_button.isEnabled, timeout=60_000)
    click(qtbot, plan.plan_button)
    click(qtbot, plan.plan_button)
    assert [t for t in started if t.startswith("Plan the upgrade")] == ["Plan the upgrade of run 1"]
    assert not plan.plan_button.isEnabled()
    plan.refresh()
    assert not plan.plan_button.isEnabled()
    gate.set()
    wait_for_jobs(qtbot, window)
    assert plan.plan_button.isEnabled() and plan.plan is not None


def test_a_job_of_the_last_workspace_leaves_the_next_ones_buttons_free(
        qtbot: QtBot, window: MainWindow, demo_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A report still running for the workspace closed kept Build report greyed in the one opened next
    ('A report is being built') until it ended; the job's end then leaves a new job's button greyed."""
    import shutil

    import embridge.core.report.build as report_module

    other = tmp_path / "other-ws"
    shutil.copytree(demo_copy, other)
    for path in (demo_copy, other):
        with Workspace.open(path) as ws:
            train_run(ws, "procrustes", device="cpu")
    gate = threading.Event()
    monkeypatch.setattr(report_module, "build_report", gated(gate, report_module.build_report))
    try:
        window.ctx.open_workspace(demo_copy)
        reports = window.show_page("reports")
        qtbot.waitUntil(reports.build_button.isEnabled, timeout=60_000)
        click(qtbot, reports.build_button)
        assert not reports.build_button.isEnabled()
        window.ctx.open_workspace(other)
        reports = window.show_page("reports")
        assert reports.build_button.isEnabled()
        click(qtbot, reports.build_button)  # the second workspace's own report: its button waits for it alone
        assert not reports.build_button.isEnabled()
    finally:
        gate.set()
    wait_for_jobs(qtbot, window)
    assert reports.build_button.isEnabled()
    for path in (demo_copy, other):
        with Workspace.open(path) as ws:
            assert len(ws.reports()) == 1


def test_export_destination_is_checked_before_replace_is_asked_and_a_bare_name_lands_beside_the_suggestion(
        qtbot: QtBot, window: MainWindow, demo_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The workspace folder as destination asked 'already exists. Replace it?' before it was refused; a bare
    name was written in whatever folder the app was launched from; Verify selected ran twice on a double click."""
    from app_fixtures import close_error_dialogs, error_dialogs

    from embridge.app import dialogs

    with Workspace.open(demo_copy) as ws:
        train_run(ws, "procrustes", device="cpu")
    questions: list[str] = []
    monkeypatch.setattr(dialogs, "confirm", lambda parent, title, text: questions.append(text) or True)
    monkeypatch.chdir(demo_copy / "vectors")  # a launch folder inside the workspace: a bare name must not go there
    window.ctx.open_workspace(demo_copy)
    export = window.show_page("export")
    qtbot.waitUntil(export.build_button.isEnabled, timeout=60_000)
    export.out.setText(str(demo_copy))
    click(qtbot, export.build_button)
    qtbot.waitUntil(lambda: bool(error_dialogs(window)), timeout=10_000)
    assert questions == [] and "is the workspace" in error_dialogs(window)[0].message
    close_error_dialogs(window)
    export.out.setText("bare-name.zip")
    click(qtbot, export.build_button)
    wait_for_jobs(qtbot, window)
    placed = demo_copy.resolve().parent / "bare-name.zip"
    assert placed.is_file() and not (demo_copy / "vectors" / "bare-name.zip").exists() and not error_dialogs(window)
    started = count_starts(window)
    export.table.selectRow(0)
    click(qtbot, export.verify_button)
    click(qtbot, export.verify_button)
    wait_for_jobs(qtbot, window)
    assert [t for t in started if t.startswith("Verify")] == ["Verify bare-name.zip"]
    assert export.details.toPlainText().count("verified") == 1
