"""The numbers a bundle carries, each with the protocol (query set and gallery) it was measured on.

A layer's quality is computed once by the evaluation path and stored with its protocol: a training
run's held-out numbers and, when the bundle ships one, a report's. The two can measure different
galleries (``report --heldout-gallery`` leaves the train fold out), so the manifest keeps them apart
under ``metrics`` (the shipped source) and ``metrics.also_measured`` (the other), each with its
``protocol`` sentence, and the README and ``bundle inspect`` print a number only next to it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from embridge.core.evaluation.headline import BACKFILL_AREA, drop_words, exceeds, weighed
from embridge.core.formatting import format_share
from embridge.core.report.report_record import CASCADE_CURVES
from embridge.core.run_record import SAMPLE_NUMBERS, RunRecord, other_cells_note, stated_protocol
from embridge.core.store import Workspace
from embridge.core.upgrade_advice import bridge_alternatives

UNRECORDED = "protocol not recorded (made by an older Embridge)"
# the numbers a deploy note leads with, in this order
HEADLINE = ("upgraded_top1", "old_old_top1", "new_new_top1", "ceiling_top1", "old_old_sample_top1",
            "upgraded_sample_top1", "gain_retained", "negative_flip_rate", "ndcg@10", "old_old_ndcg@10",
            "new_new_ndcg@10", "ceiling_ndcg@10", "old_old_sample_ndcg@10", "upgraded_sample_ndcg@10",
            "gain_retained_ndcg@10", "mrr@10", "n_queries")


def _numbers(values: dict[str, Any]) -> dict[str, Any]:
    """The scalar numbers (and flags) of a summary; sentences such as the protocol live beside them."""
    return {k: v for k, v in values.items() if v is None or isinstance(v, bool | int | float)}


def run_protocol(run: dict[str, Any]) -> str:
    """The test queries and gallery of a training run's held-out numbers, as the run recorded them (and
    new/new's, where it searched the evaluation sample rather than the whole gallery)."""
    from embridge.core.report.number_source import source_of_run

    metrics = run.get("metrics") or {}
    stated = stated_protocol(metrics)
    if stated:
        return stated
    label = source_of_run(run).label()
    return label if label else UNRECORDED


def report_json(ws: Workspace, report: dict[str, Any]) -> dict[str, Any] | None:
    """A report row's report.json, or None where it cannot be read."""
    rel = report.get("json_file")
    if not rel:
        return None
    path = Path(rel) if Path(rel).is_absolute() else ws.root / rel
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def report_protocol(ws: Workspace, report: dict[str, Any]) -> str:
    """The query set and gallery of a report's upgraded cell, read from its stored ``report.json``."""
    from embridge.core.report.number_source import source_of_report

    data = report_json(ws, report)
    if data is None:
        return UNRECORDED
    try:
        headline = data.get("headline") if isinstance(data.get("headline"), dict) else {}
        lead = source_of_report(data).label()
        return lead + other_cells_note(headline, lead)
    except (ValueError, RecursionError, KeyError, TypeError, AttributeError):
        return UNRECORDED


def backfill_protocol(ws: Workspace, report: dict[str, Any]) -> str:
    """Where a report's partial-backfill curves ran: the full-backfill cell's queries against the
    evaluation sample, not the upgraded cell's gallery (their areas start from the layer on the sample)."""
    data = report_json(ws, report)
    try:
        cell = data["cells"][data["ceiling_cell"]] if data else None
        text = cell["protocol"]["text"] if isinstance(cell, dict) else None
    except (KeyError, TypeError):
        text = None
    if not (isinstance(text, str) and text):
        return UNRECORDED
    judged = any(k.startswith(f"{BACKFILL_AREA}ndcg@10_") for k in (report.get("summary") or {}))
    what = "top-1 (backfill_area_<policy>) and nDCG@10 (backfill_area_ndcg@10_<policy>)" if judged else "top-1"
    adapter = data.get("adapter") if data and isinstance(data.get("adapter"), dict) else {}
    of = f" ({CASCADE_CURVES})" if adapter.get("kind") == "cascade" else ""
    return f"the partial-backfill curves{of} (area under {what} over the backfilled share β) on {text}"


def run_measurement(run: dict[str, Any]) -> dict[str, Any]:
    """A training run's held-out numbers with their protocol."""
    summary = RunRecord.from_row(run).summary
    return {"source": f"training run {run['id']}, held-out", "protocol": run_protocol(run),
            "values": {**_numbers(summary), **improvement_bounds((run.get("metrics") or {}).get("improvement_ci"))}}


def improvement_bounds(ci: Any) -> dict[str, float]:
    """The improvement over old/old's 95% interval, flat (``improvement_top1_ci_low``, ...), as a manifest's
    numbers hold it: a bundle's warning then says a drop within the noise as the report does."""
    if not isinstance(ci, dict):
        return {}
    return {f"improvement_{metric}_ci_{side}": float(bounds[i]) for metric, bounds in ci.items()
            if isinstance(bounds, list | tuple) and len(bounds) == 2
            and all(isinstance(b, int | float) and not isinstance(b, bool) for b in bounds)
            for i, side in enumerate(("low", "high"))}


def step_metrics(run: dict[str, Any]) -> dict[str, Any]:
    """A chain step's run summary, always stating its ``heldout_protocol``."""
    summary = RunRecord.from_row(run).summary
    if any(isinstance(v, int | float) and not isinstance(v, bool) for v in summary.values()):
        summary["heldout_protocol"] = run_protocol(run)  # with new/new's own gallery where it searched another
    return summary


def metrics_for(ws: Workspace, runs: list[dict[str, Any]], report: dict[str, Any] | None) -> dict[str, Any]:
    """The manifest's ``metrics``: the shipped report's numbers (else the run's), each with its protocol.

    For a single layer with a report, the training run's held-out numbers follow under
    ``also_measured`` with their own protocol, so neither appears without the gallery it is from (unless
    the workspace changed since the run and the report measures it as it is now).
    """
    if report is not None and (report.get("summary") or {}).get("kind") == "chain":
        return chain_measurement(ws, report)
    if report is not None:
        values = _numbers(report.get("summary") or {})
        values.update(improvement_bounds(((report_json(ws, report) or {}).get("headline") or {}).get("improvement_ci")))
        areas = {k: values.pop(k) for k in [k for k in values if k.startswith(BACKFILL_AREA)]}
        served = {k: values.pop(k) for k in [k for k in values if k.startswith("served_")]}
        step = f" (run {report.get('run_id')}, one step of the chain)" if len(runs) > 1 else ""
        out = {"source": f"report {report['id']}{step}", "protocol": report_protocol(ws, report), "values": values,
               "also_measured": []}
        if len(runs) == 1 and _numbers(RunRecord.from_row(runs[0]).summary) and not _outgrown(ws, runs[0], report):
            out["also_measured"].append(run_measurement(runs[0]))
        if areas:  # measured on the evaluation sample, not on the upgraded cell's gallery
            out["also_measured"].append({"source": f"report {report['id']}{step}, partial backfill",
                                         "protocol": backfill_protocol(ws, report), "values": areas})
        if served:  # the gallery a backfill left, searched as it is served: its own protocol
            protocol = (report.get("summary") or {}).get("served_protocol")
            out["also_measured"].append({"source": f"report {report['id']}{step}, the served gallery after backfill "
                                                   f"run #{served.get('served_backfill_run')}",
                                         "protocol": protocol if isinstance(protocol, str) else UNRECORDED,
                                         "values": served})
        return out
    if len(runs) == 1:
        return {**run_measurement(runs[0]), "also_measured": []}
    return {"source": "none for the chain as a whole; see each step under 'chain'", "protocol": None,
            "values": {}, "also_measured": []}


def _outgrown(ws: Workspace, run: dict[str, Any], report: dict[str, Any]) -> bool:
    """Whether the training run's held-out numbers describe data the workspace has changed since, while the
    shipped report measures it as it is now: they would stand beside the report's as a second, older
    measurement of the same layer with nothing saying so (the manifest's staleness note is the report's)."""
    from embridge.core.data_state import report_stale_note, stale_note

    return stale_note(ws, run) is not None and report_stale_note(ws, int(report["id"])) is None


def measurements(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Every set of numbers of a manifest with its source and protocol (older manifests: unrecorded)."""
    metrics = manifest.get("metrics") if isinstance(manifest.get("metrics"), dict) else {}
    found = [metrics, *[m for m in metrics.get("also_measured") or [] if isinstance(m, dict)]]
    out = []
    for entry in found:
        values = entry.get("values") if isinstance(entry.get("values"), dict) else {}
        if values:
            protocol = entry.get("protocol")
            out.append({"source": str(entry.get("source") or "unknown source"),
                        "protocol": protocol if isinstance(protocol, str) and protocol else UNRECORDED,
                        "values": values})
    return out


def _shown(values: dict[str, Any], keys: tuple[str, ...] | None) -> dict[str, Any]:
    """The numbers to show; a ceiling (the cell gain retained is measured against) only where it is not
    new/new itself, as for a bct or bt2 head, whose gain is measured against its own space (head/head)."""
    names = [k for k in keys if k in values] if keys else list(values)
    return {k: values[k] for k in names if values[k] is not None
            and not (k.startswith("ceiling_") and values.get(k.replace("ceiling_", "new_new_", 1)) == values[k])}


# headline names that do not say their cell: the judged metrics are the upgraded system's
CELL_OF = {"ndcg@10": "upgraded ndcg@10", "mrr@10": "upgraded mrr@10", "ceiling_top1": "head/head top1 (the ceiling)",
           "ceiling_ndcg@10": "head/head ndcg@10 (the ceiling)"}


def _text(shown: dict[str, Any], sep: str) -> str:
    return ", ".join(f"{CELL_OF.get(k, k)}{sep}{_value(k, v)}" for k, v in shown.items())


def _value(key: str, value: Any) -> str:
    """A gain retained as the share every page and command says it; other floats to 4 figures."""
    if key.startswith("gain_retained") and isinstance(value, int | float) and not isinstance(value, bool):
        return format_share(value)
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def measured_groups(manifest: dict[str, Any], keys: tuple[str, ...] | None = HEADLINE,
                    sep: str = " = ") -> list[tuple[str, str, str]]:
    """(sources, protocol, numbers) per protocol; sources that agree on one protocol share a line. Two
    protocols differing only in which numbers they list as measured on the evaluation sample (a report
    adds ARR to a training run's list) are one protocol: the line names the longer list."""
    groups: list[list[Any]] = []  # [sources, protocol, numbers]
    for entry in measurements(manifest):
        shown = _shown(entry["values"], keys)
        if not shown:  # none of the asked-for numbers (the README's headline keys leave out backfill areas)
            continue
        for group in groups:
            sources, protocol, first = group
            common = set(first) & set(shown)
            if _bare(protocol) == _bare(entry["protocol"]) and common and all(first[k] == shown[k] for k in common):
                sources.append(entry["source"])
                first.update({k: v for k, v in shown.items() if k not in first})
                group[1] = max(protocol, entry["protocol"], key=len)
                break
        else:
            groups.append([[entry["source"]], entry["protocol"], shown])
    return [("; ".join(sources), protocol, _text(shown, sep)) for sources, protocol, shown in groups]


_SAMPLE_LIST = re.compile(re.escape(f" (and {SAMPLE_NUMBERS}") + r"[^)]*\)")  # run_record.sample_numbers_note


def _bare(protocol: str) -> str:
    """``protocol`` without its list of the numbers measured on the evaluation sample."""
    return _SAMPLE_LIST.sub("", protocol)


def measured_lines(manifest: dict[str, Any], keys: tuple[str, ...] | None = HEADLINE) -> list[str]:
    """'Measured (SOURCES) on PROTOCOL: numbers', one line per protocol."""
    return [f"Measured ({sources}){on(protocol)}: {numbers}" for sources, protocol, numbers in measured_groups(manifest, keys)]


def on(protocol: str) -> str:
    """' on PROTOCOL', or ', protocol not recorded (...)' for a record that predates stored protocols."""
    return f", {protocol}" if protocol == UNRECORDED else f" on {protocol}"


def chain_step_lines(manifest: dict[str, Any], keys: tuple[str, ...] | None = HEADLINE, sep: str = " = ") -> list[str]:
    """Each step's held-out numbers of a chained bundle with the protocol they were measured on; the
    chain as a whole has no single measurement (``embridge chain`` measures its end-to-end cells)."""
    steps = manifest.get("chain") if isinstance(manifest.get("chain"), list) else []
    if len(steps) < 2:
        return []
    out = []
    for i, step in enumerate(steps, 1):
        values = step.get("metrics") if isinstance(step, dict) and isinstance(step.get("metrics"), dict) else {}
        shown = _shown(_numbers(values), keys)
        if shown:
            protocol = values.get("heldout_protocol")
            protocol = protocol if isinstance(protocol, str) and protocol else UNRECORDED
            out.append(f"Step {i} (training run {step.get('run_id')}, {step.get('kind')}, held-out){on(protocol)}: "
                       f"{_text(shown, sep)}")
    end_to_end = str((manifest.get("metrics") or {}).get("source") or "").startswith("chain report")
    if out and not end_to_end:  # a chain report shipped with it measures it (its line comes first)
        out.append("The chain end to end (newest queries against the oldest gallery) is not measured by any "
                   "one step: run `embridge chain` for its cells, and export it with --report to ship them")
    return out


def verdict_line(manifest: dict[str, Any]) -> str | None:
    """A warning when the shipped numbers say the layer fails the compatibility criterion (on nDCG@10
    when they come from graded judgments, as the report's verdict and the plan weigh them); for a
    chained bundle, when any of its steps fails on its own held-out numbers."""
    found = measurements(manifest)
    if found:
        adapter = manifest.get("adapter") if isinstance(manifest.get("adapter"), dict) else {}
        failing = _failure(found[0]["values"], str(adapter.get("kind") or ""))
        if failing is None:
            return None
        numbers, worse, advice = failing
        served = ("searching the gallery it transforms with new queries" if adapter.get("direction") == "forward"
                  else "serving new queries through it")
        return (f"WARNING: this layer FAILS the compatibility criterion ({found[0]['source']}){numbers}; "
                f"{served} {worse}. {advice}")
    steps = manifest.get("chain") if isinstance(manifest.get("chain"), list) else []
    failed = []
    for i, step in enumerate(steps, 1):
        values = step.get("metrics") if isinstance(step, dict) and isinstance(step.get("metrics"), dict) else {}
        failing = _failure(values) if values else None
        if failing is not None:
            failed.append(f"step {i} (training run {step.get('run_id')}, {step.get('kind')}){failing[0]}")
    if not failed:
        return None
    return (f"WARNING: {len(failed)} of the chain's {len(steps)} steps {'FAILS' if len(failed) == 1 else 'FAIL'} "
            "the compatibility criterion on their "
            f"held-out numbers ({'; '.join(failed)}); queries served through the chain pass through "
            f"{'that step' if len(failed) == 1 else 'those steps'}. `embridge chain` measures the chain end to end")


def _failure(values: dict[str, Any], kind: str = "") -> tuple[str, str, str] | None:
    """(': upgraded X is not above old/old Y', how serving through it fares, what to do) for numbers that
    fail the criterion, else None."""
    w = weighed(values)
    name, up, old, ceiling = w.name, w.upgraded, w.old_old, w.ceiling
    if w.compatible is not False:
        return None
    numbers = (f": upgraded {name} {up:.3f} is not above old/old {old:.3f}"
               if isinstance(up, int | float) and isinstance(old, int | float) else "")
    metric = "ndcg@10" if name == "nDCG@10" else "top1"
    low, high = values.get(f"improvement_{metric}_ci_low"), values.get(f"improvement_{metric}_ci_high")
    worse = ("finds no more than today's system does" if numbers and not exceeds(old, up)
             else drop_words([low, high]))
    advice = f"Consider {bridge_alternatives(kind, short=True)} instead (the plan, `embridge plan` or the Plan page, weighs the backfills)"
    if w.new_better is False:
        advice = (f"The new model itself is no better ({name} {ceiling:.3f} against old/old {w.new_floor:.3f}): stay on the "
                  "old model")
    return numbers, worse, advice


def renamed_line(manifest: dict[str, Any]) -> str | None:
    """A note when the shipped report names the models as they were called before a rename."""
    report = manifest.get("report") if isinstance(manifest.get("report"), dict) else {}
    renamed = report.get("models_renamed") if isinstance(report.get("models_renamed"), dict) else {}
    pairs = [f"{side} model '{names.get('measured_as')}' (now '{names.get('now')}')"
             for side, names in sorted(renamed.items()) if isinstance(names, dict)]
    if not pairs:
        return None
    return ("report.json and report.html name the models as they were called when measured: "
            + " and ".join(pairs))


def stale_warning(result: dict[str, Any]) -> str | None:
    """A warning when an export shipped numbers measured before the workspace changed."""
    return f"WARNING: the bundle's numbers were {result['stale']}" if result.get("stale") else None


def export_warnings(result: dict[str, Any]) -> list[str]:
    """The WARNING lines of an export (command line and app alike): a layer that fails the criterion,
    numbers measured before the workspace changed, and a bundle shipped without a report."""
    return [w for w in (verdict_line(result["manifest"]), stale_warning(result), no_report_warning(result)) if w]


def no_report_warning(result: dict[str, Any]) -> str | None:
    """A bundle is meant to carry the report of its layer; one exported before any report was made ships
    the training run's held-out numbers only, and says how to include one."""
    manifest = result["manifest"]
    entry = manifest.get("report") if isinstance(manifest.get("report"), dict) else {}
    if entry.get("id") is not None or len(manifest.get("chain") or []) > 1:  # a chain's steps each have their own
        return None
    runs = (manifest.get("adapter") or {}).get("run_ids") or []
    run = str(runs[-1]) if runs else "RUN"
    return (f"WARNING: no report of this layer was made, so the bundle carries no report.html or report.json, "
            f"only the training run's held-out numbers; run 'embridge report --run {run}' and export again to "
            "ship its report")


def chain_measurement(ws: Workspace, report: dict[str, Any]) -> dict[str, Any]:
    """A chain report's numbers as the bundle of that chain states them: end to end, the newest version's
    queries through the chain against the oldest gallery (``upgraded_<metric>``), beside the oldest and newest
    versions' own systems, with the matrix's AC and AM, on the protocol its cells were measured on."""
    chain = (report_json(ws, report) or {}).get("chain") or {}
    matrix, metric = chain.get("matrix") or [], str(chain.get("metric") or "top1")
    values: dict[str, Any] = {}
    if matrix and all(isinstance(row, list) and row for row in matrix):
        values = {f"old_old_{metric}": matrix[0][0], f"upgraded_{metric}": matrix[-1][0],
                  f"new_new_{metric}": matrix[-1][-1]}
    values.update(ac=chain.get("ac"), am=chain.get("am"))
    measured = chain.get("measured_on")
    versions = chain.get("versions") or []
    return {"source": f"chain report {report['id']} ({' -> '.join(map(str, versions))}, end to end)",
            "protocol": "; ".join(map(str, measured)) if isinstance(measured, list) and measured else UNRECORDED,
            "values": _numbers(values), "also_measured": []}
