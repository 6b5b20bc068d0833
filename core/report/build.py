"""Assemble a full compatibility report for one training run, write it and register it.

``build_report`` is what ``embridge report`` and the app's Reports page call. It draws the evaluation
sample (:mod:`embridge.core.report.sample`), scores every cell with faiss (:mod:`embridge.core.report.cells`), adds
comparisons, flips, per-label rows, the formal compatibility rate, bootstrap CIs and the partial
backfill curves, records the job as a ``report`` run and writes ``report.json`` + ``report.html``
under ``<workspace>/reports/<id>/`` (:mod:`embridge.core.report.report_export`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from embridge.core import __version__
from embridge.core.adapters import load_adapter
from embridge.core.adapters.adapter import Adapter
from embridge.core.errors import InputError
from embridge.core.evaluation.compat import compatibility_rate
from embridge.core.evaluation.gather import MatrixMaker
from embridge.core.evaluation.headline import with_judged_rows
from embridge.core.evaluation.scoring import scoring_plan
from embridge.core.evaluation.search import SearchConfig
from embridge.core.evaluation.served import Backfilled, latest_backfill, measure_served
from embridge.core.evaluation.task import Protocol
from embridge.core.evaluation.tasks import UpgradeTasks, upgrade_tasks
from embridge.core.evaluation.upgrade import OLD_OLD, score_upgrade, upgrade_vectors
from embridge.core.jobs import recorded_run
from embridge.core.l2 import layer_input_normalised, zero_rows
from embridge.core.progress import ProgressFn, StopFn, check_stop, no_progress, stop_checks
from embridge.core.report import sections
from embridge.core.report.backfill_curve import BackfillOptions, JudgedRelevance, partial_backfill
from embridge.core.report.cells import (
    CellResult,
    Sides,
    cell_specs,
    score_cell,
    search_summary,
    upgrade_sides,
)
from embridge.core.report.limits import MAX_BOOTSTRAP, MIN_BOOTSTRAP
from embridge.core.report.report_record import SCHEMA, Report
from embridge.core.report.sample import EvalSample, evaluation_sample
from embridge.core.run_record import RunRecord, stated_protocol
from embridge.core.store import Workspace
from embridge.core.store.files import TMP_PREFIX
from embridge.core.store.rows import now_iso

__all__ = ["SCHEMA", "Report", "ReportOptions", "build_report", "latest_report_for_run", "load_report",
           "resolve_train_run"]
COMPAT_MAX_ITEMS = 20_000


@dataclass(frozen=True)
class ReportOptions:
    """How a report is measured: the gallery, the search, the curves, the resampling, memory.

    ``memory_budget``: gallery-side matrices larger than this many bytes are gathered into memmaps in
    a scratch folder under ``reports/`` (removed afterwards), so memory stays bounded as the sample grows.
    """

    heldout_gallery: bool = False
    search: SearchConfig | None = None
    backfill_steps: int = 11
    rollback: bool = False
    n_boot: int = 1000
    seed: int = 0
    memory_budget: int = 512 << 20

    def recorded(self) -> dict[str, Any]:
        """The options as the report run records them."""
        return {"heldout_gallery": self.heldout_gallery, "search": asdict(self.search or SearchConfig()),
                "backfill_steps": self.backfill_steps, "rollback": self.rollback, "n_boot": self.n_boot,
                "seed": self.seed}

    @classmethod
    def from_recorded(cls, config: Mapping[str, Any]) -> ReportOptions:
        """The options an earlier report run recorded (``recorded``), to measure the same report again on
        the workspace as it is now; its search runs here (a Ray cluster it used may be gone)."""
        known = {f.name for f in fields(SearchConfig)} - {"engine", "shards", "ray_address"}
        search = config.get("search") if isinstance(config.get("search"), Mapping) else {}
        base = cls()
        return cls(heldout_gallery=bool(config.get("heldout_gallery", base.heldout_gallery)),
                   search=SearchConfig(**{k: v for k, v in search.items() if k in known}),
                   backfill_steps=int(config.get("backfill_steps", base.backfill_steps)),
                   rollback=bool(config.get("rollback", base.rollback)), n_boot=int(config.get("n_boot", base.n_boot)),
                   seed=int(config.get("seed", base.seed)))


def resolve_train_run(ws: Workspace, run_id: int | None) -> RunRecord:
    """The given training run, or the latest completed one; InputError when there is none."""
    if run_id is None:
        row = ws.latest_run("train")
        if row is None:
            raise InputError(str(ws.root), "no completed training run; fit a layer first with 'embridge train'")
        return RunRecord.from_row(row)
    if not ws.has_run(int(run_id)):  # the option's mistake: it named the workspace
        raise InputError("--run", f"names run {run_id}, which the workspace does not hold (see 'embridge runs')")
    run = RunRecord.from_row(ws.run(int(run_id)))
    if run.kind != "train":
        article = "an" if run.kind[:1] in "aeiou" else "a"
        raise InputError(f"run {run_id}", f"is {article} {run.kind} run, not a training run")
    if not run.completed:
        raise InputError(f"run {run_id}", f"has status '{run.status}'; only completed runs have a usable layer")
    return run


def check_settings(n_boot: object, backfill_steps: object) -> None:
    """Refuse resample counts and curve sizes that cannot give a meaningful report (before any run starts)."""
    def whole(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if not (whole(n_boot) and MIN_BOOTSTRAP <= n_boot <= MAX_BOOTSTRAP):
        raise InputError("bootstrap resamples", f"must be an integer from {MIN_BOOTSTRAP} to {MAX_BOOTSTRAP}, "
                         f"got {n_boot!r}")
    if not (whole(backfill_steps) and 2 <= backfill_steps <= 1001):
        raise InputError("backfill steps", f"must be an integer from 2 to 1001, got {backfill_steps!r}")


def build_report(ws: Workspace, run_id: int | None = None, options: ReportOptions | None = None, *,
                 write: bool = True, on_progress: ProgressFn | None = None,
                 should_stop: StopFn | None = None) -> Report:
    """The report of a training run's layer (see the module docstring); also written when ``write``."""
    opts = options or ReportOptions()
    check_settings(opts.n_boot, opts.backfill_steps)
    run = resolve_train_run(ws, run_id)
    row = ws.adapter_for_run(run.id)
    adapter = load_adapter(ws.adapter_path(row["id"]))
    if getattr(adapter, "side_dim", 0):
        raise InputError(f"adapter {row['id']}", "this fct layer needs side information for every gallery item, "
                         "which the workspace does not store; it cannot be evaluated here")
    # test queries that cannot be scored are refused before a run is recorded
    tasks = upgrade_tasks(ws, [row["old_model"], row["new_model"]], opts.heldout_gallery, run.seed)
    recorded = {"train_run": run.id, "adapter_id": row["id"], **opts.recorded()}
    with recorded_run(ws, "report", row["kind"], recorded) as record:
        with tempfile.TemporaryDirectory(prefix=f"{TMP_PREFIX}scratch-", dir=ws.root / "reports",
                                         ignore_cleanup_errors=True) as scratch:
            with stop_checks(should_stop):  # the bootstrap intervals of every section stop on it too
                report = assemble(ws, run, row, adapter, opts, tasks=tasks,
                                  maker=MatrixMaker(ws, Path(scratch), opts.memory_budget,  # the cells and curves
                                                    input_normalised=layer_input_normalised(row), share=True),  # read once
                                  on_progress=on_progress or no_progress, should_stop=should_stop)
        report.report_run_id = record["run_id"]
        # the cell the gain is measured against (head/head for bct and bt2), as a training run records it
        record["metrics"] = {**report.headline, "ceiling_cell": report.ceiling_cell, **_protocol_of(report),
                             **report.served_summary()}
        if write:
            from embridge.core.report.report_export import save_report

            check_stop(should_stop)
            save_report(ws, report, on_progress=on_progress, should_stop=should_stop, record=record)
    return report


def _protocol_of(report: Report) -> dict[str, str]:
    """Where the headline was measured, as the run record keeps it (a training run's says the same)."""
    cell = report.cells.get(report.upgraded_cell or "") or {}
    text = (cell.get("protocol") or {}).get("text")
    return {"protocol": text} if text else {}


def assemble(ws: Workspace, run: RunRecord, row: dict[str, Any], adapter: Adapter, options: ReportOptions, *,
             maker: MatrixMaker, on_progress: ProgressFn, should_stop: StopFn | None,
             tasks: UpgradeTasks | None = None) -> Report:
    """Every section of the report, without writing anything."""
    old, new = row["old_model"], row["new_model"]
    search, n_boot, seed = options.search, options.n_boot, options.seed
    stages = ["sample", "vectors", "cells", "statistics", "backfill"]

    def stage(name: str, **info: Any) -> None:
        check_stop(should_stop)
        on_progress(stages.index(name), len(stages), {"stage": name, **info})

    stage("sample")
    backfilled = latest_backfill(ws, new)  # the gallery served now: before the sample, as the run's state was read
    sample = evaluation_sample(ws, [old, new], options.heldout_gallery, seed=run.seed, tasks=tasks)
    tasks = sample.tasks
    stage("vectors", queries=int(sample.query_ids.size), gallery=int(sample.gallery_ids.size),
          old_gallery=int(sample.full_ids.size))
    vecs = upgrade_vectors(maker, tasks, adapter, old, new, backfilled)
    sides = upgrade_sides(maker, sample, adapter, old, new, options.rollback)
    stage("cells", cell="main")
    main = score_upgrade(tasks, adapter, vecs, search, should_stop=should_stop)
    plan = main.plan
    served = measure_served(backfilled, tasks.full, adapter, new, vecs.q_up, vecs.q_new, vecs.g_up_full, plan, maker)
    sample_plan = scoring_plan(tasks.sample, search, like=plan)
    cells: dict[str, CellResult] = {}
    for name, q_side, g_side, queries, gallery in cell_specs(adapter, sides):
        stage("cells", cell=name)
        if name in main.cells:
            which = "old" if name in (OLD_OLD, main.upgraded) else "sample"
            cells[name] = CellResult.of(name, q_side, g_side, main.cells[name], which)
        else:
            cells[name] = score_cell(name, q_side, g_side, queries, gallery, tasks.sample, sample_plan,
                                     should_stop=should_stop)
    upgraded, ceiling = main.upgraded, main.ceiling
    stage("statistics")
    whole = cells[OLD_OLD]
    sample_floor = None if main.sample_floor is None else (  # old/old searched the whole gallery, the sample cells less
        CellResult.of(OLD_OLD, whole.query_side, whole.gallery_side, main.sample_floor, "sample"))
    floor = sample_floor or whole
    on_sample = None if sample_floor is None or main.sample_upgraded is None else (
        sample_floor, CellResult.of(upgraded, cells[upgraded].query_side, cells[upgraded].gallery_side,
                                    main.sample_upgraded, "sample"))
    head = sections.headline(cells, upgraded, ceiling, plan, n_boot, seed, sample.relevance, on_sample)
    head.update(main.headline())
    search_cells = {name: cell.search.to_dict() for name, cell in cells.items()}
    report = Report(
        schema=SCHEMA, kind="upgrade", created=now_iso(), embridge_version=__version__,
        report_id=None, run=_run_section(run), adapter=_adapter_section(row),
        models={"old": _model_section(ws, old), "new": _model_section(ws, new)},
        protocol=sample.protocol() + _unscored_line(int(sample.query_ids.size), int(head["n_queries"]),
                                                    cells[upgraded].protocol)
        + _chosen_line(ws, backfilled, new, sample, served is not None) + _zero_old_queries_line(sides.q_old, adapter.kind),
        sizes={**sample.sizes(), "queries_scored": head["n_queries"]},
        scoring=plan.to_dict(), search=search_summary(search_cells),
        cells={name: sections.cell_section(c, plan, n_boot, seed) for name, c in cells.items()},
        upgraded_cell=upgraded, ceiling_cell=ceiling, headline=head,
        comparison=with_judged_rows(sections.comparison(cells, upgraded, ceiling, plan, on_sample,
                                                              sample.relevance), head),
        flips=sections.flips_section(cells, n_boot, seed, sample_floor=sample_floor),
        flipped_queries=sections.flipped_records(cells, upgraded, sample),
        per_label=sections.per_label_section(cells, sample, plan),
        compatibility_rate=_compat_rate(sides, sample, seed),
        verdicts=sections.verdicts(head, upgraded, ceiling, adapter.kind, sample.relevance, adapter.config(),
                                   _every_item_new(cells[upgraded].protocol)),
        served=None if served is None else sections.served_section(*served, plan, n_boot, seed),
    )
    stage("backfill")
    report.backfill = _backfill(sides, sample, plan, options.backfill_steps, seed, should_stop, adapter.kind)
    if report.backfill["policies"]:
        report.backfill["old_old"] = _curve_floor(floor, report.backfill["policies"])
        # finding an item's own vector is no measure of the service; with every item new, no backfill is left
        if sample.relevance != "item" and not _every_item_new(cells[upgraded].protocol):
            report.verdicts += [line for line in [sections.backfill_dip(report.backfill, head)] if line]
    for policy, curve in report.backfill["policies"].items():
        head[f"backfill_area_{policy}"] = curve["areas"]["top1"]
        if "ndcg@10" in curve["areas"]:  # with judgments the best policy is chosen on nDCG@10: bundles carry it too
            head[f"backfill_area_ndcg@10_{policy}"] = curve["areas"]["ndcg@10"]
    on_progress(len(stages), len(stages), {"stage": "done"})
    return report


def _every_item_new(protocol: Protocol | None) -> bool:
    """Every gallery item of the headline cell scored by its own new-model vector (a cascade's re-rank)."""
    return protocol is not None and protocol.new_vectors is not None and protocol.new_vectors >= protocol.n_gallery > 0


def _chosen_line(ws: Workspace, backfilled: Backfilled | None, new: str, sample: EvalSample,
                 served_line: bool) -> list[str]:
    """A protocol sentence when a planner-ordered backfill put items into the evaluation sample (a cascade's
    report too, which has no served-now line: its own cell measures the backfill)."""
    if backfilled is None or sample.gallery_ids.size == sample.full_ids.size:
        return []
    chosen = backfilled.chosen_in(ws, new, sample.gallery_ids)
    if not chosen:
        return []
    whole = "the served-now line" if served_line else "the upgraded cell"
    return [f"The evaluation sample includes {chosen} items backfill run {backfilled.run_id} chose in the planner's "
            "order, not a random draw: new/new and the partial-backfill curves weigh the items that order picks first "
            f"more than a random sample would ({whole} measures the whole gallery)."]


def _zero_old_queries_line(q_old: np.ndarray, kind: str) -> list[str]:
    """A protocol sentence when some queries have an all-zero old-model vector (a bag of words knowing none of
    their words): old/old finds nothing for them, and a fusion scores them by the mapped new query alone,
    which `bundle apply` refuses to do (it takes no all-zero row), so a deployment must do it itself."""
    zero = zero_rows(q_old)
    if not len(zero):
        return []
    fused = (" The fusion scores them by the mapped new query alone (its old part vanishes); `bundle apply` "
             "refuses all-zero rows, so a deployment serves them that way itself." if kind == "fusion" else "")
    return [f"{len(zero)} of the {len(q_old)} queries have an all-zero old-model vector (no direction: the old "
            f"model read nothing it knows in them), so old/old ranks the gallery for them by row order.{fused}"]


def _unscored_line(queries: int, scored: int, protocol: Protocol | None) -> list[str]:
    """A protocol sentence when some queries count in no metric, with the reason the upgraded cell's
    protocol gives (no relevant item in the gallery, no label, no relevant judgment)."""
    if scored >= queries:
        return []
    why = (protocol.unscored_reason() if protocol is not None and protocol.n_scored is not None
           else "the others have no relevant item in this gallery")
    return [f"Scored: {scored} of the {queries} queries ({why}), so no metric counts the other {queries - scored}."]


def _run_section(run: RunRecord) -> dict[str, Any]:
    metrics = run.metrics
    # the sample's numbers beside gain retained, which is measured there when new/new searched a sample
    heldout = {k: metrics.get(k) for k in ("old_old_top1", "new_new_top1", "upgraded_top1", "old_old_sample_top1",
                                           "upgraded_sample_top1", "gain_retained",
                                           "gain_retained_note", "n_queries", "heldout_protocol", "pairs_used",
                                           "val_metric", "val_metric_name", "val_protocol") if k in metrics}
    if isinstance(heldout.get("heldout_protocol"), str):  # new/new's own gallery, where it searched the sample
        heldout["heldout_protocol"] = stated_protocol(metrics)
    return {"id": run.id, "method": run.method, "status": run.status, "device": run.device,
            "duration_s": run.duration_s, "config": run.config, "epochs": run.epochs, "heldout": heldout}


def _adapter_section(row: dict[str, Any]) -> dict[str, Any]:
    path = Path(row["path"])
    return {"id": row["id"], "kind": row["kind"], "direction": row["direction"], "in_dim": row["in_dim"],
            "out_dim": row["out_dim"], "old_model": row["old_model"], "new_model": row["new_model"],
            "sha256": row["sha256"], "file_bytes": path.stat().st_size if path.exists() else None,
            "config": row.get("config") or {}}


def _model_section(ws: Workspace, name: str) -> dict[str, Any]:
    m = ws.model(name)
    sets = ws.vector_sets(name)
    dtype = sets[-1]["dtype"] if sets else "float32"
    return {"name": name, "role": m.get("role"), "kind": m.get("kind"), "dim": m.get("dim"),
            "sha256": m.get("sha256"), "vector_dtype": dtype, "bytes_per_value": int(np.dtype(dtype).itemsize),
            "vectors": int(sum(s["count"] for s in sets))}


def _compat_rate(sides: Sides, sample: EvalSample, seed: int) -> dict[str, Any] | None:
    """Formal compatibility rate on sampled labelled gallery pairs (None without labels)."""
    if sample.relevance != "label":
        return None
    rows = np.array([i for i, v in enumerate(sample.gallery_labels) if v is not None], dtype=np.int64)
    if rows.size < 2:
        return None
    if rows.size > COMPAT_MAX_ITEMS:
        rows = np.sort(np.random.default_rng(seed).choice(rows, COMPAT_MAX_ITEMS, replace=False))
    labels = np.array([sample.gallery_labels[i] for i in rows], dtype=str)
    out = compatibility_rate(np.asarray(sides.g_adapted[rows]), np.asarray(sides.g_up[rows]), labels, seed=seed)
    out["n_items"] = int(rows.size)
    return out


def _curve_floor(floor: CellResult, policies: dict[str, Any]) -> dict[str, Any]:
    """old/old on the curves' own queries and gallery: what a partial backfill's gain is measured from."""
    names = next(iter(policies.values()))["values"].keys()
    summary = floor.metrics.summary()
    return {"metrics": {name: summary.get(name) for name in names},
            "protocol": None if floor.protocol is None else floor.protocol.to_dict()}


def _backfill(sides: Sides, sample: EvalSample, plan: Any, steps: int, seed: int,
              should_stop: StopFn | None, kind: str = "") -> dict[str, Any]:
    judged = JudgedRelevance(sample.tasks.sample.rule, sample.query_ids, sample.gallery_ids) \
        if sample.relevance == "judgments" else None
    curves = partial_backfill(sides.q_head, sides.q_up, sides.g_head, sides.g_up,
                              sample.query_ids if judged else sample.query_targets,
                              sample.gallery_ids if judged else sample.gallery_targets,
                              BackfillOptions(steps=steps, ks=(1, 5), seed=seed, search=plan.config),
                              gallery_adapted=sides.g_adapted, exclude=sample.exclude, should_stop=should_stop,
                              judged=judged)
    policies = {p: c.to_dict() for p, c in curves.items()}
    metric = "ndcg@10" if judged and all("ndcg@10" in c["areas"] for c in policies.values()) else "top1"
    best = max(policies, key=lambda p: policies[p]["areas"][metric])  # by the number the verdicts decide on
    # the mixed gallery is searched once: a cascade's re-rank is not in the curve
    start = ("the cascade's layer alone on the sample, without the new model's re-rank of the old index's recall "
             "(the upgraded cell is the cascade itself)" if kind == "cascade" else
             "the upgraded system on the sample (no item re-embedded; the upgraded cell itself searches the whole "
             "old gallery)")
    notes = [f"The curves run on the evaluation sample (every item needs both vectors): β = 0 is {start}, β = 1 "
             "the full-backfill cell.",
             "Backfilled items are scored new against new, the rest through the layer; one merged "
             "ranking per query.",
             "least_confident and largest_residual rank items by their bridged new vectors, so in deployment they "
             f"need every item's new vector first; random needs none, and its curve is the mean of "
             f"{policies.get('random', {}).get('draws', 1)} random orders (`spread` gives the lowest and highest)."]
    if judged:
        notes.append("Relevance judgments: top-1 and top-5 are success@1 and success@5 (a relevant document "
                     "within the first k); nDCG@10 and MRR@10 are measured on the same merged rankings.")
    return {"steps": steps, "ks": [1, 5], "policies": policies, "best_policy": best, "metric": metric, "note": notes}


def load_report(ws: Workspace, report_id: int) -> Report:
    """Read a stored report back from its JSON file."""
    import json

    row = ws.report(report_id)
    path = Path(row["json_file"])
    path = path if path.is_absolute() else ws.root / path
    try:
        report = Report.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as exc:
        raise InputError(str(path), f"cannot read report {report_id} ({exc})") from exc
    if report.report_id != report_id:  # every number read from it would be named as another report's
        raise InputError(str(path), f"holds report {report.report_id}, not report {report_id} (edited or copied by "
                         f"hand?); run 'embridge report' again to measure the run anew")
    return report


def latest_report_for_run(ws: Workspace, run_id: int) -> Report | None:
    rows = [r for r in ws.reports() if r.get("run_id") == run_id and r.get("json_file")]
    for row in reversed(rows):
        path = Path(row["json_file"])
        if (path if path.is_absolute() else ws.root / path).is_file():
            return load_report(ws, int(row["id"]))
    return None

