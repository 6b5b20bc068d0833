"""What to weigh instead of a compatibility layer that fails the criterion.

The report's verdict, the plan's note and a bundle's warning give this advice; it lives apart from them
so that a bundle read without torch (``bundle inspect``, a migration) says the same words.
"""

from __future__ import annotations


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
