"""Upgrade bundles: export, verify, inspect, load and apply (see ARCHITECTURE.md, "Upgrade bundle").

``load_bundle``, ``verify_bundle`` and ``apply_bundle`` need only torch and numpy at run time;
``export_bundle`` and ``compose_adapters`` use the workspace and the adapter code. Importing this
package loads neither: names resolve on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "BundleLimits": "core.bundle.archive",
    "open_bundle": "core.bundle.archive",
    "FORMAT_VERSION": "core.bundle.manifest",
    "LoadedBundle": "core.bundle.runtime",
    "load_bundle": "core.bundle.runtime",
    "verify_bundle": "core.bundle.runtime",
    "inspect_bundle": "core.bundle.summary",
    "bundle_text": "core.bundle.summary",
    "apply_bundle": "core.bundle.apply",
    "export_bundle": "core.bundle.export",
    "compose_adapters": "core.bundle.deploy",
    "deploy_module": "core.bundle.deploy",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'core.bundle' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
