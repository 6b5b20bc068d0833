"""A small upgrade workspace for the bundle tests: three model versions and recorded runs.

Items are labelled synthetic vectors; v1 is the old model (16-d), v2 an intermediate one (24-d),
v3 the new model (32-d, a noisy rotation of v2). Closed-form layers are trained through
``train_run`` (as the CLI does); the gradient-trained kinds (fct, bt2) are built from their
closed-form initialisation plus a seeded perturbation and registered the way ``train_run`` does,
which keeps the suite fast while exercising their real code paths.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embridge.core.adapters import BT2Adapter, FCTAdapter, save_adapter
from embridge.core.adapters.closed_form import procrustes, ridge_path
from embridge.core.report.build import ReportOptions, build_report
from embridge.core.retrieval import l2_normalize
from embridge.core.store import Workspace
from embridge.core.synthetic import class_structured_pair, random_semi_orthogonal
from embridge.core.train.runs import train_run

N_ITEMS, N_QUERY = 240, 40


def _register(ws: Workspace, adapter: Any, old: str, new: str) -> dict[str, Any]:
    run_id = ws.start_run("train", adapter.kind, {"method": adapter.kind, "old": old, "new": new})
    with tempfile.TemporaryDirectory() as tmp:
        file = save_adapter(adapter, Path(tmp) / "adapter.pt")
        row = ws.add_adapter(run_id, adapter.kind, adapter.direction, adapter.in_dim, adapter.out_dim,
                             old, new, file, {**adapter.config(), "input_normalised": True})
    ws.finish_run(run_id, "completed", metrics={"adapter_id": row["id"], "upgraded_top1": 0.5})
    return {"run_id": run_id, "adapter_id": row["id"]}


def _perturb(module: torch.nn.Module, seed: int, scale: float = 0.05) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))


def build_upgrade_workspace(path: Path, seed: int = 3, with_report: bool = True) -> dict[str, Any]:
    """Create the workspace at ``path``; returns run ids, item ids and the raw vectors."""
    pair = class_structured_pair(N_ITEMS, 6, old_dim=16, new_dim=24, old_seen_classes=3, seed=seed)
    rng = np.random.default_rng(seed)
    v1, v2 = pair.old, pair.new
    v3 = l2_normalize(v2 @ random_semi_orthogonal(24, 32, rng) + 0.05 * rng.standard_normal((N_ITEMS, 32)))
    ws = Workspace.create(path)
    records = [{"key": f"item-{i:03d}", "label": str(int(pair.labels[i])),
                "split": "query" if i < N_QUERY else "gallery"} for i in range(N_ITEMS)]
    ids = np.asarray(ws.add_items(records), dtype=np.int64)
    vectors = {"v1": v1, "v2": v2, "v3": v3}
    for name, role in (("v1", "old"), ("v2", "other"), ("v3", "new")):
        spec = {"name": name, "kind": "vectors", "dim": int(vectors[name].shape[1]),
                "sha256": f"{name}".encode().hex().ljust(64, "0")}
        ws.add_model(name, role, spec, None)
        ws.add_vector_set(name, ids, vectors[name])
    runs = {
        "v2_to_v1": train_run(ws, "procrustes", old="v1", new="v2", device="cpu")["run_id"],
        "v3_to_v2": train_run(ws, "affine", old="v2", new="v3", device="cpu")["run_id"],
        "v3_to_v1": train_run(ws, "procrustes", old="v1", new="v3", device="cpu")["run_id"],
        "fusion": train_run(ws, "fusion", old="v1", new="v3", device="cpu", config={"base": "affine"})["run_id"],
    }
    x1, x3 = l2_normalize(v1), l2_normalize(v3)
    fct = FCTAdapter(16, 32, hidden=32)
    fct.init_from_data(x1, next(ridge_path(x1, x3, [1e-3]))[1])
    _perturb(fct, seed)
    runs["fct"] = _register(ws, fct.eval(), "v1", "v3")["run_id"]
    bt2 = BT2Adapter(32, 20, old_dims=16)
    bt2.init_from_procrustes(procrustes(x3, x1))
    _perturb(bt2, seed + 1, 0.01)
    runs["bt2"] = _register(ws, bt2.eval(), "v1", "v3")["run_id"]
    report_id = None
    if with_report:  # the real report of the v3 -> v1 layer, small settings
        report_id = build_report(ws, runs["v3_to_v1"], ReportOptions(n_boot=50, backfill_steps=3)).report_id
    ws.close()
    return {"path": path, "runs": runs, "ids": ids, "vectors": vectors, "report_id": report_id}
