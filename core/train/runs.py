"""Training as a recorded workspace job: pairs in, an adapter file and held-out numbers out.

``train_run`` is what the CLI's ``embridge train`` and the app's Train page call. It fits on the
train fold's pairs (documents, queries or both: ``pairs``), chooses epochs, λ, whitening, α and
``auto``'s candidate on the dev queries retrieving among the whole old gallery, and reports held-out
numbers on the test queries exactly as the report does (:mod:`embridge.core.evaluation`), so a run's
``upgraded_top1`` is the report's for the same query set. Vectors are L2-normalised before fitting
(recorded in the adapter's config as ``input_normalised``), so a deployment normalises new vectors
the same way before applying the layer.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from embridge.core.adapters import save_adapter
from embridge.core.errors import InputError, TrainingError
from embridge.core.evaluation.gather import MatrixMaker
from embridge.core.evaluation.scoring import IndexCache
from embridge.core.evaluation.selection import Validator, workspace_validator
from embridge.core.evaluation.tasks import UpgradeTasks, upgrade_tasks
from embridge.core.evaluation.upgrade import measure_upgrade
from embridge.core.jobs import check_device_option, recorded_run
from embridge.core.progress import ProgressFn, StopFn
from embridge.core.run_record import stated_protocol
from embridge.core.store import Workspace
from embridge.core.store.files import TMP_PREFIX
from embridge.core.store.id_sets import intersect_ids
from embridge.core.train.config import resolve_config, unused_settings
from embridge.core.train.data import PairData
from embridge.core.train.fit import fit_adapter
from embridge.core.train.pair_choice import PAIR_KINDS, default_pairs
from embridge.core.train.pairs import PairSplit, fold_arrays, fold_labels, split_pairs
from embridge.core.train.query_pairs import judged_query_pairs
from embridge.core.train.requirements import check_requirements


def old_classifier_for(ws: Workspace, old: str, split: PairSplit) -> tuple[np.ndarray | None, str]:
    """The old model's classifier rows when its row r is the class labelled 'r'; else class means."""
    row = ws.model(old)
    spec = {**(row.get("spec") or {}), "path": row["path"]}  # the workspace's own copy of the file
    if not spec.get("has_classifier"):
        return None, "old class means (the old model has no classifier head)"
    from embridge.core.models import load_model

    weights = load_model(spec, "cpu", verify=True).classifier_weights()  # refused once the file changed
    if weights is None:
        return None, "old class means (no usable classifier weights found)"
    rows = weights.shape[0]
    if split.classes[:rows] != [str(r) for r in range(rows)]:
        return None, f"old class means (labels do not match the classifier's rows 0..{rows - 1})"
    return weights, f"old classifier weights for classes 0..{rows - 1}, class means for the rest"


def _labels_or_none(codes: np.ndarray) -> np.ndarray | None:
    return codes if (codes >= 0).any() else None


def training_pairs(ws: Workspace, split: PairSplit, pairs: str | None) -> tuple[PairSplit, str]:
    """The split with its train fold narrowed to document pairs, query pairs or both.

    Query pairs are query items of the train fold (queries judged in ``train``); test queries never
    are. The default is ``both`` when query pairs exist, else ``documents``.
    """
    train = split.ids["train"]
    queries = intersect_ids(train, ws.query_ids())
    chosen = pairs or default_pairs(int(queries.size))
    if chosen not in PAIR_KINDS:
        raise InputError("--pairs", f"must be one of {', '.join(PAIR_KINDS)}, got '{chosen}'")
    ids = {"documents": np.setdiff1d(train, queries), "queries": queries, "both": train}[chosen]
    if ids.size < 2:
        what = ("query pairs: only queries judged in the train split (embedded by both models) may be fitted on"
                if chosen == "queries" else "document pairs in the train fold")
        raise InputError("--pairs", f"'{chosen}' leaves {ids.size} training pairs; need at least 2 {what}")
    if chosen == "both" and ids.size in (queries.size, train.size - queries.size):  # one kind was there to fit on
        chosen = "queries" if queries.size else "documents"  # recorded and said as what the fit used
    return PairSplit({**split.ids, "train": ids}, split.classes), chosen


def train_run(ws: Workspace, method: str, old: str | None = None, new: str | None = None, *,
              device: str = "auto", config: dict[str, Any] | None = None, seed: int = 0, pairs: str | None = None,
              on_progress: ProgressFn | None = None, should_stop: StopFn | None = None) -> dict[str, Any]:
    """Fit ``method`` between two workspace models and record the run; returns its summary."""
    method = method.strip().lower()  # 'BCT' is bct: it gets the old classifier and is recorded as bct
    settings = {"seed": seed, **(config or {}), "device": device}
    _, resolved = resolve_config(method, settings)  # a bad setting or device is refused before any run is recorded
    if "base" in settings:  # recorded as the fit reads it ('PROCRUSTES' is procrustes)
        settings["base"] = resolved["base"]
    check_device_option(device)
    for option, name in (("--old", old), ("--new", new)):
        if name is not None and not ws.has_model(name):
            known = ", ".join(m["name"] for m in ws.models()) or "none"
            raise InputError(option, f"no model named '{name}' in the workspace (known: {known})")
    old = old or ws.model_by_role("old")["name"]
    new = new or ws.model_by_role("new")["name"]
    check_requirements(ws, method, old, new, config)
    models = {name: ws.model(name) for name in (old, new)}  # the layer is stored only if they stay these
    with ws.transaction():  # the folds these draw are kept only if the run can start: a refusal stores nothing
        tasks = upgrade_tasks(ws, [old, new], seed=seed)  # test queries that cannot be scored are refused first
        split, pairs_used = training_pairs(ws, split_pairs(ws, old, new, seed), pairs)
    arrays = {(m, f): fold_arrays(ws, m, split, f) for m in (old, new) for f in ("train", "val")}
    labels = {f: fold_labels(ws, split, f) for f in ("train", "val")}
    classifier, classifier_note = (None, "")
    if method in ("bct", "bt2", "oca", "auto"):
        classifier, classifier_note = old_classifier_for(ws, old, split)
    # one gathering of the old gallery and one index of it serve validation and the held-out numbers; a
    # gallery larger than the maker's budget is gathered into a scratch file, not held in memory
    with tempfile.TemporaryDirectory(prefix=f"{TMP_PREFIX}scratch-", dir=ws.root / "adapters",
                                     ignore_cleanup_errors=True) as scratch:
        maker, indexes = MatrixMaker(ws, Path(scratch), share=True), IndexCache()
        validator = workspace_validator(ws, old, new, seed, maker, indexes)
        judged = judged_query_pairs(ws, old, new, split.ids["train"])
        extra: dict[str, Any] = {}
        if judged is not None:  # train queries retrieving their relevant documents (the retrieval objective)
            extra = {"query_new_train": judged.new_queries, "query_relevant_train": judged.relevant_rows,
                     "gallery_old": judged.gallery_old}
        data = PairData(arrays[old, "train"], arrays[new, "train"], arrays[old, "val"], arrays[new, "val"],
                        _labels_or_none(labels["train"]), _labels_or_none(labels["val"]), classifier,
                        validator=validator, **extra)
        counts = {**split.count(), "pairs": pairs_used}
        run_config = {"method": method, "old": old, "new": new, "settings": settings, "pairs": counts,
                      "fitted_on": f"{pairs_used} pairs of the train fold ({counts['train']} items)",
                      "validated_on": validator.protocol, "old_classifier": classifier_note,
                      "judged_query_pairs": 0 if judged is None else int(len(judged.relevant_rows))}
        with recorded_run(ws, "train", method, run_config) as record:
            result = fit_adapter(method, data, settings, on_progress, should_stop)
            record["epochs"], record["device"] = result.metrics, result.device
            if result.adapter is None or result.status == "failed":
                raise TrainingError(f"training {method} failed: {result.reason or 'no usable adapter'}")
            result.reason = "; ".join(r for r in (result.reason, duplicates_note(validator)) if r)
            heldout = heldout_numbers(ws, result.adapter, old, new, seed, maker, indexes, tasks)
            stored: dict[str, Any] = {}
            try:  # the layer and its run's completion commit together: a kill between them left an adapter
                with ws.transaction(result=True):  # stored under a run that read "interrupted"
                    stored = adapter_row = _store_adapter(ws, record["run_id"], result, old, new, models)
                    summary = {"run_id": record["run_id"], "method": method, "kind": result.adapter.kind,
                               "status": result.status, "reason": result.reason, "old": old, "new": new,
                               "device": result.device, "fit_s": round(result.duration_s, 3),
                               "pairs": counts, "pairs_used": pairs_used,
                               "judged_query_pairs": run_config["judged_query_pairs"], "adapter_id": adapter_row["id"],
                               "adapter_path": adapter_row["path"],
                               "val_metric": result.best_val_metric, "val_metric_name": result.val_metric_name,
                               "val_protocol": result.val_protocol, "choice": result.choice,
                               "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
                               "candidates": result.candidates, "budget": result.budget,
                               "unused_settings": [{"names": u.names, "why": u.why}
                                                   for u in unused_settings(method, dict(config or {}))], **heldout}
                    record["metrics"] = {k: v for k, v in summary.items() if k not in ("candidates",)}
                    record["metrics"]["candidates"] = result.candidates
                    record["status"] = "cancelled" if result.status == "cancelled" else "completed"
                    record["error"] = result.reason or None if result.status == "cancelled" else None
                    record.complete()
            except BaseException:
                if stored:
                    ws.drop_unregistered_adapter_file(str(stored["file"]))
                raise
    # the whole run's time, as `runs` lists it (the fit's own is ``fit_s``)
    summary["duration_s"] = ws.run(summary["run_id"]).get("duration_s")
    if "heldout_protocol" in summary:  # as runs, report.json and the bundle state it
        summary["heldout_protocol"] = stated_protocol(summary)
    return summary


def heldout_numbers(ws: Workspace, adapter: Any, old: str, new: str, seed: int = 0,
                    maker: MatrixMaker | None = None, indexes: IndexCache | None = None,
                    tasks: UpgradeTasks | None = None) -> dict[str, Any]:
    """The test queries' numbers, measured as the report measures them (same tasks, vectors, search)."""
    results = measure_upgrade(ws, adapter, old, new, seed=seed, maker=maker or MatrixMaker(ws), indexes=indexes,
                              tasks=tasks)
    out = results.headline()
    out["heldout_protocol"] = results.cells[results.upgraded].protocol.describe()
    if adapter.direction == "forward":
        out["new_fct_top1"] = out["upgraded_top1"]
    out["ceiling_cell"] = results.ceiling  # the cell gain_retained is measured against (head/head for heads)
    if results.ceiling != "new/new":
        out["head_new_new_top1"] = out["ceiling_top1"]
    if results.tasks.full.rule.source == "own item":
        out["upgraded_pair_top1"] = out["upgraded_top1"]
        out["note"] = ("no labels or judgments: a query's relevant item is its own item, so only the "
                       "cross-model cells measure anything")
    return out


def duplicates_note(validator: Validator) -> str:
    """A note when dev queries have exact copies in the gallery, which make validation easy for old queries."""
    count = validator.exact_duplicates()
    if not count:
        return ""
    return (f"note: {count} of {len(validator.q_old)} dev queries have an exact copy of their old vector in the "
            "gallery under another id (the same direction to float32 precision: a duplicate item, or vectors too "
            "nearly parallel to tell apart); old queries find that copy first, so validation favours the old query "
            "(fusion's α, today's system): remove duplicate items, and trust the held-out numbers over validation")


def _store_adapter(ws: Workspace, run_id: int, result: Any, old: str, new: str,
                   models: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The layer under the names of its two models, refused if either no longer goes by its name."""
    adapter = result.adapter
    # written on the workspace's own disk (the system temp folder may be another, smaller one)
    with tempfile.TemporaryDirectory(prefix=f"{TMP_PREFIX}scratch-", dir=ws.root / "adapters") as tmp:
        path = save_adapter(adapter, Path(tmp) / "adapter.pt")
        return ws.add_adapter(run_id, adapter.kind, adapter.direction, adapter.in_dim, adapter.out_dim,
                              old, new, path, {**adapter.config(), "input_normalised": True}, model_rows=models)
