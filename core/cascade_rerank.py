"""The one rule for whether a cascade re-ranks recalled items by their stored new vectors.

Read from an adapter's config, a plan's alternative, a report's or a bundle manifest's serving
method; torch-free, so a bundle's README and summary can apply it where torch is absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def reranks_by_new_vectors(config: Mapping[str, Any] | None) -> bool:
    """Yes unless the mapping says ``new_vectors: false``, as every cascade did before the setting existed."""
    return (config or {}).get("new_vectors") is not False
