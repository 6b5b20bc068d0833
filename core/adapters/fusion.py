"""``fusion``: during the transition, score with both the old query and the mapped new query.

score(g) = α⟨o_q, g⟩ + (1 − α)⟨h(n_q), g⟩ on L2-normalised vectors, which equals the inner
product of g with the single fused query α·ô_q + (1 − α)·ĥ(n_q); so the old gallery and its
index stay as they are. α = 1 is today's system, hence a well-chosen α never does worse than it
on validation. Needs both encoders at query time.
"""

from __future__ import annotations

from typing import Any

import torch

from embridge.core.adapters.adapter import Adapter
from embridge.core.adapters.l2_torch import l2_normalize_torch


class FusionAdapter(Adapter):
    """Wraps a new->old adapter ``base``; ``forward`` maps new queries, ``fuse`` mixes with old ones."""

    def __init__(self, base: Adapter, alpha: float = 0.5) -> None:
        if base.direction != "backward":
            raise ValueError(f"fusion needs a new->old base layer, not {base.kind} ({base.direction})")
        super().__init__("fusion", "backward", base.in_dim, base.out_dim)
        self.base = base
        self.register_buffer("alpha", torch.tensor(float(alpha)))

    def config(self) -> dict[str, Any]:
        return {"base": {"kind": self.base.kind, "config": self.base.config()}, "alpha": round(float(self.alpha), 6)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x)

    @torch.jit.export
    def fuse(self, old_query: torch.Tensor, new_query: torch.Tensor) -> torch.Tensor:
        """The fused query vector (compare it with the old gallery by inner product)."""
        mapped = l2_normalize_torch(self.base(new_query), dim=-1)
        return self.alpha * l2_normalize_torch(old_query, dim=-1) + (1.0 - self.alpha) * mapped
