"""Fusion and cascade on top of a fitted new -> old layer: α or K chosen on the validation task.

Both keep the old query in the loop, so both need the two encoders during the transition. The
choice is made on ``PairData.validation()`` (dev queries against the whole old gallery in a
workspace run). Fusion chosen on own-item retrieval of validation items says little (the old
query *is* the target there, so α = 1 always looks best) and the note says so. α = 1 means the
old query alone: fusion then adds nothing and is reported as such, not as a layer that helps.
A cascade is scored by the validation task's ``cascade_value``; re-ranking by stored new vectors
(``new_vectors``) needs a task that knows the new vectors of gallery items.
"""

from __future__ import annotations

import math
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
    setting: dict[str, Any]
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
    _scored_some("fusion", "α", scores, validator)
    choice = choose([f"α {a:g}" for a in alphas], scores, validator.protocol, default=0,
                    default_why="the largest α, closest to today's system", metric=validator.metric_label)
    alpha, score = alphas[choice.index], scores[choice.index]
    metrics = [{"epoch": 0.0, "alpha": a, "val_metric": v} for a, v in sorted(zip(alphas, scores, strict=True))]
    out = BridgeChoice(fused[choice.index], score, {"alpha": alpha}, metrics, choice=choice)
    if alpha >= 1.0:
        out.adds_nothing = True
        out.note = (f"α = 1: fusion adds nothing here; the old query alone scores best ({score:.3f} on "
                    f"{validator.protocol}), so this is today's system, not a fusion layer")
    elif alpha <= 0.0:
        out.note = (f"α = 0: the old query adds nothing here; the fused query is the mapped new query alone "
                    f"({score:.3f} on {validator.protocol}), so this scores as the {base.kind} layer alone, which "
                    f"serves the same with one encoder (train it on its own, 'embridge train --method {base.kind}', and "
                    "serve that instead of this fusion)")
    else:
        out.note = f"fusion with α = {alpha:g} (weight of the old query): {score:.3f} on {validator.protocol}"
    if validator.metric_name == "pair_top1":
        out.note += ("; note: on own-item retrieval the old query is the target itself, so α is biased "
                     "towards 1; add dev queries with judged documents for a meaningful choice")
    return out


def _scored_some(method: str, setting: str, scores: Sequence[float], validator: Any) -> None:
    """Refuse a bridge whose validation scored no query: its setting would be a default named as a choice."""
    if not any(math.isfinite(float(v)) for v in scores):
        raise InputError(method, f"choosing {setting} needs validation queries with a relevant item in the "
                                 f"gallery, and none of {validator.protocol} has one")


def cascade_ready(data: PairData) -> Any:
    """The validator a cascade's K is chosen on; InputError when it cannot score a cascade."""
    validator = data.validation()
    if not hasattr(validator, "cascade_value") or validator.metric_name == "pair_top1":
        raise InputError("cascade", "choosing K needs dev queries with judged documents (or labels): on own-item "
                                    "validation the new query finds its own new vector, which says nothing")
    return validator


def choose_cascade(base: Adapter, data: PairData, k_grid: Sequence[int], new_vectors: bool = True) -> BridgeChoice:
    """The re-rank depth K with the best validation score (ties: the smaller K, fewer re-ranks).

    ``new_vectors`` False re-ranks through the layer alone, never by a stored new vector: the
    cascade re-embeds nothing and competes with the layers on the same gallery."""
    validator = cascade_ready(data)
    ks = sorted({int(k) for k in k_grid if int(k) <= validator.gallery_size}) or [validator.gallery_size]
    # deepest first: one old-index recall serves all
    by_k = {k: validator.cascade_value(base, k, new_vectors) for k in reversed(ks)}
    scores = [by_k[k] for k in ks]
    _scored_some("cascade", "K", scores, validator)
    choice = choose([f"K {k}" for k in ks], scores, validator.protocol, default=0,
                    default_why="the smallest K, fewest re-ranks per query", metric=validator.metric_label)
    k, score = ks[choice.index], scores[choice.index]
    metrics = [{"epoch": 0.0, "k": float(kk), "val_metric": v} for kk, v in zip(ks, scores, strict=True)]
    if new_vectors and validator.has_new_gallery:
        rest = f", the rest through the {base.kind} layer" if validator.new_gallery_share < 1 else ""
        rerank = f"the new model re-ranks them ({validator.new_gallery_share:.0%} of the gallery by its new vectors{rest})"
    elif new_vectors:  # nothing backfilled yet: what the cascade serves today
        rerank = (f"the {base.kind} layer re-ranks them (no gallery item has a new vector to serve with yet: "
                  "nothing backfilled, and an evaluation sample's new vectors are for measuring only)")
    else:
        rerank = (f"the {base.kind} layer re-ranks them (the mapped new query against their old vectors; no new "
                  "vector of the gallery is used, nothing re-embedded)")
    note = f"cascade: the old index recalls K = {k}, {rerank}: {score:.3f} on {validator.protocol}"
    return BridgeChoice(CascadeAdapter(base, k, new_vectors).eval(), score, {"k": k, "new_vectors": new_vectors},
                        metrics, note, choice=choice)
