"""The worker abstraction and the one error path, driven through a real main window."""

from __future__ import annotations

import sys
import threading
import time

import pytest
from app_fixtures import close_error_dialogs, error_dialogs, no_threads_left, wait_for_jobs, window
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from embridge.app import dialogs
from embridge.app.main_window import MainWindow
from embridge.core.errors import Cancelled, CheckpointError
from embridge.core.progress import ProgressFn, StopFn, check_stop

__all__ = ["no_threads_left", "window"]
pytestmark = pytest.mark.usefixtures("no_threads_left")


def test_progress_is_throttled_but_keeps_the_last_report_and_every_epoch(qtbot: QtBot, window: MainWindow) -> None:
    seen: list[tuple[int, int, dict]] = []

    def job(on_progress: ProgressFn, should_stop: StopFn) -> object:
        for step in range(1, 3001):
            on_progress(step, 3000, {"epoch": step // 1000, "loss": 1.0 / step})
        return {"steps": 3000}

    results: list[dict] = []
    started = window.ctx.jobs.start("throttle", job, lambda o: results.append(o.result),
                                    on_progress=lambda d, t, i: seen.append((d, t, i)))
    with qtbot.waitSignal(started.finished, timeout=10_000):
        pass
    assert results == [{"steps": 3000}]
    assert 3 <= len(seen) < 300, len(seen)  # 3000 reports arrive as a handful of signals
    assert seen[-1][:2] == (3000, 3000)
    assert {info["epoch"] for _d, _t, info in seen} == {0, 1, 2, 3}
    assert started.outcome.status == "completed" and not window.ctx.jobs.running()


def test_a_stopped_jobs_last_held_back_progress_reaches_the_page(qtbot: QtBot, window: MainWindow) -> None:
    """A cancelled migration's bar stayed at 11,792 of 40,000 where 12,816 points were kept: the throttle had
    held back the updates that came after the last one it let through."""
    seen: list[int] = []

    def job(on_progress: ProgressFn, should_stop: StopFn) -> object:
        for step in range(1, 51):
            on_progress(step * 256, 40_000, {"stage": "migrating"})  # far faster than the throttle
        raise Cancelled("stopped")

    started = window.ctx.jobs.start("held", job, on_progress=lambda d, t, i: seen.append(d))
    with qtbot.waitSignal(started.finished, timeout=10_000):
        pass
    assert started.outcome.status == "cancelled" and seen[-1] == 50 * 256 and len(seen) < 50


def test_cancel_button_stops_a_looping_job_cooperatively(qtbot: QtBot, window: MainWindow) -> None:
    iterations = []

    def job(on_progress: ProgressFn, should_stop: StopFn) -> object:
        for step in range(10**9):
            check_stop(should_stop)
            iterations.append(step)
            on_progress(step, 10**9, {})
            time.sleep(0.001)

    started = window.ctx.jobs.start("endless", job)
    qtbot.waitUntil(lambda: started.done > 0, timeout=10_000)
    row = window.jobs_panel.row_for(started)
    assert row is not None and "elapsed" in row.status.text()
    with qtbot.waitSignal(started.finished, timeout=10_000):
        qtbot.mouseClick(row.cancel_button, Qt.MouseButton.LeftButton)
    assert started.outcome.status == "cancelled"
    assert row.status.text().startswith("cancelled after")
    count = len(iterations)
    time.sleep(0.05)
    assert len(iterations) == count  # the loop really stopped
    assert not error_dialogs()  # a cancel is not an error


def test_eta_comes_from_the_rate_so_far(qtbot: QtBot, window: MainWindow) -> None:
    gate = threading.Event()

    def job(on_progress: ProgressFn, should_stop: StopFn) -> object:
        time.sleep(0.2)
        on_progress(1, 4, {})
        gate.wait(10)

    started = window.ctx.jobs.start("eta", job)
    qtbot.waitUntil(lambda: started.done == 1, timeout=10_000)
    eta = started.eta_s()
    gate.set()
    with qtbot.waitSignal(started.finished, timeout=10_000):
        pass
    # one quarter took >= 0.2 s, so three quarters are estimated at >= 0.6 s
    assert eta is not None and 0.6 <= eta < 30


def test_a_user_error_in_a_job_shows_its_message_without_a_traceback(qtbot: QtBot, window: MainWindow) -> None:
    def job(on_progress: ProgressFn, should_stop: StopFn) -> object:
        raise CheckpointError("/data/model.pt", "not a TorchScript archive")

    started = window.ctx.run_plain("Add model", job)
    qtbot.waitUntil(lambda: bool(error_dialogs()), timeout=10_000)
    (dialog,) = error_dialogs()
    assert dialog.windowTitle() == "Add model failed"
    assert dialog.message == "/data/model.pt: not a TorchScript archive"
    assert dialog.details is None
    assert started.outcome.status == "failed"
    row = window.jobs_panel.row_for(started)
    assert row is not None and row.details_button.isVisible()
    close_error_dialogs()


def test_a_bug_in_a_job_shows_a_copyable_traceback_and_is_logged(qtbot: QtBot, window: MainWindow) -> None:
    def job(on_progress: ProgressFn, should_stop: StopFn) -> object:
        return {"a": 1}["missing"]

    window.ctx.run_plain("Buggy job", job)
    qtbot.waitUntil(lambda: bool(error_dialogs()), timeout=10_000)
    (dialog,) = error_dialogs()
    assert dialog.message == "KeyError: 'missing'"
    assert "Traceback" in dialog.details and 'return {"a": 1}["missing"]' in dialog.details
    dialog.copy_details()
    assert "KeyError" in window.ctx.reporter.log_path.read_text(encoding="utf-8")
    from PySide6.QtGui import QGuiApplication

    assert "Traceback" in QGuiApplication.clipboard().text()
    close_error_dialogs()


def test_excepthooks_of_main_and_python_threads_reach_the_same_dialog(qtbot: QtBot, window: MainWindow) -> None:
    reporter = window.ctx.reporter
    reporter.install()
    try:
        try:
            raise ValueError("broken slot")
        except ValueError:
            sys.excepthook(*sys.exc_info())
        thread = threading.Thread(target=lambda: 1 / 0, name="helper-thread")
        thread.start()
        thread.join()
        qtbot.waitUntil(lambda: len(error_dialogs()) == 2, timeout=10_000)
    finally:
        reporter.uninstall()
    messages = sorted(d.message for d in error_dialogs())
    assert messages == ["ValueError: broken slot", "ZeroDivisionError in helper-thread: division by zero"]
    assert sys.excepthook is not reporter._excepthook
    close_error_dialogs()


def test_closing_with_a_running_job_asks_then_cancels_and_waits(qtbot: QtBot, window: MainWindow,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def job(on_progress: ProgressFn, should_stop: StopFn) -> object:
        while True:
            check_stop(should_stop)
            time.sleep(0.01)

    started = window.ctx.jobs.start("long job", job)
    questions: list[str] = []
    monkeypatch.setattr(dialogs, "confirm", lambda parent, title, text: questions.append(text) or False)
    window.close()
    assert window.isVisible() and started.running and len(questions) == 1 and "long job" in questions[0]

    monkeypatch.setattr(dialogs, "confirm", lambda parent, title, text: True)
    window.close()
    assert not window.isVisible()
    assert started.outcome is not None and started.outcome.status == "cancelled"
    assert not window.ctx.jobs.running()


def test_cancelled_raised_by_a_job_is_not_reported_as_a_failure(qtbot: QtBot, window: MainWindow) -> None:
    def job(on_progress: ProgressFn, should_stop: StopFn) -> object:
        raise Cancelled()

    started = window.ctx.run_plain("stops at once", job)
    wait_for_jobs(qtbot, window)
    assert started.outcome.status == "cancelled" and not error_dialogs()


def test_a_callback_that_shuts_the_manager_down_does_not_wait_for_its_own_job(qtbot: QtBot, window: MainWindow) -> None:
    jobs = window.ctx.jobs
    waited: list[tuple[bool, float]] = []

    def close_app(outcome: object) -> None:  # what quitting from a job's callback does
        start = time.monotonic()
        waited.append((jobs.shutdown(5.0), time.monotonic() - start))

    started = jobs.start("quits on completion", lambda p, s: 42, close_app)
    with qtbot.waitSignal(jobs.job_finished, timeout=10_000):
        pass
    assert started.outcome.result == 42
    ok, seconds = waited[0]
    assert ok and seconds < 5.0  # with the job still counted it would spin until its timeout
    assert not jobs.running()
