"""Residual MLP layers: new->old ``mlp``, the ``bct`` head and the old->new ``fct`` transform.

All three are an affine skip (started from the closed-form ridge fit) plus a GELU MLP branch whose
last layer starts at zero, so training begins exactly at the affine solution and only has to learn
the non-linear residual. The branch sees standardised inputs (training mean and scale stored as
buffers) because raw embeddings share a large common mean.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from embridge.core.adapters.adapter import Adapter, as_tensor
from embridge.core.adapters.closed_form import LinearSolution


class ResidualMLP(Adapter):
    """y = x @ W + b + MLP((x - shift) / scale), hidden width ``hidden``, GELU."""

    def __init__(self, kind: str, direction: str, in_dim: int, out_dim: int, hidden: int = 512) -> None:
        super().__init__(kind, direction, in_dim, out_dim)
        self.hidden = int(hidden)
        self.skip = nn.Linear(in_dim, out_dim)
        self.fc1 = nn.Linear(in_dim, self.hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(self.hidden, out_dim)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)
        self.register_buffer("input_shift", torch.zeros(in_dim))
        self.register_buffer("input_scale", torch.ones(in_dim))

    def config(self) -> dict[str, Any]:
        return {**super().config(), "hidden": self.hidden}

    def init_from_data(self, inputs: np.ndarray, skip: LinearSolution) -> None:
        """Set the skip to a closed-form fit and the branch's input standardisation from data."""
        x = np.asarray(inputs, dtype=np.float64)
        with torch.no_grad():
            self.skip.weight.copy_(as_tensor(skip.weight.T))
            self.skip.bias.copy_(as_tensor(skip.bias))
            self.input_shift.copy_(as_tensor(x.mean(axis=0)))
            self.input_scale.copy_(as_tensor(np.maximum(x.std(axis=0), 1e-6)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.input_shift) / self.input_scale
        return self.skip(x) + self.fc2(self.act(self.fc1(z)))


class MLPAdapter(ResidualMLP):
    """new -> old residual MLP (Drift-Adapter's MLP)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 512) -> None:
        super().__init__("mlp", "backward", in_dim, out_dim, hidden)


class BCTAdapter(ResidualMLP):
    """A head on new vectors whose outputs live in the old space (trained with an influence loss)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 512) -> None:
        super().__init__("bct", "backward", in_dim, out_dim, hidden)


class FCTAdapter(ResidualMLP):
    """old (+ optional side information) -> new gallery transform.

    The input is the old vector with ``side_dim`` side-information columns appended, so
    ``in_dim = old_dim + side_dim``; :func:`embridge.core.adapters.adapt_gallery` does the concatenation.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 512, side_dim: int = 0) -> None:
        super().__init__("fct", "forward", in_dim, out_dim, hidden)
        if not 0 <= side_dim < in_dim:
            raise ValueError(f"side_dim {side_dim} must be smaller than in_dim {in_dim}")
        self.side_dim = int(side_dim)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "side_dim": self.side_dim}
