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

from embridge.core.connectors.connector import StoreURI
from embridge.core.errors import WorkspaceBusyError
from embridge.core.store.file_lock import exclusive_lock


@contextmanager
def one_import_of(root: Path, uri: StoreURI, collection: str) -> Iterator[None]:
    """Hold the lock of importing ``collection`` of the store at ``uri`` into the workspace at ``root``;
    refuse at once when it is held. The lock is keyed by the store's place, so every spelling of one
    store (``db/``, ``//db``, a link, a host in capitals) takes the same lock."""
    key = hashlib.sha256("\0".join((*uri.place(), collection)).encode()).hexdigest()[:16]
    lock = Path(root) / "vectors" / ".partial" / f"import-from-store-{key}.lock"

    def busy() -> Exception:
        return WorkspaceBusyError(f"{root}: the workspace is busy (another process is importing {uri.shown}); try "
                                  "again when it has finished")

    with exclusive_lock(lock, busy, "start the import"):
        yield
