"""``plan_upgrade``: the workspace side of the planner (which report, which layers, measured rates).

It plans from the latest report of the run (building one when there is none), measures throughput
on this machine, adds the other layers trained for the same model pair (a forward transform, a
fusion layer) as alternatives, and returns :func:`embridge.core.plan.upgrade_options.plan_from_report`'s plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from embridge.core.adapters import load_adapter
from embridge.core.adapters.adapter import Adapter
from embridge.core.cascade_rerank import reranks_by_new_vectors
from embridge.core.data_state import changed_words, report_run, run_changes
from embridge.core.errors import EmbridgeError, StoreError
from embridge.core.evaluation.headline import metric_label
from embridge.core.formatting import capitalised, format_share
from embridge.core.jobs import check_device_option
from embridge.core.plan.option_row import sample_numbers
from embridge.core.plan.plan_record import Plan
from embridge.core.plan.throughput import Throughput, measure_throughput
from embridge.core.plan.upgrade_options import plan_from_report
from embridge.core.progress import ProgressFn, StopFn, check_stop, no_progress
from embridge.core.report.build import ReportOptions, build_report, latest_report_for_run, resolve_train_run
from embridge.core.report.number_source import served_lines
from embridge.core.report.report_record import Report
from embridge.core.run_record import UPGRADED_CELLS, RunRecord
from embridge.core.store import Workspace

ALTERNATIVE_KINDS = {"fct": "forward_transform", "fusion": "fusion", "cascade": "cascade"}
BRIDGE_KINDS = ("fusion", "cascade")


def plan_upgrade(ws: Workspace, run_id: int | None = None, fraction: float | None = None,
                 report: Report | None = None, *, throughput: Throughput | None = None,
                 device: str = "auto", gain_threshold: float = 0.9, target_share: float = 0.95,
                 on_progress: ProgressFn | None = None, should_stop: StopFn | None = None) -> Plan:
    """Plan the upgrade for a training run's layer (default: the latest completed run)."""
    progress = on_progress or no_progress
    if throughput is None:  # refused before a report is built, also when the new model has no backbone to time
        check_device_option(device)
    refreshed = None
    if report is None:
        run = resolve_train_run(ws, run_id)
        progress(0, 3, {"stage": "report"})
        report = latest_report_for_run(ws, run.id)
        earlier = report_run(ws, int(report.report_id)) if report is not None else None
        changes = run_changes(ws, earlier)
        if changes:  # a plan weighs the workspace as it is, not as an earlier report saw it
            refreshed = (f"report {report.report_id} was {changed_words(changes)}, so this plan measured a new one "
                         "with its settings")
        if report is None or changes:
            options = ReportOptions.from_recorded((earlier or {}).get("config") or {}) if changes else None
            report = build_report(ws, run.id, options, should_stop=should_stop)
    check_stop(should_stop)
    progress(1, 3, {"stage": "throughput"})
    row = ws.adapter(int(report.adapter["id"]))
    adapter = load_adapter(ws.adapter_path(row["id"]))
    alternatives, alt_adapters = _alternatives(ws, row)
    if throughput is None:
        throughput = measure_throughput(ws, adapter, row["new_model"], device=device, extra=alt_adapters)
    for alt in alternatives:
        alt["items_per_s"] = throughput.extra.get(alt["name"])
    check_stop(should_stop)
    progress(2, 3, {"stage": "options"})
    plan = plan_from_report(report, throughput, fraction=fraction, gain_threshold=gain_threshold,
                            target_share=target_share, alternatives=alternatives)
    plan = replace(plan, run_id=report.run_id, report_id=report.report_id, adapter_id=row["id"],
                   adapter_kind=row["kind"], old_model=row["old_model"], new_model=row["new_model"],
                   notes=[*plan.notes, *([refreshed] if refreshed else []), *map(capitalised, served_lines(report.served))])
    progress(3, 3, {"stage": "done"})
    return _with_backfill_done(plan, _served(ws, report, row))


def _served(ws: Workspace, report: Report, row: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The latest backfill as the plan's layer serves it: the report's served gallery, or, for a cascade (whose
    own cell re-ranks by that backfill's new vectors, so its report measures no served gallery apart), the
    backfill as that cell counted it."""
    if report.served or row["kind"] != "cascade":
        return report.served
    cell = report.cells.get(str(report.upgraded_cell)) or {}
    protocol = cell.get("protocol") if isinstance(cell.get("protocol"), Mapping) else {}
    backfill = ws.latest_backfill_run(str(row["new_model"]))
    if backfill is None or not protocol.get("new_vectors") or protocol.get("n_gallery") is None:
        return None
    return {"backfill": {"run_id": backfill["id"]}, "new_vectors": int(protocol["new_vectors"]),
            "protocol": {"n_gallery": int(protocol["n_gallery"]), "text": protocol.get("text")},
            "metrics": cell.get("metrics") or {}, "cascade": True}


def _with_backfill_done(plan: Plan, served: Mapping[str, Any] | None) -> Plan:
    """A recorded backfill that gave every gallery item its new vector has done the full backfill: that option
    costs nothing more and is the one recommended (a partial one would serve less than what is there now)."""
    full, partial = plan.option("full_backfill"), plan.option("partial_backfill")
    if served and partial is not None and int(served["new_vectors"]) >= int(partial["items_embedded"]) > 0:
        done = (f"Backfill run #{served['backfill']['run_id']} already gives {int(served['new_vectors'])} gallery "
                "items their new vectors, at least as many as this partial backfill would: 'backfill --order "
                "planner' refuses to record it over that one unless a --fraction asks for it.")
        partial["notes"].append(done)
        if plan.recommendation == "partial_backfill":  # said where the command line shows it
            plan = replace(plan, reason=f"{plan.reason} {done}")
    if not served or full is None or int(served["new_vectors"]) < int(served["protocol"]["n_gallery"]):
        return plan
    run, n = served["backfill"]["run_id"], int(served["protocol"]["n_gallery"])
    for option in (full, partial):  # every item has its new vector: part of the work done costs nothing either
        if option is not None:
            option.update(time_s=0.0, items_embedded=0)
            option["notes"].append(f"Done: backfill run #{run} already embedded all {n} gallery items with the new "
                                   "model; nothing is left to embed.")
    if plan.new_better is False:
        return plan
    now = _served_now(plan.metric, (served.get("metrics") or {}).get(plan.metric),
                      (full.get("quality") or {}).get(plan.metric) if served.get("cascade") else None)
    return replace(plan, recommendation="full_backfill",
                   reason=f"Backfill run #{run} already re-embedded all {n} gallery items with the new model{now}: "
                          "the full backfill is done, and no layer or partial backfill serves more than it.")


def _served_now(metric: str, served: Any, full: Any) -> str:
    """' (served now: top-1 98.5%)'; ``full``, the full backfill's own row, is given where the served cell is
    a cascade's (the old index's top K re-ranked by the new vectors), which differs from it."""
    if not isinstance(served, float | int):
        return ""
    now = f"{metric_label(metric)} {format_share(served)}"
    if isinstance(full, float | int) and format_share(full) != format_share(served):
        return (f" (served now: {now} through the cascade's re-ranking of the old index's top K; "
                f"{format_share(full)} searching the new vectors alone)")
    return f" (served now: {now})"


def _alternatives(ws: Workspace, chosen: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Adapter]]:
    """The latest completed fct, fusion and cascade layers of the same model pair, other than the chosen
    one; for a chosen fusion or cascade also the latest plain new->old layer (adapter only), which serves
    with one encoder and may pass the criterion as well."""
    latest: dict[str, dict[str, Any]] = {}
    bridge = chosen["kind"] in BRIDGE_KINDS
    for row in ws.adapters():
        name = ALTERNATIVE_KINDS.get(row["kind"]) or ("adapter_only" if bridge and row.get("direction") == "backward"
                                                      else None)
        if (name is not None and row["kind"] != chosen["kind"] and row["id"] != chosen["id"]
                and (row["old_model"], row["new_model"]) == (chosen["old_model"], chosen["new_model"])
                and row.get("run_id") is not None and _completed(ws, int(row["run_id"]))):
            latest[name] = row
    out, adapters = [], {}
    for name, row in latest.items():
        kind = row["kind"]
        try:
            path = ws.adapter_path(row["id"])  # checks the file's sha256
            adapters[name] = load_adapter(path)
            size = path.stat().st_size  # its own file: the plan's storage counts this layer, not the report's
        except (EmbridgeError, OSError):
            continue  # a missing or changed file: not offered
        alt = _alternative_quality(ws, row)
        alt.update(name=name, kind=kind, out_dim=row["out_dim"], adapter_bytes=size, run_id=row["run_id"],
                   k=(row.get("config") or {}).get("k"),
                   new_vectors=reranks_by_new_vectors(row.get("config")))
        out.append(alt)
    return out, adapters


def _completed(ws: Workspace, run_id: int) -> bool:
    """Whether the run is recorded and completed: a layer whose run record is gone is not offered."""
    try:
        return RunRecord.from_row(ws.run(run_id)).completed
    except StoreError:
        return False


def _alternative_quality(ws: Workspace, row: dict[str, Any]) -> dict[str, Any]:
    """Its report's upgraded cell when it has one, else the held-out numbers of its training run."""
    report = latest_report_for_run(ws, row["run_id"])
    if report is not None:
        cell = report.cells[str(report.upgraded_cell)]
        metrics = cell["metrics"]
        top = (report.cells.get(str(report.ceiling_cell)) or {}).get("metrics") or {}
        return {"quality": {k: metrics[k] for k in ("top1", "top5", "ndcg@10", "mrr@10") if k in metrics},
                "ceiling": {k: top[k] for k in ("top1", "ndcg@10", "mrr@10") if isinstance(top.get(k), int | float)},
                "quality_sample": sample_numbers(report.headline, "upgraded_sample"),
                "source": f"Quality: the {report.upgraded_cell} cell of report {report.report_id} "
                          f"(run {row['run_id']}){_then(ws, report_run(ws, int(report.report_id)))}.",
                "outgrown": run_changes(ws, report_run(ws, int(report.report_id))),
                "measured_on": cell.get("protocol"), "sample_on": (report.cells.get("new/new") or {}).get("protocol"),
                "improvement_ci": report.headline.get("improvement_ci"),
                "from": f"report {report.report_id} of run {row['run_id']}"}
    metrics = RunRecord.from_row(ws.run(row["run_id"])).metrics
    top1 = metrics.get("upgraded_top1")
    where = metrics.get("heldout_protocol") or "its test queries"
    protocols = metrics.get("protocols") if isinstance(metrics.get("protocols"), dict) else {}
    measured = next((protocols[c] for c in UPGRADED_CELLS if isinstance(protocols.get(c), dict)), None)
    quality = {k: v for k, v in (("top1", top1), ("ndcg@10", metrics.get("ndcg@10")),
                                 ("mrr@10", metrics.get("mrr@10"))) if isinstance(v, int | float)}
    shown = "top-1 and nDCG@10" if "ndcg@10" in quality else "top-1"
    ceiling = {k: metrics.get(f"ceiling_{k}", metrics.get(f"new_new_{k}")) for k in ("top1", "ndcg@10", "mrr@10")}
    return {"quality": quality, "quality_sample": sample_numbers(metrics, "upgraded_sample"),
            "ceiling": {k: v for k, v in ceiling.items() if isinstance(v, int | float)},
            "source": f"Quality: held-out {shown} of training run {row['run_id']}, measured as reports measure it, "
                      f"on {where}{_then(ws, ws.run(row['run_id']))}.", "measured_on": measured,
            "outgrown": run_changes(ws, ws.run(row["run_id"])),
            "sample_on": protocols.get("new/new"), "improvement_ci": metrics.get("improvement_ci"),
            "from": f"training run {row['run_id']}, held-out"}


def _then(ws: Workspace, run: dict[str, Any] | None) -> str:
    """', measured before the workspace changed (…)' for another run's numbers that are not current."""
    changes = run_changes(ws, run)
    return f", {changed_words(changes)}" if changes else ""
