"""The one place a worker loads a bundle's layer.

Every engine (the local loop and each Ray worker) calls :func:`load_layer`, so the runtime under it
(today the bundle's verified module through :mod:`core.connectors.transform`) can be swapped for a
torch-free payload without touching the scale-out code. A worker process loads a bundle once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

LayerFn = Callable[[np.ndarray], np.ndarray]

_LOADED: dict[tuple[str, int, int], LayerFn] = {}


def load_layer(bundle: str | Path) -> LayerFn:
    """A float32 rows -> float32 rows function applying the bundle's forward layer (verified on load)."""
    from core.connectors.transform import load_transform

    path = Path(bundle).resolve()
    stat = path.stat()
    key = (str(path), int(stat.st_mtime_ns), int(stat.st_size))
    if key not in _LOADED:
        _LOADED[key] = load_transform(path).apply
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
