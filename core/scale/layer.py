"""The one place a worker loads a bundle's layer.

Every engine (the local loop and each Ray worker) calls :func:`loaded_layer`, which loads the bundle
with its torch-free runtime when it has one (:mod:`embridge.core.bundle.runtime`, ``auto``): numpy for the
linear kinds, onnxruntime for the others, so a worker transforming with a linear layer never imports
torch. A worker process loads (and verifies) a bundle once.
"""

from __future__ import annotations

import hashlib
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


def bundle_fingerprint(bundle: str | Path) -> str:
    """sha256 of the bundle file (or of its files in name order when it is a folder)."""
    path = Path(bundle)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(file.name.encode())
        with open(file, "rb") as fh:
            for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
