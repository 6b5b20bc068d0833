"""What each trainable kind minimises, given the adapter and a batch of paired tensors.

A batch is a dict with ``old``, ``new`` (float), ``labels`` (contiguous class index, -1 unknown)
and optionally ``side``. Objectives are modules so that their own trainable parts (the new
classifier of bct/bt2) are optimised together with the adapter.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.adapters.base import Adapter
from core.retrieval import exact_topk
from core.train.losses import cosine_logits, masked_cross_entropy, pair_loss, retrieval_loss

Batch = dict[str, torch.Tensor]


class PairObjective(nn.Module):
    """lowrank / mlp (new -> old) and fct (old [+ side] -> new) fitted on pairs."""

    def __init__(self, loss: str, temperature: float, forward_direction: bool) -> None:
        super().__init__()
        self.loss = loss
        self.temperature = float(temperature)
        self.forward_direction = forward_direction

    def forward(self, adapter: Adapter, batch: Batch) -> torch.Tensor:
        if self.forward_direction:
            src = batch["old"] if "side" not in batch else torch.cat([batch["old"], batch["side"]], dim=1)
            return pair_loss(self.loss, adapter(src), batch["new"], self.temperature)
        return pair_loss(self.loss, adapter(batch["new"]), batch["old"], self.temperature)


def class_prototypes(
    old: np.ndarray, labels: np.ndarray, n_classes: int, old_classifier: np.ndarray | None,
    class_ids: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(centre, prototypes): the old classifier, one row per training class, on centred features.

    A class the given old classifier covers uses its weight row; any other class, including ones
    the old model never saw, uses the centred mean of its old vectors (the pseudo-classifier).
    Centring matters because raw embeddings share a large mean that makes all class means alike.
    """
    centre = old.astype(np.float64).mean(axis=0)
    protos = np.zeros((n_classes, old.shape[1]))
    for j, cid in enumerate(class_ids):
        if old_classifier is not None and 0 <= cid < len(old_classifier):
            protos[j] = old_classifier[cid]
        else:
            protos[j] = old[labels == j].mean(axis=0) - centre
    return centre.astype(np.float32), protos.astype(np.float32)


class BCTObjective(nn.Module):
    """CE with a new (trainable) classifier + influence CE with the fixed old classifier."""

    def __init__(self, centre: np.ndarray, prototypes: np.ndarray, influence_weight: float, scale: float) -> None:
        super().__init__()
        self.register_buffer("centre", torch.as_tensor(centre))
        self.register_buffer("old_weights", torch.as_tensor(prototypes))
        self.new_classifier = nn.Parameter(torch.as_tensor(prototypes).clone())
        self.influence_weight = float(influence_weight)
        self.scale = float(scale)

    def forward(self, adapter: Adapter, batch: Batch) -> torch.Tensor:
        h = adapter(batch["new"]) - self.centre
        y = batch["labels"]
        new_ce = masked_cross_entropy(cosine_logits(h, self.new_classifier, self.scale), y)
        old_ce = masked_cross_entropy(cosine_logits(h, self.old_weights, self.scale), y)
        return new_ce + self.influence_weight * old_ce


class BT2Objective(nn.Module):
    """First a dims: cosine to the old vector + influence CE; all a + k dims: new-classifier CE."""

    def __init__(
        self, centre: np.ndarray, prototypes: np.ndarray, extra_dims: int,
        influence_weight: float, align_weight: float, scale: float,
    ) -> None:
        super().__init__()
        self.old_dims = int(prototypes.shape[1])
        self.register_buffer("centre", torch.as_tensor(centre))
        self.register_buffer("old_weights", torch.as_tensor(prototypes))
        init = torch.cat([torch.as_tensor(prototypes), 0.01 * torch.randn(len(prototypes), extra_dims)], dim=1)
        self.new_classifier = nn.Parameter(init)
        self.influence_weight = float(influence_weight)
        self.align_weight = float(align_weight)
        self.scale = float(scale)

    def forward(self, adapter: Adapter, batch: Batch) -> torch.Tensor:
        h = adapter(batch["new"])
        h_old = h[:, : self.old_dims]
        y = batch["labels"]
        align = 1.0 - F.cosine_similarity(h_old.float(), batch["old"].float(), dim=1).mean()
        old_ce = masked_cross_entropy(cosine_logits(h_old - self.centre, self.old_weights, self.scale), y)
        centred = torch.cat([h_old - self.centre, h[:, self.old_dims :]], dim=1)
        new_ce = masked_cross_entropy(cosine_logits(centred, self.new_classifier, self.scale), y)
        return self.align_weight * align + self.influence_weight * old_ce + new_ce


class RetrievalObjective(nn.Module):
    """new -> old layers trained to retrieve each row's relevant vector among the old gallery.

    Row i of a batch is a new vector (a document's, or a query's) whose positive is old gallery
    row ``pos[i]`` (the document's own old vector, or the old vector of the query's relevant
    document). Negatives: the batch's other positives, a random sample of ``bank_size`` rows of
    the old gallery drawn per step, and ``hard_negatives`` top-scoring wrong gallery rows per
    training row, mined with exact search every ``hard_every`` epochs. This fits the retrieval
    task itself, which a vector fit (MSE) does not.
    """

    def __init__(self, bank: np.ndarray, temperature: float, bank_size: int, hard_negatives: int,
                 hard_every: int, seed: int = 0) -> None:
        super().__init__()
        self.register_buffer("bank", F.normalize(torch.as_tensor(bank, dtype=torch.float32), dim=1))
        self.temperature = float(temperature)
        self.bank_size = int(bank_size)
        self.hard_negatives = min(int(hard_negatives), len(bank) - 1)
        self.hard_every = max(int(hard_every), 1)
        self.gen = torch.Generator().manual_seed(int(seed))
        self.hard: torch.Tensor | None = None

    def start_epoch(self, adapter: Adapter, epoch: int, data: Batch) -> None:
        """Re-mine the hard negatives of every training row on the epochs that call for it."""
        if self.hard_negatives <= 0 or (epoch - 1) % self.hard_every:
            return
        with torch.no_grad():
            queries = torch.cat([adapter(data["new"][s : s + 8192]).float()
                                 for s in range(0, len(data["new"]), 8192)])
        idx, _ = exact_topk(F.normalize(queries, dim=1).cpu().numpy(), self.bank.cpu().numpy(),
                            self.hard_negatives + 1)
        pos = data["pos"].cpu().numpy()
        own = idx == pos[:, None]
        order = np.argsort(own, axis=1, kind="stable")  # the own row (if mined) moves to the end
        mined = np.take_along_axis(idx, order, axis=1)[:, : self.hard_negatives]
        self.hard = torch.as_tensor(mined, device=data["new"].device)

    def forward(self, adapter: Adapter, batch: Batch) -> torch.Tensor:
        pos = batch["pos"]
        negatives: list[tuple[torch.Tensor, torch.Tensor]] = []
        if 0 < self.bank_size:
            ids = torch.randint(len(self.bank), (min(self.bank_size, len(self.bank)),), generator=self.gen)
            ids = ids.to(pos.device)
            negatives.append((self.bank[ids], ids))
        if self.hard is not None:
            hard = self.hard[batch["row"]]
            negatives.append((self.bank[hard], hard))
        return retrieval_loss(adapter(batch["new"]), self.bank[pos], pos, negatives, self.temperature)
