"""Fail any Qt test that leaves top-level widgets, active timers or running threads behind.

Loaded for every test by ``conftest.py``; it acts only on tests that use ``qtbot`` or ``qapp``
(so the other tests never import Qt). It records QTimer and QThread starts made during the test
(wrapping ``QTimer.start``, ``QTimer.singleShot`` and ``QThread.start``) and compares the
top-level widgets and Python threads with those present before the test. Leftovers are cleaned up
before the failure, so one bad test does not make the next fail too.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

QT_FIXTURES = ("qtbot", "qapp", "window")
SETTLE_MS = 2000


def _uses_qt(request: pytest.FixtureRequest) -> bool:
    return any(name in request.fixturenames for name in QT_FIXTURES)


@pytest.fixture(autouse=True)
def qt_hygiene(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if not _uses_qt(request):
        yield
        return
    from PySide6.QtCore import QCoreApplication, QEvent, QThread, QThreadPool, QTimer
    from PySide6.QtWidgets import QApplication

    timers: weakref.WeakSet[QTimer] = weakref.WeakSet()
    qthreads: weakref.WeakSet[QThread] = weakref.WeakSet()
    base_start, base_thread_start = QTimer.start, QThread.start

    def start(self: QTimer, *args: Any) -> None:
        timers.add(self)
        base_start(self, *args)

    def single_shot(*args: Any) -> None:
        # QTimer.singleShot(msec, [context,] functor): a tracked one-shot timer does the same
        msec, rest = args[0], args[1:]
        functor = rest[-1]
        context = rest[0] if len(rest) > 1 else None
        timer = QTimer(context) if context is not None else QTimer()
        timer.setSingleShot(True)
        holder = [timer]

        def fire() -> None:
            holder.clear()
            functor()

        timer.timeout.connect(fire)
        timers.add(timer)
        base_start(timer, msec)
        if context is None:
            _pending_single_shots.append(holder)

    def thread_start(self: QThread, *args: Any) -> None:
        qthreads.add(self)
        base_thread_start(self, *args)

    monkeypatch.setattr(QTimer, "start", start)
    monkeypatch.setattr(QTimer, "singleShot", staticmethod(single_shot))
    monkeypatch.setattr(QThread, "start", thread_start)
    app = QApplication.instance()
    widgets_before = {id(w) for w in QApplication.topLevelWidgets()} if app is not None else set()
    threads_before = set(threading.enumerate())  # the objects: a finished thread's ident is soon reused
    yield

    app = QApplication.instance()
    if app is None:
        return
    pool = QThreadPool.globalInstance()
    # a worker that has delivered its outcome may still be returning from run(): a short grace, then
    # whatever still runs is a job the test left behind (waited for, so the next test starts clean)
    pool.waitForDone(2_000)
    pool_busy = pool.activeThreadCount()
    pool.waitForDone(20_000)
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    app.processEvents()
    problems = []
    if pool_busy:
        problems.append(f"{pool_busy} pool thread(s) still running")
    running = [t for t in list(qthreads) if _alive(t) and t.isRunning()]
    if running:
        problems.append(f"{len(running)} QThread(s) still running")
        for thread in running:
            thread.quit()
            thread.wait(5000)
    active = [t for t in list(timers) if _alive(t) and t.isActive()]
    if active:
        problems.append(f"{len(active)} QTimer(s) still active: "
                        + ", ".join(_timer_name(t) for t in active))
        for timer in active:
            timer.stop()
    _pending_single_shots.clear()
    extra = [t.name for t in threading.enumerate()
             if t not in threads_before and t.is_alive() and not isinstance(t, threading._DummyThread)]
    if extra:
        problems.append(f"threads left running: {extra}")
    left = [w for w in QApplication.topLevelWidgets() if id(w) not in widgets_before and _alive(w)
            and w.isVisible()]
    if left:
        problems.append("top-level widgets left open: " + ", ".join(
            f"{type(w).__name__}('{w.windowTitle()}')" for w in left))
        for widget in left:
            widget.close()
            widget.deleteLater()
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    if problems:
        pytest.fail("Qt test left things behind: " + "; ".join(problems), pytrace=False)


_pending_single_shots: list[list[Any]] = []


def _alive(obj: Any) -> bool:
    try:
        import shiboken6

        return shiboken6.isValid(obj)
    except ImportError:  # pragma: no cover - shiboken6 ships with PySide6
        return True


def _timer_name(timer: Any) -> str:
    parent = timer.parent()
    owner = type(parent).__name__ if parent is not None else "no parent"
    return f"{timer.objectName() or 'QTimer'} of {owner} ({timer.interval()} ms)"
