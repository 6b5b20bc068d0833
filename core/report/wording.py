"""Words for comparisons and verdict sentences, shared by the CLI, the HTML report and the app.

A metric where the upgraded cell equals old/old (for example recall@100 of 1.0 on both sides) is
neither a pass nor a failure: it is "equal". Verdict sentences get a tone so that a caution is
never shown in the colour of a pass.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from embridge.core.evaluation.headline import METRIC_NOISE

Word = Literal["pass", "fail", "equal", ""]
Tone = Literal["pass", "fail", "caution", "info"]
TIE_TOLERANCE = METRIC_NOISE  # what the criterion cannot tell apart reads 'equal'


def comparison_word(row: dict[str, Any]) -> Word:
    """'pass', 'fail' or 'equal' for one metric row of ``embridge.core.evaluation.compat.compare``."""
    up, oo = row.get("upgraded"), row.get("old_old")
    if isinstance(up, int | float) and isinstance(oo, int | float) and math.isfinite(up) and math.isfinite(oo) \
            and abs(float(up) - float(oo)) < TIE_TOLERANCE:
        return "equal"
    passes = row.get("passes")
    if passes is None:
        return ""
    return "pass" if passes else "fail"


def verdict_tone(sentence: str) -> Tone:
    """How to show one of ``embridge.core.report.sections.verdicts``' sentences."""
    text = sentence.lower()
    if "fails the compatibility criterion" in text or "does not pay" in text:
        return "fail"
    if "passes the compatibility criterion" in text:
        return "pass"
    if "unused" in text or "cannot be measured" in text or "not enough" in text or "serves worse" in text:
        return "caution"
    return "info"
