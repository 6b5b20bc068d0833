"""The shared interface of every compatibility layer.

An adapter is a small ``torch.nn.Module`` that maps vectors of one model's space towards
another's. ``direction`` says which way: ``backward`` (new -> old: adapted new queries search the
untouched old gallery), ``forward`` (old -> new: the stored gallery is transformed), ``joint``
(a new head whose first ``old_dims`` outputs are old-compatible, see :class:`BT2Adapter`).
``config()`` holds everything needed to rebuild the module before loading its ``state_dict``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

DIRECTIONS = ("backward", "forward", "joint")


class Adapter(nn.Module):
    """Base class: records kind, direction and dims; subclasses implement ``forward``."""

    def __init__(self, kind: str, direction: str, in_dim: int, out_dim: int) -> None:
        super().__init__()
        if direction not in DIRECTIONS:
            raise ValueError(f"unknown direction {direction!r}")
        if in_dim <= 0 or out_dim <= 0:
            raise ValueError(f"dims must be positive, got in_dim={in_dim}, out_dim={out_dim}")
        self.kind = kind
        self.direction = direction
        self.in_dim = int(in_dim)
        self.out_dim = int(out_dim)

    def config(self) -> dict[str, Any]:
        """Constructor arguments (plain values) that rebuild an identical, untrained module."""
        return {"in_dim": self.in_dim, "out_dim": self.out_dim}

    def prepare_training(self) -> None:
        """Hook run before gradient training (e.g. attach a parametrisation)."""

    def finish_training(self) -> None:
        """Hook run after training so the module holds plain tensors again (scriptable, savable)."""

    def plain_state_dict(self) -> dict[str, torch.Tensor]:
        """Detached CPU tensors with parametrised weights replaced by their current values."""
        state = {k: v for k, v in self.state_dict().items() if ".parametrizations." not in k}
        for prefix, module in self.named_modules():
            if parametrize.is_parametrized(module):
                for name in module.parametrizations:
                    state[f"{prefix}.{name}" if prefix else name] = getattr(module, name)
        return {k: v.detach().cpu().clone() for k, v in state.items()}

    def extra_repr(self) -> str:
        return f"kind={self.kind}, direction={self.direction}, in_dim={self.in_dim}, out_dim={self.out_dim}"


def as_tensor(array: Any, like: torch.Tensor | None = None) -> torch.Tensor:
    """A float32 tensor copy of ``array`` (numpy or tensor), on ``like``'s device when given."""
    t = torch.as_tensor(array, dtype=torch.float32).clone()
    return t.to(like.device) if like is not None else t
