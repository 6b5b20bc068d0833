"""One writer at a time on an output: a non-blocking ``flock`` held on a lock file beside it.

The holder removes the lock file as it lets go (still holding the lock, so nobody else has it
then); a process that locked a file already removed this way locks the new one instead, so two
processes can never both believe they hold it. A killed holder's lock is released by the kernel.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def exclusive_lock(lock_path: Path, busy: Callable[[], Exception]) -> Iterator[None]:
    """Hold ``lock_path`` for the block; raise ``busy()`` at once when another process holds it."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise busy() from None
        try:
            current = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)  # the previous holder removed it as it let go: lock the new one
    try:
        yield
    finally:
        lock_path.unlink(missing_ok=True)
        os.close(fd)
