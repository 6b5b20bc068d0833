"""One process at a time imports a given store into a workspace.

A second import of the same store running beside the first would take the first one's fresh items for
points seen twice in the collection, and its clean-up (a refused import stores nothing) would remove
those items from under the vectors the first one goes on to store. The lock is an exclusive ``flock``
on a file in the workspace's folder of partial vector files; the kernel drops it when its holder
exits, even on ``kill -9``, so an interrupted import never leaves the store locked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from embridge.core.errors import WorkspaceBusyError
from embridge.core.store.file_lock import HeldLock
from embridge.core.store.files import disk_error


@contextmanager
def one_import_of(root: Path, uri: str, store_key: str) -> Iterator[None]:
    """Hold the lock of importing ``uri`` into the workspace at ``root``; refuse at once when it is held.
    ``store_key``: one spelling of the store and collection (``db/`` and ``db`` are one store)."""
    key = hashlib.sha256(store_key.encode()).hexdigest()[:16]
    lock = Path(root) / "vectors" / ".partial" / f"import-from-store-{key}.lock"

    def busy() -> Exception:
        return WorkspaceBusyError(f"{root}: the workspace is busy (another process is importing {uri}); try "
                                  "again when it has finished")

    try:
        held = HeldLock(lock, busy)
    except OSError as exc:
        raise disk_error(exc, lock.parent, "start the import") from exc
    try:
        yield
    finally:
        held.release()
