"""What goes into a bundle, gathered from the workspace: steps, models, report, metrics, probes.

A bundle holds one adapter or a chain of them (v3 -> v2 -> v1). Each step is a training run's
adapter, re-read from the workspace with its checksum verified. Probe vectors are real stored
vectors of held-out items when the workspace has them, stored raw (as ``apply`` takes them, each
row scaled by a seeded factor below 1), so ``verify`` runs them through the same input
normalisation as ``apply`` and a manifest that changes that normalisation no longer reproduces
them. Held-out items are the test queries of :mod:`embridge.core.evaluation` (those the training
run's and the report's numbers are measured on); the bundle's metrics say which protocol they come
from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embridge.core.adapters import Adapter, load_adapter
from embridge.core.bundle.deploy import inputs_of
from embridge.core.bundle.measured import step_metrics
from embridge.core.errors import BundleError, EmbridgeError, InputError, StoreError
from embridge.core.l2 import l2_normalize, layer_input_normalised
from embridge.core.store import Workspace
from embridge.core.store.id_sets import intersect_ids


@dataclass
class Step:
    """One adapter of the bundle with the run and the workspace row it came from."""

    run: dict[str, Any]
    row: dict[str, Any]
    adapter: Adapter

    @property
    def input_normalised(self) -> bool:
        return layer_input_normalised(self.row)

    @property
    def source_model(self) -> str:
        """The model whose vectors this step takes."""
        return self.row["old_model"] if self.adapter.direction == "forward" else self.row["new_model"]

    @property
    def target_model(self) -> str:
        return self.row["new_model"] if self.adapter.direction == "forward" else self.row["old_model"]

    def describe(self, report_id: int | None) -> dict[str, Any]:
        return {"run_id": self.run["id"], "adapter_id": self.row["id"], "kind": self.adapter.kind,
                "direction": self.adapter.direction, "old_model": self.row["old_model"],
                "new_model": self.row["new_model"], "in_dim": self.adapter.in_dim,
                "out_dim": self.adapter.out_dim, "adapter_sha256": self.row["sha256"],
                "input_normalised": self.input_normalised, "config": self.adapter.config(),
                "report_id": report_id, "fitted_on": (self.run.get("config") or {}).get("fitted_on"),
                "metrics": step_metrics(self.run),
                "metrics_from": f"training run {self.run['id']}'s held-out numbers (not report {report_id}'s)"
                if report_id is not None else f"training run {self.run['id']}'s held-out numbers"}


def resolve_steps(ws: Workspace, run_ids: list[int] | None) -> list[Step]:
    """The adapters of ``run_ids`` (default: the latest completed training run), in chain order."""
    if not run_ids:
        latest = ws.latest_run("train")
        if latest is None:
            raise BundleError(f"{ws.root}: no completed training run to export; run 'embridge train' first")
        run_ids = [int(latest["id"])]
    if len(set(run_ids)) != len(run_ids):
        twice = next(r for r in run_ids if run_ids.count(r) > 1)
        raise BundleError(f"run {twice} is named twice among the bundle's runs ({', '.join(map(str, run_ids))}); "
                          "name each step once")
    steps = []
    from embridge.core.report.build import resolve_train_run

    for run_id in run_ids:
        resolve_train_run(ws, int(run_id))  # a report or export run is named as such, as report and plan do
        run = ws.run(int(run_id))
        row = ws.adapter_for_run(int(run_id))
        steps.append(Step(run, row, load_adapter(ws.adapter_path(int(row["id"])))))
    return order_chain(steps)


def order_chain(steps: list[Step]) -> list[Step]:
    """Order steps so each one's output model is the next one's input model (v3->v2, v2->v1)."""
    if len(steps) == 1:
        return steps
    for s in steps:
        if s.adapter.kind == "fusion":
            raise BundleError(f"run {s.run['id']}: fusion layers cannot be part of a chain")
    if len({s.adapter.direction == "forward" for s in steps}) > 1:
        raise BundleError("a chain must be all new->old layers or all old->new layers, not a mix")
    targets = {s.target_model for s in steps}
    starts = [s for s in steps if s.source_model not in targets]
    if len(starts) != 1:
        raise BundleError("runs " + ", ".join(str(s.run["id"]) for s in steps) + " do not form one chain: "
                          + "; ".join(f"run {s.run['id']} maps {s.source_model} -> {s.target_model}" for s in steps))
    ordered, remaining = [starts[0]], [s for s in steps if s is not starts[0]]
    while remaining:
        nxt = [s for s in remaining if s.source_model == ordered[-1].target_model]
        if len(nxt) != 1:
            raise BundleError(f"no single run continues the chain from model '{ordered[-1].target_model}'")
        ordered.append(nxt[0])
        remaining.remove(nxt[0])
    return ordered


def model_entry(ws: Workspace, name: str) -> dict[str, Any]:
    """The workspace's record of a model (spec with sha256), or just its name if it was removed.

    The spec's ``path`` (where the checkpoint was read from on the exporting machine, often a temp
    folder) is left out: it does not exist at the receiver, and the name and sha256 identify the model.
    """
    try:
        m = ws.model(name)
    except StoreError:
        return {"name": name, "sha256": None, "spec": None, "note": "model no longer in the workspace"}
    spec = m.get("spec")
    if isinstance(spec, dict) and "path" in spec:  # the exporting machine's folder: name and sha256 identify it
        spec = {k: v for k, v in spec.items() if k != "path"}
    return {"name": name, "role": m.get("role"), "kind": m.get("kind"), "dim": m.get("dim"),
            "sha256": m.get("sha256"), "spec": spec}


def report_for(ws: Workspace, step: Step) -> dict[str, Any] | None:
    """The latest report of a step's run or adapter, or None."""
    found = [r for r in ws.reports() if r.get("run_id") == step.run["id"] or r.get("adapter_id") == step.row["id"]]
    return found[-1] if found else None


def chosen_report(ws: Workspace, steps: list[Step], report_id: int | None) -> dict[str, Any] | None:
    """The report to ship: ``report_id`` when it measured one of the exported runs, else refused.

    A report of another run would label the bundle with numbers its layer never had. Without
    ``report_id``: the latest report of a single run, none for a chain.
    """
    if report_id is None:
        return report_for(ws, steps[0]) if len(steps) == 1 else None
    report = ws.report(int(report_id))
    runs = [int(s.run["id"]) for s in steps]
    adapters = [int(s.row["id"]) for s in steps]
    run_id, adapter_id = report.get("run_id"), report.get("adapter_id")
    exported = f"run {runs[0]}" if len(runs) == 1 else "runs " + ", ".join(map(str, runs))
    chain_runs = chain_report_runs(ws, report)
    if chain_runs is not None:  # a chain's own report: shipped with the chain it measured end to end
        if sorted(chain_runs) == sorted(runs):
            return report
        raise InputError(f"--report {report_id}", f"is the chain report of runs {', '.join(map(str, chain_runs))}, not "
                         f"of {exported} (what this bundle exports)")
    if len(runs) > 1 and run_id in runs:  # one step's numbers are not the chain's: they would head the bundle
        oldest_first = runs if steps[0].adapter.direction == "forward" else runs[::-1]  # as `chain --runs` takes them
        raise InputError(f"--report {report_id}", f"measured one step of this chain (run {run_id}), not the chain "
                         f"end to end; give the chain's own report ('embridge chain --runs "
                         f"{','.join(map(str, oldest_first))}' makes one), or leave --report out")
    if (run_id is not None or adapter_id is not None) and (run_id is None or run_id in runs) \
            and (adapter_id is None or adapter_id in adapters):
        return report
    measured = f"run {run_id}" if run_id is not None else (f"adapter {adapter_id}" if adapter_id is not None
                                                           else "no training run")
    raise InputError(f"--report {report_id}", f"was measured for {measured}, not {exported} (what this bundle "
                     "exports); give a report of the exported run, or leave --report out for its latest")


def chain_report_runs(ws: Workspace, report: dict[str, Any]) -> list[int] | None:
    """The runs a chain report measured end to end (its report.json's ``chain.runs``); None for another report."""
    if (report.get("summary") or {}).get("kind") != "chain":
        return None
    from embridge.core.bundle.measured import report_json

    runs = ((report_json(ws, report) or {}).get("chain") or {}).get("runs")
    return [int(r) for r in runs] if isinstance(runs, list) and all(isinstance(r, int) for r in runs) else []


def report_files(ws: Workspace, report: dict[str, Any]) -> dict[str, Path]:
    """Bundle name -> file of a report row (paths relative to the workspace root)."""
    out: dict[str, Path] = {}
    for key, name in (("json_file", "report.json"), ("html_file", "report.html")):
        rel = report.get(key)
        if rel:
            path = Path(rel) if Path(rel).is_absolute() else ws.root / rel
            if not path.is_file():
                raise BundleError(f"{path}: report {report['id']}'s {name} is missing from the workspace")
            out[name] = path
    if "report.json" in out:
        _check_stored_report(out["report.json"], report)
    return out


def _check_stored_report(path: Path, report: dict[str, Any]) -> None:
    """The stored report.json still says what the workspace recorded when it was measured: a damaged or
    edited one is named here, as the workspace's file, before anything is written."""
    from embridge.core.bundle.manifest import changed_number

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        raise BundleError(f"{path}: report {report['id']}'s report.json is not a readable JSON report (damaged "
                          "since it was stored?)") from None
    headline = data.get("headline") if isinstance(data, dict) and isinstance(data.get("headline"), dict) else {}
    changed = changed_number(report.get("summary") or {}, headline)
    if changed is not None:
        key, value, shown = changed
        raise BundleError(f"{path}: gives {key} = {shown}, where the workspace recorded {value} when report "
                          f"{report['id']} was measured: the file was changed since")


def renamed_models(report_json: Path | None, adapter_row: dict[str, Any] | None) -> dict[str, dict[str, str]]:
    """Sides whose model the report names otherwise than the workspace now does (a rename since the
    report was made): ``{"old": {"measured_as": ..., "now": ...}}``. The report's files are shipped
    as they were hashed, so the bundle says so instead of rewriting them."""
    if report_json is None or adapter_row is None:
        return {}
    try:
        models = json.loads(report_json.read_text(encoding="utf-8")).get("models") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    out = {}
    for side in ("old", "new"):
        measured = (models.get(side) or {}).get("name") if isinstance(models.get(side), dict) else None
        now = adapter_row.get(f"{side}_model")
        if isinstance(measured, str) and measured and measured != now:
            out[side] = {"measured_as": measured, "now": str(now)}
    return out


def probe_vectors(ws: Workspace, first: Step, count: int, seed: int) -> tuple[np.ndarray, np.ndarray | None, str]:
    """(raw inputs as ``apply`` takes them, old query inputs for fusion or None, where they came from).

    The inputs are not normalised: the bundle's own input step (``normalisation.input``) prepares
    them, at export as at verify and apply. Each row is scaled by a seeded factor in [0.5, 0.84]
    (down, so the largest finite rows stay finite), so rows of unit length (what many models emit)
    do not hide that step: with "l2" the scale vanishes, with "none" it shows in the output, and a
    manifest claiming the other policy no longer reproduces the stored outputs.
    """
    x, old, source = _probe_rows(ws, first, count, seed)
    return x * _row_scales(len(x), seed)[:, None], old, source


def _row_scales(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 1])
    return (2.0 ** -rng.uniform(0.25, 1.0, n)).astype(np.float32)


def _probe_rows(ws: Workspace, first: Step, count: int, seed: int) -> tuple[np.ndarray, np.ndarray | None, str]:
    adapter = first.adapter
    rng = np.random.default_rng(seed)
    if getattr(adapter, "side_dim", 0):
        x = rng.standard_normal((count, adapter.in_dim)).astype(np.float32)
        return x, None, "seeded Gaussian vectors (the layer takes side information the workspace does not store)"
    model = first.source_model
    ids = ws.ids_with_vectors(model)
    if "old" in inputs_of(adapter)[1:]:
        ids = intersect_ids(ids, ws.ids_with_vectors(first.row["old_model"]))
    if len(ids) == 0:
        x = rng.standard_normal((count, adapter.in_dim)).astype(np.float32)
        return x, (l2_normalize(rng.standard_normal((count, adapter.out_dim))) if adapter.kind == "fusion" else None), \
            "seeded Gaussian vectors (no stored vectors of the input model)"
    held_out = intersect_ids(ids, _test_queries(ws, first))
    pool = held_out if len(held_out) else ids
    chosen = np.sort(rng.choice(pool, size=min(count, len(pool)), replace=False))
    x = np.asarray(ws.vectors_for(model, chosen), dtype=np.float32)
    old = None
    if adapter.kind == "fusion":
        old = l2_normalize(ws.vectors_for(first.row["old_model"], chosen))
    where = "held-out (test query)" if len(held_out) else "stored"
    short = f" (every one there is; {count} were asked)" if len(chosen) < count else ""
    return x, old, f"{len(chosen)} {where} vectors of model '{model}'{short}"


def _test_queries(ws: Workspace, step: Step) -> np.ndarray:
    """The test queries of the evaluation path (:func:`embridge.core.evaluation.tasks.heldout_queries`), or none."""
    from embridge.core.evaluation.tasks import heldout_queries

    try:
        return heldout_queries(ws, [step.row["old_model"], step.row["new_model"]])[0].ids
    except EmbridgeError:
        return np.zeros(0, dtype=np.int64)


def item_keys(ws: Workspace, ids: np.ndarray) -> np.ndarray:
    return np.array(ws.keys_of(ids))
