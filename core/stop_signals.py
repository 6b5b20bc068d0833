"""A job's result and its run record change together, even when Ctrl-C or SIGTERM lands between them.

A recorded job (:func:`embridge.core.jobs.recorded_run`) stores its result (a vector set, an adapter,
a report, a bundle) in one transaction, then marks its run completed. A stop signal delivered between
the two left the result stored under a run marked cancelled. So, inside a job's scope, the stop
signals are held just before the result's commit until the run is marked: their handlers are
swapped for one that notes the signal (Python runs every handler in the main thread, whichever
thread the kernel picked, so a thread mask would not do), and a noted stop is raised again once the
job has completed, as a stop after the work. Outside a job's scope, or off the main thread (the
desktop app's workers), nothing is held.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_scopes = 0
_owners = 0
_saved: dict[int, Any] | None = None  # the handlers replaced while held
_pending: list[int] = []


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def job_scope() -> Iterator[None]:
    """A recorded job: a result committed inside holds the stop signals until the scope ends."""
    global _scopes
    if not _main_thread():
        yield
        return
    _scopes += 1
    try:
        yield
    finally:
        _scopes -= 1
        if not _scopes and not _owners:
            release()


@contextmanager
def held_until_exit() -> Iterator[None]:
    """The command line's whole command: held signals are released when it ends, not when its job does,
    so a stop arriving after the result was stored never turns the finished command into a failed one."""
    global _owners
    if not _main_thread():
        yield
        return
    _owners += 1
    try:
        yield
    finally:
        _owners -= 1
        if not _owners and not _scopes:
            release()


def hold() -> None:
    """Hold the stop signals now (before a result's commit) if a job scope is open on this thread."""
    global _saved
    if _scopes and _saved is None and _main_thread():
        _saved = {sig: signal.signal(sig, _note) for sig in STOP_SIGNALS}


def _note(signum: int, frame: Any) -> None:
    _pending.append(signum)


def release() -> None:
    """Put back the handlers :func:`hold` replaced, then raise any stop that arrived meanwhile (a
    handler the program set since, e.g. to ignore late stops, is kept, and decides)."""
    global _saved
    if _saved is None or not _main_thread():
        return
    saved, _saved = _saved, None
    for sig, handler in saved.items():
        if signal.getsignal(sig) is _note:
            signal.signal(sig, handler)
    pending, _pending[:] = list(dict.fromkeys(_pending)), []
    for sig in pending:
        signal.raise_signal(sig)
