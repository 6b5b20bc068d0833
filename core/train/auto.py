"""``auto``: fit every candidate the data allows and keep the best on validation.

Candidates are scored by the same number, so the choice is like for like: with dev queries
(``PairData.dev``) that is success@1 of dev queries retrieving their judged documents among the
old gallery, for every kind of candidate; without them, validation top-1 of new->old queries
against the validation items' old vectors. Besides the layers, ``auto`` considers fusion (α
chosen on validation, over each fitted layer) and a cascade (old recall, new re-rank, K chosen on
dev queries, the best layer as fallback). Every candidate's score and time are recorded with a
sentence saying why the winner won and where today's system (old/old) stands.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from core.adapters.registry import METHODS, canonical_kind
from core.progress import ProgressFn, StopFn
from core.train.bridges import BridgeChoice, ValFn, choose_cascade, choose_fusion
from core.train.config import FUSION_BASES, allowed_settings
from core.train.data import FitResult, PairData

UNITS = 1000  # progress units per candidate
BRIDGES = ("fusion", "cascade")


def _describe(metric_name: str) -> str:
    return {"label_top1": "label top-1", "dev_success_at_1": "dev success@1"}.get(metric_name, "own-item top-1")


def _row(r: FitResult, **extra: Any) -> dict[str, Any]:
    return {"kind": r.kind, "status": r.status, "reason": r.reason, "val_metric": r.best_val_metric,
            "duration_s": r.duration_s, **extra}


def fit_auto(
    data: PairData,
    settings: dict[str, Any],
    user: dict[str, Any],
    progress: ProgressFn,
    stop: StopFn,
    fit_one: Callable[..., FitResult],
    val: ValFn,
) -> FitResult:
    """Fit the candidates in ``settings['candidates']`` with the caller's explicit settings."""
    start = time.perf_counter()
    wanted = [canonical_kind(c) for c in settings["candidates"]]
    layers = [c for c in wanted if c not in BRIDGES]
    runnable = [c for c in layers if data.has_labels or not METHODS[c].needs_labels]
    skipped = [{"kind": c, "status": "skipped", "reason": "needs labels", "val_metric": None}
               for c in layers if c not in runnable]
    results: list[FitResult] = []
    steps = len(runnable) + len([b for b in wanted if b in BRIDGES])
    for i, cand in enumerate(runnable):
        keys = allowed_settings(cand)
        cfg = {k: v for k, v in user.items() if k in keys}

        def sub(done: int, total: int, info: dict[str, Any], i: int = i, cand: str = cand) -> None:
            share = int(UNITS * done / total) if total else UNITS
            progress(i * UNITS + share, steps * UNITS, {**info, "candidate": cand})

        results.append(fit_one(cand, data, cfg, sub, stop))
        if results[-1].status == "cancelled":
            break
    cancelled = any(r.status == "cancelled" for r in results)
    usable = [r for r in results if r.status != "failed" and r.best_val_metric is not None]
    table = [_row(r) for r in results] + skipped
    if not cancelled:
        for j, bridge in enumerate(b for b in wanted if b in BRIDGES):
            fitted, row = _bridge(bridge, usable, data, settings, val)
            table.append(row)
            if fitted is not None:
                usable.append(fitted)
            progress((len(runnable) + j + 1) * UNITS, steps * UNITS, {"candidate": bridge})
    if not usable:
        reason = "cancelled before any candidate finished" if cancelled else "every candidate failed"
        return FitResult("auto", None, "cancelled" if cancelled else "failed", reason, candidates=table,
                         duration_s=time.perf_counter() - start, config=settings)
    # stable sort: on equal scores the earlier (simpler, cheaper to serve) candidate wins
    ranked = sorted(usable, key=lambda r: -float(r.best_val_metric or 0.0))
    best = ranked[0]
    why = _why(best, ranked, data)
    return FitResult(
        kind=best.kind, adapter=best.adapter, status="cancelled" if cancelled else "completed",
        reason=why + ("; stopped early by the user" if cancelled else ""), metrics=best.metrics,
        best_val_metric=best.best_val_metric, best_epoch=best.best_epoch,
        val_metric_name=best.val_metric_name, device=best.device,
        duration_s=time.perf_counter() - start, config=settings, candidates=table,
    )


def _bridge(kind: str, layers: list[FitResult], data: PairData, settings: dict[str, Any],
            val: ValFn) -> tuple[FitResult | None, dict[str, Any]]:
    """(fitted fusion / cascade or None, its table row) on top of the fitted layers."""
    start = time.perf_counter()
    bases = [r for r in layers if r.kind in FUSION_BASES and r.adapter is not None]
    row: dict[str, Any] = {"kind": kind, "status": "skipped", "val_metric": None, "duration_s": 0.0}
    if not bases:
        return None, {**row, "reason": "no fitted new->old layer to build on"}
    if kind == "fusion" and data.dev is None and bases[0].val_metric_name == "pair_top1":
        return None, {**row, "reason": "own-item validation cannot choose α (the old query is the target "
                                       "itself); add dev queries with judged documents"}
    if kind == "cascade" and (data.dev is None or data.dev.new_gallery is None):
        why = "no dev queries with judged documents" if data.dev is None else "no gallery item has a new vector"
        return None, {**row, "reason": f"choosing K needs dev queries and new vectors of gallery items: {why}"}
    best_layer = max(bases, key=lambda r: float(r.best_val_metric or 0.0))
    choices: list[tuple[FitResult, BridgeChoice]] = []
    for base in (bases if kind == "fusion" else [best_layer]):
        assert base.adapter is not None
        if kind == "fusion":
            choice = choose_fusion(base.adapter, data, settings.get("alpha_grid") or METHODS["fusion"].defaults[
                "alpha_grid"], val)
        else:
            choice = choose_cascade(base.adapter, data, settings.get("k_grid") or METHODS["cascade"].defaults["k_grid"])
        choices.append((base, choice))
    base, choice = max(choices, key=lambda bc: bc[1].score)
    duration = time.perf_counter() - start
    fitted = FitResult(kind, choice.adapter, "completed", f"{choice.note} (over {base.kind})",
                       [*choice.metrics], choice.score, base.best_epoch, choice.metric_name, base.device, duration)
    row = {**_row(fitted), "base": base.kind, **choice.setting}
    if choice.adds_nothing:
        row["status"] = "no gain"
        return None, row
    return fitted, row


def _why(best: FitResult, ranked: list[FitResult], data: PairData) -> str:
    what = _describe(best.val_metric_name)
    why = f"{best.kind} won with validation {what} {best.best_val_metric:.3f}"
    if len(ranked) > 1:
        why += f", ahead of {ranked[1].kind} ({ranked[1].best_val_metric:.3f})"
    if best.val_metric_name == "dev_success_at_1" and data.dev is not None:
        floor = data.dev.old_old()
        verdict = "above" if (best.best_val_metric or 0.0) > floor else "NOT above"
        why += f" (dev queries against the whole old gallery; today's old/old scores {floor:.3f}, the winner is {verdict} it)"
    else:
        why += " (new->old queries against the validation items' old vectors)"
    if best.kind in ("bct", "bt2"):
        why += f"; note that {best.kind} changes the new model's output, so a full backfill uses its head"
    if best.kind in BRIDGES:
        why += ("; serving it needs both encoders during the transition"
                + ("" if best.kind == "fusion" else " and re-ranks K items per query"))
    return why
