"""Qt-free job running: a job is a plain function of ``(on_progress, should_stop)``.

``run_job`` executes it and turns every ending (result, cancel, user error, bug) into a
:class:`JobOutcome` of plain values, which is all the app's worker sends across a signal.
``recorded_run`` is how core functions leave a trace in the workspace: the run row says
running/completed/failed/cancelled (Ctrl-C cancels, as the app's Cancel does), and a process killed
mid-job shows as interrupted.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from embridge.core import stop_signals
from embridge.core.data_state import DATA_STATE, MEASURED_KINDS, data_state
from embridge.core.errors import Cancelled, EmbridgeError
from embridge.core.progress import ProgressFn, StopFn, no_progress

JobFn = Callable[[ProgressFn, StopFn], Any]
INTERRUPTED = f"{Cancelled()} (interrupted)"  # the error text of a run stopped by Ctrl-C
TERMINATED = "terminated"  # what the command line's SIGTERM handler raises KeyboardInterrupt with
TERMINATED_RUN = "stopped by SIGTERM (terminated)"  # a service manager or `kill`, not the user's Ctrl-C


class CancelToken:
    """A thread-safe stop flag; pass ``token`` itself as ``should_stop``."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    def __call__(self) -> bool:
        return self._event.is_set()


@dataclass
class JobOutcome:
    status: str  # completed | cancelled | failed
    result: Any = None
    error: str | None = None
    details: str | None = None  # traceback for bugs, None for user errors
    duration_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def run_job(fn: JobFn, on_progress: ProgressFn | None = None, token: CancelToken | None = None) -> JobOutcome:
    """Run a job to its end and describe how it ended; never raises."""
    token = token or CancelToken()
    start = time.perf_counter()
    try:
        result = fn(on_progress or no_progress, token)
    except Cancelled as exc:
        return JobOutcome("cancelled", error=str(exc), duration_s=time.perf_counter() - start)
    except EmbridgeError as exc:
        return JobOutcome("failed", error=str(exc), duration_s=time.perf_counter() - start)
    except Exception as exc:  # a bug: keep the traceback for the details pane
        return JobOutcome("failed", error=f"{type(exc).__name__}: {exc}", details=traceback.format_exc(),
                          duration_s=time.perf_counter() - start)
    status = "cancelled" if isinstance(result, dict) and result.get("status") == "cancelled" else "completed"
    return JobOutcome(status, result=result, duration_s=time.perf_counter() - start)


def check_device_option(device: str | None, option: str = "--device") -> None:
    """Refuse an unknown or absent device before a job is recorded (one line naming the option)."""
    from embridge.core.device import resolve_device
    from embridge.core.errors import DeviceError, InputError, UnknownDeviceError, UsageError

    try:
        resolve_device(device)
    except UnknownDeviceError as exc:  # a name no machine has is misuse (status 2); a GPU this one lacks is not
        raise UsageError(option, str(exc)) from None
    except DeviceError as exc:
        raise InputError(option, str(exc)) from None
    except (RuntimeError, ValueError):  # torch's own parse of 'cuda:x'
        raise UsageError(option, f"unknown device '{device}': use auto, cpu, cuda, cuda:N or mps") from None


def _finish_quietly(ws: Any, run_id: int, status: str, error: str, record: dict[str, Any], began: float) -> None:
    """Record how a run ended without hiding why: if even that write fails (a full disk), the run
    stays 'running' and reads as interrupted once this process is gone."""
    try:
        ws.finish_run(run_id, status, error=error, metrics=record.get("metrics"),
                      duration_s=round(time.perf_counter() - began, 3))
    except EmbridgeError:
        pass


class JobRecord(dict):
    """The record a job fills (``metrics`` and fields to store; a stored run is read back as
    :class:`embridge.core.run_record.RunRecord`). :meth:`complete` marks its run completed
    at once, so a job can do it inside the transaction that stores its result: the result and the run's
    status then commit together, or neither does (a full disk at the commit left a stored report under a
    run that read 'interrupted')."""

    def __init__(self, complete: Callable[[], None], **fields: Any) -> None:
        super().__init__(**fields)
        self._complete = complete
        self.completed = False

    def complete(self) -> None:
        self._complete()
        self.completed = True


@contextmanager
def recorded_run(ws: Any, kind: str, method: str | None = None, config: dict | None = None) -> Iterator[JobRecord]:
    """Record a job as a workspace run; fill the yielded record with ``metrics``/fields to store."""
    with stop_signals.job_scope():
        yield from _recorded(ws, kind, method, config)


def _recorded(ws: Any, kind: str, method: str | None, config: dict | None) -> Iterator[JobRecord]:
    state = data_state(ws) if kind in MEASURED_KINDS else None  # the data its numbers are measured on
    run_id = ws.start_run(kind, method, config)
    began = time.perf_counter()  # the run's duration to the millisecond, not the seconds of its timestamps

    def complete() -> None:
        fields = {k: v for k, v in record.items() if k in ("device", "epochs")}
        if state is not None and isinstance(record.get("metrics"), dict):
            record["metrics"][DATA_STATE] = state.to_json()
        ws.finish_run(run_id, record.get("status", "completed"), metrics=record.get("metrics"),
                      error=record.get("error"), duration_s=round(time.perf_counter() - began, 3), **fields)

    record = JobRecord(complete, run_id=run_id)
    try:
        yield record
    except Cancelled as exc:
        _finish_quietly(ws, run_id, "cancelled", str(exc), record, began)
        raise
    except KeyboardInterrupt as exc:  # Ctrl-C (SIGINT) is the user stopping the job, as the app's Cancel is
        _finish_quietly(ws, run_id, "cancelled", TERMINATED_RUN if str(exc) == TERMINATED else INTERRUPTED, record, began)
        raise
    except OSError as exc:  # a full disk or an unwritable folder: a user-facing error naming the file
        from pathlib import Path

        from embridge.core.store.files import disk_error

        error = disk_error(exc, Path(exc.filename or ws.root), f"finish the {kind} run")
        _finish_quietly(ws, run_id, "failed", str(error), record, began)
        raise error from exc
    except BaseException as exc:
        _finish_quietly(ws, run_id, "failed", f"{exc}" or type(exc).__name__, record, began)
        raise
    if not record.completed:
        record.complete()
