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

from embridge.core.adapters.adapter import Adapter
from embridge.core.adapters.l2_torch import l2_normalize_torch
from embridge.core.evaluation.search import SearchConfig, search
from embridge.core.retrieval import exact_topk
from embridge.core.train.losses import cosine_logits, masked_cross_entropy, pair_loss, retrieval_loss

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


class ClassSampler:
    """Which classifier rows a batch's softmax runs over: all of them, or a sample when there are many.

    With thousands of classes the full softmax (batch x classes logits, and their gradient) makes a
    step's cost grow with the class count. Above ``max_classes`` each step uses the batch's own
    classes plus uniformly drawn other classes up to ``max_classes`` (the partial-FC sampled
    softmax), so the cost per step is bounded whatever the class count.
    """

    def __init__(self, n_classes: int, max_classes: int, seed: int) -> None:
        self.n_classes = int(n_classes)
        self.max_classes = int(max_classes)
        self.generator = torch.Generator().manual_seed(int(seed))

    @property
    def samples(self) -> bool:
        return self.n_classes > self.max_classes

    def rows(self, labels: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(class rows to score, or None for all; labels re-indexed into those rows, -1 kept)."""
        if not self.samples:
            return None, labels
        known = labels >= 0
        positives = torch.unique(labels[known].cpu())
        wanted = max(0, self.max_classes - len(positives))
        draw = torch.randint(self.n_classes, (2 * wanted,), generator=self.generator)
        seen = torch.zeros(self.n_classes, dtype=torch.bool)
        seen[positives] = True
        fresh = torch.unique(draw[~seen[draw]])[:wanted]  # a few draws repeat: fine, cost stays flat
        rows = torch.cat([positives, fresh]).to(labels.device)
        lookup = torch.full((self.n_classes,), -1, dtype=torch.long, device=labels.device)
        lookup[rows] = torch.arange(len(rows), device=labels.device)
        remapped = torch.where(known, lookup[labels.clamp(min=0)], labels)
        return rows, remapped


class NewClassifier(nn.Module):
    """The trainable new classifier: a plain parameter, or lazily updated rows when classes are sampled.

    Under a sampled softmax only the scored rows get a gradient, but AdamW would still decay and
    update every row each step, a cost that grows with the class count. Then the rows live in a
    buffer and :meth:`apply_row_updates` runs AdamW on the scored rows alone (per-row step counts
    for the bias correction), after the loop's backward pass.
    """

    def __init__(self, init: torch.Tensor, sampler: ClassSampler, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        super().__init__()
        self.sampler = sampler
        self.betas, self.eps = betas, eps
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None
        if sampler.samples:
            self.register_buffer("rows_weight", init.clone())
            self.register_buffer("exp_avg", torch.zeros_like(init))
            self.register_buffer("exp_avg_sq", torch.zeros_like(init))
            self.register_buffer("row_steps", torch.zeros(len(init)))
        else:
            self.weight = nn.Parameter(init.clone())

    def select(self, rows: torch.Tensor | None) -> torch.Tensor:
        if rows is None:
            return self.weight
        picked = self.rows_weight[rows].clone().requires_grad_(True)
        self._pending = (rows, picked)
        return picked

    @torch.no_grad()
    def apply_row_updates(self, lr: float, weight_decay: float, grad_scale: float = 1.0) -> None:
        """AdamW on the rows the last step scored (nothing when no rows were sampled)."""
        if self._pending is None:
            return
        rows, picked = self._pending
        self._pending = None
        if picked.grad is None:
            return
        grad = picked.grad.float() / grad_scale
        if not bool(torch.isfinite(grad).all()):
            return
        b1, b2 = self.betas
        self.row_steps[rows] += 1
        steps = self.row_steps[rows].unsqueeze(1)
        m = self.exp_avg[rows].mul_(b1).add_(grad, alpha=1 - b1)
        v = self.exp_avg_sq[rows].mul_(b2).addcmul_(grad, grad, value=1 - b2)
        self.exp_avg[rows], self.exp_avg_sq[rows] = m, v
        update = (m / (1 - b1**steps)) / ((v / (1 - b2**steps)).sqrt() + self.eps)
        w = self.rows_weight[rows]
        self.rows_weight[rows] = w * (1 - lr * weight_decay) - lr * update


def _fixed_rows(weights: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
    return weights if rows is None else weights[rows]


class ClassifierObjective(nn.Module):
    """Shared by bct and bt2: the loop calls :meth:`after_step` after each optimiser step."""

    new_classifier: NewClassifier

    def after_step(self, lr: float, weight_decay: float, grad_scale: float) -> None:
        self.new_classifier.apply_row_updates(lr, weight_decay, grad_scale)


class BCTObjective(ClassifierObjective):
    """CE with a new (trainable) classifier + influence CE with the fixed old classifier."""

    def __init__(self, centre: np.ndarray, prototypes: np.ndarray, influence_weight: float, scale: float,
                 max_classes: int = 1024, seed: int = 0, align_weight: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("centre", torch.as_tensor(centre))
        self.register_buffer("old_weights", torch.as_tensor(prototypes))
        self.sampler = ClassSampler(len(prototypes), max_classes, seed)
        self.new_classifier = NewClassifier(torch.as_tensor(prototypes), self.sampler)
        self.influence_weight = float(influence_weight)
        self.align_weight = float(align_weight)
        self.scale = float(scale)

    def forward(self, adapter: Adapter, batch: Batch) -> torch.Tensor:
        out = adapter(batch["new"])
        h = out - self.centre
        rows, y = self.sampler.rows(batch["labels"])
        new_ce = masked_cross_entropy(cosine_logits(h, self.new_classifier.select(rows), self.scale), y)
        old_ce = masked_cross_entropy(cosine_logits(h, _fixed_rows(self.old_weights, rows), self.scale), y)
        loss = new_ce + self.influence_weight * old_ce
        if self.align_weight:  # each item's own old vector, as bt2's old part: classes alone leave it free within
            loss = loss + self.align_weight * (1.0 - F.cosine_similarity(out.float(), batch["old"].float(), dim=1).mean())
        return loss


class BT2Objective(ClassifierObjective):
    """First a dims: cosine to the old vector + influence CE; all a + k dims: new-classifier CE."""

    def __init__(
        self, centre: np.ndarray, prototypes: np.ndarray, extra_dims: int,
        influence_weight: float, align_weight: float, scale: float, max_classes: int = 1024, seed: int = 0,
    ) -> None:
        super().__init__()
        self.old_dims = int(prototypes.shape[1])
        self.register_buffer("centre", torch.as_tensor(centre))
        self.register_buffer("old_weights", torch.as_tensor(prototypes))
        init = torch.cat([torch.as_tensor(prototypes), 0.01 * torch.randn(len(prototypes), extra_dims)], dim=1)
        self.sampler = ClassSampler(len(prototypes), max_classes, seed)
        self.new_classifier = NewClassifier(init, self.sampler)
        self.influence_weight = float(influence_weight)
        self.align_weight = float(align_weight)
        self.scale = float(scale)

    def forward(self, adapter: Adapter, batch: Batch) -> torch.Tensor:
        h = adapter(batch["new"])
        h_old = h[:, : self.old_dims]
        rows, y = self.sampler.rows(batch["labels"])
        align = 1.0 - F.cosine_similarity(h_old.float(), batch["old"].float(), dim=1).mean()
        old_ce = masked_cross_entropy(
            cosine_logits(h_old - self.centre, _fixed_rows(self.old_weights, rows), self.scale), y)
        centred = torch.cat([h_old - self.centre, h[:, self.old_dims :]], dim=1)
        new_ce = masked_cross_entropy(cosine_logits(centred, self.new_classifier.select(rows), self.scale), y)
        return self.align_weight * align + self.influence_weight * old_ce + new_ce


# Hard negatives among a larger bank are mined with an approximate search: the exact one searches every
# training row against the whole bank, which grows with the square of the data (a 200k-item lowrank fit
# spent 74 s of its first epoch mining) and let one epoch overrun a --time-budget without bound.
MINING_EXACT_MAX = 50_000


def mine(queries: np.ndarray, bank: np.ndarray, k: int) -> np.ndarray:
    """The top ``k`` bank rows per query: exact up to ``MINING_EXACT_MAX`` bank rows, an IVF index beyond."""
    if len(bank) <= MINING_EXACT_MAX:
        return exact_topk(queries, bank, k)[0]
    return search(queries, bank, min(k, len(bank)), config=SearchConfig(method="ivf", measure_recall=False))[0]


class RetrievalObjective(nn.Module):
    """new -> old layers trained to retrieve each row's relevant vector among the old gallery.

    Row i of a batch is a new vector (a document's, or a query's) whose positive is old gallery
    row ``pos[i]`` (the document's own old vector, or the old vector of the query's relevant
    document). Negatives: the batch's other positives, a random sample of ``bank_size`` rows of
    the old gallery drawn per step, and ``hard_negatives`` top-scoring wrong gallery rows per
    training row, mined every ``hard_every`` epochs (exact search, approximate over a large bank). This fits the retrieval
    task itself, which a vector fit (MSE) does not.
    """

    def __init__(self, bank: np.ndarray, temperature: float, bank_size: int, hard_negatives: int,
                 hard_every: int, seed: int = 0) -> None:
        super().__init__()
        self.register_buffer("bank", l2_normalize_torch(torch.as_tensor(bank, dtype=torch.float32), dim=1))
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
        idx = mine(l2_normalize_torch(queries, dim=1).cpu().numpy(), self.bank.cpu().numpy(), self.hard_negatives + 1)
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
        return retrieval_loss(adapter(batch["new"]), self.bank[pos], pos, negatives, self.temperature,
                              unit_gallery=True)  # the bank was normalised once, at construction
