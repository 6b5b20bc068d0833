"""Workspace store: SQLite metadata plus memmapped vector files, crash-safe and versioned."""

from embridge.core.store.workspace import Workspace

__all__ = ["Workspace"]
