"""One writer at a time on an output: a non-blocking ``flock`` held on a lock file beside it.

The holder removes the lock file as it lets go (still holding the lock, so nobody else has it
then); a process that locked a file already removed this way locks the new one instead, so two
processes can never both believe they hold it. A killed holder's lock is released by the kernel.
A folder made for the lock is removed again when it is left empty, so a refused job leaves nothing
behind.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from embridge.core.store.files import disk_error


class HeldLock:
    """An exclusive lock on ``lock_path`` taken at construction (``busy()`` is raised at once when
    another process holds it) and let go by :meth:`release`, which may be called more than once."""

    def __init__(self, lock_path: Path, busy: Callable[[], Exception]) -> None:
        self.path = lock_path
        self._made_folder = not lock_path.parent.exists()
        while True:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except FileNotFoundError:  # another holder removed the empty folder just now
                continue
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
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        self.path.unlink(missing_ok=True)
        os.close(fd)
        if self._made_folder:
            try:
                self.path.parent.rmdir()
            except OSError:  # it holds a checkpoint or another job's lock
                pass

    def __del__(self) -> None:  # a holder dropped without release (an error path) lets go here
        try:
            self.release()
        except Exception:  # noqa: BLE001 (interpreter shutdown: the kernel lets go of the lock anyway)
            pass


@contextmanager
def exclusive_lock(lock_path: Path, busy: Callable[[], Exception], doing: str | None = None) -> Iterator[None]:
    """Hold ``lock_path`` for the block; raise ``busy()`` at once when another process holds it. With
    ``doing`` (what the lock is taken to do), a folder the lock cannot be made in is one readable error
    naming that folder (a full disk as such), not an OSError."""
    try:
        lock = HeldLock(lock_path, busy)
    except OSError as exc:
        if doing is None:
            raise
        raise disk_error(exc, lock_path.parent, doing) from exc
    try:
        yield
    finally:
        lock.release()
