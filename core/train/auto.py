"""``auto``: fit every candidate the data allows and keep the best on validation.

Candidates are scored by the same number, so the choice is like for like: top-1 of the upgraded
system's dev queries against the whole old gallery in a workspace run (see
:mod:`embridge.core.evaluation.selection`). Besides the layers, ``auto`` considers fusion (α chosen on
validation, over each fitted layer) and a cascade (old recall, new re-rank, K chosen on
validation, the best layer as fallback). Every candidate's score and time are recorded with a
sentence saying why the winner won and where today's system (old/old) stands, or, when every
candidate scored the same, that no choice was made and the simplest candidate was kept.

Candidates run in order: closed forms, then the trainable layers, then the bridges over them (cheap
themselves, but they need the layers, so a small budget may skip them). With a ``time_budget`` (seconds), a candidate not yet started when the budget is spent is
recorded as skipped with the reason, and a trainable one running then stops at the end of its
epoch in its best validated state; the first candidate always runs. Once a candidate scores the
metric's maximum on validation, the later ones are recorded as skipped: they could only tie, and a
tie goes to the earlier candidate. A candidate is never cut
mid-epoch, so the run may overrun the budget by at most one epoch or one candidate's set-up (its
closed-form fit or start and that start's validation; a training candidate whose set-up spent the
budget keeps its start and trains no epoch).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from embridge.core.adapters.registry import METHODS, canonical_kind
from embridge.core.errors import Cancelled, DeviceError, InputError
from embridge.core.evaluation.choice import choose
from embridge.core.progress import ProgressFn, StopFn
from embridge.core.train.bridges import BridgeChoice, ValFn, cascade_ready, choose_cascade, choose_fusion
from embridge.core.train.config import AUTO_CANDIDATES, FUSION_BASES, allowed_settings
from embridge.core.train.data import FitResult, PairData
from embridge.core.train.loop import METRIC_CEILING

UNITS = 1000  # progress units per candidate
BRIDGES = ("fusion", "cascade")


class _Budget:
    """Seconds allowed to the whole ``auto`` run (None: no limit) and what was cut to keep to them."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds, self.start = seconds, time.perf_counter()
        self.skipped: list[str] = []

    def spent(self) -> float:
        return time.perf_counter() - self.start

    def over(self) -> bool:
        return self.seconds is not None and self.spent() >= self.seconds

    def skip(self, kind: str) -> dict[str, Any]:
        self.skipped.append(kind)
        return _skipped(kind, f"time budget of {self.seconds:g} s spent ({self.spent():.1f} s used)")

    def record(self, table: list[dict[str, Any]]) -> dict[str, Any] | None:
        if self.seconds is None:
            return None
        cut = [r["kind"] for r in table if "time budget" in str(r.get("reason") or "") and r["status"] != "skipped"]
        return {"seconds": self.seconds, "spent_s": round(self.spent(), 3), "skipped": list(self.skipped),
                "stopped_at_epoch_end": cut,
                "candidates_s": round(sum(float(r.get("duration_s") or 0.0) for r in table), 3)}


def _skipped(kind: str, reason: str) -> dict[str, Any]:
    """The table row of a candidate that was not fitted, with the reason."""
    return {"kind": kind, "status": "skipped", "val_metric": None, "duration_s": 0.0, "reason": reason}


def _ceiling_reason(fitted: list[FitResult]) -> str | None:
    """Why no later candidate need run, when a fitted one already scores the metric's maximum: a later
    one can at best tie, and ties go to the earlier, simpler candidate."""
    for r in fitted:
        if r.status != "failed" and r.best_val_metric is not None and float(r.best_val_metric) >= METRIC_CEILING:
            return (f"{r.kind} already scores {float(r.best_val_metric):.3f} on validation, the metric's maximum; "
                    "a later candidate could only tie, and ties go to the earlier one")
    return None


def cost_order(kinds: list[str]) -> list[str]:
    """Cheapest first: the order of AUTO_CANDIDATES (closed forms, small layers, heads, bridges)."""
    return sorted(kinds, key=AUTO_CANDIDATES.index)


def _row(r: FitResult, **extra: Any) -> dict[str, Any]:
    """A candidate's record: its score, its time, and what the time went on (epochs trained, and
    validation evaluations: one per closed-form setting, α or K tried, or per epoch plus the start)."""
    return {"kind": r.kind, "status": r.status, "reason": r.reason, "val_metric": r.best_val_metric,
            "duration_s": r.duration_s, "epochs": r.epochs_run,
            "evaluations": len(r.metrics), **extra}


def _fit_candidate(fit_one: Callable[..., FitResult], kind: str, *args: Any) -> FitResult:
    """One candidate's fit; its failure is that candidate's row (failed, with the error), not the end of
    the run, so the candidates already fitted are still compared. An absent device fails every one: raised."""
    start = time.perf_counter()
    try:
        return fit_one(kind, *args)
    except (DeviceError, Cancelled):
        raise
    except Exception as exc:  # noqa: BLE001 - recorded in the candidate's row and the run's table
        return FitResult(kind, None, "failed", f"{type(exc).__name__}: {exc}",
                         duration_s=time.perf_counter() - start)


def cancelled_in(results: list[FitResult]) -> bool:
    """Whether the user stopped one of these candidates (the run then starts no other)."""
    return any(r.status == "cancelled" for r in results)


def _warm_optimiser() -> None:
    """Build one optimiser before any candidate's clock starts: torch imports its compiler stack on the first
    AdamW (about 1 s), which was charged to the first trainable candidate's recorded time and budget."""
    import torch

    torch.optim.AdamW([torch.zeros(1, requires_grad=True)])


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
    wanted = cost_order(list(dict.fromkeys(canonical_kind(c) for c in settings["candidates"])))
    if any(METHODS[c].trainable for c in wanted if c in METHODS):
        _warm_optimiser()
    start = time.perf_counter()
    budget = _Budget(settings.get("time_budget"))
    layers = [c for c in wanted if c not in BRIDGES]
    bridges = [c for c in wanted if c in BRIDGES]
    runnable = [c for c in layers if data.has_labels or not METHODS[c].needs_labels]
    results: list[FitResult] = []
    table: list[dict[str, Any]] = []  # every candidate's row, in the order the run took them
    steps = len(runnable) + len(bridges)
    for cand in layers:
        if cand not in runnable:
            table.append(_skipped(cand, "needs labels"))
            continue
        if cancelled_in(results):
            continue
        i = runnable.index(cand)
        if results and budget.over():
            table.append(budget.skip(cand))
            continue
        if (reason := _ceiling_reason(results)) is not None:
            table.append(_skipped(cand, reason))
            continue
        keys = allowed_settings(cand)
        cfg = {k: v for k, v in user.items() if k in keys}

        def sub(done: int, total: int, info: dict[str, Any], i: int = i, cand: str = cand) -> None:
            share = int(UNITS * done / total) if total else UNITS
            progress(i * UNITS + share, steps * UNITS, {**info, "candidate": cand})

        results.append(_fit_candidate(fit_one, cand, data, cfg, sub, stop, budget.over))
        table.append(_row(results[-1]))
    cancelled = cancelled_in(results)
    usable = [r for r in results if r.status != "failed" and r.best_val_metric is not None]
    if not cancelled:
        for j, bridge in enumerate(bridges):
            if budget.over():
                table.append(budget.skip(bridge))
                continue
            if (reason := _ceiling_reason(usable)) is not None:
                table.append(_skipped(bridge, reason))
                continue
            fitted, row = _bridge(bridge, usable, data, settings, val)
            table.append(row)
            if fitted is not None:
                usable.append(fitted)
            progress((len(runnable) + j + 1) * UNITS, steps * UNITS, {"candidate": bridge})
    if not usable:
        failures = "; ".join(f"{r.kind}: {r.reason}" for r in results if r.status == "failed" and r.reason)
        ran = any(r.status == "failed" for r in results)
        skips = "; ".join(f"{row['kind']}: {row.get('reason')}" for row in table if row.get("status") == "skipped")
        reason = ("cancelled before any candidate finished" if cancelled
                  else "every candidate failed" + (f" ({failures})" if failures else "") if ran
                  else "no candidate could run" + (f" ({skips})" if skips else ""))
        return FitResult("auto", None, "cancelled" if cancelled else "failed", reason, candidates=table,
                         duration_s=time.perf_counter() - start, config=settings, budget=budget.record(table))
    # on equal scores the earlier (simpler, cheaper to serve) candidate wins: layers come before bridges
    choice = choose([r.kind for r in usable], [float(r.best_val_metric or 0.0) for r in usable],
                    data.validation().protocol, default=0, default_why="the simplest candidate, listed first",
                    metric=data.validation().metric_label)
    best = usable[choice.index]
    why = choice.reason + _old_old_note(best, data)
    if budget.skipped:
        why += f"; not tried within the {budget.seconds:g} s time budget: {', '.join(budget.skipped)}"
    if best.kind in ("bct", "bt2"):
        why += f"; note that {best.kind} changes the new model's output, so a full backfill uses its head"
    if best.kind in BRIDGES:
        why += "; serving it needs both encoders during the transition" + _rerank_note(best, data)
    if cancelled:  # said first: the run was stopped, and its layer is the best of what had finished
        stopped = next(r.kind for r in results if r.status == "cancelled")
        why = f"cancelled by the user during candidate {stopped}; the best of the candidates tried so far: {why}"
    return FitResult(
        kind=best.kind, adapter=best.adapter, status="cancelled" if cancelled else "completed",
        reason=why, metrics=best.metrics,
        best_val_metric=best.best_val_metric, best_epoch=best.best_epoch,
        val_metric_name=best.val_metric_name, val_protocol=best.val_protocol, device=best.device,
        duration_s=time.perf_counter() - start, config=settings, candidates=table,
        choice={"what": "auto candidate", **choice.to_dict(), "kind": best.kind}, budget=budget.record(table),
    )


def _rerank_note(best: FitResult, data: PairData) -> str:
    """A cascade's serving words: its K, and the stored new vectors its score stood on, if any."""
    if best.kind != "cascade" or best.adapter is None:
        return ""
    k = int(best.adapter.k)
    note = f" and re-ranks {k} item{'s' if k != 1 else ''} per query"
    validator = data.validation()
    if getattr(best.adapter, "new_vectors", False) and getattr(validator, "has_new_gallery", False):
        note += (f", {validator.new_gallery_share:.0%} of the gallery by stored new vectors (it was scored with "
                 "them, beside layers that re-embed nothing)")
    return note


def _old_old_note(best: FitResult, data: PairData) -> str:
    """Where today's system stands on the same task (when the validator can say)."""
    old_old = getattr(data.validation(), "old_old_value", None)
    if old_old is None:
        return ""
    floor = float(old_old())
    if not math.isfinite(floor):  # no validation query has a relevant item: nothing was compared
        return ("; no validation query has a relevant item in the gallery, so neither the winner nor today's "
                "system (old/old) could be scored there")
    if data.validation().metric_name == "pair_top1":  # the old query is its own target: no bar to clear
        return (f"; today's system (old/old) finds its own vectors there ({floor:.3f}), which is no bar on "
                "own-item validation: add labels or judged queries to compare with it")
    verdict = "above" if float(best.best_val_metric or 0.0) > floor else "NOT above"
    return f"; today's system (old/old) scores {floor:.3f} there, the winner is {verdict} it"


def _bridge(kind: str, layers: list[FitResult], data: PairData, settings: dict[str, Any],
            val: ValFn) -> tuple[FitResult | None, dict[str, Any]]:
    """(fitted fusion / cascade or None, its table row) on top of the fitted layers."""
    start = time.perf_counter()
    bases = [r for r in layers if r.kind in FUSION_BASES and r.adapter is not None]
    if not bases:
        return None, _skipped(kind, "no fitted new->old layer to build on")
    if kind == "fusion" and data.validation().metric_name == "pair_top1":
        return None, _skipped(kind, "own-item validation cannot choose α (the old query is the target itself); "
                                    "add dev queries with judged documents")
    new_vectors = bool(settings.get("rerank_new_vectors", False))
    if kind == "cascade":
        try:
            cascade_ready(data)
        except InputError as exc:
            return None, _skipped(kind, exc.problem)
    best_layer = max(bases, key=lambda r: float(r.best_val_metric or 0.0))
    choices: list[tuple[FitResult, BridgeChoice]] = []
    try:
        for base in (bases if kind == "fusion" else [best_layer]):
            assert base.adapter is not None
            if kind == "fusion":
                grid = settings.get("alpha_grid") or METHODS["fusion"].defaults["alpha_grid"]
                choices.append((base, choose_fusion(base.adapter, data, grid, val)))
            else:
                grid = settings.get("k_grid") or METHODS["cascade"].defaults["k_grid"]
                choices.append((base, choose_cascade(base.adapter, data, grid, new_vectors)))
    except InputError as exc:  # validation that cannot choose its setting: not offered, as the method refuses
        return None, _skipped(kind, exc.problem)
    base, choice = max(choices, key=lambda bc: bc[1].score)
    # the bridge's own row counts what choosing α or K cost; the fitted result carries its base layer's
    # epochs too, so the run's best_epoch and epochs_run both describe the layer it serves
    own = FitResult(kind, choice.adapter, "completed", f"{choice.note} (over {base.kind})", [*choice.metrics],
                    choice.score, duration_s=time.perf_counter() - start)
    fitted = FitResult(kind, choice.adapter, "completed", own.reason, [*base.metrics, *choice.metrics],
                       choice.score, base.best_epoch, base.val_metric_name, base.val_protocol, base.device,
                       own.duration_s)
    out = {**_row(own), "base": base.kind, **choice.setting}
    if choice.adds_nothing:
        out["status"] = "no gain"
        return None, out
    return fitted, out
