"""Jobs the app submits to a Ray cluster: it submits and watches them, the cluster computes.

Each Ray job gets a row in the jobs panel like a local job; its worker follows the job with
:func:`embridge.core.scale.detached_jobs.attach` (reading the job's progress from its stage folder every half second,
so the window never waits on the cluster). Closing the window or the workspace only stops watching
(the job keeps running); opening the workspace again reattaches every job its runs still list as
running, and whichever watcher sees a job end records it in the workspace. The cancel button
cancels the job on the cluster. The cluster's address is a setting (``ray_address``).
"""

from __future__ import annotations

import threading
from typing import Any

from PySide6.QtCore import QObject

from embridge.app.context import AppContext
from embridge.app.workers import Job
from embridge.core.progress import ProgressFn, StopFn
from embridge.core.store import Workspace

ADDRESS_SETTING = "ray_address"


class RayJobs(QObject):
    """Submits backfills to the cluster and keeps one watcher job per running Ray job of the workspace."""

    def __init__(self, ctx: AppContext) -> None:
        super().__init__()
        self.ctx = ctx
        self._detach = threading.Event()
        self._watchers: dict[int, Job] = {}  # run id -> the app job watching it (this workspace)
        self._ray_job_ids: set[int] = set()  # every app job that watches or submits a Ray job
        ctx.workspace_changed.connect(self.reattach)

    # -- the setting -------------------------------------------------------------------------
    @property
    def address(self) -> str:
        return str(self.ctx.settings.get(ADDRESS_SETTING) or "").strip()

    def set_address(self, address: str) -> None:
        self.ctx.settings.set(ADDRESS_SETTING, address.strip())

    # -- jobs --------------------------------------------------------------------------------
    def is_watcher(self, job: Job) -> bool:
        return job.id in self._ray_job_ids

    def submit_backfill(self, model: str, order: str = "stored", fraction: float | None = None,
                        chunk: int = 4096) -> Job | None:
        """Submit a backfill of the gallery with ``model`` to the cluster and watch it."""
        address = self.address
        if not address:
            self.ctx.reporter.report("Backfill on Ray", "Set the Ray cluster address first (Jobs → Ray cluster "
                                     "address…), e.g. the HOST:PORT that 'ray start --head' printed.")
            return None
        detach = self._detach
        submitted: dict[str, int] = {}

        def run(ws: Workspace, on_progress: ProgressFn, should_stop: StopFn) -> dict[str, Any]:
            from embridge.core.scale.backfill_workspace import backfill_ids
            from embridge.core.scale.detached_jobs import reuse_if_finished, submit_backfill

            ids = backfill_ids(ws, order, fraction=fraction, model=model, device="cpu")
            reused = reuse_if_finished(ws, model, ids, address=address, order=order)
            if reused is not None:  # nothing to embed: recorded as reused, nothing submitted
                return reused.to_dict()
            on_progress(0, len(ids), {"stage": "submitting to Ray"})
            job = submit_backfill(ws, model, ids, address=address, order=order, chunk=chunk,
                                  should_stop=should_stop)
            submitted["run_id"] = job.run_id
            return _follow(ws, job.run_id, on_progress, should_stop, detach)

        app_job = self.ctx.run(f"Backfill {model} on Ray", run, milestone=None)
        if app_job is not None:
            self._ray_job_ids.add(app_job.id)
            app_job.finished.connect(lambda _o: self._forget(submitted.get("run_id"), app_job))
        return app_job

    def reattach(self) -> None:
        """After a workspace change: stop watching the old one's jobs, watch the new one's running jobs."""
        self._detach.set()  # the old watchers end within one poll
        self._detach = threading.Event()
        self._watchers = {}
        ws = self.ctx.ws
        if ws is None:
            return
        from embridge.core.scale.detached_jobs import ray_jobs

        for job, _run in ray_jobs(ws, active_only=True):
            if job.run_id not in self._watchers:
                self._watch(job.run_id, job.model)

    def _watch(self, run_id: int, model: str) -> None:
        detach = self._detach

        def follow(ws: Workspace, on_progress: ProgressFn, should_stop: StopFn) -> dict[str, Any]:
            return _follow(ws, run_id, on_progress, should_stop, detach)

        app_job = self.ctx.run(f"Backfill {model} on Ray (run {run_id})", follow, milestone=None)
        if app_job is not None:
            self._watchers[run_id] = app_job
            self._ray_job_ids.add(app_job.id)
            app_job.finished.connect(lambda _o: self._forget(run_id, app_job))

    def _forget(self, run_id: int | None, app_job: Job) -> None:
        self._ray_job_ids.discard(app_job.id)
        if run_id is not None and self._watchers.get(run_id) is app_job:
            self._watchers.pop(run_id)

    def detach_all(self) -> None:
        """Stop watching (the jobs keep running on the cluster): used when the window closes."""
        self._detach.set()


def _follow(ws: Workspace, run_id: int, on_progress: ProgressFn, should_stop: StopFn,
            detach: threading.Event) -> dict[str, Any]:
    from embridge.core.scale.detached_jobs import attach, find_job

    job = find_job(ws, run_id)
    status = attach(ws, job, on_progress, should_stop, detach=detach.is_set)
    if not status.terminal:
        return {"run_id": run_id, "state": "detached", "note": "the job keeps running on the cluster"}
    run = ws.run(run_id)
    return {"run_id": run_id, "state": status.state, **(run.get("metrics") or {})}


def check_address(address: str) -> str:
    """One line for an address that cannot be a Ray cluster's (empty is allowed: no cluster)."""
    from embridge.core.scale.engine import address_parts

    text = address.strip()
    if text:
        address_parts(text, "Ray cluster address")
    return text
