"""Report and planning commands: ``embridge report``, ``embridge plan`` and ``embridge chain``."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from embridge.core.cli.main import add_common
from embridge.core.cli.option_types import BACKFILL_SHARE, NON_BLANK, PATH, RUN_ID, SHARE, number, run_id_list
from embridge.core.errors import EmbridgeError, InputError, UsageError
from embridge.core.evaluation.headline import JUDGED_METRICS, metric_label
from embridge.core.formatting import format_bytes, format_seconds, format_share, sample_floor_text
from embridge.core.json_values import json_safe
from embridge.core.progress import StderrProgress
from embridge.core.report.limits import MAX_BOOTSTRAP, MIN_BOOTSTRAP
from embridge.core.report.report_record import curve_metric
from embridge.core.run_choice import pair_arrow
from embridge.core.run_record import OLD_OLD, measured_on_lines
from embridge.core.store import Workspace

if TYPE_CHECKING:
    from embridge.core.plan.plan_record import Plan
    from embridge.core.report.report_record import Report

Result = tuple[dict[str, Any], str]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="compatibility report of a trained layer (report.json + report.html)")
    add_common(p)
    p.add_argument("--run", type=RUN_ID, help="training run (default: the latest completed one)")
    p.add_argument("--heldout-gallery", action="store_true",
                   help="leave the items the layer may have been fitted on out of the gallery: the train fold and, "
                        "with relevance judgments, the documents judged relevant to training queries")
    p.add_argument("--rollback", action="store_true", help="also score the rollback cell old/new")
    _search_flags(p)
    p.add_argument("--backfill-steps", type=number(int, low=2, high=1001), default=11,
                   help="points on the partial-backfill curves (default 11)")
    p.add_argument("--bootstrap", type=number(int, low=MIN_BOOTSTRAP, high=MAX_BOOTSTRAP), default=1000,
                   help=f"bootstrap resamples for the intervals ({MIN_BOOTSTRAP} to {MAX_BOOTSTRAP}; default 1000)")
    p.add_argument("--fail-under", type=_gate_check, action="append", default=[], metavar="METRIC=VALUE",
                   help="release gate, repeatable: exit 1 unless METRIC is at least (= or >=) or at most (<=) "
                        "VALUE, e.g. gain_retained=0.5 or negative_flip_rate<=0.05")
    p.add_argument("--junit", type=PATH, metavar="FILE", help="write the --fail-under checks as JUnit XML to FILE")
    p.set_defaults(handler=cmd_report)

    p = sub.add_parser("plan", help="upgrade options with time, storage and quality, and a recommendation")
    add_common(p)
    p.add_argument("--run", type=RUN_ID, help="training run (default: the latest completed one)")
    p.add_argument("--fraction", type=BACKFILL_SHARE,
                   help="plan the partial backfill at this fraction of the gallery (above 0, at most 1)")
    p.add_argument("--device", type=NON_BLANK, default="auto",
                   help="device to time re-embedding on (auto, cpu, cuda, cuda:N or mps)")
    from embridge.core.plan.option_choice import GAIN_THRESHOLD_HELP, TARGET_SHARE_HELP

    p.add_argument("--gain-threshold", type=SHARE, default=0.9, help=f"{GAIN_THRESHOLD_HELP}; default 0.9")
    p.add_argument("--target-share", type=number(float, low=0.0, high=1.0, low_open=True), default=0.95,
                   help=f"{TARGET_SHARE_HELP}; default 0.95")
    p.add_argument("--order-out", type=PATH, metavar="FILE.npy",
                   help="also write the keys of the items the partial backfill re-embeds, first first (for "
                        "embed-dataset --order, or vectors made elsewhere); a new .npy file")
    p.set_defaults(handler=cmd_plan)

    p = sub.add_parser("chain", help="compatibility matrix of a chain of model versions, v1 → v2 → … (AC, AM)")
    add_common(p)
    p.add_argument("--models", required=True, help="versions oldest first, comma-separated: v1,v2,v3")
    p.add_argument("--runs", type=run_id_list, required=True,
                   help="training runs of each step, comma-separated: v2→v1,v3→v2")
    p.add_argument("--metric", type=_chain_metric, default=None,
                   help=f"the matrix's metric: {', '.join(CHAIN_METRICS)}, or with relevance judgments "
                        f"{' or '.join(JUDGED_METRICS)} (default: ndcg@10 with judgments, else top1; a gallery under "
                        "10 items has a smaller recall@k; mAP@R replaces mAP where the full ranking is too large)")
    p.add_argument("--heldout-gallery", action="store_true",
                   help="leave the items the layers may have been fitted on out of the gallery: the train fold and, "
                        "with relevance judgments, the documents judged relevant to training queries")
    _search_flags(p)
    p.set_defaults(handler=cmd_chain)


CHAIN_METRICS = ("top1", "top5", "recall@10", "mAP", "mAP@R")


def _chain_metric(raw: str) -> str:
    """A metric the chain matrix can hold (see ``headline_metrics``); the sample decides recall@k and mAP's flavour."""
    from embridge.core.evaluation.scoring import RECALL_KS

    known = {*CHAIN_METRICS, *JUDGED_METRICS, *(f"recall@{k}" for k in RECALL_KS if k <= 10)}
    if raw.strip() not in known:
        raise argparse.ArgumentTypeError(f"unknown metric '{raw}'; use {', '.join(CHAIN_METRICS[:-1])} or "
                                         f"{CHAIN_METRICS[-1]}, or with relevance judgments "
                                         f"{' or '.join(JUDGED_METRICS)}")
    return raw.strip()


def _search_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--search", choices=["auto", "exact", "ivf", "hnsw"], default="auto",
                   help="faiss search: exact up to --exact-max gallery items, approximate beyond (auto)")
    from embridge.core.cli.engine_flags import add_engine_flags

    add_engine_flags(p)
    p.add_argument("--shards", type=number(int, low=1, high=100_000), metavar="N", help="gallery shards with --engine ray (default: one per CPU)")
    p.add_argument("--exact-max", type=number(int, low=0, high=10**9), default=200_000, metavar="N",
                   help="largest gallery searched exactly under --search auto (default 200000)")


def _search_config(args: argparse.Namespace) -> Any:
    """The search settings, checked together before any work (or Ray) starts."""
    from embridge.core.evaluation.search import SearchConfig

    if args.engine == "ray" and args.search not in ("auto", "exact"):
        raise UsageError("--search", f"--engine ray searches shards exactly; {args.search!r} is not available "
                         "there (use --search exact or auto)")
    return SearchConfig(method=args.search, exact_max=args.exact_max, engine=args.engine, shards=args.shards,
                        ray_address=args.ray_address)


def _engine_session(args: argparse.Namespace) -> Any:
    """One Ray session for all the searches of a report on --engine ray (nothing for local)."""
    if args.engine != "ray":
        return contextlib.nullcontext()
    from embridge.core.scale.engine import ray_session

    return ray_session(args.ray_address)


def _gate_check(text: str) -> Any:
    from embridge.core.report.gate import parse_check

    try:
        return parse_check(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(exc.problem) from None


def cmd_report(args: argparse.Namespace) -> Result:
    from embridge.core.report.build import ReportOptions, build_report
    from embridge.core.report.gate import check_junit_target, check_metric_names

    if args.fail_under:  # a check given twice is one check (one line, one JUnit test case)
        args.fail_under = list(dict.fromkeys(args.fail_under))
    if args.junit is not None:  # before any work: a bad target must not leave a stored report behind
        check_junit_target(args.junit, args.workspace)
        if not args.fail_under:
            refused = UsageError("--junit", "needs at least one --fail-under check (a gate without checks always "
                                 "passes)")
            if Path(args.junit).exists():  # a gate variable that expanded to nothing: no earlier green result stays
                from embridge.core.report.gate import write_junit

                write_junit(args.junit, f"the report could not be built: the command line was refused: {refused}")
            raise refused
    try:
        check_metric_names(args.fail_under or [])  # a typo is refused now, not after the report is built
        search = _search_config(args)
        with _engine_session(args), Workspace.open(args.workspace) as ws:
            options = ReportOptions(heldout_gallery=args.heldout_gallery, search=search,
                                    backfill_steps=args.backfill_steps, rollback=args.rollback,
                                    n_boot=args.bootstrap)
            report = build_report(ws, args.run, options, on_progress=StderrProgress("report"))
    except EmbridgeError as exc:  # the JUnit file says so too, rather than keeping an earlier result
        if args.junit is not None:
            from embridge.core.report.gate import write_junit

            write_junit(args.junit, "the report could not be built: " + " ".join(str(exc).split()))  # whole
        raise
    data, text = json_safe(report_data(report)), _report_text(report)
    if args.fail_under:
        data["gate"], text = _gate(args, data, text, report)
    return data, text


class _Unreadable(Exception):
    """A command line the JUnit look-up cannot read either (the refusal is already said, in one line)."""


class _SilentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse's own prints a second usage and error line
        raise _Unreadable(message)


def junit_after_refusal(argv: list[str], message: str) -> None:
    """A ``report --junit FILE`` whose command line argparse refused (a malformed --fail-under, an option
    out of range): FILE gets an error case naming the refusal, so CI never shows an earlier green result
    beside a failed step. Best effort: a FILE that ``--junit`` itself would refuse is left alone."""
    from embridge.core.report.gate import check_junit_target, write_junit

    seen = _SilentParser(add_help=False)  # prefixes too (--jun, --works), as the command reads them
    seen.add_argument("command", nargs="?")
    seen.add_argument("--junit", type=PATH)  # a FILE --junit itself refuses (blank) is no file to write
    seen.add_argument("--workspace", "-w")
    try:
        known, _ = seen.parse_known_args(argv)
    except _Unreadable:
        return
    if known.command != "report" or not known.junit or not known.workspace:
        return
    try:
        check_junit_target(known.junit, known.workspace)
        write_junit(known.junit, f"the report could not be built: the command line was refused: {message}")
    except EmbridgeError:
        pass


def _gate(args: argparse.Namespace, data: dict[str, Any], text: str, report: Report) -> tuple[dict[str, Any], str]:
    """Evaluate --fail-under, write --junit; failed checks go to stderr and set exit status 1. Each
    message names the cell and the queries and gallery its number was measured on."""
    import dataclasses
    import sys

    from embridge.core.report.gate import evaluate, write_junit

    results = [dataclasses.replace(r, message=f"{r.message} ({_measured_where(r.check.metric, report)})")
               for r in evaluate(args.fail_under, data)]
    if args.junit:
        write_junit(args.junit, results)
    failed = [r for r in results if not r.passed]
    for r in failed:
        sys.stderr.write(f"embridge: gate failed: {r.message}\n")
    if failed:
        args.exit_status = 1
    gate = {"passed": not failed, "checks": [{"check": r.check.text, "reads": r.reads, "value": r.value,
                                              "passed": r.passed, "message": r.message} for r in results],
            "junit": str(args.junit) if args.junit else None}
    summary = f"gate: {len(results) - len(failed)} of {len(results)} checks passed"
    return gate, text + "\n" + summary


def _measured_where(metric: str, report: Report) -> str:
    """Which cell a headline metric is of, and its protocol sentence."""
    if metric.startswith("backfill_area"):
        return "area under the partial-backfill top-1 curve, on the evaluation sample"
    sampled = "_sample_" in metric or (report.headline.get("old_old_sample_top1") is not None
                                       and metric.startswith(("gain", "arr")))
    cell = (OLD_OLD if metric.startswith("old_old") else
            report.ceiling_cell if metric.startswith(("new_new", "ceiling", "head_new")) else report.upgraded_cell)

    def on(name: str) -> str:
        protocol = (report.cells.get(name if not sampled else str(report.ceiling_cell)) or {}).get("protocol") or {}
        return f"{name} on {protocol['text']}" if protocol.get("text") else name

    if metric.startswith(("gain", "arr")) and sampled:  # all on new/new's gallery, the evaluation sample
        return f"{report.upgraded_cell} against old/old and {on(str(report.ceiling_cell))}"
    if metric.startswith("gain"):  # a share of the way from old/old to the ceiling: three cells, each named
        return f"{on(cell)}; from {on(OLD_OLD)} to {on(report.ceiling_cell)}"
    return f"{on(cell)}; against old/old" if "flip" in metric or "nfr" in metric else on(cell)


def _held_out(sizes: dict[str, Any]) -> str:
    """What --heldout-gallery took out of the gallery, as the report's sizes count it."""
    judged = sizes.get("removed_judged") or 0
    if judged:
        return (f"{sizes.get('removed_train')} items layers may be fitted on: the train fold and {judged} documents "
                "judged relevant to training queries")
    return f"the train fold's {sizes.get('removed_train')}"


def _model_name(report: Report, role: str) -> Any:
    """The name the report's ``role`` ('old' or 'new') model had when it was measured."""
    return (report.models.get(role) or {}).get("name")


def report_data(report: Report) -> dict[str, Any]:
    """The CLI's JSON: cells with their table metrics, the headline numbers and the file paths."""
    return {
        "report_id": report.report_id, "run_id": report.run_id, "adapter_id": report.adapter_id,
        "method": report.method, "upgraded_cell": report.upgraded_cell, "ceiling_cell": report.ceiling_cell,
        "old_model": _model_name(report, "old"), "new_model": _model_name(report, "new"),
        "cells": {name: values | report.recall_fractions(name) | {"n_queries": report.cells[name]["n_queries"]}
                  for name, values in report.table().items()},
        **report.headline_numbers(),
        "backfill_areas": report.backfill_areas,  # top-1; every metric's, and the metric that decides, below
        "backfill_areas_by_metric": report.backfill_areas_by_metric,
        "backfill_metric": curve_metric(report.backfill) if report.backfill.get("policies") else None,
        "backfill_best_policy": report.backfill.get("best_policy"),
        # the partial-backfill curves themselves: per policy, the share backfilled and each metric there
        "backfill_curves": {policy: {"betas": curve.get("betas"), "values": curve.get("values")}
                            for policy, curve in (report.backfill.get("policies") or {}).items()},
        "sizes": report.sizes, "search": {k: report.search[k] for k in ("method", "exact", "recall_vs_exact",
                                                                         "statement")},
        "verdicts": report.verdicts, "report_json": report.json_file, "report_html": report.html_file,
        "served": None if not report.served else {k: report.served[k] for k in ("backfill", "new_vectors", "metrics",
                                                                                "protocol")},
    }


def _queries_text(sizes: dict[str, Any]) -> str:
    """'200 queries', or '140 queries scored (of 200)' when some have no relevant gallery item."""
    scored, total = sizes.get("queries_scored"), sizes["queries"]
    return f"{scored} queries scored (of {total})" if isinstance(scored, int) and scored < total else f"{total} queries"


ROLLBACK_CELL = "old/new"  # the cell --rollback adds


def _rollback_lines(report: Report) -> list[str]:
    """The rollback cell asked for with --rollback (old queries against the backfilled gallery): its top-1,
    its flips against old/old and where it was measured, as report.json and the HTML hold them."""
    from embridge.core.report.number_source import flips_text

    cell = report.cells.get(ROLLBACK_CELL)
    if not isinstance(cell, dict) or not isinstance(cell.get("metrics"), dict):
        return []
    flips = report.flips.get(ROLLBACK_CELL) or {}
    against = f" against {flips['against']}" if flips.get("against") else ""
    protocol = (cell.get("protocol") or {}).get("text")
    return [f"rollback ({ROLLBACK_CELL}, old queries against the backfilled gallery): top-1 "
            f"{format_share(cell['metrics'].get('top1'))}; {flips_text(flips)}{against}"
            + (f"; measured on {protocol}" if protocol else "")]


def _report_text(report: Report) -> str:
    from embridge.core.report.number_source import backfill_lines, flips_text, gain_text, served_lines

    h, s = report.headline, report.sizes
    pair = pair_arrow(_model_name(report, "old"), _model_name(report, "new"), report.method)
    lines = [f"report #{report.report_id}: {report.method} layer of run {report.run_id} ({pair}), "
             f"{_queries_text(s)}; evaluation sample {s['gallery']} of the {s['gallery_full']} gallery items"
             + (f" ({_held_out(s)} left out by --heldout-gallery)" if s.get("heldout_gallery") else ""),
             f"top-1: old/old {format_share(h['old_old_top1'])}, {report.ceiling_cell} "
             f"{format_share(h['ceiling_top1'])}, {report.upgraded_cell} {format_share(h['upgraded_top1'])}"
             f"{sample_floor_text(h.get('old_old_sample_top1'), h.get('upgraded_sample_top1'))}; "
             f"gain retained {gain_text(h['gain_retained'], h.get('gain_retained_note'))}, ARR@{h['arr_k']} "
             f"{format_share(h['arr'])}" + (" (both on the evaluation sample)"
                                             if h.get("old_old_sample_top1") is not None else ""),
             flips_text(h)]
    for key in JUDGED_METRICS:
        name = metric_label(key)
        if key in h:
            lines.append(f"{name}: old/old {format_share(h.get(f'old_old_{key}'))}, new/new "
                         f"{format_share(h.get(f'new_new_{key}'))}, {report.upgraded_cell} {format_share(h[key])}"
                         f"{sample_floor_text(h.get(f'old_old_sample_{key}'), h.get(f'upgraded_sample_{key}'))}; "
                         f"gain retained {gain_text(h.get(f'gain_retained_{key}'), h.get(f'gain_retained_{key}_note'))}"
                         + (" (on the evaluation sample)" if h.get(f"old_old_sample_{key}") is not None else ""))
    lines += measured_on_lines(h)  # old/old and the upgraded cell may search more than new/new's sample
    lines += _rollback_lines(report)
    lines += served_lines(report.served)
    lines += [*report.verdicts, report.search["statement"]]
    lines += backfill_lines(report)
    if report.files:
        lines += [f"json: {report.json_file}", f"html: {report.html_file}"]
    return "\n".join(lines)


def cmd_plan(args: argparse.Namespace) -> Result:
    from embridge.core.plan import plan_upgrade

    if args.order_out is not None:  # before any work: an output that would replace or land in what is kept
        from embridge.core.scale.planner_keys import check_order_out

        check_order_out(args.order_out, args.workspace)
    with Workspace.open(args.workspace) as ws:
        plan = plan_upgrade(ws, args.run, args.fraction, device=args.device, gain_threshold=args.gain_threshold,
                            target_share=args.target_share, on_progress=StderrProgress("plan"))
        if args.order_out is None:
            return plan.to_json(), _plan_text(plan)
        from embridge.core.scale.planner_keys import write_planner_keys

        written = write_planner_keys(ws, plan, args.order_out)
    return ({**plan.to_json(), "order_out": {"path": str(args.order_out), "items": written}},
            _plan_text(plan) + f"\nwrote the partial backfill's order ({written} item keys) to {args.order_out}")


def _plan_text(plan: Plan) -> str:
    pair = f", {pair_arrow(plan.old_model, plan.new_model, plan.adapter_kind)}" if plan.old_model and plan.new_model \
        else ""
    lines = [f"plan for run {plan.run_id} ({plan.adapter_kind}{pair}), full gallery {plan.gallery_full} items:"]
    for o in plan.options:
        mark = "*" if o["name"] == plan.recommendation else " "
        time_s = "unknown" if o["time_s"] is None else format_seconds(o["time_s"])  # as the Plan page shows it
        lines.append(f"{mark} {o['title']:<44} time {time_s:>10}  storage {format_bytes(o['storage_bytes']):>10}  "
                     f"top-1 {format_share(o['quality'].get('top1'))}"
                     + (f"  nDCG@10 {format_share(o['quality']['ndcg@10'])}" if "ndcg@10" in o["quality"] else "")
                     + (f"  on {o['measured_gallery']}" if o.get("measured_gallery") else ""))
    lines += plan.measured_on()
    lines += [f"recommendation: {plan.recommendation} (options weighed by {metric_label(plan.metric)})", plan.reason,
              *plan.notes, *plan.backfill_note_lines()]
    return "\n".join(lines)


def cmd_chain(args: argparse.Namespace) -> Result:
    from embridge.core.report.chain import chain_report
    from embridge.core.report.chain_text import chain_lines

    models = [m.strip() for m in args.models.split(",")]
    if not all(models):
        raise UsageError("--models", f"has an empty entry in '{args.models}'; list the versions oldest first, "
                         "e.g. v1,v2,v3")
    runs = args.runs
    search = _search_config(args)
    with _engine_session(args), Workspace.open(args.workspace) as ws:
        report = chain_report(ws, models, runs, metric=args.metric, heldout_gallery=args.heldout_gallery,
                              search=search, on_progress=StderrProgress("chain"))
    chain = report.chain or {}
    data = {"report_id": report.report_id, "versions": chain["versions"], "metric": chain["metric"],
            "matrix": chain["matrix"], "ac": chain["ac"], "am": chain["am"], "criterion": chain["criterion"],
            "measured_on": chain.get("measured_on") or [], "ac_note": chain.get("ac_note"),
            "report_json": report.json_file, "report_html": report.html_file}
    text = "\n".join([*chain_lines(chain), f"html: {report.html_file}"])
    return json_safe(data), text
