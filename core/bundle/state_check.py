"""A bundle's training checkpoint (``adapter_state.pt``) must be the layer its ``adapter.pt`` runs.

No runtime reads the checkpoint, so the probes never exercised it: a checkpoint swapped for another
layer's, with every hash rewritten, passed ``verify``, while Embridge itself (and anyone continuing the
training) would load it. With torch present, the checkpoint is rebuilt as export built ``adapter.pt``
and must reproduce the probes too. Imports torch.
"""

from __future__ import annotations

import io
from typing import Any

from embridge.core.bundle.archive import BundleSource
from embridge.core.errors import BundleError, first_line


def check_state_file(src: BundleSource, manifest: dict[str, Any], name: str) -> None:
    """Rebuild the deploy module from checkpoint ``name`` and re-run the probes through it."""
    import torch

    from embridge.core.adapters.adapter_file import adapter_from_payload
    from embridge.core.bundle.deploy import compose_adapters, deploy_module
    from embridge.core.bundle.runtime import check_probes, torch_engine

    try:
        payload = torch.load(io.BytesIO(src.read_bytes(name)), map_location="cpu", weights_only=True)
        if isinstance(payload, dict) and payload.get("kind") == "chain":
            steps = [adapter_from_payload(step, name) for step in payload["steps"]]
            module = deploy_module(steps[0])
            for step, normalise in zip(steps[1:], payload["normalise_between"], strict=True):
                module = compose_adapters(module, step, normalise_between=bool(normalise))
        else:
            module = deploy_module(adapter_from_payload(payload, name))
    except BundleError:
        raise
    except Exception as exc:  # a foreign or cut file: torch and the rebuild raise many types
        raise BundleError(f"{src.path}: {name} is not a readable Embridge layer checkpoint "
                          f"({first_line(exc)})") from exc
    try:
        check_probes(src, manifest, torch_engine(module), "torch")
    except BundleError as exc:
        raise BundleError(f"{src.path}: {name} is not the layer adapter.pt runs (it does not reproduce "
                          "probes/outputs.npy): the checkpoint changed after export") from exc
