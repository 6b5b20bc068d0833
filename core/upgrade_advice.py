"""What to weigh instead of a compatibility layer that fails the criterion, or whose gain is not the new model's.

The report's verdict, the plan's note and a bundle's warning give this advice; it lives apart from them
so that a bundle read without torch (``bundle inspect``, a migration) says the same words.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def bridge_alternatives(kind: str, partial: bool = True, short: bool = False) -> str:
    """What to weigh instead of a layer that fails the criterion: the report's verdict, the plan's note and a
    bundle's warning say the same. A fusion or cascade already serves both models, so only backfills remain;
    ``partial``: whether a partial backfill is among them; ``short``: without the explanations."""
    options = [] if kind in ("fusion", "cascade") else [
        "fusion during the transition" + ("" if short else " (old and mapped new query together)"),
        "a cascade" + ("" if short else " (the old index recalls, the new model re-ranks)")]
    options += ["a partial backfill"] if partial else []
    options.append("a full backfill")
    if len(options) == 1:
        return options[0]
    return f"{options[0]} or {options[1]}" if len(options) == 2 else f"{', '.join(options[:-1])}, or {options[-1]}"


def head_gain_words(values: Mapping[str, Any], kind: str, judged: bool, old_old: Any) -> str:
    """For bct and bt2, whose ceiling is their own head on both sides: a sentence where the new model by
    itself (new/new, no head) is no better than the old (``old_old`` on new/new's gallery), so what the layer
    gains comes from the head trained on the labels, which no upgrade is needed for ('' otherwise)."""
    metric = "nDCG@10" if judged else "top-1"
    raw = values.get("new_new_ndcg@10" if judged else "new_new_top1")
    if kind not in ("bct", "bt2") or not all(isinstance(v, int | float) and not isinstance(v, bool) and
                                             math.isfinite(v) for v in (raw, old_old)) or raw > old_old:
        return ""
    return (f"The new model by itself is no better than the old one (new/new {metric} {100 * raw:.1f}% against "
            f"old/old {100 * old_old:.1f}%): what the {kind} layer gains over today comes from its head trained on "
            "your labels, not from the new model. Weigh it against training a head for the old model alone before "
            "paying for the upgrade.")


def head_backfill_words(kind: str, values: Mapping[str, Any], metric: str,
                        lead: str = "That cell indexes every item through the {kind} head") -> str:
    """For bct and bt2, whose full backfill (head/head) and curves index the head's output: ' ``lead``; ...'
    saying that ``embridge backfill`` stores the new model's own vectors, and what they serve (new/new); ''
    for other kinds."""
    if kind not in ("bct", "bt2"):
        return ""
    raw = values.get(f"new_new_{metric}")
    label = "nDCG@10" if metric == "ndcg@10" else "MRR@10" if metric == "mrr@10" else "top-1"
    served = (f" ({label} {raw:.3f})" if isinstance(raw, int | float) and not isinstance(raw, bool)
              and math.isfinite(raw) else "")
    return (f" {lead.format(kind=kind)}; 'embridge backfill' stores the new model's own vectors, which new queries "
            f"search as new/new{served}.")
