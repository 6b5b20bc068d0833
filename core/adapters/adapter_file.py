"""Saving and loading adapters as plain tensors + config, and TorchScript export.

The file is ``torch.save`` of ``{"format": 1, "kind", "config", "state_dict"}`` with only tensors,
dicts, lists, strings and numbers, so it loads with ``torch.load(weights_only=True)``; writes go to
a temporary file in the same folder that is renamed into place.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from embridge.core.adapters.adapter import Adapter
from embridge.core.adapters.registry import build_adapter
from embridge.core.errors import CheckpointError
from embridge.core.store.files import atomic_target, torch_bytes

FORMAT = 1


def adapter_payload(adapter: Adapter) -> dict[str, Any]:
    """The plain dict that :func:`save_adapter` writes (CPU tensors, detached copies)."""
    return {"format": FORMAT, "kind": adapter.kind, "config": adapter.config(),
            "state_dict": adapter.plain_state_dict()}


def plain_copy(adapter: Adapter) -> Adapter:
    """An independent CPU copy in eval mode without parametrisations (deepcopy would share them)."""
    clone = build_adapter(adapter.kind, adapter.config())
    clone.load_state_dict(adapter.plain_state_dict())
    return clone.eval()


def save_adapter(adapter: Adapter, path: str | Path) -> Path:
    """Write ``adapter`` to ``path`` atomically; returns the path."""
    payload = adapter_payload(adapter)
    data = torch_bytes(payload)
    with atomic_target(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def adapter_from_payload(payload: Any, source: str | Path) -> Adapter:
    """Rebuild an adapter from a loaded payload; :class:`CheckpointError` when it does not fit."""
    if not isinstance(payload, dict) or not {"format", "kind", "config", "state_dict"} <= payload.keys():
        raise CheckpointError(source, "not an Embridge adapter file (missing format/kind/config/state_dict)")
    if payload["format"] != FORMAT:
        raise CheckpointError(source, f"adapter file format {payload['format']!r} is not supported (expected {FORMAT})")
    try:
        adapter = build_adapter(str(payload["kind"]), dict(payload["config"]))
        adapter.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(source, f"adapter of kind {payload['kind']!r} cannot be rebuilt: {exc}") from exc
    return adapter.eval()


def load_adapter(path: str | Path) -> Adapter:
    """Load an adapter written by :func:`save_adapter` (safe: ``weights_only=True``)."""
    source = Path(path)
    if not source.is_file():
        raise CheckpointError(source, "adapter file does not exist")
    try:
        payload = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        first_line = (str(exc).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(source, f"cannot read adapter file ({type(exc).__name__}: {first_line})") from exc
    return adapter_from_payload(payload, source)


@contextmanager
def quiet_jit() -> Iterator[None]:
    """TorchScript is the bundle format by design; torch's deprecation notice is not for users."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.", category=DeprecationWarning)
        yield


def script_adapter(adapter: Adapter) -> torch.jit.ScriptModule:
    """A TorchScript copy of ``adapter`` on the CPU (the original is left untouched)."""
    with quiet_jit():
        return torch.jit.script(plain_copy(adapter))


def export_torchscript(adapter: Adapter, path: str | Path) -> Path:
    """Save a TorchScript version that loads with ``torch.jit.load`` alone, atomically."""
    scripted = script_adapter(adapter)

    with quiet_jit():
        data = torch_bytes(scripted, jit=True)
    with atomic_target(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)
