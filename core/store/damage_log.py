"""Damaged vector sets a command passed over, said once on stderr by the command line.

A set whose id list is gone or changed cannot say which items it holds, so readers count its items as
holding no vectors of its model (``embed`` embeds them again, and the new set is read instead) rather
than refuse every command for good; each one passed over is noted here and the command line prints
the notes as WARNING lines when the command ends, so the smaller sample is never a silent one.
"""

from __future__ import annotations

_notes: dict[str, str] = {}


def note(what: str, problem: str) -> None:
    """Remember that ``what`` (a vector set) was passed over, and why."""
    _notes.setdefault(what, problem)


def take() -> list[str]:
    """The notes so far, as lines, and forget them."""
    lines = [f"{what} was passed over: {problem}" for what, problem in _notes.items()]
    _notes.clear()
    return lines
