"""``fit_adapter``: the array-level entry point that fits any kind on paired vectors.

Closed-form kinds (procrustes, affine) solve in float64 and pick their regularisation on the
validation split; trainable kinds start from a closed-form solution and go through
:func:`embridge.core.train.loop.train_loop`; ``fusion`` fits its base layer then picks α; ``auto`` (see
:mod:`embridge.core.train.auto`) fits several and keeps the best on validation. Work runs under a forked,
seeded RNG, so results are reproducible on the CPU and the caller's RNG is left alone.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import nn

from embridge.core.adapters.adapt_arrays import adapt_queries
from embridge.core.adapters.adapter import Adapter
from embridge.core.adapters.closed_form import (
    LinearSolution,
    candidate_count,
    candidates_from_moments,
    procrustes_from_moments,
    ridge_from_moments,
    ridge_path,
)
from embridge.core.adapters.heads import BT2Adapter
from embridge.core.adapters.linear import AffineAdapter, LowRankAdapter, ProcrustesAdapter
from embridge.core.adapters.mlp import BCTAdapter, FCTAdapter, MLPAdapter
from embridge.core.device import resolve_device
from embridge.core.errors import InputError, TrainingError
from embridge.core.evaluation.choice import Choice, all_tied, choose
from embridge.core.progress import ProgressFn, StopFn, never_stop, no_progress
from embridge.core.train.auto import fit_auto
from embridge.core.train.bridges import cascade_ready, choose_cascade, choose_fusion
from embridge.core.train.config import FitConfig, allowed_settings, resolve_config
from embridge.core.train.data import FitResult, PairData, count_classes
from embridge.core.train.loop import train_loop
from embridge.core.train.objectives import (
    BCTObjective,
    BT2Objective,
    PairObjective,
    RetrievalObjective,
    class_prototypes,
)

INIT_RIDGE = 1e-3  # relative λ of the closed-form start of trainable kinds


def fit_adapter(
    kind: str,
    data: PairData,
    config: FitConfig | dict[str, Any] | None = None,
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    stop_after_epoch: StopFn | None = None,
) -> FitResult:
    """Fit a compatibility layer of ``kind`` (a METHODS key, ``oca`` or ``auto``) on ``data``.

    ``stop_after_epoch`` (``auto``'s time budget) ends a trainable fit at the end of an epoch,
    validated and in its best state, where ``should_stop`` cancels at once.

    Never raises for a cancel or a diverging loss: see ``FitResult.status``. Raises InputError
    for bad settings or data, DeviceError for an absent device, TrainingError when labels are
    required but missing or memory runs out.
    """
    if not isinstance(data, PairData):
        raise InputError("pair data", f"expected PairData, got {type(data).__name__}")
    name, settings = resolve_config(kind, config)
    user = config.to_dict() if isinstance(config, FitConfig) else dict(config or {})
    progress, stop = _naming_metric(on_progress or no_progress, data), should_stop or never_stop
    device = resolve_device(settings["device"])
    if name == "auto":
        return fit_auto(data, settings, user, progress, stop, fit_adapter, _val)
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(settings["seed"]))
        if name == "procrustes":
            result = _fit_procrustes(data, settings, progress)
        elif name == "affine":
            result = _fit_affine(data, settings, progress, stop)
        elif name in ("fusion", "cascade"):
            result = _fit_bridge(name, data, settings, user, progress, stop, stop_after_epoch)
        else:
            result = _fit_trainable(name, data, settings, device, progress, stop, stop_after_epoch)
    result.device = str(device) if name not in ("procrustes", "affine") else "cpu"
    result.val_metric_name = data.validation().metric_name
    result.val_protocol = data.validation().protocol
    result.duration_s = time.perf_counter() - start
    result.config = settings
    return result


def _naming_metric(progress: ProgressFn, data: PairData) -> ProgressFn:
    """Progress reports that name the validation metric (``val_metric_name``), so a live plot labels its
    curve as the recorded run will: nDCG@10 on graded judgments, top-1 otherwise."""
    def report(done: int, total: int, info: dict[str, Any]) -> None:
        progress(done, total, {**info, "val_metric_name": data.validation().metric_name})

    return report


def _val(adapter: Adapter, data: PairData) -> float:
    return data.validation().value(adapter)


def _record(result: FitResult, choice: Choice, what: str) -> None:
    """Note how ``what`` was chosen; a tie is stated as such (no winner is named)."""
    result.choice = {"what": what, **choice.to_dict()}
    if not choice.decided:
        result.reason = "; ".join(r for r in (result.reason, f"{what}: {choice.reason}") if r)


def _fit_procrustes(data: PairData, s: dict[str, Any], progress: ProgressFn) -> FitResult:
    """Closed form; with ``whiten`` 'auto' the plain and whitened fits compete on validation
    (ties go to the plain rotation, listed first)."""
    result = FitResult("procrustes", None, best_epoch=0)
    shrinks = [float(v) for v in s["shrink_grid"]]
    count = candidate_count(s["whiten"], shrinks)
    adapters, scores, tried = [], [], []
    # one solution at a time: each holds d x d float64 matrices, so the next is solved once this one is
    # validated and kept as its (float32) layer alone
    for i, (shrink, sol) in enumerate(candidates_from_moments(data.moments(gram_out=s["whiten"] is not False),
                                                              s["whiten"], shrinks)):
        adapter = ProcrustesAdapter.from_solution(sol, shrink).eval()
        del sol
        val = _val(adapter, data)
        adapters.append(adapter)
        scores.append(val)
        tried.append(shrink)
        result.metrics.append({"epoch": 0.0, "whitening": shrink, "val_metric": val})
        progress(i + 1, count, {"epoch": 0, "step": i + 1, "val_metric": val, "best_val_metric": max(scores)})
    names = [f"whitening {shrink:g}" if shrink else "the plain rotation" for shrink in tried]
    choice = choose(names, scores, data.validation().protocol, default=0, default_why="listed first",
                    metric=data.validation().metric_label)
    result.adapter, result.best_val_metric = adapters[choice.index], scores[choice.index]
    if len(tried) > 1:
        _record(result, choice, "whitening")
    return result


def _fit_affine(data: PairData, s: dict[str, Any], progress: ProgressFn, stop: StopFn) -> FitResult:
    grid = [float(r) for r in s["ridge_grid"]]
    result = FitResult("affine", None)
    adapters, scores, mses = [], [], []
    for i, (rel, sol) in enumerate(ridge_from_moments(data.moments(gram_out=False), grid)):
        if stop() and adapters:
            result.status, result.reason = "cancelled", f"cancelled by the user after {i} of {len(grid)} λ values"
            break
        adapter = AffineAdapter.from_solution(sol, rel).eval()
        val = _val(adapter, data)
        mse = float(((adapt_queries(adapter, data.new_val) - data.old_val) ** 2).sum(axis=1).mean())
        adapters.append(adapter)
        scores.append(val)
        mses.append(mse)
        result.metrics.append({"epoch": 0.0, "ridge": rel, "val_metric": val, "val_mse": mse})
        progress(i + 1, len(grid), {"epoch": 0, "step": i + 1, "val_metric": val, "best_val_metric": max(scores)})
    if not adapters:
        return result
    names = [f"λ {rel:g}" for rel in grid[: len(adapters)]]
    lowest_mse = min(range(len(mses)), key=lambda i: mses[i])
    choice = choose(names, scores, data.validation().protocol, default=lowest_mse,
                    default_why="the lowest validation MSE", metric=data.validation().metric_label)
    if choice.decided:  # among equal best retrieval scores, the lower MSE
        best = max(scores)
        tied = [i for i, v in enumerate(scores) if v >= best - 1e-12]
        kept = min(tied, key=lambda i: mses[i])
        if len(tied) > 1:  # the sentence names the one kept and the rule that kept it
            other = min((i for i in tied if i != kept), key=lambda i: mses[i])
            metric = data.validation().metric_label
            choice = Choice(kept, True, f"{names[kept]} won with validation {metric} {best:.3f}, level with "
                            f"{names[other]}: a tie goes to the lower validation MSE ({mses[kept]:.4g} against "
                            f"{mses[other]:.4g}), on {data.validation().protocol}")
    result.adapter, result.best_val_metric, result.best_epoch = adapters[choice.index], scores[choice.index], 0
    if len(adapters) > 1:
        _record(result, choice, "ridge λ")
    return result


def _ridge(source: np.ndarray, target: np.ndarray) -> LinearSolution:
    return next(ridge_path(source, target, [INIT_RIDGE]))[1]


def _ridge_new_old(data: PairData) -> LinearSolution:
    """The new -> old ridge start, from the run's shared moments (no further pass over the pairs)."""
    return next(ridge_from_moments(data.moments(gram_out=False), [INIT_RIDGE]))[1]


def _labels_for(kind: str, data: PairData) -> tuple[np.ndarray, np.ndarray]:
    """(class ids, contiguous training labels with -1 for unknown); requires labels."""
    if not data.has_labels:
        found = count_classes(data.labels_train)
        raise TrainingError(
            f"method '{kind}' trains classifiers and needs class labels (at least two classes) on the "
            f"training pairs, which have {'only one class' if found == 1 else 'none'}; use procrustes, affine, "
            "lowrank or mlp instead"
        )
    labels = data.labels_train
    class_ids = np.unique(labels[labels >= 0])
    contiguous = np.where(labels >= 0, np.searchsorted(class_ids, labels), -1)
    return class_ids, contiguous.astype(np.int64)


def build_for_training(kind: str, data: PairData, s: dict[str, Any]) -> tuple[Adapter, nn.Module, np.ndarray]:
    """(adapter at its closed-form start, objective, contiguous labels) for a trainable kind."""
    old, new = data.old_train, data.new_train
    labels = np.full(len(old), -1, dtype=np.int64)
    if kind == "lowrank":
        adapter: Adapter = LowRankAdapter(data.new_dim, data.old_dim, s["rank"], s["diagonal"])
        adapter.init_from_linear(_ridge_new_old(data))
        return adapter, _backward_objective(data, s), labels
    if kind in ("mlp", "bct"):
        cls = MLPAdapter if kind == "mlp" else BCTAdapter
        adapter = cls(data.new_dim, data.old_dim, s["hidden"])
        adapter.init_from_data(new, _ridge_new_old(data))
        if kind == "mlp":
            return adapter, _backward_objective(data, s), labels
        class_ids, labels = _labels_for(kind, data)
        centre, protos = class_prototypes(old, labels, len(class_ids), data.old_classifier, class_ids)
        return adapter, BCTObjective(centre, protos, s["influence_weight"], s["logit_scale"],
                                       s["softmax_classes"], s["seed"], s.get("align_weight", 0.0)), labels
    if kind == "bt2":
        class_ids, labels = _labels_for(kind, data)
        adapter = BT2Adapter(data.new_dim, data.new_dim + bt2_extra_dims(s["extra_dims"], data.old_dim, data.new_dim),
                             data.old_dim, s["hidden"])
        if not adapter.init_from_linear(_ridge_new_old(data), new):
            adapter.init_from_procrustes(procrustes_from_moments(data.moments(gram_out=False)), new)
        centre, protos = class_prototypes(old, labels, len(class_ids), data.old_classifier, class_ids)
        objective = BT2Objective(centre, protos, adapter.extra_dims, s["influence_weight"],
                                 s["align_weight"], s["logit_scale"], s["softmax_classes"], s["seed"])
        return adapter, objective, labels
    if kind == "fct":
        source = old if data.side_train is None else np.concatenate([old, data.side_train], axis=1)
        adapter = FCTAdapter(source.shape[1], data.new_dim, s["hidden"], data.side_dim)
        adapter.init_from_data(source, _ridge(source, new))
        return adapter, PairObjective(s["loss"], s["temperature"], True), labels
    raise InputError("method", f"'{kind}' is not a trainable method")


def bt2_extra_dims(asked: int, old_dim: int, new_dim: int) -> int:
    """The dims BT² adds to the new vector: as asked, but at least old - new, since the head's first
    old-dim outputs are the old-compatible ones and must fit in new + extra."""
    return max(int(asked), old_dim - new_dim)


def _backward_objective(data: PairData, s: dict[str, Any]) -> nn.Module:
    """The objective of lowrank / mlp: a pair loss, or retrieval among the old gallery bank."""
    if s["loss"] != "retrieval":
        return PairObjective(s["loss"], s["temperature"], False)
    return RetrievalObjective(data.old_bank(), s["temperature"], s["bank_size"], s["hard_negatives"],
                              s["hard_every"], s["seed"])


def training_rows(kind: str, data: PairData, labels: np.ndarray) -> dict[str, torch.Tensor]:
    """Rows the loop batches: the item pairs, then (new -> old kinds) the training query pairs.

    A query row's target (``old``) is the old vector of its relevant document and ``pos`` that
    document's row in the old gallery bank; an item's ``pos`` is its own row. fct's side vectors
    ride along as ``side``.
    """
    new, old = data.new_train, data.old_train
    pos = np.arange(len(old), dtype=np.int64)
    if data.query_new_train is not None and kind in ("lowrank", "mlp"):
        new = np.concatenate([new, data.query_new_train])
        old = np.concatenate([old, data.old_bank()[data.query_relevant_train]])
        pos = np.concatenate([pos, data.query_relevant_train])
        labels = np.concatenate([labels, np.full(len(data.query_new_train), -1, dtype=np.int64)])
    rows = {"old": torch.as_tensor(old), "new": torch.as_tensor(new), "labels": torch.as_tensor(labels),
            "pos": torch.as_tensor(pos), "row": torch.arange(len(new))}
    if data.side_train is not None:
        rows["side"] = torch.as_tensor(data.side_train)
    return rows


def _fit_trainable(
    kind: str, data: PairData, s: dict[str, Any], device: torch.device, progress: ProgressFn, stop: StopFn,
    stop_after_epoch: StopFn | None = None,
) -> FitResult:
    adapter, objective, labels = build_for_training(kind, data, s)
    tensors = training_rows(kind, data, labels)
    outcome = train_loop(adapter, objective, tensors, lambda: _val(adapter, data), s, device, progress, stop,
                         stop_after_epoch)
    result = FitResult(kind, adapter, outcome.status, outcome.reason, outcome.metrics, outcome.best_val,
                       outcome.best_epoch)
    values = [m["val_metric"] for m in outcome.metrics]
    if len(values) > 1 and all_tied(values):
        epochs = [f"epoch {int(m['epoch'])}" for m in outcome.metrics]
        _record(result, choose(epochs, values, data.validation().protocol, default=0,
                               default_why="the closed-form start", metric=data.validation().metric_label),
                "early stopping")
    elif len(values) > 1 and outcome.best_epoch == 0:  # training only made it worse: the layer is the start
        result.reason = "; ".join(r for r in (result.reason, (
            f"no trained epoch scored above the closed-form start on {data.validation().metric_label} "
            f"(epoch 0: {values[0]:.4f}, {_epochs_word(int(outcome.metrics[-1]['epoch']))}: at most "
            f"{max(values[1:]):.4f}), so the layer kept is that start, not a trained one")) if r)
    return result


def _fit_bridge(
    name: str, data: PairData, s: dict[str, Any], user: dict[str, Any], progress: ProgressFn, stop: StopFn,
    stop_after_epoch: StopFn | None = None,
) -> FitResult:
    """fusion / cascade: fit the base layer, then choose α / K on the validation task."""
    if name == "cascade":
        cascade_ready(data)  # before fitting the base: say at once what is missing
    elif data.validation().metric_name == "pair_top1":
        raise InputError("fusion", "choosing α needs dev queries with judged documents (or labels): on own-item "
                                   "validation the old query is the target itself, so α = 1 (the old query alone) "
                                   "always wins and the run would measure today's system finding its own vectors")
    base_kind = s["base"]
    keys = allowed_settings(base_kind)
    base = fit_adapter(base_kind, data, {k: v for k, v in user.items() if k in keys}, progress, stop, stop_after_epoch)
    result = FitResult(name, None, base.status, base.reason, list(base.metrics), choice=base.choice)
    if base.adapter is None or base.status == "failed":
        return result
    if name == "fusion":
        choice = choose_fusion(base.adapter, data, s["alpha_grid"], _val)
    else:
        choice = choose_cascade(base.adapter, data, s["k_grid"], s["rerank_new_vectors"])
    result.adapter, result.best_val_metric, result.best_epoch = choice.adapter, choice.score, base.best_epoch
    result.metrics.extend(choice.metrics)
    result.reason = "; ".join(r for r in (choice.note, base.reason) if r)
    if choice.choice is not None:
        _record(result, choice.choice, "fusion α" if name == "fusion" else "cascade K")
    return result


def _epochs_word(last: int) -> str:
    """'epoch 1' or 'epochs 1-6': the trained epochs of a run."""
    return "epoch 1" if last == 1 else f"epochs 1-{last}"
