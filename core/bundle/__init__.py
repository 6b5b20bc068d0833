"""Upgrade bundles: export, verify, inspect, load and apply (see ARCHITECTURE.md, "Upgrade bundle").

``load_bundle``, ``verify_bundle`` and ``apply_bundle`` need only torch and numpy at run time;
``export_bundle`` and ``compose_adapters`` use the workspace and the adapter code. Importing this
package loads neither: names resolve on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "BundleLimits": "embridge.core.bundle.archive",
    "open_bundle": "embridge.core.bundle.archive",
    "FORMAT_VERSION": "embridge.core.bundle.manifest",
    "LoadedBundle": "embridge.core.bundle.runtime",
    "load_bundle": "embridge.core.bundle.runtime",
    "verify_bundle": "embridge.core.bundle.runtime",
    "inspect_bundle": "embridge.core.bundle.summary",
    "bundle_text": "embridge.core.bundle.summary",
    "apply_bundle": "embridge.core.bundle.transform_file",
    "export_bundle": "embridge.core.bundle.bundle_export",
    "compose_adapters": "embridge.core.bundle.deploy",
    "deploy_module": "embridge.core.bundle.deploy",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'embridge.core.bundle' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
