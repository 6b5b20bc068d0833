"""A release gate over a report's headline numbers, for CI pipelines.

``embridge report --fail-under gain_retained=0.5 --fail-under negative_flip_rate<=0.05`` checks each
condition against the report's JSON (the same names as ``--json`` prints, but see judgments below; each
check's ``reads`` names the key it read): ``=`` and ``>=`` mean
"at least", ``<=`` "at most". A name no report has is refused before any work
(:func:`check_metric_names`); a metric this report lacks, or a value it could not define (null, e.g.
gain retained when the new model gains nothing), fails its check with that reason, so a gate never
passes by accident. A yes/no value (``compatible``) reads as 1 or 0, so ``compatible=1`` requires
it; identifiers and settings in the JSON (``report_id``, ``arr_k``, ...) are not metrics. With graded
relevance judgments the report's verdict decides on nDCG@10, and so do ``compatible`` and
``gain_retained`` here: they read ``compatible_ndcg@10`` and ``gain_retained_ndcg@10``, and say so;
``compatible_top1`` and ``gain_retained_top1`` always read top-1's own (``compatible``, ``gain_retained``). Values in
messages are written in full (the shortest text that reads back as the same number), so a failed check
never reads as a passing one. A check is named in one form, its meaning spelled out: ``metric>=value`` or
``metric<=value`` (``gain_retained=0.5`` is named ``gain_retained>=0.5``), in messages, ``--json`` and JUnit.
:func:`junit_xml` renders the checks as JUnit XML (one test case per check; a report that could not
be built is one test case in error); :func:`check_junit_target` refuses a ``--junit`` path that
cannot take it before any work is done.
"""

from __future__ import annotations

import math
import os
import re
import stat
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embridge.core.errors import InputError, StoreError, UsageError, printable
from embridge.core.evaluation.headline import JUDGED_METRICS, decides_on_ndcg
from embridge.core.paths import (
    absolute,
    check_output,
    file_kind,
    folder_to_write,
    probe_writable,
    write_problem,
)

JUNIT = "--junit"
PROBE_BYTES = 64 * 1024  # room the JUnit file needs (about 300 bytes a check), tried before the report is built

NOT_METRICS = frozenset({"report_id", "run_id", "adapter_id", "arr_k", "recall_k",
                         "gain_retained_ci_defined", "relative_nfr_ci_defined"})  # about an interval, not the upgrade
DECIDED = ("compatible", "gain_retained")  # the criterion's numbers: on nDCG@10 where judgments decide
TOP1_NAMES = {f"{name}_top1": name for name in DECIDED}  # top-1's own criterion, by name, whatever decides
_DECIMAL = re.compile(r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$")
NON_NEGATIVE = ("arr", "relative_nfr", "n_queries")  # never below 0, with no upper bound
_CHECK = re.compile(r"^\s*([A-Za-z0-9_@.\-]+)\s*(<=|>=|=)\s*([^\s]+)\s*$")


@dataclass(frozen=True)
class Check:
    """One condition: ``metric`` must be at least (``>=``) or at most (``<=``) ``threshold``."""

    metric: str
    op: str
    threshold: float

    @property
    def text(self) -> str:
        return f"{self.metric}{self.op}{exact(self.threshold)}"


@dataclass(frozen=True)
class CheckResult:
    check: Check
    value: float | None
    passed: bool
    message: str
    reads: str = ""  # the JSON key whose value was checked (``compatible_ndcg@10`` for ``compatible`` with judgments)


def parse_check(text: str, option: str = "--fail-under") -> Check:
    """``METRIC=VALUE`` / ``METRIC>=VALUE`` (at least) or ``METRIC<=VALUE`` (at most)."""
    match = _CHECK.match(text)
    if not match:
        raise InputError(option, f"expected METRIC=VALUE, METRIC>=VALUE or METRIC<=VALUE, got {text!r}")
    metric, op, raw = match.groups()
    if not _DECIMAL.match(raw):  # float() also takes "1_0", "nan" and digits of other scripts
        raise InputError(option, f"{text!r}: the threshold {raw!r} is not a number (write it like 0.5, 12 or 1e-3)")
    threshold = float(raw)
    if not math.isfinite(threshold):
        raise InputError(option, f"{text!r}: the threshold must be a finite number")
    digits = raw.lower().split("e")[0]
    if threshold == 0 and any(c in "123456789" for c in digits):
        raise InputError(option, f"{text!r}: the threshold {raw} is too small to be held apart from 0 (it would "
                         "check against 0); write 0 if that is meant")
    return Check(metric, ">=" if op == "=" else op, threshold)


def is_share(metric: str) -> bool:
    """Metrics that lie between 0 and 1 in every report: top-1, nDCG, MRR, flip rates, yes/no values
    (gain retained, ARR and the relative NFR do not)."""
    if metric.startswith("gain_retained"):
        return False
    return metric.endswith(("top1", "ndcg@10", "mrr@10", "_rate")) or metric.startswith("compatible")


def check_metric_names(checks: list[Check], option: str = "--fail-under") -> None:
    """Refuse, before any work, a check no report can pass or none can fail: a metric no report has (a
    typo, or an identifier), or a bound a share between 0 and 1 can never meet or always meets."""
    import difflib

    from embridge.core.evaluation.headline import report_number_names

    known = sorted(report_number_names() - NOT_METRICS | set(TOP1_NAMES))
    for check in checks:
        if check.metric not in known:
            lower = {name.lower(): name for name in known}  # GAIN_RETAINED is gain_retained mistyped
            close = difflib.get_close_matches(check.metric.lower(), list(lower), n=1)
            hint = f"did you mean {lower[close[0]]}? " if close else ""
            raise UsageError(option, f"{check.text}: no report has a metric named {check.metric!r}; {hint}"
                             f"metrics: {', '.join(known)}")
        if check.metric.startswith("compatible") and (0 < check.threshold < 1 or check.threshold > 1):
            raise UsageError(option, f"{check.text}: {check.metric} is yes or no (read as 1 or 0): write "
                             f"{check.metric}=1 to require it")
        if not is_share(check.metric) and check.metric not in NON_NEGATIVE:
            continue
        top = 1 if is_share(check.metric) else math.inf
        never = check.threshold > top if check.op == ">=" else check.threshold < 0
        always = check.threshold <= 0 if check.op == ">=" else check.threshold >= top
        if never or always:  # a gate that cannot fail is as wrong as one that cannot pass: a percent typed as 5
            percent = " (write shares as fractions: 0.05 for 5%)" if check.threshold > 1 else ""
            bounds = "lies between 0 and 1" if top == 1 else "is never below 0"
            raise UsageError(option, f"{check.text}: {check.metric} {bounds}, so this check could "
                             f"never {'pass' if never else 'fail'}{percent}")


def evaluate(checks: list[Check], values: dict[str, Any]) -> list[CheckResult]:
    """Each check against ``values`` (the report's JSON); unknown or undefined metrics fail."""
    results = []
    decided = decides_on_ndcg(values)
    values = {k: v for k, v in values.items() if k not in NOT_METRICS}
    for check in checks:
        name, label = check.metric, check.metric
        if decided and name in DECIDED:  # the criterion the report's verdict weighs: nDCG@10 with judgments
            name = f"{name}_ndcg@10"
            label = f"{check.metric} (decided on nDCG@10 with relevance judgments: {name})"
        elif name in TOP1_NAMES:
            name = TOP1_NAMES[name]
            label = f"{check.metric} (top-1's criterion: {name})"
        if name not in values:
            known = ", ".join(sorted(k for k, v in values.items() if _number(v) is not None))
            why = "it is measured only with relevance judgments (import them with --qrels), and this report has none" \
                if any(j in name for j in JUDGED_METRICS) else "no such metric in the report"
            results.append(CheckResult(check, None, False, f"{label}: {why} (known: {known})", name))
            continue
        value = _number(values[name])
        if value is None:
            note = values.get(f"{name}_note")
            if "_sample_" in name and not note:  # null where new/new searched the whole gallery: no sample apart
                plain = name.replace("_sample", "")
                plain = plain if plain.endswith("top1") else plain.removeprefix("upgraded_")  # ndcg@10 is upgraded's
                note = f"new/new searched the whole gallery, so there is no separate sample; gate on {plain} instead"
            why = f" ({note})" if isinstance(note, str) and note else ""
            results.append(CheckResult(check, None, False, f"{label}: undefined in this report{why}", name))
            continue
        passed = value >= check.threshold if check.op == ">=" else value <= check.threshold
        bound = "at least" if check.op == ">=" else "at most"
        results.append(CheckResult(check, value, passed, f"{label} = {exact(value)}, required {bound} "
                                   f"{exact(check.threshold)}", name))
    return results


def exact(value: float) -> str:
    """``value`` as the shortest text that reads back as it (``0.2608695652173913``, ``1`` for 1.0):
    rounded digits could show a failed check's value equal to its bound."""
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 1e16 else repr(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(float(value)) else None


def junit_xml(results: list[CheckResult], suite: str = "embridge.report") -> str:
    """JUnit XML: one ``testcase`` per check, a ``failure`` with its message where it failed."""
    return _junit([(r.check.text, "pass" if r.passed else "failure", r.message) for r in results], suite)


def junit_error_xml(message: str, suite: str = "embridge.report") -> str:
    """JUnit XML for a report that could not be built: one test case in error, so CI shows it red."""
    return _junit([("report", "error", message)], suite)


def _junit(cases: list[tuple[str, str, str]], suite: str) -> str:
    """The document for ``(name, pass|failure|error, message)`` test cases of one suite."""
    counts = {"tests": str(len(cases)), "failures": str(sum(o == "failure" for _, o, _ in cases)),
              "errors": str(sum(o == "error" for _, o, _ in cases))}
    suite = _xml_safe(suite)
    root = ET.Element("testsuites", **counts)
    node = ET.SubElement(root, "testsuite", name=suite, **counts, skipped="0")
    for name, outcome, message in ((_xml_safe(n), o, _xml_safe(m)) for n, o, m in cases):
        case = ET.SubElement(node, "testcase", classname=suite, name=name)
        if outcome == "pass":
            ET.SubElement(case, "system-out").text = message
        else:
            ET.SubElement(case, outcome, message=message, type="gate" if outcome == "failure" else "report").text = message
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _xml_safe(text: str) -> str:
    """``text`` with the characters XML 1.0 cannot hold (controls but tab and line breaks, U+FFFE, U+FFFF,
    lone surrogates) escaped as the command line shows them: ElementTree writes them as they are, and
    a CI server's parser then rejects the whole file (a workspace path holding an escape sequence)."""
    return "".join(f"\\u{ord(ch):04x}" if ch in "\ufffe\uffff" else ch for ch in printable(text))


def _junit_or_empty(path: Path) -> bool:
    """Whether an existing file is empty or starts as JUnit XML does (a ``testsuites``/``testsuite`` root)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    utf16 = head.startswith((b"\xff\xfe", b"\xfe\xff"))
    text = head.decode("utf-16" if utf16 else "utf-8", "replace").lstrip("\ufeff \t\r\n")
    if not text:
        return True
    prolog = re.compile(r"(<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^>]*>)\s*", re.S)  # declaration, stylesheet, comments
    while (found := prolog.match(text)) is not None:
        text = text[found.end():]
    return text.startswith(("<testsuites", "<testsuite"))


def check_junit_target(out: str | Path, workspace: str | Path) -> Path:
    """Refuse a ``--junit`` path before the report is built: inside the workspace, an existing file
    that is not a regular file (a device, a FIFO, a folder, a link) or not JUnit XML (any other file,
    such as a model's vectors the workspace references), or a folder that cannot take the file
    (read-only, full). Missing parent folders are created when the file is written. A path refused for
    what it names is a usage error (exit 2), so a pipeline tells a mistyped path from a failed gate (exit
    1); a folder that cannot take the file (no permission, no room) fails as the run would (exit 1)."""
    try:
        path = _junit_target(out, workspace)
        folder = folder_to_write(absolute(path), JUNIT, within=True)
    except UsageError:
        raise
    except InputError as exc:
        raise UsageError(exc.source, exc.problem) from None
    probe_writable(folder, f"{JUNIT} {absolute(path)}", PROBE_BYTES)
    return path


def _junit_target(out: str | Path, workspace: str | Path) -> Path:
    where = f"{JUNIT} {out}"
    if not str(out):
        raise InputError(JUNIT, "is empty; name the JUnit XML file to write")
    if str(out).endswith(("/", os.sep)):
        raise InputError(where, "ends with a path separator; name a file, not a folder")
    check_output(out, label=JUNIT, workspace=workspace)
    path = Path(out)
    try:
        mode = os.lstat(path).st_mode
        kind = None if stat.S_ISREG(mode) else file_kind(mode)
    except (FileNotFoundError, NotADirectoryError):  # a new file (its folder is checked below)
        kind = None
    except OSError as exc:
        raise InputError(where, f"cannot be checked ({exc.strerror or exc})") from None
    if kind is not None:
        raise InputError(where, f"is {kind}, not a regular file; {JUNIT} must be a new or existing regular file")
    if path.exists() and not _junit_or_empty(path):
        raise InputError(where, "exists and is not a JUnit XML file; only an earlier JUnit result is replaced "
                         "(a model's vectors, a bundle or any other file is left alone): choose another path")
    return path


def write_junit(out: str | Path, results: list[CheckResult] | str) -> None:
    """Write the checks (or, given a message, the report's error) as JUnit XML to ``out`` (temp name,
    then rename); a failure names ``--junit``."""
    from embridge.core.store.files import atomic_write_text

    try:
        atomic_write_text(out, junit_error_xml(results) if isinstance(results, str) else junit_xml(results))
    except (StoreError, OSError) as exc:
        cause = exc if isinstance(exc, OSError) else exc.__cause__
        reason = write_problem(cause, absolute(out).parent) if isinstance(cause, OSError) else str(exc)
        raise StoreError(f"{JUNIT} {out}: {reason}") from exc
