"""One demo build per folder, and the other commands told that one is running.

``embridge demo`` holds an exclusive ``flock`` on the folder it builds in for the whole build (the kernel
lets go when the process dies). A second demo on the folder is refused at once instead of taking the
first build's unfinished marker for a killed build and removing its files, and a command that opens
the folder meanwhile says a demo is building it, instead of advising a command that would clear it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from embridge.core.errors import StoreError

_OWN: dict[str, int] = {}  # folders this process builds a demo in -> the locked descriptor


def lock_demo_folder(root: Path) -> None:
    """Hold the folder (an existing one) for this process's demo build, or refuse in one line."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreError(f"{root}: an 'embridge demo' is building this folder now (another process); wait for it "
                         "to finish, or choose another folder") from None
    _OWN[os.path.abspath(root)] = fd


def unlock_demo_folder(root: Path) -> None:
    fd = _OWN.pop(os.path.abspath(root), None)
    if fd is not None:
        os.close(fd)


def demo_building(root: Path) -> bool:
    """Whether another process builds a demo in ``root`` now."""
    if os.path.abspath(root) in _OWN:
        return False
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def refuse_while_building(root: Path) -> None:
    if demo_building(root):
        raise StoreError(f"{root}: an 'embridge demo' is building this workspace now (another process); wait for "
                         "it to finish")
