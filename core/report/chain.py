"""Version chains v1 → v2 → … → vT: the compatibility matrix of composed layers, with AC and AM.

C[i][j] = M(query model i, gallery model j) for j ≤ i. The diagonal is each model against its own
gallery. Below it, with backward layers (run k maps v(k+1) → v(k)), a query of version i passes
through the layers i→i−1, …, j+1→j in turn (re-normalised after each, as every layer was fitted on
unit vectors) and searches gallery j unchanged. With forward layers (old → new) the gallery of
version j is carried up to version i instead. A chain mixing the two directions, or using fusion or
cascade (which need each query under two models), is refused. AC and AM are those of
:func:`embridge.core.evaluation.compat.matrix_scores`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embridge.core import __version__
from embridge.core.adapters import adapt_gallery, adapt_queries, load_adapter
from embridge.core.adapters.adapt_arrays import HEAD_KINDS
from embridge.core.adapters.adapter import Adapter
from embridge.core.errors import InputError, UsageError
from embridge.core.evaluation.compat import criterion, matrix_scores
from embridge.core.evaluation.gather import MatrixMaker
from embridge.core.evaluation.headline import JUDGED_METRICS, headline_metrics
from embridge.core.evaluation.scoring import scoring_plan
from embridge.core.evaluation.search import SearchConfig
from embridge.core.formatting import counted
from embridge.core.jobs import recorded_run
from embridge.core.l2 import l2_normalize, layer_input_normalised, prepare_input
from embridge.core.progress import ProgressFn, StopFn, check_stop, no_progress
from embridge.core.report.cells import score_cell, search_summary
from embridge.core.report.report_record import SCHEMA, Report
from embridge.core.report.sample import evaluation_sample
from embridge.core.store import Workspace
from embridge.core.store.files import TMP_PREFIX
from embridge.core.store.rows import now_iso


def chain_layers(ws: Workspace, models: Sequence[str], runs: Sequence[int]) -> tuple[list[Adapter], list[dict], str]:
    """Load and check one layer per consecutive pair; returns (adapters, rows, direction)."""
    if len(models) < 2:
        raise UsageError("--models", f"names {counted(len(models), 'version')}; a chain needs at least two, "
                         "oldest first")
    if len(runs) != len(models) - 1:
        raise UsageError("--runs", f"gives {counted(len(runs), 'run')} for {len(models)} versions; a "
                         f"chain of {len(models)} versions takes {len(models) - 1}, one per consecutive pair, "
                         "oldest first")
    repeated = next((name for k, name in enumerate(models) if name in models[:k]), None)
    if repeated is not None:
        raise UsageError("--models", f"names '{repeated}' twice; a chain lists distinct versions, oldest first")
    unknown = [name for name in models if not ws.has_model(name)]
    if unknown:
        known = ", ".join(m["name"] for m in ws.models()) or "none"
        raise InputError("--models", f"no model named '{unknown[0]}' in the workspace (known: {known})")
    adapters, rows = [], []
    recorded = {int(r["id"]) for r in ws.runs()}
    for k, run_id in enumerate(runs):
        if int(run_id) not in recorded:
            raise InputError("--runs", f"names run {run_id}, which the workspace does not hold (see 'embridge runs')")
        run = ws.run(int(run_id))
        if run["kind"] != "train" or run["status"] != "completed":
            status = f"{run['status']} {run['kind']}"
            raise InputError(f"run {run_id}", f"is {'an' if status[:1] in 'aeiou' else 'a'} {status} run, not a "
                             "completed training run")
        row = ws.adapter_for_run(int(run_id))
        if (row["old_model"], row["new_model"]) != (models[k], models[k + 1]):
            raise InputError(f"run {run_id}", f"was trained with old model '{row['old_model']}' and new model "
                             f"'{row['new_model']}', but step {k + 1} of the chain takes old '{models[k]}' and new "
                             f"'{models[k + 1]}'")
        if row["kind"] in HEAD_KINDS:  # the version it upgrades to is served through the head, not as itself
            raise InputError(f"run {run_id}", f"is a {row['kind']} head: '{row['new_model']}' would be served through "
                             f"it (its gallery indexed by the head too), so the chain's '{row['new_model']}' is not "
                             "that model's own vectors; chain layers that map vectors, e.g. 'embridge train "
                             "--method affine'")
        if row["kind"] in ("fusion", "cascade"):  # both need the old query: fusion mixes it, cascade recalls by it
            use = ("use its base layer's run" if row["kind"] == "fusion" else
                   "chain a run of its fallback layer's method instead (e.g. 'embridge train --method affine')")
            raise InputError(f"run {run_id}", f"{row['kind']} needs each query under two models and cannot be "
                             f"composed; {use}")
        adapters.append(load_adapter(ws.adapter_path(row["id"])))
        rows.append(row)
    forward = {a.direction == "forward" for a in adapters}
    if len(forward) > 1:
        raise InputError("chain", "mixes forward (old → new) and backward layers; use one direction throughout")
    return adapters, rows, "forward" if forward.pop() else "backward"


def _down(adapters: Sequence[Adapter], rows: Sequence[dict], i: int, j: int) -> Any:
    """Query transform from version i down to version j through backward layers i-1 … j.

    Each layer gets its input prepared by its own stored policy (:func:`embridge.core.l2.prepare_input`).
    """
    def apply(x: np.ndarray) -> np.ndarray:
        for k in range(i - 1, j - 1, -1):
            x = l2_normalize(adapt_queries(adapters[k], prepare_input(x, layer_input_normalised(rows[k]))))
        return x
    return apply


def _up(adapters: Sequence[Adapter], rows: Sequence[dict], j: int, i: int) -> Any:
    """Gallery transform from version j up to version i through forward layers j … i-1."""
    def apply(x: np.ndarray) -> np.ndarray:
        for k in range(j, i):
            x = l2_normalize(adapt_gallery(adapters[k], prepare_input(x, layer_input_normalised(rows[k]))))
        return x
    return apply


OWN_ITEM_AC = ("AC is 0 by construction here: with the query's own item as its only relevant one, each version "
               "finds its own items under its own model (the diagonal), which no mapped query can beat; give the items "
               "labels or relevance judgments for an AC that measures compatibility (AM still does)")


def _maps(row: dict) -> str:
    """What a layer carries where: a forward layer the old gallery up, a backward one new queries down."""
    if row["direction"] == "forward":
        return f"{row['old_model']} gallery → {row['new_model']} space"
    return f"{row['new_model']} queries → {row['old_model']} space"


def _measured_on(protocols: dict[str, list[str]], cells: int) -> list[str]:
    """Each protocol sentence, with the cells it holds for when the cells were measured on more than one."""
    if len(protocols) <= 1:
        return list(protocols)
    return sorted(f"{sentence} (cells {', '.join(names)})" if len(names) < cells else sentence
                  for sentence, names in protocols.items())


def chain_report(ws: Workspace, models: Sequence[str], runs: Sequence[int], *, metric: str | None = None,
                 heldout_gallery: bool = False, search: SearchConfig | None = None, write: bool = True,
                 on_progress: ProgressFn | None = None, should_stop: StopFn | None = None) -> Report:
    """The compatibility matrix report of a chain of versions (see the module docstring). ``metric``: the
    matrix AC and AM are read from; by default nDCG@10 with relevance judgments (as reports and plans
    weigh them), else top-1."""
    progress = on_progress or no_progress
    models = list(models)
    adapters, rows, direction = chain_layers(ws, models, runs)
    # the sample and its metrics are known before the run: an unknown metric records no failed run
    sample = evaluation_sample(ws, models, heldout_gallery)
    task = sample.tasks.sample  # every cell needs some model's gallery vectors: the evaluation sample
    plan = scoring_plan(task, search)
    judged = sample.relevance == "judgments"
    shown = headline_metrics(plan.recall_k, plan.map_key) + (list(JUDGED_METRICS) if judged else [])
    metric = metric or ("ndcg@10" if judged else "top1")
    config = {"models": models, "runs": [int(r) for r in runs], "metric": metric, "heldout_gallery": heldout_gallery}
    if metric not in shown:
        use = f"use {', '.join(shown[:-1])} or {shown[-1]}"
        if metric.startswith("mAP") and plan.map_key.startswith("mAP"):  # which mAP depends on the ranking's size
            raise UsageError("--metric", f"{metric} is not measured on this chain's sample of "
                             f"{task.gallery.ids.size} items, which reports {plan.map_key}; {use}")
        if metric.startswith("recall@") and metric != f"recall@{plan.recall_k}":  # the sample's size decides k
            raise UsageError("--metric", f"{metric} is not measured on this chain's sample of "
                             f"{task.gallery.ids.size} items, which reports recall@{plan.recall_k}; {use}")
        if metric in JUDGED_METRICS:
            raise UsageError("--metric", f"{metric} needs relevance judgments, which this chain's queries lack; {use}")
        raise UsageError("--metric", f"unknown metric {metric!r}; {use}")
    with recorded_run(ws, "report", "chain", config) as record:
        t = len(models)
        matrices = {m: np.full((t, t), np.nan) for m in shown}
        searches: dict[str, Any] = {}
        measured_on: dict[str, list[str]] = {}  # each protocol sentence, and the cells measured on it
        pairs = [(i, j) for i in range(t) for j in range(i + 1)]
        with tempfile.TemporaryDirectory(prefix=f"{TMP_PREFIX}scratch-", dir=ws.root / "reports",
                                         ignore_cleanup_errors=True) as scratch:
            maker = MatrixMaker(ws, Path(scratch), input_normalised=False)  # each layer prepares its own input
            for n, (i, j) in enumerate(pairs):
                check_stop(should_stop)
                progress(n, len(pairs), {"stage": "cells", "query": models[i], "gallery": models[j]})
                down = direction == "backward" and i > j
                up = direction == "forward" and i > j
                queries = maker.matrix(sample.query_ids, [models[i]], _down(adapters, rows, i, j) if down else None)
                gallery = maker.matrix(sample.gallery_ids, [models[j]], _up(adapters, rows, j, i) if up else None)
                cell = score_cell(f"{models[i]}/{models[j]}", models[i], models[j], queries, gallery, task, plan,
                                  should_stop=should_stop)
                summary = cell.metrics.summary()
                for m in shown:
                    matrices[m][i, j] = summary[m]
                searches[cell.name] = cell.search.to_dict()
                if cell.protocol is not None:
                    measured_on.setdefault(cell.protocol.describe(), []).append(cell.name)
        scores = matrix_scores(matrices[metric])
        below = [{"query": models[i], "gallery": models[j], "value": float(matrices[metric][i, j]),
                  "reference": float(matrices[metric][j, j]),
                  "passes": criterion(float(matrices[metric][i, j]), float(matrices[metric][j, j]))}
                 for i, j in pairs if i > j]
        chain = {"versions": models, "runs": [int(r) for r in runs], "direction": direction, "metric": metric,
                 "matrix": matrices[metric].tolist(), "matrices": {m: v.tolist() for m, v in matrices.items()},
                 "ac": scores["ac"], "am": scores["am"], "criterion": below,
                 "measured_on": _measured_on(measured_on, len(pairs)),
                 "layers": [{"run_id": r["run_id"], "adapter_id": r["id"], "kind": r["kind"],
                             "direction": r["direction"], "maps": _maps(r)} for r in rows]}
        if sample.relevance == "item":
            chain["ac_note"] = OWN_ITEM_AC
        report = Report(schema=SCHEMA, kind="chain", created=now_iso(), embridge_version=__version__,
                        report_id=None, chain=chain, protocol=sample.protocol(chain=True),
                        sizes={**sample.sizes(), "versions": t}, scoring=plan.to_dict(),
                        search=search_summary(searches), report_run_id=record["run_id"])
        record["metrics"] = {"ac": chain["ac"], "am": chain["am"], "versions": t}
        progress(len(pairs), len(pairs), {"stage": "done"})
        if write:
            from embridge.core.report.report_export import save_report

            save_report(ws, report, should_stop=should_stop, record=record)
    return report
