"""Built-in embedder architectures for ``state_dict`` checkpoints, and classifier-head access.

A user who trained one of these (or the demo) can hand us plain weights instead of a TorchScript
file. Each embedder may carry a ``classifier`` head: ``forward`` returns the embedding, never the
logits, but BCT reuses the old model's classifier weights, found under ``classifier.weight``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from embridge.core.errors import CheckpointError
from embridge.core.store.files import atomic_target, torch_bytes

CLASSIFIER_KEY = "classifier.weight"


class MLPEmbedder(nn.Module):
    """Vector input -> ReLU MLP -> embedding; optional linear classifier on the embedding."""

    def __init__(self, input_dim: int, out_dim: int, hidden: int | tuple[int, ...] | list[int] = (),
                 num_classes: int = 0) -> None:
        super().__init__()
        widths = [hidden] if isinstance(hidden, int) else list(hidden)
        layers: list[nn.Module] = []
        prev = input_dim
        for width in widths:
            layers += [nn.Linear(prev, width), nn.ReLU()]
            prev = width
        layers.append(nn.Linear(prev, out_dim))
        self.body = nn.Sequential(*layers)
        self.classifier = nn.Linear(out_dim, num_classes) if num_classes else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.flatten(1))


class SmallCNNEmbedder(nn.Module):
    """Conv(3x3)-ReLU-MaxPool blocks, global average pool, linear embedding; optional classifier."""

    def __init__(self, out_dim: int, in_channels: int = 1, height: int = 28, width: int = 28,
                 channels: tuple[int, ...] | list[int] = (16, 32), num_classes: int = 0) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        prev = in_channels
        for ch in channels:
            blocks += [nn.Conv2d(prev, ch, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            prev = ch
        self.features = nn.Sequential(*blocks)
        self.project = nn.Linear(prev, out_dim)
        self.classifier = nn.Linear(out_dim, num_classes) if num_classes else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.features(x).mean(dim=(2, 3)))


@dataclass(frozen=True)
class Architecture:
    """How to build one built-in embedder and which input shape its config implies."""

    builder: Callable[..., nn.Module]
    required: tuple[str, ...]
    input_shape: Callable[[dict[str, Any]], tuple[int, ...]]


ARCHITECTURES: dict[str, Architecture] = {
    "mlp": Architecture(MLPEmbedder, ("input_dim", "out_dim"), lambda c: (int(c["input_dim"]),)),
    "small_cnn": Architecture(
        SmallCNNEmbedder, ("out_dim",),
        lambda c: (int(c.get("in_channels", 1)), int(c.get("height", 28)), int(c.get("width", 28)))),
}


def build_model(arch: str, config: Mapping[str, Any], source: object = None,
                device: str | None = None) -> tuple[nn.Module, tuple[int, ...]]:
    """Instantiate a built-in architecture; returns the module and its input shape (no batch).

    ``device="meta"`` builds shapes without allocating memory (to check a config before building).
    """
    if arch not in ARCHITECTURES:
        raise CheckpointError(source, f"unknown architecture '{arch}'; built-in ones: {', '.join(ARCHITECTURES)}")
    info = ARCHITECTURES[arch]
    missing = [k for k in info.required if k not in config]
    if missing:
        raise CheckpointError(source, f"architecture '{arch}' needs config keys {', '.join(missing)}")
    _check_sizes(arch, config, source)
    try:
        if device is None:
            module = info.builder(**dict(config))
        else:
            with torch.device(device):
                module = info.builder(**dict(config))
        shape = info.input_shape(dict(config))
    except (TypeError, ValueError, RuntimeError) as exc:  # torch's C++ errors carry their stack: the first line
        raise CheckpointError(source, f"invalid config for architecture '{arch}': "
                                      f"{(str(exc).strip().splitlines() or [type(exc).__name__])[0]}") from exc
    return module, shape


MAX_SIZE = 1 << 24  # wider than any embedder's layer: a larger number is a slip, refused before torch sees it


def _check_sizes(arch: str, config: Mapping[str, Any], source: object) -> None:
    """Every config value of a built-in architecture is a size (a list of them for its layers): a whole
    number from 0 to MAX_SIZE, named by its key when it is not, instead of torch's refusal of a tensor shape."""
    for key, value in config.items():
        if value is None or value is False:  # what an earlier version took as none (num_classes: no classifier)
            continue
        for size in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_SIZE:
                shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
                raise CheckpointError(source, f"invalid config for architecture '{arch}': {key} must be a whole "
                                              f"number from 0 to {MAX_SIZE:,} (or a list of them), not {shown}")


def save_checkpoint(path: str | Path, model: nn.Module | Mapping[str, torch.Tensor], arch: str,
                    arch_config: Mapping[str, Any], modality: str | None = None) -> None:
    """Write the format-1 ``state_dict`` checkpoint (temp file + rename, so never half-written)."""
    state = model.state_dict() if isinstance(model, nn.Module) else dict(model)
    payload: dict[str, Any] = {"format": 1, "arch": arch, "arch_config": dict(arch_config),
                               "state_dict": {k: v.detach().cpu() for k, v in state.items()}}
    if modality:
        payload["modality"] = modality
    data = torch_bytes(payload)
    with atomic_target(path) as tmp:
        tmp.write_bytes(data)


def classifier_weights(model_or_state: Any) -> np.ndarray | None:
    """The classifier head's weight matrix (classes x embedding dim) as float32, or None.

    Accepts a module (built-in, TorchScript or exported), a state dict, a format-1 checkpoint dict,
    or a loaded model (anything with a ``module`` attribute).
    """
    state: Mapping[str, Any] | None
    if isinstance(model_or_state, nn.Module):
        state = model_or_state.state_dict()
    elif isinstance(model_or_state, Mapping):
        inner = model_or_state.get("state_dict")
        state = inner if isinstance(inner, Mapping) else model_or_state
    elif hasattr(model_or_state, "module"):
        return classifier_weights(model_or_state.module)
    else:
        return None
    weight = state.get(CLASSIFIER_KEY)
    if not isinstance(weight, torch.Tensor) or weight.ndim != 2 or weight.numel() == 0:
        return None
    out = weight.detach().float().cpu().numpy()
    return out if np.isfinite(out).all() else None


def count_params(module: Any) -> int:
    params = getattr(module, "parameters", None)
    return int(sum(math.prod(p.shape) for p in params())) if callable(params) else 0
