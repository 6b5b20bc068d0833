"""Fusion and cascade on top of a fitted new -> old layer: α or K chosen on the validation task.

Both keep the old query in the loop, so both need the two encoders during the transition. The
choice is made on ``PairData.validation()`` (dev queries against the whole old gallery in a
workspace run). Fusion chosen on own-item retrieval of validation items says little (the old
query *is* the target there, so α = 1 always looks best) and the note says so. α = 1 means the
old query alone: fusion then adds nothing and is reported as such, not as a layer that helps.
A cascade needs a validation task that knows the new vectors of gallery items (``cascade_value``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from embridge.core.adapters.adapter import Adapter
from embridge.core.adapters.cascade import CascadeAdapter
from embridge.core.adapters.fusion import FusionAdapter
from embridge.core.errors import InputError
from embridge.core.evaluation.choice import Choice, choose
from embridge.core.train.data import PairData

ValFn = Callable[[Adapter, PairData], float]


@dataclass
class BridgeChoice:
    """A fusion or cascade with its chosen setting, validation score and per-setting scores."""

    adapter: Adapter
    score: float
    setting: dict[str, float]
    metrics: list[dict[str, float]] = field(default_factory=list)
    note: str = ""
    adds_nothing: bool = False
    choice: Choice | None = None


def _validation_value(adapter: Adapter, data: PairData) -> float:
    return float(data.validation().value(adapter))


def choose_fusion(base: Adapter, data: PairData, alpha_grid: Sequence[float],
                  val: ValFn = _validation_value) -> BridgeChoice:
    """The α with the best validation score (ties: the larger α, closer to today's system)."""
    validator = data.validation()
    alphas = sorted({float(a) for a in alpha_grid}, reverse=True)
    fused = [FusionAdapter(base, a).eval() for a in alphas]
    scores = [val(f, data) for f in fused]
    choice = choose([f"α {a:g}" for a in alphas], scores, validator.protocol, default=0,
                    default_why="the largest α, closest to today's system", metric=validator.metric_label)
    alpha, score = alphas[choice.index], scores[choice.index]
    metrics = [{"epoch": 0.0, "alpha": a, "val_metric": v} for a, v in sorted(zip(alphas, scores, strict=True))]
    out = BridgeChoice(fused[choice.index], score, {"alpha": alpha}, metrics, choice=choice)
    if alpha >= 1.0:
        out.adds_nothing = True
        out.note = (f"α = 1: fusion adds nothing here; the old query alone scores best ({score:.3f} on "
                    f"{validator.protocol}), so this is today's system, not a fusion layer")
    else:
        out.note = f"fusion with α = {alpha:g} (weight of the old query): {score:.3f} on {validator.protocol}"
    if validator.metric_name == "pair_top1":
        out.note += ("; note: on own-item retrieval the old query is the target itself, so α is biased "
                     "towards 1; add dev queries with judged documents for a meaningful choice")
    return out


def cascade_ready(data: PairData) -> Any:
    """The validator a cascade's K is chosen on; InputError when it cannot score a cascade."""
    validator = data.validation()
    if not hasattr(validator, "cascade_value") or validator.metric_name == "pair_top1":
        raise InputError("cascade", "choosing K needs dev queries with judged documents (or labels): on own-item "
                                    "validation the new query finds its own new vector, which says nothing")
    if not validator.has_new_gallery:
        raise InputError("cascade", "no gallery item has a new vector, so the new model cannot re-rank anything")
    return validator


def choose_cascade(base: Adapter, data: PairData, k_grid: Sequence[int]) -> BridgeChoice:
    """The re-rank depth K with the best validation score (ties: the smaller K, fewer re-ranks)."""
    validator = cascade_ready(data)
    ks = sorted({int(k) for k in k_grid if int(k) <= validator.gallery_size}) or [validator.gallery_size]
    by_k = {k: validator.cascade_value(base, k) for k in reversed(ks)}  # deepest first: one old-index recall serves all
    scores = [by_k[k] for k in ks]
    choice = choose([f"K {k}" for k in ks], scores, validator.protocol, default=0,
                    default_why="the smallest K, fewest re-ranks per query", metric=validator.metric_label)
    k, score = ks[choice.index], scores[choice.index]
    metrics = [{"epoch": 0.0, "k": float(kk), "val_metric": v} for kk, v in zip(ks, scores, strict=True)]
    note = (f"cascade: the old index recalls K = {k}, the new model re-ranks them ({validator.new_gallery_share:.0%} "
            f"of the gallery has new vectors, the rest go through the {base.kind} layer): {score:.3f} on "
            f"{validator.protocol}")
    return BridgeChoice(CascadeAdapter(base, k).eval(), score, {"k": float(k)}, metrics, note, choice=choice)
