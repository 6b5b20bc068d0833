"""Loss functions shared by the trainable kinds."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from core.adapters.l2 import l2_normalize_torch


def pair_loss(name: str, pred: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    """MSE, cosine or InfoNCE between adapted vectors and their targets (row i pairs with row i).

    The contrastive loss treats the batch's other targets as negatives, so it trains the map to
    retrieve each item's own target, which ranks better than fitting the vectors alone.
    """
    pred = pred.float()
    target = target.float()
    if name == "mse":
        return ((pred - target) ** 2).sum(dim=1).mean()
    if name == "cosine":
        return 1.0 - F.cosine_similarity(pred, target, dim=1).mean()
    if name == "contrastive":
        logits = l2_normalize_torch(pred, dim=1) @ l2_normalize_torch(target, dim=1).t() / temperature
        return F.cross_entropy(logits, torch.arange(len(pred), device=pred.device))
    raise ValueError(f"unknown loss {name!r}")


def cosine_logits(features: torch.Tensor, weights: torch.Tensor, scale: float) -> torch.Tensor:
    """Scaled cosine-similarity logits of features against class weight vectors."""
    return scale * l2_normalize_torch(features.float(), dim=1) @ l2_normalize_torch(weights.float(), dim=1).t()


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the rows with a known label (>= 0); zero (with a graph) when none."""
    known = labels >= 0
    if not bool(known.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[known], labels[known])
