"""The one training loop of the trainable kinds.

AdamW with a cosine learning-rate schedule, autocast on CUDA only, validation after every epoch
(and before the first, so the closed-form starting point is the state to beat), early stopping
(no gain for ``patience`` epochs, or the best state already at the metric's maximum, where no
epoch could replace it, so stopping changes nothing but the time spent),
``should_stop()`` checked every batch. The adapter always ends in its best validated state, on the
CPU, in eval mode. Outcomes are statuses, not exceptions: ``cancelled`` keeps the best state,
``failed`` (non-finite loss) keeps the best validated state and says why. Only running out of memory
raises :class:`TrainingError`, because nothing sensible can be returned then.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from embridge.core.adapters.adapter import Adapter
from embridge.core.errors import TrainingError
from embridge.core.progress import ProgressFn, StopFn

Batch = dict[str, torch.Tensor]
# every validation metric is a share of queries (top-1) or a mean of per-query values in [0, 1]:
# once the best state reaches it no epoch can beat it (only a strictly better epoch is kept)
METRIC_CEILING = 1.0


@dataclass
class LoopOutcome:
    status: str = "completed"
    reason: str = ""
    metrics: list[dict[str, float]] = field(default_factory=list)
    best_val: float = float("-inf")
    best_epoch: int = 0


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _amp(device: torch.device, wanted: bool) -> tuple[bool, torch.dtype]:
    if not wanted or device.type != "cuda":
        return False, torch.float32
    return True, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def train_loop(
    adapter: Adapter,
    objective: nn.Module,
    tensors: Batch,
    validate: Callable[[], float],
    settings: dict[str, Any],
    device: torch.device,
    on_progress: ProgressFn,
    should_stop: StopFn,
    stop_after_epoch: StopFn | None = None,
) -> LoopOutcome:
    """Train ``adapter`` (and the objective's own parameters) on ``tensors`` (rows = pairs).

    ``stop_after_epoch`` is asked after the starting point's validation and after each validated epoch
    (a time budget): when it answers yes the loop ends there, completed, in its best state."""
    adapter.prepare_training()
    adapter.to(device).train()
    objective.to(device).train()
    data = {k: v.to(device) for k, v in tensors.items()}
    n = len(data["new"])
    batch_size = min(int(settings["batch_size"]), n)
    per_epoch = math.ceil(n / batch_size)
    total = int(settings["epochs"]) * per_epoch
    params = [p for p in [*adapter.parameters(), *objective.parameters()] if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=float(settings["lr"]), weight_decay=float(settings["weight_decay"]))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total)))
    use_amp, amp_dtype = _amp(device, bool(settings["amp"]))
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    gen = torch.Generator().manual_seed(int(settings["seed"]))

    out = LoopOutcome()
    out.best_val = validate()
    best_state = _snapshot(adapter)
    out.metrics.append({"epoch": 0.0, "val_metric": out.best_val})
    last_val, done, since_best, dirty = out.best_val, 0, 0, False
    start_epoch = getattr(objective, "start_epoch", None)  # e.g. re-mining hard negatives
    budget_spent = False
    if out.best_val >= METRIC_CEILING:
        out.reason = (f"no epoch trained: the starting point already scores {out.best_val:.3f} on validation, "
                      "the metric's maximum, which no epoch can beat")
    elif stop_after_epoch is not None and stop_after_epoch():  # spent while this candidate was set up
        budget_spent = True
        out.reason = ("stopped before epoch 1: the time budget was spent while the layer was set up, so the "
                      "layer kept is its validated starting point")
    for epoch in range(1, int(settings["epochs"]) + 1):
        if out.best_val >= METRIC_CEILING or budget_spent:
            break
        if start_epoch is not None:
            start_epoch(adapter, epoch, data)
        order = torch.randperm(n, generator=gen).to(device)
        losses: list[float] = []
        for start in range(0, n, batch_size):
            if should_stop():
                out.status, out.reason = "cancelled", f"cancelled by the user at epoch {epoch}, step {done}"
                break
            batch = {k: v[order[start : start + batch_size]] for k, v in data.items()}
            loss = _step(adapter, objective, batch, opt, scaler, use_amp, amp_dtype, device, settings)
            if not math.isfinite(loss):
                out.status = "failed"
                out.reason = (f"the training loss became {loss} at epoch {epoch}, step {done + 1}; "
                              f"try a lower learning rate than {settings['lr']}")
                break
            sched.step()
            done += 1
            dirty = True
            losses.append(loss)
            on_progress(done, total, {"epoch": epoch, "step": done, "loss": loss,
                                      "val_metric": last_val, "best_val_metric": out.best_val,
                                      **{f"last_{k}": v for k, v in out.metrics[-1].items()},
                                      "patience": int(settings["patience"]), "epochs_without_gain": since_best,
                                      "epochs": int(settings["epochs"])})
        if out.status != "completed":
            break
        last_val = validate()
        dirty = False
        out.metrics.append({"epoch": float(epoch), "train_loss": sum(losses) / max(len(losses), 1),
                            "val_metric": last_val, "lr": float(opt.param_groups[0]["lr"])})
        if last_val > out.best_val:
            out.best_val, out.best_epoch, best_state, since_best = last_val, epoch, _snapshot(adapter), 0
            if out.best_val >= METRIC_CEILING:
                out.reason = (f"stopped at epoch {epoch}: validation reached {out.best_val:.3f}, the metric's "
                              "maximum, which no later epoch can beat")
                break
        else:
            since_best += 1
            if since_best >= int(settings["patience"]):
                out.reason = f"stopped early at epoch {epoch}: no validation gain for {since_best} epochs"
                break
        if stop_after_epoch is not None and epoch < int(settings["epochs"]) and stop_after_epoch():
            out.reason = f"stopped at the end of epoch {epoch}: the time budget was spent"
            break
    if out.status == "cancelled" and dirty:  # the partial epoch may still be the best state
        current = validate()
        if current > out.best_val:
            out.best_val, best_state = current, _snapshot(adapter)
    adapter.load_state_dict(best_state)
    adapter.finish_training()
    adapter.cpu().eval()
    objective.cpu()
    return out


def _step(
    adapter: Adapter, objective: nn.Module, batch: Batch, opt: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler, use_amp: bool, amp_dtype: torch.dtype, device: torch.device,
    settings: dict[str, Any],
) -> float:
    """One optimisation step; returns the loss (non-finite losses are not applied)."""
    try:
        with torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=use_amp):
            loss = objective(adapter, batch)
        value = float(loss.detach())
        if not math.isfinite(value):
            return value
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        after_step = getattr(objective, "after_step", None)
        if after_step is not None:  # parameters the objective updates itself (sampled classifier rows)
            group = opt.param_groups[0]
            after_step(float(group["lr"]), float(group["weight_decay"]),
                       float(scaler.get_scale()) if scaler.is_enabled() else 1.0)
        scaler.update()
        return value
    except RuntimeError as exc:  # torch.OutOfMemoryError (CUDA) or MPS's plain RuntimeError
        if not isinstance(exc, torch.OutOfMemoryError) and "out of memory" not in str(exc).lower():
            raise
        raise TrainingError(
            f"out of memory on {device} training a {adapter.kind} adapter with batch_size "
            f"{settings['batch_size']}; lower the batch size or choose another device"
        ) from exc
