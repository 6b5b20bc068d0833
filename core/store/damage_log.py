"""Damaged vector sets a command passed over, said once on stderr by the command line.

A set whose id list is gone or changed cannot say which items it holds, so readers count its items as
holding no vectors of its model (``embed`` embeds them again, and the new set is read instead) rather
than refuse every command for good; each one passed over is noted here and the command line prints
the notes as WARNING lines when the command ends, so the smaller sample is never a silent one. The
first note of a set is also a warning of the ``embridge`` logger, which the desktop app shows in its
log (the app runs the same readers in-process and has no stderr to print to).
"""

from __future__ import annotations

import logging

_notes: dict[str, str] = {}
log = logging.getLogger("embridge.store")
log.addHandler(logging.NullHandler())  # the command line prints its own WARNING lines: not twice by logging's


def note(what: str, problem: str) -> None:
    """Remember that ``what`` (a vector set) was passed over, and why (logged the first time)."""
    if what not in _notes:
        _notes[what] = problem
        log.warning(line(what, problem))


def line(what: str, problem: str) -> str:
    return f"{what} was passed over: {problem}"


def current() -> list[str]:
    """The notes so far, as lines, kept (the app repeats them beside a failed job's error, as the command
    line prints them after its error line)."""
    return [line(what, problem) for what, problem in _notes.items()]


def take() -> list[str]:
    """The notes so far, as lines, and forget them."""
    lines = current()
    _notes.clear()
    return lines
