"""The ``bt2`` / ``oca`` joint head: an orthogonal map of new vectors widened by k learned dims.

BT² (Zhou et al. 2023) widens the new backbone by k dims and puts an orthogonal basis
transformation on top: the first a (= old dim) outputs are trained to be old-compatible, the rest
keep what only the new model knows. Here the backbone is frozen, so the k extra dims come from a
small learned branch on the new vector, g(x), and the orthogonal layer Q (square, b + k) acts on
the widened vector [x − μ; g(x)]::

    head(x) = scale · Q [x − μ; g(x)] + bias,   out_dim = in_dim + k

Because Q is an isometry of the widened vector, the new model's own geometry survives in the full
output (new/new after a backfill stays at the raw model's), while g gives the first a dims the
capacity that a pure rotation of x lacks: with frozen models the old space (e.g. one that learned
only part of the classes) is not a rotation of the new one. Without a branch (k = 0) this is the
plain orthogonal head. Conventions for callers:

* ``forward(x)`` -> the full vector: index a backfilled gallery with it, compare new/new.
* ``to_old(x)`` -> the first a dims: the query vector that searches the untouched old gallery.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from embridge.core.adapters.adapter import Adapter, as_tensor
from embridge.core.adapters.closed_form import LinearSolution, ProcrustesSolution
from embridge.core.adapters.orthogonal import UpdatedRotation

BRANCH_INIT_STD = 1e-2  # small, not zero: with both Q's mixing block and g at zero nothing would move


class BT2Adapter(Adapter):
    """y = scale * Q [x - mean_in; g(x)] + bias, Q orthogonal on the widened vector."""

    def __init__(self, in_dim: int, out_dim: int, old_dims: int, hidden: int = 64) -> None:
        super().__init__("bt2", "joint", in_dim, out_dim)
        if not 0 < old_dims <= out_dim:
            raise ValueError(f"old_dims {old_dims} must lie in 1..out_dim ({out_dim})")
        self.old_dims = int(old_dims)
        self.extra_dims = int(out_dim - old_dims)
        self.branch_dims = max(0, out_dim - in_dim)
        self.hidden = int(hidden)
        self.fc1 = nn.Linear(in_dim, self.hidden if self.branch_dims else 0)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(self.hidden if self.branch_dims else 0, self.branch_dims)
        self.skip = nn.Linear(in_dim, self.branch_dims, bias=False)
        nn.init.zeros_(self.skip.weight)
        self.rotation = nn.Linear(in_dim + self.branch_dims, out_dim, bias=False)
        self.scale = nn.Parameter(torch.ones(()))
        self.bias = nn.Parameter(torch.zeros(out_dim))
        self.register_buffer("mean_in", torch.zeros(in_dim))
        self.register_buffer("input_scale", torch.ones(in_dim))

    def config(self) -> dict[str, Any]:
        return {**super().config(), "old_dims": self.old_dims, "hidden": self.hidden}

    def init_from_procrustes(self, sol: ProcrustesSolution, inputs: np.ndarray | None = None) -> None:
        """Start with the first a outputs at the centred Procrustes fit of x, the rest orthogonal to it.

        ``inputs`` (training new vectors) set the branch's input standardisation.
        """
        width = self.in_dim + self.branch_dims
        w = np.zeros((self.old_dims, width))
        w[:, : self.in_dim] = sol.weight.T  # (a x in_dim), orthonormal rows when a <= in_dim
        _, _, vt = np.linalg.svd(w, full_matrices=True)
        complement = vt[min(w.shape) :]  # rows spanning the directions the old part does not use
        full = np.zeros((self.out_dim, width))
        full[: self.old_dims] = w
        extra = min(self.extra_dims, complement.shape[0])
        full[self.old_dims : self.old_dims + extra] = complement[:extra]
        with torch.no_grad():
            self.rotation.weight.copy_(as_tensor(full))
            self.scale.fill_(sol.scale)
            self.bias.zero_()
            self.bias[: self.old_dims] = as_tensor(sol.mean_out)
            self.mean_in.copy_(as_tensor(sol.mean_in))
            if inputs is not None:
                std = np.asarray(inputs, dtype=np.float64).std(axis=0)
                self.input_scale.copy_(as_tensor(np.maximum(std, 1e-6)))
            nn.init.normal_(self.fc2.weight, std=BRANCH_INIT_STD)
            nn.init.zeros_(self.fc2.bias)

    def init_from_linear(self, sol: LinearSolution, inputs: np.ndarray) -> bool:
        """Start with the first a outputs at a closed-form linear map of x carried by the branch.

        Q starts as a permutation: the first a outputs read the branch's affine skip (set to
        ``sol``), the next in_dim outputs are x − μ itself, so the full output keeps the new
        geometry. Needs k >= a; returns False (nothing changed) otherwise.
        """
        if self.branch_dims < self.old_dims:
            return False
        x = np.asarray(inputs, dtype=np.float64)
        mean = x.mean(axis=0)
        width = self.in_dim + self.branch_dims
        full = np.zeros((self.out_dim, width))
        order = [self.in_dim + i for i in range(self.old_dims)] + list(range(self.in_dim))
        order += [c for c in range(width) if c not in order]
        full[np.arange(self.out_dim), order[: self.out_dim]] = 1.0
        skip = np.zeros((self.branch_dims, self.in_dim))
        skip[: self.old_dims] = sol.weight.T
        with torch.no_grad():
            self.rotation.weight.copy_(as_tensor(full))
            self.skip.weight.copy_(as_tensor(skip))
            self.scale.fill_(1.0)
            self.bias.zero_()
            self.bias[: self.old_dims] = as_tensor(sol.bias + mean @ sol.weight)
            self.mean_in.copy_(as_tensor(mean))
            self.input_scale.copy_(as_tensor(np.maximum(x.std(axis=0), 1e-6)))
            nn.init.normal_(self.fc2.weight, std=BRANCH_INIT_STD)
            nn.init.zeros_(self.fc2.bias)
        return True

    def prepare_training(self) -> None:
        # Training moves the start Q by a Cayley rotation (core.adapters.orthogonal), low-rank on wide
        # layers so a step costs what a dense layer of Q's shape costs: torch's own orthogonal
        # parametrisation solved a full-width system every step, seconds a batch at 3,072 dims.
        if not isinstance(self.rotation, UpdatedRotation):
            self.rotation = UpdatedRotation(self.rotation.weight.detach())

    def finish_training(self) -> None:
        if isinstance(self.rotation, UpdatedRotation):
            trained = self.rotation.weight().detach()
            self.rotation = nn.Linear(trained.shape[1], trained.shape[0], bias=False)
            with torch.no_grad():
                self.rotation.weight.copy_(trained)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - self.mean_in
        branch = self.skip(centred) + self.fc2(self.act(self.fc1(centred / self.input_scale)))
        widened = torch.cat([centred, branch], dim=1)
        return self.scale * self.rotation(widened) + self.bias

    @torch.jit.export
    def to_old(self, x: torch.Tensor) -> torch.Tensor:
        """The old-compatible part (first ``old_dims`` outputs): query the old gallery with it."""
        return self.forward(x)[:, : self.old_dims]
