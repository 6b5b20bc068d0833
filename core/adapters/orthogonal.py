"""Training an orthogonal matrix from a start at the cost of a dense layer.

BT²'s orthogonal layer starts at a closed-form rotation Q₀ and training moves it. torch's own
``orthogonal`` parametrisation re-solves a d x d Cayley system every step, O(d³): at the widths real
text models have (768 to 3,072 dims) that is most of a step, and it made bt2 tens of times slower than
an MLP head of the same width. Here the trained matrix is Q₀ C(A), C the Cayley map of a skew A. A
narrow layer (up to 128 inputs) trains any skew A, solved directly (cheap at that width). A wider one
trains A = U Vᵀ − V Uᵀ of rank 2r: by the Woodbury identity C(A) is the identity plus a rank-2r term
built from 2r x 2r matrices, so a batch of b rows costs O(b d (n + r)) for n outputs, what a dense
layer of the same shape costs; training then explores the rotations within rank 2r of the start,
which is where a refinement of a good closed-form start lies. U starts at zero and V at orthonormal
columns, so training starts at Q₀ with a gradient of unit scale for U; U enters A scaled by √(128/m), so
an optimiser step turns a layer of any width m about as much (unscaled, the first epochs at 3,072 dims
dropped validation top-1 from 0.74 to 0.37 before climbing back).
"""

from __future__ import annotations

import torch
from torch import nn

RANK = 64  # r: wide layers train a rank-128 Cayley rotation of their start
FULL_WIDTH = 2 * RANK  # up to this many inputs, any rotation: a direct solve costs little at this width


class UpdatedRotation(nn.Module):
    """``x ↦ x (Q₀ C)ᵀ`` for a frozen start Q₀ (n x m, orthonormal rows) and C the Cayley map of a skew A.

    Q₀ C keeps orthonormal rows for every A (Q₀ C Cᵀ Q₀ᵀ = Q₀ Q₀ᵀ = I), so a semi-orthogonal start
    (fewer outputs than inputs) stays so. Up to :data:`FULL_WIDTH` inputs A is any skew matrix (its strict
    lower triangle is the parameter, as in torch's own parametrisation) and C is solved directly;
    wider, A = U Vᵀ − V Uᵀ of rank 2 :data:`RANK` and C is applied without forming it: ``x Cᵀ`` is x plus
    a rank-2r term, then one product with Q₀, so a step costs what a dense layer of Q₀'s shape costs.
    """

    def __init__(self, start: torch.Tensor) -> None:
        super().__init__()
        width = int(start.shape[1])
        self.register_buffer("start", start.detach().clone())
        self.full = width <= FULL_WIDTH
        if self.full:  # any skew matrix; zero is the start, and its gradient is not zero there
            self.lower = nn.Parameter(torch.zeros(width, width, dtype=start.dtype, device=start.device))
            return
        seeded = torch.Generator().manual_seed(width)  # the same start for the same shape, whatever ran before
        basis = torch.linalg.qr(torch.randn(width, RANK, generator=seeded, dtype=torch.float64))[0]
        self.u = nn.Parameter(torch.zeros(width, RANK, dtype=start.dtype, device=start.device))
        self.v = nn.Parameter(basis.to(start.device, start.dtype))  # orthonormal: A moves with U at unit scale
        j = torch.zeros(2 * RANK, 2 * RANK, dtype=start.dtype)
        j[:RANK, RANK:] = torch.eye(RANK)
        j[RANK:, :RANK] = -torch.eye(RANK)
        self.register_buffer("j", j.to(start.device))  # A = W J Wᵀ with W = [U V]
        # an optimiser step moves every entry of U by about the learning rate, which turns a rotation of
        # width m by about that times √m: scaled so a step turns a wide layer as much as a narrow one
        self.step_scale = (FULL_WIDTH / width) ** 0.5

    def _cayley(self) -> torch.Tensor:
        """C = (I − A/2)⁻¹ (I + A/2) for the full skew A (small widths only)."""
        lower = self.lower.tril(-1)
        half = 0.5 * (lower - lower.T)
        eye = torch.eye(len(half), dtype=half.dtype, device=half.device)
        return torch.linalg.solve(eye - half, eye + half)

    def _factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(W, S) with C = (I − A/2)⁻¹ (I + A/2) = I + W S Wᵀ, S of size 2r x 2r.

        Woodbury: (I − W J Wᵀ/2)⁻¹ = I − W K Wᵀ with K = (2J + WᵀW)⁻¹ (invertible: WᵀW is
        positive semi-definite and J skew), and the product with I + W J Wᵀ/2 collects into
        S = J/2 − K − K WᵀW J/2. Solved in float32 at least (it is 2r x 2r).
        """
        w = torch.cat([self.u * self.step_scale, self.v], dim=1)
        wf = w.float() if w.dtype in (torch.float16, torch.bfloat16) else w
        j = self.j.to(wf.dtype)
        gram = wf.T @ wf
        k = torch.linalg.inv(2 * j + gram)
        s = 0.5 * j - k - 0.5 * (k @ gram @ j)
        return w, s.to(w.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.full:
            return x @ (self.start @ self._cayley()).T
        w, s = self._factors()
        turned = x + ((x @ w) @ s.T) @ w.T  # x Cᵀ
        return turned @ self.start.T

    def weight(self) -> torch.Tensor:
        """Q₀ C, materialised (once, when training ends)."""
        if self.full:
            return self.start @ self._cayley()
        w, s = self._factors()
        return self.start + ((self.start @ w) @ s) @ w.T
