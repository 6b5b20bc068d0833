"""Why a model's forward pass failed, in one line: the error a traced program raised, and the input
its first layer takes (the usual cause: rows of another shape than the model was built for)."""

from __future__ import annotations

from typing import Any

import torch

from embridge.core.models.checkpoint_reader import first_line


def first_weight(module: Any) -> torch.Tensor | None:
    """The first linear (2-D) or convolution (4-D) weight, which fixes what input the model takes."""
    named = getattr(module, "named_parameters", None)
    if callable(named):
        for _, weight in named():
            if weight.ndim in (2, 4):
                return weight
    return None


def first_layer_hint(module: Any) -> str:
    """'; its first layer takes 64 input features' (or N-channel images), or '' when it has none."""
    weight = first_weight(module)
    if weight is None:
        return ""
    if weight.ndim == 2:
        return f"; its first layer takes {weight.shape[1]} input features"
    return f"; its first layer takes {weight.shape[1]}-channel images"


def failure_reason(exc: BaseException) -> str:
    """One line on why a forward pass failed; a TorchScript error's last line names the raised error."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if isinstance(exc, torch.jit.Error) or (lines and lines[0].startswith("The following operation failed")):
        return lines[-1][:300] if lines else type(exc).__name__  # a traced program's error says it last
    return first_line(exc)
