"""One migration at a time into a collection of a local store.

Two migrations writing one shadow would interleave their batches and checkpoints (the checkpoint of
one records points the other wrote, pending marks are overwritten), so the second is refused while
the first runs. The lock is an exclusive ``flock`` on a file beside the checkpoint; the kernel drops
it when the holder exits, even on ``kill -9``, so a dead migration never leaves the collection locked.
Stores without a local folder (servers) take no lock here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from embridge.core.connectors.connector import Connector, VectorStoreError
from embridge.core.store.file_lock import exclusive_lock


@contextmanager
def job_lock(store: Connector, key: str) -> Iterator[None]:
    """Hold the lock of job ``key`` on ``store`` for the block; refuse at once when another process holds it."""
    if store.state_dir() is None:
        yield
        return

    def busy() -> Exception:
        return VectorStoreError(f"{store.describe()}: another migration is writing {store.uri.raw}; let it "
                                "finish (or stop it), then run this one again to verify or resume")

    with exclusive_lock(store._state_file(key).with_suffix(".lock"), busy):
        yield
