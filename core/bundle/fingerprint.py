"""One identity of a bundle's layer for resumable jobs and the space tag of migrated points.

Two exports of one training run differ in their zip, in the TorchScript file (it carries a random
serialisation id) and in the safetensors header's key order, yet write the same vectors. The
fingerprint therefore hashes what the outputs depend on: the layer's tensors by content, its kind,
widths and normalisation (a format-1 bundle, without tensors: its verified layer file).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from embridge.core.bundle.archive import open_bundle
from embridge.core.bundle.manifest import PORTABLE_FILE
from embridge.core.bundle.portable import read_tensors


def layer_fingerprint(loaded: Any) -> str:
    """sha256 of a verified bundle's layer (a :class:`~embridge.core.bundle.runtime.LoadedBundle`)."""
    manifest = loaded.manifest
    adapter = manifest["adapter"]
    ident: dict[str, Any] = {"kind": adapter.get("kind"), "in_dim": adapter.get("in_dim"),
                             "out_dim": adapter.get("out_dim"), "normalisation": manifest.get("normalisation")}
    with open_bundle(loaded.path) as src:
        if PORTABLE_FILE in src.names():
            digest = hashlib.sha256()
            for name, tensor in sorted(read_tensors(src).items()):
                values = np.ascontiguousarray(tensor)
                digest.update(f"{name}|{values.dtype.str}|{values.shape}|".encode())
                digest.update(values.tobytes())
            ident["tensors"] = digest.hexdigest()
        else:
            ident["layer"] = manifest["files"][adapter["file"]]["sha256"]
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()
