"""Linear new->old layers: centred Procrustes and ridge affine (closed form), low-rank (trained)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from embridge.core.adapters.adapter import Adapter, as_tensor
from embridge.core.adapters.closed_form import LinearSolution, ProcrustesSolution


class ProcrustesAdapter(Adapter):
    """y = scale * (x - mean_in) @ W + mean_out; no trainable parameters.

    W is semi-orthogonal for the plain fit (``whitening`` 0) and whiten-rotate-de-whiten for the
    whitened fit (``whitening`` = its shrinkage; see :func:`closed_form.whitened_procrustes`).
    """

    def __init__(self, in_dim: int, out_dim: int, whitening: float = 0.0) -> None:
        super().__init__("procrustes", "backward", in_dim, out_dim)
        self.whitening = float(whitening)
        self.register_buffer("weight", torch.zeros(in_dim, out_dim))
        self.register_buffer("scale", torch.ones(()))
        self.register_buffer("mean_in", torch.zeros(in_dim))
        self.register_buffer("mean_out", torch.zeros(out_dim))

    @classmethod
    def from_solution(cls, sol: ProcrustesSolution, whitening: float = 0.0) -> ProcrustesAdapter:
        adapter = cls(sol.weight.shape[0], sol.weight.shape[1], whitening)
        adapter.weight.copy_(as_tensor(sol.weight))
        adapter.scale.fill_(sol.scale)
        adapter.mean_in.copy_(as_tensor(sol.mean_in))
        adapter.mean_out.copy_(as_tensor(sol.mean_out))
        return adapter

    def config(self) -> dict[str, Any]:
        return {**super().config(), "whitening": self.whitening}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * ((x - self.mean_in) @ self.weight) + self.mean_out


class AffineAdapter(Adapter):
    """y = x @ W + b from ridge least squares; ``ridge`` records the λ chosen on validation."""

    def __init__(self, in_dim: int, out_dim: int, ridge: float = 0.0) -> None:
        super().__init__("affine", "backward", in_dim, out_dim)
        self.ridge = float(ridge)
        self.register_buffer("weight", torch.zeros(in_dim, out_dim))
        self.register_buffer("bias", torch.zeros(out_dim))

    @classmethod
    def from_solution(cls, sol: LinearSolution, ridge: float) -> AffineAdapter:
        adapter = cls(sol.weight.shape[0], sol.weight.shape[1], ridge)
        adapter.weight.copy_(as_tensor(sol.weight))
        adapter.bias.copy_(as_tensor(sol.bias))
        return adapter

    def config(self) -> dict[str, Any]:
        return {**super().config(), "ridge": self.ridge}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight + self.bias


class LowRankAdapter(Adapter):
    """y = x @ A @ Bᵀ (+ d * x when dims match and ``diagonal``) + b, rank r <= min(dims)."""

    def __init__(self, in_dim: int, out_dim: int, rank: int = 64, diagonal: bool = True) -> None:
        super().__init__("lowrank", "backward", in_dim, out_dim)
        self.rank = max(1, min(int(rank), in_dim, out_dim))
        self.diagonal = bool(diagonal) and in_dim == out_dim
        self.a = nn.Parameter(torch.randn(in_dim, self.rank) / in_dim**0.5)
        self.b = nn.Parameter(torch.randn(out_dim, self.rank) / self.rank**0.5)
        self.bias = nn.Parameter(torch.zeros(out_dim))
        self.diag = nn.Parameter(torch.zeros(in_dim if self.diagonal else 0))

    def config(self) -> dict[str, Any]:
        return {**super().config(), "rank": self.rank, "diagonal": self.diagonal}

    def init_from_linear(self, sol: LinearSolution) -> None:
        """Start from the best rank-r approximation of a closed-form fit (truncated SVD)."""
        u, s, vt = np.linalg.svd(sol.weight, full_matrices=False)
        root = np.sqrt(s[: self.rank])
        with torch.no_grad():
            self.a.copy_(as_tensor(u[:, : self.rank] * root))
            self.b.copy_(as_tensor(vt[: self.rank].T * root))
            self.bias.copy_(as_tensor(sol.bias))
            self.diag.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = (x @ self.a) @ self.b.t() + self.bias
        if self.diagonal:
            y = y + x * self.diag
        return y
