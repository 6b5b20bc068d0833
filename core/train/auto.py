"""``auto``: fit every candidate the data allows and keep the best on validation.

Candidates are scored by the same number (top-1 of the upgraded system's dev queries against the
whole old gallery in a workspace run; see :mod:`core.evaluation.selection`), so the choice is like
for like; every candidate's score is recorded with a sentence saying why the winner won, or, when
every candidate scored the same, that no choice was made and the simplest candidate was kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from core.adapters.registry import METHODS, canonical_kind
from core.evaluation.choice import choose
from core.progress import ProgressFn, StopFn
from core.train.config import allowed_settings
from core.train.data import FitResult, PairData

UNITS = 1000  # progress units per candidate


def fit_auto(
    data: PairData,
    settings: dict[str, Any],
    user: dict[str, Any],
    progress: ProgressFn,
    stop: StopFn,
    fit_one: Callable[..., FitResult],
) -> FitResult:
    """Fit the candidates in ``settings['candidates']`` with the caller's explicit settings."""
    start = time.perf_counter()
    wanted = [canonical_kind(c) for c in settings["candidates"]]
    runnable = [c for c in wanted if data.has_labels or not METHODS[c].needs_labels]
    skipped = [{"kind": c, "status": "skipped", "reason": "needs labels", "val_metric": None}
               for c in wanted if c not in runnable]
    results: list[FitResult] = []
    for i, cand in enumerate(runnable):
        keys = allowed_settings(cand)
        cfg = {k: v for k, v in user.items() if k in keys}

        def sub(done: int, total: int, info: dict[str, Any], i: int = i, cand: str = cand) -> None:
            share = int(UNITS * done / total) if total else UNITS
            progress(i * UNITS + share, len(runnable) * UNITS, {**info, "candidate": cand})

        results.append(fit_one(cand, data, cfg, sub, stop))
        if results[-1].status == "cancelled":
            break
    usable = [r for r in results if r.status != "failed" and r.best_val_metric is not None]
    table = [{"kind": r.kind, "status": r.status, "reason": r.reason, "val_metric": r.best_val_metric,
              "duration_s": r.duration_s} for r in results] + skipped
    cancelled = any(r.status == "cancelled" for r in results)
    if not usable:
        reason = "cancelled before any candidate finished" if cancelled else "every candidate failed"
        return FitResult("auto", None, "cancelled" if cancelled else "failed", reason, candidates=table,
                         duration_s=time.perf_counter() - start, config=settings)
    choice = choose([r.kind for r in usable], [float(r.best_val_metric or 0.0) for r in usable],
                    data.validation().protocol, default=0, default_why="the simplest candidate, listed first")
    best = usable[choice.index]
    why = choice.reason
    if best.kind in ("bct", "bt2"):
        why += f"; note that {best.kind} changes the new model's output, so a full backfill uses its head"
    return FitResult(
        kind=best.kind, adapter=best.adapter, status="cancelled" if cancelled else "completed",
        reason=why + ("; stopped early by the user" if cancelled else ""), metrics=best.metrics,
        best_val_metric=best.best_val_metric, best_epoch=best.best_epoch,
        val_metric_name=best.val_metric_name, val_protocol=best.val_protocol, device=best.device,
        duration_s=time.perf_counter() - start, config=settings, candidates=table,
        choice={"what": "auto candidate", **choice.to_dict(), "kind": best.kind},
    )
