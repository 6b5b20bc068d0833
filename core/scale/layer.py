"""The one place a worker loads a bundle's layer.

Every engine (the local loop and each Ray worker) calls :func:`loaded_layer`, which loads the bundle
with its torch-free runtime when it has one (:mod:`embridge.core.bundle.runtime`, ``auto``): numpy for the
linear kinds, onnxruntime for the others, so a worker transforming with a linear layer never imports
torch. A worker process loads (and verifies) a bundle once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from embridge.core.errors import BundleError

_LOADED: dict[tuple[str, int, int], Any] = {}


def loaded_layer(bundle: str | Path) -> Any:
    """The verified :class:`embridge.core.bundle.runtime.LoadedBundle` of a one-input layer (cached per process)."""
    from embridge.core.bundle.runtime import load_bundle

    path = Path(bundle).resolve()
    stat = path.stat()
    key = (str(path), int(stat.st_mtime_ns), int(stat.st_size))
    if key not in _LOADED:
        loaded = load_bundle(path)
        if loaded.needs_old:
            raise BundleError(f"{bundle}: this layer needs two inputs ({', '.join(loaded.inputs)}); a dataset "
                              "transform feeds it one vector column")
        _LOADED[key] = loaded
    return _LOADED[key]


def layer_fingerprint(bundle: str | Path) -> str:
    """The layer's identity (:func:`embridge.core.bundle.fingerprint.layer_fingerprint`): a re-export of the
    same layer resumes a job, another layer does not."""
    from embridge.core.bundle.fingerprint import layer_fingerprint as of_loaded

    return of_loaded(loaded_layer(bundle))
