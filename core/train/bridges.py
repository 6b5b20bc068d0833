"""Fusion and cascade on top of a fitted new -> old layer: α or K chosen on the validation task.

Both keep the old query in the loop, so both need the two encoders during the transition.
With dev queries (``PairData.dev``) the choice is made on them; fusion without them is chosen on
the validation items, which says little when those items are their own targets (own-item
retrieval: the old query *is* the target there, so α = 1 always looks best) and the note says so.
α = 1 means the old query alone: fusion then adds nothing and is reported as such, not as a layer
that helps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.adapters.apply import adapt_queries
from core.adapters.base import Adapter
from core.adapters.cascade import CascadeAdapter, choose_k
from core.adapters.fusion import FusionAdapter
from core.errors import InputError
from core.train.data import PairData

ValFn = Callable[[Adapter, PairData], tuple[float, str]]


@dataclass
class BridgeChoice:
    """A fusion or cascade with its chosen setting, validation score and per-setting scores."""

    adapter: Adapter
    score: float
    metric_name: str
    setting: dict[str, float]
    metrics: list[dict[str, float]] = field(default_factory=list)
    note: str = ""
    adds_nothing: bool = False


def choose_fusion(base: Adapter, data: PairData, alpha_grid: Sequence[float], val: ValFn) -> BridgeChoice:
    """The α with the best validation score (ties: the larger α, closer to today's system)."""
    best: BridgeChoice | None = None
    metrics: list[dict[str, float]] = []
    for alpha in alpha_grid:
        fused = FusionAdapter(base, float(alpha)).eval()
        score, name = val(fused, data)
        metrics.append({"epoch": 0.0, "alpha": float(alpha), "val_metric": score})
        if best is None or score > best.score or (score == best.score and float(alpha) > best.setting["alpha"]):
            best = BridgeChoice(fused, score, name, {"alpha": float(alpha)})
    assert best is not None  # the grid is checked non-empty by the settings
    best.metrics = metrics
    alpha = best.setting["alpha"]
    where = "dev queries" if data.dev is not None else "the validation items"
    if alpha >= 1.0:
        best.adds_nothing = True
        best.note = (f"α = 1: fusion adds nothing here; the old query alone scores best on {where} "
                     f"({best.score:.3f}), so this is today's system, not a fusion layer")
    else:
        best.note = f"fusion with α = {alpha:g} (old query weight) chosen on {where}: {best.score:.3f}"
    if data.dev is None and best.metric_name == "pair_top1":
        best.note += ("; note: on own-item retrieval the old query is the target itself, so α is biased "
                      "towards 1; add dev queries with judged documents for a meaningful choice")
    return best


def choose_cascade(base: Adapter, data: PairData, k_grid: Sequence[int]) -> BridgeChoice:
    """The re-rank depth K with the best success@1 on dev queries (ties: the smaller K)."""
    task = data.dev
    if task is None:
        raise InputError("cascade", "choosing K needs dev queries with judged documents; add them first")
    if task.new_gallery is None:
        raise InputError("cascade", "no gallery item has a new vector, so the new model cannot re-rank anything")

    def layer(x: Any) -> Any:
        return adapt_queries(base, x)

    grid = [int(k) for k in k_grid if int(k) <= len(task.old_gallery)] or [len(task.old_gallery)]
    choice = choose_k(lambda k: task.cascade_score(k, layer), grid)
    metrics = [{"epoch": 0.0, "k": float(k), "val_metric": v} for k, v in choice.scores.items()]
    covered = len(task.new_gallery) / len(task.old_gallery)
    note = (f"cascade: the old index recalls K = {choice.k}, the new model re-ranks them ({covered:.0%} of the "
            f"gallery has new vectors, the rest go through the {base.kind} layer); dev success@1 {choice.score:.3f}")
    return BridgeChoice(CascadeAdapter(base, choice.k).eval(), choice.score, "dev_success_at_1",
                        {"k": float(choice.k)}, metrics, note)
