"""A release gate over a report's headline numbers, for CI pipelines.

``embridge report --fail-under gain_retained=0.5 --fail-under negative_flip_rate<=0.05`` checks each
condition against the report's JSON (the same names as ``--json`` prints): ``=`` and ``>=`` mean
"at least", ``<=`` "at most". An unknown metric, or a value the report could not define (null, e.g.
gain retained when the new model gains nothing), fails its check with that reason, so a gate never
passes by accident. :func:`junit_xml` renders the checks as JUnit XML (one test case per check).
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from embridge.core.errors import InputError

_CHECK = re.compile(r"^\s*([A-Za-z0-9_@.\-]+)\s*(<=|>=|=)\s*([^\s]+)\s*$")


@dataclass(frozen=True)
class Check:
    """One condition: ``metric`` must be at least (``>=``) or at most (``<=``) ``threshold``."""

    metric: str
    op: str
    threshold: float

    @property
    def text(self) -> str:
        return f"{self.metric}{self.op}{self.threshold:g}"


@dataclass(frozen=True)
class CheckResult:
    check: Check
    value: float | None
    passed: bool
    message: str


def parse_check(text: str, option: str = "--fail-under") -> Check:
    """``METRIC=VALUE`` / ``METRIC>=VALUE`` (at least) or ``METRIC<=VALUE`` (at most)."""
    match = _CHECK.match(text)
    if not match:
        raise InputError(option, f"expected METRIC=VALUE, METRIC>=VALUE or METRIC<=VALUE, got {text!r}")
    metric, op, raw = match.groups()
    try:
        threshold = float(raw)
    except ValueError:
        raise InputError(option, f"{text!r}: the threshold {raw!r} is not a number") from None
    if not math.isfinite(threshold):
        raise InputError(option, f"{text!r}: the threshold must be a finite number")
    return Check(metric, ">=" if op == "=" else op, threshold)


def evaluate(checks: list[Check], values: dict[str, Any]) -> list[CheckResult]:
    """Each check against ``values`` (the report's JSON); unknown or undefined metrics fail."""
    results = []
    for check in checks:
        if check.metric not in values:
            known = ", ".join(sorted(k for k, v in values.items() if _number(v) is not None))
            results.append(CheckResult(check, None, False, f"{check.metric}: no such metric in the report "
                                       f"(known: {known})"))
            continue
        value = _number(values[check.metric])
        if value is None:
            note = values.get(f"{check.metric}_note")
            why = f" ({note})" if isinstance(note, str) and note else ""
            results.append(CheckResult(check, None, False, f"{check.metric}: undefined in this report{why}"))
            continue
        passed = value >= check.threshold if check.op == ">=" else value <= check.threshold
        bound = "at least" if check.op == ">=" else "at most"
        results.append(CheckResult(check, value, passed, f"{check.metric} = {value:.6g}, required {bound} "
                                   f"{check.threshold:g}"))
    return results


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(float(value)) else None


def junit_xml(results: list[CheckResult], suite: str = "embridge.report") -> str:
    """JUnit XML: one ``testcase`` per check, a ``failure`` with its message where it failed."""
    failures = sum(not r.passed for r in results)
    root = ET.Element("testsuites", tests=str(len(results)), failures=str(failures))
    node = ET.SubElement(root, "testsuite", name=suite, tests=str(len(results)), failures=str(failures),
                         errors="0", skipped="0")
    for r in results:
        case = ET.SubElement(node, "testcase", classname=suite, name=r.check.text)
        if r.passed:
            ET.SubElement(case, "system-out").text = r.message
        else:
            ET.SubElement(case, "failure", message=r.message, type="gate").text = r.message
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
