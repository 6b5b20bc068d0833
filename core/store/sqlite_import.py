"""sqlite-utils, imported without pandas.

sqlite-utils imports pandas whenever it is installed, only to map ``pandas.Timestamp`` to a column
type, and the workspace never stores a pandas value. The store extras install pandas, and importing
it took 0.28 s of every command that opens a workspace (most of a bundle export or an attach of a
20k-row sample). While sqlite-utils loads, a finder refuses pandas to imports made from its own
module only, so another thread importing pandas meanwhile gets it; a process that already loaded
pandas keeps using it.
"""

from __future__ import annotations

import importlib
import importlib.abc
import sys
import threading
from types import ModuleType

_lock = threading.Lock()
_IMPORTER = "sqlite_utils.db"
_loaded: ModuleType | None = None  # set once the import has finished


class _PandasHiddenFromSqliteUtils(importlib.abc.MetaPathFinder):
    """Refuses ``pandas`` when the import comes from sqlite-utils' module (in the importing thread)."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
        if fullname != "pandas":
            return None
        frame = sys._getframe(1)
        while frame is not None:
            if frame.f_globals.get("__name__") == _IMPORTER:
                raise ModuleNotFoundError("pandas is not needed by the workspace", name=fullname)
            frame = frame.f_back
        return None


def sqlite_utils() -> ModuleType:
    """The ``sqlite_utils`` module, loaded on first use without pulling pandas in. Another thread asking
    while it loads waits for it: ``sys.modules`` holds a module from the start of its import, before it
    has its names (a workspace opened during the app's start-up job found no ``Database``)."""
    global _loaded
    if _loaded is None:
        with _lock:
            if _loaded is None:
                finder = _PandasHiddenFromSqliteUtils()
                sys.meta_path.insert(0, finder)
                try:
                    _loaded = importlib.import_module("sqlite_utils")
                finally:
                    sys.meta_path.remove(finder)
    return _loaded
