"""The torch twin of :func:`embridge.core.l2.l2_normalize`, safe inside TorchScript modules.

``F.normalize`` squares its input, so float32 rows near 1e38 (or float16 rows above 256) get an
infinite norm and come out as zeros. Dividing each row by its largest magnitude first keeps the
direction exact; all-zero rows stay zero, and NaN or inf stay visible (never silently zero).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def l2_normalize_torch(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Unit-length rows along ``dim`` without overflow or underflow of the squared sum."""
    scale = x.detach().abs().amax(dim=dim, keepdim=True)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return F.normalize(x / scale, dim=dim)
