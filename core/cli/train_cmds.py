"""Training commands: ``embridge train`` and ``embridge runs``."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from typing import Any

from embridge.core.cli.main import add_common, one_line
from embridge.core.cli.option_types import NON_BLANK, POSITIVE_COUNT, SEED, number
from embridge.core.data_state import with_stale_notes
from embridge.core.errors import UsageError
from embridge.core.evaluation.compat import NOT_BETTER
from embridge.core.evaluation.headline import (
    JUDGED_METRICS,
    criterion,
    criterion_text,
    decides_on_ndcg,
    noise_words,
    weighed,
)
from embridge.core.formatting import count_words, format_share, sample_floor_text
from embridge.core.progress import StderrProgress
from embridge.core.report.number_source import gain_text
from embridge.core.run_choice import pair_arrow, run_choice
from embridge.core.run_record import (
    NEW_NEW,
    cell_protocols,
    fitted_text,
    measured_on_lines,
    protocol_groups,
    sample_numbers_note,
    stated_protocol,
)
from embridge.core.setting_help import setting_help
from embridge.core.store import Workspace
from embridge.core.store.records import FINAL_STATUSES, RUN_KINDS

Result = tuple[dict[str, Any], str]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="fit a compatibility layer between the old and new model",
                       formatter_class=_MethodsHelp)
    add_common(p)
    p.add_argument("--method", required=True, help="%(methods)s")
    p.add_argument("--old", help="old model name (default: the model with role old)")
    p.add_argument("--new", help="new model name (default: the model with role new)")
    p.add_argument("--device", type=NON_BLANK, default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--epochs", type=POSITIVE_COUNT, help=setting_help("epochs") + " (default: the method's own)")
    p.add_argument("--lr", type=number(float, low=0.0, high=1e3, low_open=True), help=setting_help("lr"))
    p.add_argument("--batch-size", type=TRAIN_BATCH, help=setting_help("batch_size"))
    p.add_argument("--loss", choices=LOSS_CHOICES, help=setting_help("loss"))
    p.add_argument("--seed", type=SEED, default=0, help=setting_help("seed") + " Default 0.")
    p.add_argument("--pairs", choices=["documents", "queries", "both"],
                   help="fit on document pairs, query pairs (queries judged in train) or both "
                        "(default: both when query pairs exist, else documents); test queries never are")
    p.add_argument("--time-budget", type=number(float, low=0.0, high=1e7, low_open=True), metavar="SECONDS",
                   help=setting_help("time_budget"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other setting of the method (value parsed as JSON when it can be); the settings "
                        "and their defaults are %(settings)s")
    p.set_defaults(handler=cmd_train)

    p = sub.add_parser("runs", help="list recorded runs (training, reports, exports)")
    add_common(p)
    p.add_argument("--kind", choices=RUN_KINDS, help="only runs of this kind")
    p.add_argument("--status", choices=("running", *FINAL_STATUSES), help="only runs that ended so (or are running)")
    p.add_argument("--last", type=POSITIVE_COUNT, metavar="N", help="only the newest N runs (after --kind and --status)")
    p.set_defaults(handler=cmd_runs)


def method_settings() -> str:
    """Each method's own --set settings with their defaults, as ``train --help`` lists them: the full
    list was said only by the refusal of a misspelt one."""
    from embridge.core.adapters.registry import METHODS
    from embridge.core.train.config import COMMON_DEFAULTS, allowed_settings

    def listed(kind: str) -> str:
        own = {k: v for k, v in allowed_settings(kind).items() if k not in OWN_OPTIONS and k not in COMMON_DEFAULTS}
        return f"{kind}: " + (", ".join(f"{k}={json.dumps(v)}" for k, v in own.items()) or "none of its own")

    common = ", ".join(f"{k}={json.dumps(v)}" for k, v in COMMON_DEFAULTS.items() if k not in OWN_OPTIONS)
    auto = ", ".join(f"{k}={json.dumps(allowed_settings('auto')[k])}" for k in ("candidates", "rerank_new_vectors"))
    return (f"every method that trains (not the closed forms procrustes and affine): {common}; "
            + "; ".join(listed(kind) for kind in METHODS)
            + f"; auto: {auto}, and any setting of its candidates, which each keep their own default otherwise")


def method_names() -> str:
    """Every method of the registry (with its aliases) and auto, as ``train --help`` lists them."""
    from embridge.core.adapters.registry import ALIASES, METHODS

    names = [kind + "".join(f" ({a})" for a, k in ALIASES.items() if k == kind) for kind in METHODS]
    return ", ".join(names) + " or auto"


class _MethodsHelp(argparse.HelpFormatter):
    """Lists the methods when help is shown (the registry loads torch, which other commands do without)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = super()._get_help_string(action)
        if text and "%(settings)s" in text:
            text = text.replace("%(settings)s", method_settings())
        return text.replace("%(methods)s", method_names()) if text else text


# core.train.config.LOSSES (a test keeps them equal), named here: that module loads torch, which
# building the command line does without
LOSS_CHOICES = ["mse", "cosine", "contrastive", "retrieval"]
TRAIN_BATCH = number(int, low=2, high=1 << 20)  # a batch of one has no other item to contrast with
# settings that have an option of their own on `train`
OWN_OPTIONS = {"epochs": "--epochs", "lr": "--lr", "batch_size": "--batch-size", "loss": "--loss", "seed": "--seed",
               "device": "--device", "time_budget": "--time-budget"}


def parse_settings(args: argparse.Namespace) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for flag in ("epochs", "lr", "batch_size", "loss"):
        if getattr(args, flag) is not None:
            settings[flag] = getattr(args, flag)
    if getattr(args, "time_budget", None) is not None:
        if args.method.strip().lower() != "auto":
            raise UsageError("--time-budget", f"only applies to --method auto, not '{args.method}'")
        settings["time_budget"] = args.time_budget
    for item in args.set:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UsageError("--set", f"expected KEY=VALUE, got '{item}'")
        if key.strip() in OWN_OPTIONS:  # one way to give each: the option checks its value, and none is dropped
            raise UsageError("--set", f"{key.strip()} has its own option: use {OWN_OPTIONS[key.strip()]}")
        if key.strip() in settings:  # as an option given twice: the first value would be dropped unsaid
            raise UsageError("--set", f"{key.strip()} given more than once; give it once")
        try:
            settings[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            settings[key.strip()] = raw
    return settings


def cmd_train(args: argparse.Namespace) -> Result:
    from embridge.core.jobs import check_device_option
    from embridge.core.train.config import resolve_config
    from embridge.core.train.runs import train_run

    settings = parse_settings(args)  # a refused option or setting before the workspace is opened
    check_device_option(args.device)
    resolve_config(args.method, settings, OWN_OPTIONS, "--method")
    with Workspace.open(args.workspace) as ws:
        out = train_run(ws, args.method, args.old, args.new, device=args.device, config=settings,
                        seed=args.seed, pairs=args.pairs, on_progress=StderrProgress(f"train {args.method}"))
    unused = out.get("unused_settings") or []
    if unused:  # shown last in the text, and on stderr with --json
        out["warning"] = "\n".join(f"WARNING: {', '.join(OWN_OPTIONS.get(k, k) for k in u['names'])} not used: "
                                   f"{u['why']}" for u in unused)
    text = _train_text(out)
    return out, f"{text}\n{out['warning']}" if unused else text


def _train_text(out: dict[str, Any]) -> str:
    method = out["method"] if out["method"] == out["kind"] else f"{out['method']} ({out['kind']})"  # auto (mlp)
    lines = [f"run #{out['run_id']}: {method} {out['status']} on {out['device']} "
             f"(fit {out['fit_s']:.1f} s of {out['duration_s']:.1f} s); {fitted_text(out)}"]
    if out.get("compatible") is not None:
        judged = decides_on_ndcg(out)  # graded judgments: the criterion is decided on nDCG@10, as report and plan do

        def verdict(passed: Any) -> str:
            return f" -> {'PASSES' if passed else 'FAILS'} the compatibility criterion{noise_words(out)}"

        gain = (format_share(out["gain_retained"]) if out.get("gain_retained") is not None
                else gain_text(None, out.get("gain_retained_note")))
        cell, top1 = ceiling_of(out)
        against = f"{cell} {format_share(top1)}, " if cell != "new/new" else ""
        sample = out.get("old_old_sample_top1")  # new/new searched a sample: the gain is measured there
        lines.append(f"held-out top-1: old/old {format_share(out['old_old_top1'])}, new/new "
                     f"{format_share(out['new_new_top1'])}, {against}upgraded {format_share(out['upgraded_top1'])}"
                     f"{sample_floor_text(sample, out.get('upgraded_sample_top1'))}"
                     f"{'' if judged else verdict(out['compatible'])}; gain retained{' (top-1)' if judged else ''}: "
                     f"{gain}" + (f" (of the gain from old/old to {cell}{' on the sample' if sample is not None else ''})"
                                  if against or sample is not None else ""))
        if out.get("ndcg@10") is not None:
            line = (f"held-out nDCG@10: old/old {format_share(out['old_old_ndcg@10'])}, new/new "
                    f"{format_share(out['new_new_ndcg@10'])}, upgraded {format_share(out['ndcg@10'])}"
                    f"{sample_floor_text(out.get('old_old_sample_ndcg@10'), out.get('upgraded_sample_ndcg@10'))}")
            if judged:
                decided = weighed(out)
                line += (f"{verdict(decided.compatible)} (decided on nDCG@10 with relevance judgments); gain retained: "
                         + (format_share(decided.gain_retained) if decided.gain_retained is not None
                            else gain_text(None, out.get("gain_retained_ndcg@10_note") or NOT_BETTER)))
            lines.append(f"{line}; MRR@10 upgraded {format_share(out['mrr@10'])}")
    else:
        lines.append(f"held-out own-item top-1 of upgraded queries: {format_share(out.get('upgraded_top1'))}")
    lines += measured_on_lines(out)
    val_label = run_choice({"metrics": out}).metric  # 'validation judged nDCG@10', as the app names it
    for cand in out.get("candidates") or []:
        val = cand.get("val_metric")
        shown = f"{val:.3f}" if isinstance(val, float) and math.isfinite(val) else "n/a"  # NaN: no query scored
        took = cand.get("duration_s")
        took_text = (f" in {took:.1f}s" if took >= 0.1 else " in under 0.1s") \
            if isinstance(took, int | float) and cand.get("status") != "skipped" else ""
        lines.append(f"  candidate {cand.get('kind'):<11} {val_label} {shown} ({cand.get('status')}{took_text})"
                     + (f": {cand['reason']}" if cand.get("status") in ("skipped", "failed") and cand.get("reason")
                        else ""))
    if out.get("budget"):
        b = out["budget"]
        lines.append(f"time budget {b['seconds']:g}s: {b['spent_s']:.1f}s spent"
                     + (f"; skipped {', '.join(b['skipped'])}" if b["skipped"] else "")
                     + (f"; stopped at an epoch's end: {', '.join(b['stopped_at_epoch_end'])}"
                        if b["stopped_at_epoch_end"] else ""))
    if out.get("val_protocol"):
        lines.append(f"validated on {out['val_protocol']}")
    if out.get("reason"):
        lines.append(out["reason"])
    lines.append(f"adapter #{out['adapter_id']}: {out['adapter_path']}")
    return "\n".join(lines)


def ceiling_of(metrics: dict[str, Any]) -> tuple[str, Any]:
    """(cell, top-1) the gain retained is measured against: head/head for bct and bt2 (as report and plan
    label it), else new/new. A run recorded before ``ceiling_cell`` was stored names it by ``head_new_new_top1``."""
    cell = metrics.get("ceiling_cell") or ("head/head" if "head_new_new_top1" in metrics else "new/new")
    top1 = metrics.get("ceiling_top1", metrics.get("head_new_new_top1" if cell == "head/head" else "new_new_top1"))
    return cell, top1


# a judged run's numbers per judged metric, each as train --json gives it
JUDGED_RUN_METRICS = tuple(f"{cell}{key}{tail}" for key in JUDGED_METRICS for cell, tail in (
    ("", ""), ("old_old_", ""), ("new_new_", ""), ("ceiling_", ""), ("old_old_sample_", ""), ("upgraded_sample_", ""),
    ("gain_retained_", ""), ("gain_retained_", "_note")))
SERVED_METRICS = ("served_top1", *(f"served_{k}" for k in JUDGED_METRICS), "served_backfill_run", "served_new_vectors",
                  "served_protocol")
RUNS_METRICS = ("old_old_top1", "new_new_top1", "ceiling_cell", "ceiling_top1", "old_old_sample_top1",
                "upgraded_sample_top1", "upgraded_top1", "gain_retained", "gain_retained_note", *JUDGED_RUN_METRICS,
                "kind", "pairs_used", "judged_query_pairs", "heldout_protocol", "val_protocol", "protocol",
                "cell_protocols", "improvement_ci", "report_id", "candidates", "budget",  # auto: each candidate's score and time
                "vector_set", "count", "embedded", "resumed",  # a backfill: its set, items, how many it embedded
                *SERVED_METRICS)  # a report after a backfill: the gallery it left, as served now


def cmd_runs(args: argparse.Namespace) -> Result:
    with Workspace.open(args.workspace) as ws:
        runs = [r for r in ws.runs(args.kind) if args.status is None or r["status"] == args.status]
        runs = with_stale_notes(ws, runs[-args.last:] if args.last else runs)
        pairs = RunPairs.of(ws)
    rows = [{k: r.get(k) for k in ("id", "kind", "method", "status", "device", "started", "duration_s", "error")}
            | {"chosen": run_choice(r).method_text() if r.get("kind") == "train" else r.get("method"),
               "models": pairs.models(r), "metrics": _run_metrics(r.get("metrics") or {}),
               "criterion": criterion(r.get("metrics") or {}), "stale": r["stale"],
               "validation": _validation(r.get("metrics") or {})}
            for r in runs]
    text = "\n".join(
        f"#{r['id']:<4} {r['kind']:<7} {str(r['chosen']):<11} {r['status']:<11} "
        + (f"{pair_arrow(r['models']['old'], r['models']['new'], r['metrics'].get('kind') or r['method'])} "
           if r["models"] else "")
        + pairs.chain_words(run) + _outcome_words(run)
        + " ".join(_shown_metric(k, v, r["metrics"]) for k, v in r["metrics"].items()
                   if isinstance(v, float) and not (k.startswith("ceiling_") and r["metrics"].get("ceiling_cell") == "new/new"))
        + (f" criterion: {criterion_text(run.get('metrics') or {})}" if r["criterion"] else "")
        + _report_words(r["metrics"].get("report_id"), (run.get("config") or {}).get("train_run"))
        + (f"  ({one_line(r['error'])})" if r["error"] else "")
        + "".join(f"\n      {line}" for line in _measured_on(run.get("metrics") or {}))
        + (f"\n      {r['stale']}" if r["stale"] else "")
        for r, run in zip(rows, runs, strict=True))
    return {"runs": rows}, text or "no runs"


def _report_words(report_id: Any, train_run: Any) -> str:
    """' report #3 of run #1': the id `bundle export --report` and `plan --report` take, and its layer's run."""
    if report_id is None:
        return ""
    return f" report #{report_id}" + (f" of run #{train_run}" if train_run is not None else "")


def _measured_on(metrics: dict[str, Any]) -> list[str]:
    """Where a run's listed numbers were measured: its cells grouped by query set and gallery (``protocol_groups``)."""
    groups = [(cells, sentence) for cells, sentence in protocol_groups(metrics) if sentence]
    sampled = sample_numbers_note(metrics) if len(groups) > 1 else ""  # measured on new/new's sample too
    served = ([f"served (after backfill run #{metrics.get('served_backfill_run')}: {metrics.get('served_new_vectors')} "
               f"items by their new vectors) on {metrics['served_protocol']}"] if metrics.get("served_protocol") else [])
    if groups:
        return [f"{', '.join(cells)}{sampled if NEW_NEW in cells else ''} on {sentence}"
                for cells, sentence in groups] + served
    protocol = metrics.get("protocol") or metrics.get("heldout_protocol")
    return [f"on {protocol}"] if protocol else []


@dataclass(frozen=True)
class RunPairs:
    """Which models each run compared: a training run's own config, a report's layer, an export's run."""

    adapters: dict[int, dict[str, Any]]
    trains: dict[int, dict[str, Any]]

    @classmethod
    def of(cls, ws: Workspace) -> RunPairs:
        return cls({int(a["id"]): a for a in ws.adapters()}, {int(r["id"]): r for r in ws.runs("train")})

    def models(self, run: dict[str, Any]) -> dict[str, str] | None:
        """The old and new model (renames included), None for runs of no one pair (embed, backfill, chains)."""
        config = run.get("config") if isinstance(run.get("config"), dict) else {}
        if run.get("kind") == "report" and config.get("adapter_id") is not None:
            adapter = self.adapters.get(int(config["adapter_id"])) or {}
            config = {"old": adapter.get("old_model"), "new": adapter.get("new_model")}
        elif run.get("kind") == "export" and len(config.get("runs") or []) == 1:
            config = (self.trains.get(int(config["runs"][0])) or {}).get("config") or {}
        old, new = config.get("old"), config.get("new")
        return {"old": old, "new": new} if isinstance(old, str) and isinstance(new, str) else None

    @staticmethod
    def chain_words(run: dict[str, Any]) -> str:
        """'chain v1→v2→v3 ' for a chain report (the versions as it named them)."""
        config = run.get("config") if isinstance(run.get("config"), dict) else {}
        versions = config.get("models") if run.get("kind") == "report" else None
        return f"chain {'→'.join(str(v) for v in versions)} " if isinstance(versions, list) and versions else ""


def _outcome_words(run: dict[str, Any]) -> str:
    """What an export or a backfill made: 'bundle #2 at /path/b.zip', '299 items -> vector set 3 (120 embedded)'."""
    metrics = run.get("metrics") if isinstance(run.get("metrics"), dict) else {}
    if run.get("kind") == "export" and metrics.get("bundle_id") is not None:
        return f"bundle #{metrics['bundle_id']} at {metrics.get('path')}"
    if run.get("kind") == "backfill" and metrics.get("vector_set") is not None:
        embedded = (f" ({count_words(int(metrics.get('count') or 0), int(metrics['embedded']), int(metrics.get('resumed') or 0))})"
                    if metrics.get("embedded") is not None else "")
        return f"{metrics.get('count')} items -> vector set {metrics['vector_set']}{embedded}"
    return ""


VALIDATION = ("val_metric", "val_metric_name", "val_protocol", "best_epoch", "epochs_run", "reason")


def _validation(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """A training run's validation as its record keeps it (the score the choice compared, where it was measured,
    the epoch kept and why), for ``runs --json``; None for other runs."""
    found = {k: metrics[k] for k in VALIDATION if k in metrics}
    return found or None


def _run_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """The listed metrics, with the cell the gain retained is measured against for held-out numbers."""
    out = {k: v for k, v in metrics.items() if k in RUNS_METRICS}
    if "upgraded_top1" in out and "old_old_top1" in out:
        cell, top1 = ceiling_of(metrics)
        out |= {"ceiling_cell": cell, "ceiling_top1": top1}
        protocols = cell_protocols(metrics)  # new/new may search a smaller sample than the other cells
        if any(protocols.values()):
            out["cell_protocols"] = protocols
    if "heldout_protocol" in out:
        out["heldout_protocol"] = stated_protocol(metrics)  # as report.json and the bundle state it
    return {k: out[k] for k in RUNS_METRICS if k in out}


def _shown_metric(key: str, value: float, metrics: dict[str, Any]) -> str:
    """'head/head_top1=0.642' for the ceiling, as report and plan name its cell; 'key=value' otherwise."""
    name = f"{metrics['ceiling_cell']}_{key.removeprefix('ceiling_')}" if key.startswith("ceiling_") else key
    return f"{name}={gain_text(value, None) if key.startswith('gain_retained') else f'{value:.3f}'}"  # a share
