"""The ``bt2`` / ``oca`` joint head: an orthogonal map of new vectors into a + k dims.

The first ``old_dims`` (= a) outputs are trained to be compatible with the old space; the extra k
outputs are free for what only the new model knows. Because the map is orthogonal (an isometry
when a + k >= the new dim), the new/new geometry is kept. Conventions for callers:

* ``forward(x)`` -> the full (a + k) vector: index a backfilled gallery with it, compare new/new.
* ``to_old(x)`` -> the first a dims: the query vector that searches the untouched old gallery.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import orthogonal

from core.adapters.base import Adapter, as_tensor
from core.adapters.closed_form import ProcrustesSolution


class BT2Adapter(Adapter):
    """y = scale * Q (x - mean_in) + bias, Q with orthonormal columns (or rows if a + k < in_dim)."""

    def __init__(self, in_dim: int, out_dim: int, old_dims: int) -> None:
        super().__init__("bt2", "joint", in_dim, out_dim)
        if not 0 < old_dims <= out_dim:
            raise ValueError(f"old_dims {old_dims} must lie in 1..out_dim ({out_dim})")
        self.old_dims = int(old_dims)
        self.extra_dims = int(out_dim - old_dims)
        self.rotation = nn.Linear(in_dim, out_dim, bias=False)
        self.scale = nn.Parameter(torch.ones(()))
        self.bias = nn.Parameter(torch.zeros(out_dim))
        self.register_buffer("mean_in", torch.zeros(in_dim))

    def config(self) -> dict[str, Any]:
        return {**super().config(), "old_dims": self.old_dims}

    def init_from_procrustes(self, sol: ProcrustesSolution) -> None:
        """Start with the first a outputs at the centred Procrustes fit, the rest orthogonal to it."""
        w = sol.weight.T  # (a x in_dim)
        _, _, vt = np.linalg.svd(w, full_matrices=True)
        rank = min(w.shape)
        complement = vt[rank:]  # rows spanning the directions the old part does not use
        full = np.zeros((self.out_dim, self.in_dim))
        full[: self.old_dims] = w
        extra = min(self.extra_dims, complement.shape[0])
        full[self.old_dims : self.old_dims + extra] = complement[:extra]
        with torch.no_grad():
            self.rotation.weight.copy_(as_tensor(full))
            self.scale.fill_(sol.scale)
            self.bias.zero_()
            self.bias[: self.old_dims] = as_tensor(sol.mean_out)
            self.mean_in.copy_(as_tensor(sol.mean_in))

    def prepare_training(self) -> None:
        if not parametrize.is_parametrized(self.rotation):
            orthogonal(self.rotation, orthogonal_map="matrix_exp")

    def finish_training(self) -> None:
        if parametrize.is_parametrized(self.rotation):
            parametrize.remove_parametrizations(self.rotation, "weight", leave_parametrized=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self.rotation(x - self.mean_in) + self.bias

    @torch.jit.export
    def to_old(self, x: torch.Tensor) -> torch.Tensor:
        """The old-compatible part (first ``old_dims`` outputs): query the old gallery with it."""
        return self.forward(x)[:, : self.old_dims]
