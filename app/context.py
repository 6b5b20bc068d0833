"""State shared by the main window and its pages: the open workspace, jobs, settings, errors.

Pages read the workspace through ``ctx.ws`` (a handle owned by the GUI thread) and start work with
:meth:`AppContext.run`, which gives the job its own workspace handle in the worker thread (SQLite
connections are not shared across threads) and reports failures through the one error path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from embridge.app.error_path import ErrorReporter
from embridge.app.preload import preload
from embridge.app.settings import Settings
from embridge.app.workers import Job, JobManager
from embridge.core.errors import EmbridgeError
from embridge.core.jobs import JobOutcome
from embridge.core.progress import ProgressFn, StopFn
from embridge.core.store import Workspace, damage_log

log = logging.getLogger("embridge.app")

# imported by warm_up: torch._dynamo is what torch's optimisers import on first use (with sympy); onnx
# is what a bundle build's ONNX export imports (its ml_dtypes, which would hold the GIL for most of a
# second, was imported before the window showed: see app.preload.import_gil_holders)
WARM_UP = ("torch", "torch._dynamo", "faiss", "matplotlib.figure", "embridge.core.models", "embridge.core.adapters.registry",
           "embridge.core.train", "embridge.core.report.build", "onnx", "onnxruntime")
WorkspaceJob = Callable[[Workspace, ProgressFn, StopFn], Any]


class AppContext(QObject):
    workspace_changed = Signal()
    data_changed = Signal()  # a job or an action changed what the workspace holds
    devices_changed = Signal()
    libraries_loaded = Signal()  # the start-up warm-up (see warm_up) has finished
    focus_run_changed = Signal()  # the run just trained or reported on (pickers default to it)

    def __init__(self, settings: Settings, jobs: JobManager, reporter: ErrorReporter) -> None:
        super().__init__()
        self.settings = settings
        self.jobs = jobs
        self.reporter = reporter
        self.ws: Workspace | None = None
        self.devices: list[str] = ["auto"]
        self.device_label = "detecting…"
        self.focus_run: int | None = None
        # the start-up warm-up runs: pages whose refresh imports torch wait for it rather than block the
        # GUI thread on the import lock the warm-up holds (see Page.needs_libraries)
        self.loading_libraries = False

    def set_focus_run(self, run_id: int | None) -> None:
        """The run the user works on now: the one just trained, reported on or planned."""
        if run_id != self.focus_run:
            self.focus_run = run_id
            self.focus_run_changed.emit()

    # -- workspace --------------------------------------------------------------------------
    def open_workspace(self, path: str | Path, create: bool = False) -> bool:
        """Open (or create) a workspace; a failure is shown to the user and returns False."""
        damage_log.take()  # each workspace's damaged sets are warned of afresh, this one's included
        try:
            ws = Workspace.create(path) if create else Workspace.open(path)
            ws.mark_interrupted_runs()
        except EmbridgeError as exc:
            self.reporter.report("Cannot open workspace" if not create else "Cannot create workspace", str(exc))
            return False
        self.close_workspace(emit=False)
        self.ws = ws
        latest = ws.latest_run("train")  # what report, plan and bundle export take without --run
        self.focus_run = int(latest["id"]) if latest else None
        self.settings.add_recent(ws.root)
        log.info("opened workspace %s", Path(ws.root).resolve())
        self.workspace_changed.emit()
        return True

    def close_workspace(self, emit: bool = True) -> None:
        if self.ws is not None:
            self.ws.close()
            self.ws = None
            self.focus_run = None
            if emit:
                self.workspace_changed.emit()

    # -- jobs -------------------------------------------------------------------------------
    def run(self, title: str, fn: WorkspaceJob, on_done: Callable[[Any], None] | None = None,
            **options: Any) -> Job | None:
        """Run ``fn(ws, on_progress, should_stop)`` on a fresh handle of the open workspace."""
        if self.ws is None:
            self.reporter.report(title, "Open or create a workspace first.")
            return None
        root = Path(self.ws.root)

        def job(on_progress: ProgressFn, should_stop: StopFn) -> Any:
            with Workspace.open(root) as ws:
                return fn(ws, on_progress, should_stop)

        def done_here(result: Any) -> None:  # another workspace opened meanwhile: its pages are not this job's
            if on_done is None:
                return
            if self.ws is not None and Path(self.ws.root).resolve() == root.resolve():
                on_done(result)
            else:
                log.info("%s finished for %s, which is no longer open; its result stays recorded there", title, root)

        return self.run_plain(title, job, done_here, changes_workspace=True, **options)

    def run_plain(self, title: str, fn: Callable[[ProgressFn, StopFn], Any],
                  on_done: Callable[[Any], None] | None = None, changes_workspace: bool = False,
                  on_end: Callable[[JobOutcome], None] | None = None, **options: Any) -> Job:
        """Run a job that needs no workspace; errors go to the error dialog, results to ``on_done``;
        ``on_end`` sees every outcome, a failed or cancelled one too."""

        def finished(outcome: JobOutcome) -> None:
            if outcome.status == "failed":  # with the damaged sets passed over, which may be why (only in the log)
                notes = "".join(f"\nWARNING: {n}" for n in damage_log.current()) if changes_workspace else ""
                self.reporter.report(f"{title} failed", (outcome.error or "unknown error") + notes, outcome.details)
            elif outcome.status == "completed" and on_done is not None:
                on_done(outcome.result)
            if changes_workspace and self.ws is not None:
                self.data_changed.emit()
            if on_end is not None:
                on_end(outcome)

        return self.jobs.start(title, fn, finished, **options)

    # -- compute device ---------------------------------------------------------------------
    def detect_devices(self) -> Job:
        """Find the compute device in the background (its job imports torch, see
        :mod:`embridge.app.preload`), then warm up the rest."""

        def detect(on_progress: ProgressFn, should_stop: StopFn) -> tuple[str, list[str]]:
            from embridge.core.store.sqlite_import import sqlite_utils

            sqlite_utils()  # first: opening a workspace imports it, 0.25 s the window would freeze for
            preload("torch")
            from embridge.core.device import available_devices, describe_device, resolve_device

            return describe_device(resolve_device("auto")), available_devices()

        def found(result: tuple[str, list[str]]) -> None:
            self.device_label, names = result
            self.devices = ["auto", *names]
            log.info("compute device: %s", self.device_label)
            self.devices_changed.emit()
            self.warm_up()

        def ended(outcome: JobOutcome) -> None:
            if outcome.status != "completed":  # no warm-up follows: pages import what they need themselves
                self.device_label = "unknown (detection failed; jobs use the CPU)"
                self.devices_changed.emit()
                self._libraries_done()

        self.loading_libraries = True
        return self.run_plain("Detect compute device", detect, found, on_end=ended, visible=False)

    def warm_up(self) -> Job:
        """Import what the first training, report and figure jobs need, in the background and
        once, so those jobs do not stall the window with imports when the user starts them."""

        def load(on_progress: ProgressFn, should_stop: StopFn) -> dict[str, str]:
            return preload(*WARM_UP)

        def loaded(outcome: dict[str, str]) -> None:
            log.info("libraries loaded: %s", ", ".join(f"{k} {v}" for k, v in outcome.items()))

        self.loading_libraries = True
        return self.run_plain("Load libraries", load, loaded, on_end=lambda _outcome: self._libraries_done(),
                              visible=False)

    def _libraries_done(self) -> None:
        self.loading_libraries = False
        self.libraries_loaded.emit()
