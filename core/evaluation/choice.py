"""Choosing among candidates by a validation number, and saying so when the number chose nothing.

When every candidate scores the same (within 1e-12) the number carries no information: the
choice falls to a stated default and the record says "no choice was made" instead of naming a
winner.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

TIE_TOLERANCE = 1e-12


@dataclass(frozen=True)
class Choice:
    """The chosen index, whether the scores decided it, and the sentence that says why."""

    index: int
    decided: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "decided": self.decided, "reason": self.reason}


def all_tied(scores: Sequence[float]) -> bool:
    """True when every score is equal within the tolerance, or none could be measured (NaN)."""
    values = [float(s) for s in scores]
    if not values:
        return False
    if not any(math.isfinite(v) for v in values):
        return True
    return all(math.isfinite(v) for v in values) and max(values) - min(values) <= TIE_TOLERANCE


def _key(value: float) -> float:
    return value if math.isfinite(value) else float("-inf")


def choose(names: Sequence[str], scores: Sequence[float], protocol: str, default: int = 0,
           default_why: str = "the first candidate", metric: str = "top-1") -> Choice:
    """The best-scoring candidate (earliest on equal best scores), or ``default`` when all tie.

    ``protocol`` says where the scores were measured (see :meth:`embridge.core.evaluation.task.Protocol.describe`).
    """
    if not names or len(names) != len(scores):
        raise ValueError("need one score per candidate")
    if len(names) > 1 and all_tied(scores):
        what = (f"every candidate scored {metric} {float(scores[0]):.3f}" if math.isfinite(float(scores[0]))
                else "no validation query has a relevant item to find")
        return Choice(default, False, f"no choice was made: {what} on {protocol}; kept {names[default]} "
                                      f"({default_why})")
    best = max(range(len(names)), key=lambda i: (_key(float(scores[i])), -i))
    top = float(scores[best])
    runner = sorted((i for i in range(len(names)) if i != best), key=lambda i: -_key(float(scores[i])))
    second = float(scores[runner[0]]) if runner else None
    digits = _digits(top, second)
    why = f"{names[best]} won with validation {metric} {top:.{digits}f}"
    if second is not None and math.isfinite(second) and top - second <= TIE_TOLERANCE:
        why += f", level with {names[runner[0]]} ({second:.{digits}f}): a tie goes to the earlier candidate"
    elif second is not None:
        why += f", ahead of {names[runner[0]]} ({second:.{digits}f})"
    return Choice(best, True, f"{why}, on {protocol}")


def _digits(a: float, b: float | None) -> int:
    """Three decimals, or as many more (up to six) as it takes for two different scores to read apart."""
    if b is None or not (math.isfinite(a) and math.isfinite(b)) or abs(a - b) <= TIE_TOLERANCE:
        return 3
    return next((d for d in range(3, 7) if f"{a:.{d}f}" != f"{b:.{d}f}"), 6)
