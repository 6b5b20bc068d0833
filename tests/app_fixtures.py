"""Fixtures for the desktop app's tests: a main window, thread hygiene, error-dialog capture.

Test modules import what they use (``from app_fixtures import ...``); the settings folder is
isolated by the suite-wide ``EMBRIDGE_CONFIG_DIR`` fixture in ``conftest.py``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from PySide6.QtCore import QCoreApplication, QThreadPool
from pytestqt.qtbot import QtBot

from embridge.app.error_path import ErrorDialog
from embridge.app.main_window import MainWindow

_current: list[MainWindow] = []  # the window of the running test (set by the ``window`` fixture)


def error_dialogs(win: MainWindow | None = None) -> list[ErrorDialog]:
    """Error dialogs the test's own window has open (not those of any other window)."""
    target = win if win is not None else (_current[-1] if _current else None)
    if target is None:
        return []
    return [d for d in list(target.ctx.reporter.open_dialogs) if d.isVisible()]


def close_error_dialogs(win: MainWindow | None = None) -> None:
    for dialog in error_dialogs(win):
        dialog.close()


@pytest.fixture
def no_threads_left() -> Iterator[None]:
    """Fail a test that leaves a pool thread or a new Python thread running."""
    before = {t.ident for t in threading.enumerate()}
    yield
    pool = QThreadPool.globalInstance()
    pool.waitForDone(2_000)  # a worker that delivered its outcome may still be returning from run()
    active = pool.activeThreadCount()
    pool.waitForDone(20_000)  # clean up for the next test before failing this one
    extra = [t.name for t in threading.enumerate()
             if t.ident not in before and t.is_alive() and not isinstance(t, threading._DummyThread)]
    assert active == 0, f"{active} pool thread(s) still running after the test"
    assert not extra, f"threads left running: {extra}"


@pytest.fixture
def window(qtbot: QtBot, no_threads_left: None) -> Iterator[MainWindow]:
    """The main window as ``embridge-gui`` builds it; every job must have ended by teardown."""
    from embridge.app.launch import application, build_main_window

    application()
    win = build_main_window()
    leftover: list[str] = []

    def end_jobs(_win: MainWindow) -> None:
        """Before pytest-qt closes the window (ahead of this fixture's teardown): a job still running
        would make closing ask for confirmation in a modal box, which nobody answers."""
        leftover.extend(job.title for job in win.ctx.jobs.running() if job.visible)
        win.ctx.jobs.shutdown(timeout_s=60.0)

    qtbot.addWidget(win, before_close_func=end_jobs)
    win.show()
    _current.append(win)
    yield win
    _current.remove(win)
    end_jobs(win)  # a test that closed the window itself
    close_error_dialogs(win)
    win.ctx.close_workspace(emit=False)
    win.log_view.detach()
    assert not leftover, f"jobs still running at the end of the test: {leftover}"


def wait_for_jobs(qtbot: QtBot, win: MainWindow, timeout_ms: int = 60_000) -> None:
    """Wait until every job of the window has ended and its outcome was delivered, then deliver the
    events its outcome posted (the error reporter shows its dialog on a queued signal)."""
    qtbot.waitUntil(lambda: not win.ctx.jobs.running(), timeout=timeout_ms)
    QCoreApplication.processEvents()
