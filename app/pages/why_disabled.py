"""A disabled button says why in its tooltip; enabled again, it gets its own tooltip back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtWidgets import QAbstractButton

NO_RUNS = "Train a layer on the Train page first."
TRAINING = "A training runs now; cancel it or wait for it to end."
NO_TRAINING = "No training runs now."
REPORTING = "A report is being built; wait for it to end (see Jobs): a second click would build it twice."
PLANNING = "A plan is being made; wait for it to end (see Jobs): a second click would plan twice."
VERIFYING = "The stored files are being checked; wait for it to end (see Jobs)."
VERIFYING_BUNDLE = "A bundle is being verified; wait for it to end (see Jobs)."
BUILDING_DEMO = "A demo workspace is being built; wait for it to end (see Jobs)."
_OWN_TIP = "own_tooltip"  # the tooltip a button was given when it was made, kept as a property


def enable(button: QAbstractButton, why_not: str | None) -> None:
    """Enable ``button`` when ``why_not`` is None, else disable it with ``why_not`` as its tooltip."""
    own = button.property(_OWN_TIP)
    if own is None:
        own = button.toolTip()
        button.setProperty(_OWN_TIP, own)
    button.setEnabled(why_not is None)
    button.setToolTip(own if why_not is None else why_not)


class JobButton:
    """A button that starts one job at a time: greyed with ``busy`` while its job runs (a second click
    would start the same work twice), otherwise as ``idle()`` says (a reason, or None: enabled)."""

    def __init__(self, button: QAbstractButton, busy: str, idle: Callable[[], str | None]) -> None:
        self.button, self.busy, self.idle = button, busy, idle
        self.job: Any = None

    def started(self, job: Any) -> Any:
        """Hold ``job`` (None: it did not start) until it ends; returns it."""
        self.job = job
        if job is not None:
            job.finished.connect(lambda _outcome: self._ended(job))
        self.show()
        return job

    def forget(self) -> None:
        """Another workspace is open: a job still running belongs to the last one (the Jobs panel shows
        it) and keeps this page's button free; its end changes nothing here."""
        self.job = None
        self.show()

    def _ended(self, job: Any) -> None:
        if self.job is job:  # not a job of a workspace since closed, nor one started after it
            self.job = None
            self.show()

    def show(self) -> None:
        enable(self.button, self.idle() or (self.busy if self.job is not None else None))
