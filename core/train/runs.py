"""Training as a recorded workspace job: pairs in, an adapter file and held-out numbers out.

``train_run`` is what the CLI's ``embridge train`` and the app's Train page call. It fits on the
train fold, selects on the validation fold and reports on the test fold that no fit saw. Vectors
are L2-normalised before fitting (recorded in the adapter's config as ``input_normalised``), so a
deployment normalises new vectors the same way before applying the layer.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from core.adapters import save_adapter
from core.errors import InputError, TrainingError
from core.jobs import recorded_run
from core.progress import ProgressFn, StopFn
from core.store import Workspace
from core.store.files import TMP_PREFIX
from core.train.config import resolve_config
from core.train.data import PairData
from core.train.fit import fit_adapter
from core.train.pairs import PairSplit, fold_arrays, fold_labels, split_pairs
from core.train.validation import evaluate_heldout, pair_top1

HEADLINE = ("old_old_top1", "new_new_top1", "upgraded_top1", "gain_retained")


def old_classifier_for(ws: Workspace, old: str, split: PairSplit) -> tuple[np.ndarray | None, str]:
    """The old model's classifier rows when its row r is the class labelled 'r'; else class means."""
    row = ws.model(old)
    spec = {**(row.get("spec") or {}), "path": row["path"]}  # the workspace's own copy of the file
    if not spec.get("has_classifier"):
        return None, "old class means (the old model has no classifier head)"
    from core.models import load_model

    weights = load_model(spec, "cpu").classifier_weights()
    if weights is None:
        return None, "old class means (no usable classifier weights found)"
    rows = weights.shape[0]
    if split.classes[:rows] != [str(r) for r in range(rows)]:
        return None, f"old class means (labels do not match the classifier's rows 0..{rows - 1})"
    return weights, f"old classifier weights for classes 0..{rows - 1}, class means for the rest"


def _labels_or_none(codes: np.ndarray) -> np.ndarray | None:
    return codes if (codes >= 0).any() else None


def train_run(ws: Workspace, method: str, old: str | None = None, new: str | None = None, *,
              device: str = "auto", config: dict[str, Any] | None = None, seed: int = 0,
              on_progress: ProgressFn | None = None, should_stop: StopFn | None = None) -> dict[str, Any]:
    """Fit ``method`` between two workspace models and record the run; returns its summary."""
    settings = {"seed": seed, **(config or {}), "device": device}
    resolve_config(method, settings)  # a bad setting is refused before any run is recorded
    old = old or ws.model_by_role("old")["name"]
    new = new or ws.model_by_role("new")["name"]
    if old == new:
        raise InputError("models", f"old and new model are both '{old}'; choose two different models")
    split = split_pairs(ws, old, new, seed)
    arrays = {(m, f): fold_arrays(ws, m, split, f) for m in (old, new) for f in ("train", "val", "test")}
    labels = {f: fold_labels(ws, split, f) for f in ("train", "val", "test")}
    classifier, classifier_note = (None, "")
    if method in ("bct", "bt2", "oca", "auto"):
        classifier, classifier_note = old_classifier_for(ws, old, split)
    data = PairData(arrays[old, "train"], arrays[new, "train"], arrays[old, "val"], arrays[new, "val"],
                    _labels_or_none(labels["train"]), _labels_or_none(labels["val"]), classifier)
    run_config = {"method": method, "old": old, "new": new, "settings": settings, "pairs": split.count(),
                  "fitted_on": "item pairs of the train fold", "old_classifier": classifier_note}
    with recorded_run(ws, "train", method, run_config) as record:
        result = fit_adapter(method, data, settings, on_progress, should_stop)
        record["epochs"], record["device"] = result.metrics, result.device
        if result.adapter is None or result.status == "failed":
            raise TrainingError(f"training {method} failed: {result.reason or 'no usable adapter'}")
        heldout = _heldout(result.adapter, arrays[old, "test"], arrays[new, "test"], labels["test"])
        adapter_row = _store_adapter(ws, record["run_id"], result, old, new)
        summary = {"run_id": record["run_id"], "method": method, "kind": result.adapter.kind,
                   "status": result.status, "reason": result.reason, "old": old, "new": new,
                   "device": result.device, "duration_s": round(result.duration_s, 3),
                   "pairs": split.count(), "adapter_id": adapter_row["id"], "adapter_path": adapter_row["path"],
                   "val_metric": result.best_val_metric, "val_metric_name": result.val_metric_name,
                   "best_epoch": result.best_epoch, "epochs_run": len(result.metrics),
                   "candidates": result.candidates, **heldout}
        record["metrics"] = {k: v for k, v in summary.items() if k not in ("candidates",)}
        record["metrics"]["candidates"] = result.candidates
        record["status"] = "cancelled" if result.status == "cancelled" else "completed"
        record["error"] = result.reason or None if result.status == "cancelled" else None
    return summary


def _heldout(adapter: Any, old_test: np.ndarray, new_test: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Label-based held-out numbers when labels exist, else own-item retrieval only."""
    if (labels >= 0).sum() >= 2 and len(np.unique(labels[labels >= 0])) >= 2:
        return evaluate_heldout(adapter, old_test, new_test, labels)
    from core.adapters import adapt_gallery, adapt_queries

    queries, gallery = adapt_queries(adapter, new_test, old_test), adapt_gallery(adapter, old_test)
    return {"old_old_top1": None, "new_new_top1": None, "upgraded_top1": None, "gain_retained": None,
            "upgraded_pair_top1": pair_top1(queries, gallery), "n_queries": int(len(old_test)),
            "note": "no labels: only own-item retrieval (upgraded_pair_top1) can be measured"}


def _store_adapter(ws: Workspace, run_id: int, result: Any, old: str, new: str) -> dict[str, Any]:
    adapter = result.adapter
    # written on the workspace's own disk (the system temp folder may be another, smaller one)
    with tempfile.TemporaryDirectory(prefix=f"{TMP_PREFIX}scratch-", dir=ws.root / "adapters") as tmp:
        path = save_adapter(adapter, Path(tmp) / "adapter.pt")
        return ws.add_adapter(run_id, adapter.kind, adapter.direction, adapter.in_dim, adapter.out_dim,
                              old, new, path, {**adapter.config(), "input_normalised": True})
