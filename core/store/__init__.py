"""Workspace store: SQLite metadata plus memmapped vector files, crash-safe and versioned.

``Workspace`` is imported on first use, so the file helpers of this package (locks, atomic writes,
vector matrices) serve code that never opens a workspace, such as ``bundle apply`` on a deployment
machine, without SQLite's libraries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from embridge.core.store.workspace import Workspace

__all__ = ["Workspace"]


def __getattr__(name: str) -> Any:
    if name == "Workspace":
        from embridge.core.store.workspace import Workspace

        return Workspace
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
