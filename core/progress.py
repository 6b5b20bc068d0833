"""Callback conventions shared by every long-running core function.

Long work takes ``on_progress(done, total, info)`` and ``should_stop()``; the app's worker turns
the first into a queued signal and the second into a cancel flag, the CLI prints to stderr. Only
plain Python values go into ``info`` so they can cross a Qt signal unchanged.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from embridge.core.errors import Cancelled

ProgressFn = Callable[[int, int, dict[str, Any]], None]
StopFn = Callable[[], bool]


def no_progress(done: int, total: int, info: dict[str, Any]) -> None:
    """Default progress sink: ignore."""


def never_stop() -> bool:
    """Default stop check: keep going."""
    return False


def check_stop(should_stop: StopFn | None) -> None:
    """Raise :class:`Cancelled` when the caller asked to stop."""
    if should_stop is not None and should_stop():
        raise Cancelled()


_AMBIENT_STOP: ContextVar[StopFn | None] = ContextVar("embridge_ambient_stop", default=None)


@contextmanager
def stop_checks(should_stop: StopFn | None) -> Iterator[None]:
    """Let loops deep in a stage whose functions take no ``should_stop`` (the bootstrap intervals, spread
    over every section of a report) honour the caller's, through :func:`check_ambient_stop`."""
    token = _AMBIENT_STOP.set(should_stop)
    try:
        yield
    finally:
        _AMBIENT_STOP.reset(token)


def check_ambient_stop() -> None:
    """:func:`check_stop` with the ``should_stop`` of the innermost :func:`stop_checks` (none: go on)."""
    check_stop(_AMBIENT_STOP.get())


class Throughput:
    """Items per second and time left of a long loop, as plain values for a progress ``info`` dict."""

    def __init__(self, total: int, done: int = 0) -> None:
        self.total, self.first, self.start = total, done, time.monotonic()

    def info(self, done: int) -> dict[str, float]:
        elapsed = time.monotonic() - self.start
        if done <= self.first or elapsed <= 0:
            return {}
        rate = (done - self.first) / elapsed
        return {"items_per_s": round(rate, 1), "eta_s": round(max(0, self.total - done) / rate, 1)}


def rate_text(info: dict[str, Any]) -> str:
    """ "1234 items/s, ETA 0:42" from a progress info dict, or "" when it holds no rate."""
    rate, eta = info.get("items_per_s"), info.get("eta_s")
    if not isinstance(rate, int | float) or not isinstance(eta, int | float):
        return ""
    minutes, seconds = divmod(int(round(eta)), 60)
    return f"{rate:.0f} items/s, ETA {minutes}:{seconds:02d}"


class StderrProgress:
    """A throttled one-line progress printer for the command line (stderr, never stdout)."""

    def __init__(self, label: str, min_interval: float = 0.5) -> None:
        self.label = label
        self.min_interval = min_interval
        self._last = 0.0
        self._muted = False  # stderr could not be written (a reader that quit, a full disk): progress is not the work

    def __call__(self, done: int, total: int, info: dict[str, Any]) -> None:
        now = time.monotonic()
        if done < total and now - self._last < self.min_interval:
            return
        self._last = now
        stream = sys.stderr
        if stream is None or self._muted:  # windowed frozen apps have no stderr
            return
        extra = " ".join(f"{k}={_fmt(v)}" for k, v in info.items()
                         if isinstance(v, int | float | str) and k not in ("items_per_s", "eta_s"))
        rate = rate_text(info)
        pct = 100.0 * done / total if total else 100.0
        try:
            stream.write(f"{self.label}: {done}/{total} ({pct:.0f}%){' ' + rate if rate else ''} {extra}\n")
            stream.flush()
        except (OSError, ValueError):  # the command's work goes on without its progress lines
            self._muted = True


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
