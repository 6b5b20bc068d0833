"""Loss functions shared by the trainable kinds."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from embridge.core.adapters.l2_torch import l2_normalize_torch


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
    if name in ("contrastive", "retrieval"):  # retrieval without a bank: in-batch negatives only
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


def retrieval_loss(
    queries: torch.Tensor,
    positives: torch.Tensor,
    positive_ids: torch.Tensor,
    negatives: list[tuple[torch.Tensor, torch.Tensor]],
    temperature: float,
    unit_gallery: bool = False,
) -> torch.Tensor:
    """InfoNCE where query i must retrieve gallery row ``positive_ids[i]`` (vector ``positives[i]``).

    Candidates are the batch's positives (in-batch negatives) plus each ``(vectors, ids)`` of
    ``negatives``: (m x d, m) shared by the batch (a sample of the gallery bank) or (B x h x d,
    B x h) per query (mined hard negatives). A candidate that is the query's own positive row
    again is masked, so it never counts as a negative. Vectors are compared by cosine;
    ``unit_gallery`` says the positives and negatives already have unit rows (a normalised bank), so
    only the queries are normalised each step.
    """
    def unit(x: torch.Tensor) -> torch.Tensor:
        return x.float() if unit_gallery else l2_normalize_torch(x.float(), dim=-1)

    q = l2_normalize_torch(queries.float(), dim=-1)
    pos = unit(positives)
    same = positive_ids[None, :] == positive_ids[:, None]
    same.fill_diagonal_(False)
    parts = [(q @ pos.t()).masked_fill(same, float("-inf"))]
    for vectors, ids in negatives:
        neg = unit(vectors)
        if neg.dim() == 2:
            scores, clash = q @ neg.t(), ids[None, :] == positive_ids[:, None]
        else:
            scores, clash = torch.einsum("bd,bhd->bh", q, neg), ids == positive_ids[:, None]
        parts.append(scores.masked_fill(clash, float("-inf")))
    logits = torch.cat(parts, dim=1) / temperature
    return F.cross_entropy(logits, torch.arange(len(q), device=q.device))
