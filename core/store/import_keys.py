"""The names a store import keeps its unfinished work under, derived from its recorded source.

The import (:mod:`embridge.core.connectors.gallery_import`) and the schema step that rewrites recorded
sources (:mod:`embridge.core.store.schema`) derive them alike, so a source recorded again is found again.
"""

from __future__ import annotations

import hashlib

RESUME_META = "import-from-store:"  # + a hash of the source: the settings of its unfinished import


def _digest(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def resume_meta_key(source: str) -> str:
    """The meta key holding the settings of an unfinished import of ``source``."""
    return RESUME_META + _digest(source)


def partial_vectors_key(source: str) -> str:
    """The name of an unfinished import's vector files under ``vectors/.partial/``."""
    return f"store-{_digest(source)}"
