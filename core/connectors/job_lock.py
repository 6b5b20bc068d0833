"""One migration at a time into a collection of a local store or a PostgreSQL table.

Two migrations writing one shadow would interleave their batches and checkpoints (the checkpoint of
one records points the other wrote, pending marks are overwritten), so the second is refused while
the first runs. The lock is an exclusive ``flock`` on a file beside the checkpoint; the kernel drops
it when the holder exits, even on ``kill -9``, so a dead migration never leaves the collection locked.
A store without a local folder takes its server's own lock where it has one (a PostgreSQL session
advisory lock, which the server drops with the session); other servers take none here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from embridge.core.connectors.connector import Connector, VectorStoreError
from embridge.core.store.file_lock import exclusive_lock


@contextmanager
def job_lock(store: Connector, key: str) -> Iterator[None]:
    """Hold the lock of job ``key`` on ``store`` for the block; refuse at once when another process holds it."""
    def busy() -> Exception:
        return VectorStoreError(f"{store.describe()}: another migration is writing {store.uri.shown}; let it "
                                "finish (or stop it), then run this one again to verify or resume")

    if store.state_dir() is None:
        held = store.server_lock(key)
        if held is False:
            raise busy()
        yield  # on an error or Ctrl-C the connection may be mid-command: the lock ends with its session
        if held:
            store.server_unlock(key)
        return
    with exclusive_lock(store._state_file(key).with_suffix(".lock"), busy):
        yield
