"""The app's one worker abstraction: core jobs on a thread pool, reported through queued signals.

A job is a plain function ``fn(on_progress, should_stop)`` as everywhere in the core; it runs through
:func:`embridge.core.jobs.run_job` on a pool thread, so every ending becomes a :class:`JobOutcome` of plain
values. Progress is throttled in the worker thread (at most one update per ``throttle_s``, except the
last one and any update whose ``milestone`` key changed, e.g. a new epoch, so live plots miss no
point). Cancelling sets the job's :class:`CancelToken`; the core stops at its next batch. No thread
is ever terminated. :class:`JobManager` keeps every job referenced until its outcome is delivered,
and jobs have no Qt parent, so Python alone decides when one is freed (never under a running thread).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QCoreApplication, QObject, Qt, QThreadPool, Signal, Slot

from embridge.core.jobs import CancelToken, JobFn, JobOutcome, run_job

log = logging.getLogger("embridge.app")
_ids = itertools.count(1)


class Job(QObject):
    """One background run; its public signals are always emitted in the GUI thread."""

    progressed = Signal(int, int, object)  # done, total, info dict
    finished = Signal(object)  # JobOutcome

    _progress_raw = Signal(int, int, object)
    _finished_raw = Signal(object)

    def __init__(self, title: str, fn: JobFn, throttle_s: float = 0.1, milestone: str | None = "epoch",
                 visible: bool = True) -> None:
        super().__init__()
        self.id = next(_ids)
        self.title = title
        self.visible = visible
        self.token = CancelToken()
        self.done = 0
        self.total = 0
        self.info: dict[str, Any] = {}
        self.outcome: JobOutcome | None = None
        self.on_done: Callable[[JobOutcome], None] | None = None
        self.started_at = time.monotonic()
        self.finished_at: float | None = None
        self._fn = fn
        self._throttle_s = throttle_s
        self._milestone = milestone
        queued = Qt.ConnectionType.QueuedConnection
        self._progress_raw.connect(self._deliver_progress, queued)
        self._finished_raw.connect(self._deliver_outcome, queued)

    # -- state seen by the GUI --------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.outcome is None

    def cancel(self) -> None:
        """Ask the job to stop at its next check; it ends with status 'cancelled'."""
        if self.running and not self.token():
            log.info("cancelling job '%s'", self.title)
            self.token.cancel()

    def elapsed_s(self) -> float:
        return (self.finished_at or time.monotonic()) - self.started_at

    def eta_s(self) -> float | None:
        """Seconds left at the rate so far; None until some progress is known."""
        if not self.running or self.total <= 0 or self.done <= 0:
            return None
        return self.elapsed_s() * (self.total - self.done) / self.done

    # -- worker thread ------------------------------------------------------------------------
    def run(self) -> None:
        """Pool-thread body: run the job, forward throttled progress, then its outcome."""
        last_emit = 0.0
        last_mark: Any = None
        held: tuple[int, int, dict[str, Any]] | None = None  # the latest update the throttle held back

        def on_progress(done: int, total: int, info: dict[str, Any]) -> None:
            nonlocal last_emit, last_mark, held
            now = time.monotonic()
            mark = info.get(self._milestone) if self._milestone else None
            if done < total and now - last_emit < self._throttle_s and mark == last_mark:
                held = (int(done), int(total), dict(info))
                return
            last_emit, last_mark, held = now, mark, None
            self._progress_raw.emit(int(done), int(total), dict(info))

        outcome = run_job(self._fn, on_progress, self.token)
        if held is not None:  # a cancelled or failed job's bar shows where it got, not an update before
            self._progress_raw.emit(*held)
        self._finished_raw.emit(outcome)

    # -- GUI thread ---------------------------------------------------------------------------
    @Slot(int, int, object)
    def _deliver_progress(self, done: int, total: int, info: dict[str, Any]) -> None:
        if not self.running:
            return
        self.done, self.total, self.info = done, total, info
        self.progressed.emit(done, total, info)

    @Slot(object)
    def _deliver_outcome(self, outcome: JobOutcome) -> None:
        self.outcome = outcome
        self.finished_at = time.monotonic()
        if outcome.status == "completed" and self.total:
            self.done = self.total
        self.finished.emit(outcome)


class JobManager(QObject):
    """Starts jobs on a thread pool, keeps them alive until they end, and cancels them on quit."""

    job_started = Signal(object)  # Job
    job_finished = Signal(object)  # Job (its outcome is set)

    def __init__(self, pool: QThreadPool | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.pool = pool or QThreadPool.globalInstance()
        self._jobs: dict[int, Job] = {}

    def start(self, title: str, fn: JobFn, on_done: Callable[[JobOutcome], None] | None = None,
              on_progress: Callable[[int, int, dict], None] | None = None, *, visible: bool = True,
              throttle_s: float = 0.1, milestone: str | None = "epoch") -> Job:
        """Run ``fn(on_progress, should_stop)`` in the background; ``on_done`` gets the outcome."""
        job = Job(title, fn, throttle_s, milestone, visible)
        job.on_done = on_done
        self._jobs[job.id] = job
        if on_progress is not None:
            job.progressed.connect(on_progress)
        job.finished.connect(self._finish)  # a bound slot, not a closure over the job: no reference cycle
        log.info("job '%s' started", title)
        self.job_started.emit(job)
        self.pool.start(job.run)
        return job

    @Slot(object)
    def _finish(self, outcome: JobOutcome) -> None:
        job = self.sender()
        assert isinstance(job, Job)
        log.info("job '%s' %s in %.1f s%s", job.title, outcome.status, outcome.duration_s,
                 f": {outcome.error}" if outcome.error else "")
        # the job has ended: forget it before its callback runs, so a callback that closes the
        # app (and so waits for every job) does not wait for the job it is called from
        self._jobs.pop(job.id, None)
        try:
            if job.on_done is not None:
                job.on_done(outcome)
        finally:
            self.job_finished.emit(job)

    def running(self) -> list[Job]:
        return list(self._jobs.values())

    def cancel_all(self) -> None:
        for job in self.running():
            job.cancel()

    def wait(self, timeout_s: float = 30.0) -> bool:
        """Block until every job has ended and its outcome was delivered; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self._jobs and time.monotonic() < deadline:
            self.pool.waitForDone(50)
            QCoreApplication.processEvents()
        return not self._jobs

    def shutdown(self, timeout_s: float = 30.0) -> bool:
        """Cancel every job and wait for all of them (used when the app closes)."""
        self.cancel_all()
        return self.wait(timeout_s)
