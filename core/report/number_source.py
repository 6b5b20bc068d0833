"""Where a number comes from, read from the protocol its record states, in one phrase.

Training runs, reports and plans store every number together with the protocol of the evaluation
path (:class:`embridge.core.evaluation.task.Protocol`: query set and size, gallery and size, relevance).
Every page of the app prints "0.845 (150 test queries (judged) against the whole old gallery (800
items), relevance: relevance judgments (test split); exact cosine search)" through
:func:`with_source`, worded by :meth:`Protocol.describe` as the CLI's "measured on" line is, so one
run shows one number with one protocol everywhere. Nothing here guesses a protocol: a record
written before protocols were stored says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from embridge.core.evaluation.task import Protocol
from embridge.core.report.report_record import CASCADE_CURVES, Report, as_report, curve_metric

UNRECORDED = "protocol not recorded (made by an older Embridge)"
PROTOCOL_CELLS = ("new→old", "new/fct(old)", "old/old")  # the upgraded cells share old/old's task


@dataclass(frozen=True)
class NumberSource:
    """The protocol a number was measured on (None for a record that predates stored protocols)."""

    protocol: Protocol | None

    def label(self) -> str:
        """The protocol's own sentence (:meth:`Protocol.describe`, as the CLI prints it)."""
        return UNRECORDED if self.protocol is None else self.protocol.describe()

    def short(self) -> str:
        """'150 test queries (judged) / 800 items' for narrow places such as run pickers; '41 of 42 ...' when
        some queries could not be scored (no relevant item in the gallery), as the full sentence says."""
        p = self.protocol
        if p is None:
            return "protocol not recorded"
        queries = f"{p.n_scored} of {p.n_queries}" if p.n_scored is not None and p.n_scored < p.n_queries \
            else f"{p.n_queries}"
        return f"{queries} {p.query_set} / {p.n_gallery} items"


def from_protocol(protocol: Any) -> NumberSource | None:
    """The source a stored ``Protocol.to_dict()`` mapping states (None when it is not one)."""
    if not isinstance(protocol, dict) or "query_set" not in protocol:
        return None
    p = Protocol(str(protocol["query_set"]), _int(protocol.get("n_queries")), str(protocol.get("gallery") or ""),
                 _int(protocol.get("n_gallery")), str(protocol.get("relevance") or ""),
                 str(protocol.get("search") or "exact cosine search"),
                 _int(protocol["n_scored"]) if "n_scored" in protocol else None,
                 _int(protocol["new_vectors"]) if "new_vectors" in protocol else None,
                 _int(protocol["n_unlabelled"]) if "n_unlabelled" in protocol else None)
    return NumberSource(p)


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _from_cells(protocols: Any, first: str | None = None) -> NumberSource:
    cells = protocols if isinstance(protocols, dict) else {}
    for name in ([first] if first else []) + list(PROTOCOL_CELLS):
        found = from_protocol(cells.get(name))
        if found is not None:
            return found
    return NumberSource(None)


def source_of_run(run: dict[str, Any]) -> NumberSource:
    """The test queries and gallery a training run's held-out numbers were measured on (its record's)."""
    metrics = run.get("metrics") or run
    return _from_cells(metrics.get("protocols"))


def source_of_report(report: Report | Mapping[str, Any]) -> NumberSource:
    """The query set and gallery of a report's upgraded cell (and old/old), as the report records it."""
    r = as_report(report)
    return _from_cells(r.headline.get("protocols"), r.upgraded_cell)


def with_source(text: str, source: NumberSource | None) -> str:
    """``text`` followed by where it was measured, in brackets."""
    return text if source is None else f"{text} ({source.label()})"


def gain_text(value: Any, note: Any) -> str:
    """'73.4%' (a share, as every page and command says it) or 'undefined — the new model is not better
    ...' (the record's own sentence)."""
    from embridge.core.formatting import format_share

    if isinstance(value, int | float):
        return format_share(value)
    return f"undefined — {note}" if note else "undefined"


def flips_text(head: dict[str, Any]) -> str:
    """'flips: negative 5.5%, positive 13.0%' of a report's headline (the release gate's
    ``negative_flip_rate``), as ``embridge report`` and the Reports page say it."""
    from embridge.core.formatting import format_share

    return (f"flips: negative {format_share(head.get('negative_flip_rate'))}, positive "
            f"{format_share(head.get('positive_flip_rate'))}")


def served_lines(served: Mapping[str, Any] | None) -> list[str]:
    """The gallery as the latest backfill left it (report.json's ``served``), and where it was measured:
    two lines the command line, the HTML report and the app's Reports page share (none without a backfill)."""
    if not served:
        return []
    from embridge.core.evaluation.headline import JUDGED_METRICS, metric_label
    from embridge.core.formatting import format_share

    m, run = served["metrics"], served["backfill"]["run_id"]
    judged = "".join(f", {metric_label(k)} {format_share(m[k])}" for k in JUDGED_METRICS if k in m)
    return [f"served now (after backfill run #{run}: {served['new_vectors']} of the "
            f"{served['protocol']['n_gallery']} gallery items by their new vectors): top-1 {format_share(m['top1'])}"
            f"{judged}", f"served now measured on {served['protocol']['text']}"]


def backfill_lines(report: Report) -> list[str]:
    """Each partial-backfill policy's areas (the deciding metric's first) and the policy they rank first,
    named with the gallery the curves ran on: lines the command line and the app's Reports page share."""
    from embridge.core.evaluation.headline import metric_label

    policies = report.backfill.get("policies") or {}
    if not policies:
        return []
    curve = curve_metric(report.backfill)  # the curves' deciding metric first, as the HTML ranks them
    lines = []
    for policy, c in policies.items():
        areas = [f"area under the {metric_label(m)} curve {c['areas'][m]:.3f}" for m in dict.fromkeys((curve, "top1"))
                 if isinstance(c["areas"].get(m), int | float)]
        lines.append(f"partial backfill ({policy}): {', '.join(areas)}")
    if (report.adapter or {}).get("kind") == "cascade":
        lines.append(f"partial backfill: {CASCADE_CURVES}")
    if report.backfill.get("best_policy"):
        sample = report.headline.get("old_old_sample_top1") is not None  # new/new's sample, not the whole gallery
        lines.append(f"partial backfill: best policy by area under the {metric_label(curve)} curve"
                     f"{' (on the evaluation sample)' if sample else ''}: {report.backfill['best_policy']}")
    return lines
