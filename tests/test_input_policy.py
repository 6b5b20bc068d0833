"""A layer's input policy (L2-normalised or raw vectors) is stored with it and honoured by reports and bundles.

The layer here is an exact affine map fitted on raw (unnormalised) vectors whose lengths vary a
lot, recorded with ``input_normalised: False``. Fed raw vectors it reproduces the old vectors, so
the report's upgraded cell must equal old/old; fed normalised vectors (the policy ignored) its
bias swamps the signal. The bundle must apply the same policy.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from embridge.core.adapters import save_adapter
from embridge.core.adapters.linear import AffineAdapter
from embridge.core.bundle import export_bundle, load_bundle
from embridge.core.evaluation.gather import MatrixMaker
from embridge.core.l2 import l2_normalize, layer_input_normalised, prepare_input
from embridge.core.report.build import ReportOptions, build_report
from embridge.core.store import Workspace
from embridge.core.synthetic import class_structured_pair

N_ITEMS, N_QUERY = 300, 60


def _layer_on_raw(ws: Workspace, weight: np.ndarray, bias: np.ndarray, normalised: bool | None) -> int:
    """Register the exact raw-vector layer as a completed training run; returns the run id."""
    adapter = AffineAdapter(weight.shape[0], weight.shape[1])
    with torch.no_grad():
        adapter.weight.copy_(torch.as_tensor(weight))
        adapter.bias.copy_(torch.as_tensor(bias))
    run_id = ws.start_run("train", "affine", {"method": "affine", "old": "old", "new": "new"})
    config: dict[str, Any] = adapter.config() if normalised is None else {**adapter.config(),
                                                                           "input_normalised": normalised}
    with tempfile.TemporaryDirectory() as tmp:
        row = ws.add_adapter(run_id, "affine", "backward", adapter.in_dim, adapter.out_dim, "old", "new",
                             save_adapter(adapter.eval(), Path(tmp) / "affine.pt"), config)
    ws.finish_run(run_id, "completed", metrics={"adapter_id": row["id"]})
    return run_id


@pytest.fixture(scope="module")
def raw_space(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    rng = np.random.default_rng(5)
    pair = class_structured_pair(N_ITEMS, 6, old_dim=16, new_dim=24, old_seen_classes=6, seed=5)
    new = pair.new * rng.uniform(5.0, 20.0, size=(N_ITEMS, 1)).astype(np.float32)  # lengths vary 4x
    weight = rng.standard_normal((24, 16)).astype(np.float32)
    bias = (3.0 * rng.standard_normal(16)).astype(np.float32)
    old = new @ weight + bias
    ws = Workspace.create(tmp_path_factory.mktemp("policy") / "ws")
    ids = np.asarray(ws.add_items([{"key": f"i{i}", "label": str(int(pair.labels[i])),
                                    "split": "query" if i < N_QUERY else "gallery"} for i in range(N_ITEMS)]))
    for name, role, vectors in (("old", "old", old), ("new", "new", new)):
        ws.add_model(name, role, {"name": name, "kind": "vectors", "dim": vectors.shape[1],
                                  "sha256": name.encode().hex().ljust(64, "0")}, None)
        ws.add_vector_set(name, ids, vectors)
    runs = {policy: _layer_on_raw(ws, weight, bias, policy) for policy in (False, True, None)}
    yield {"ws": ws, "runs": runs, "ids": ids, "new": new, "old": old}
    ws.close()


def test_the_policy_is_stored_with_every_layer(raw_space: dict[str, Any]) -> None:
    ws = raw_space["ws"]
    stored = {p: ws.adapter_for_run(r)["config"]["input_normalised"] for p, r in raw_space["runs"].items()}
    assert stored == {False: False, True: True, None: True}  # no flag given: the workspace convention
    assert layer_input_normalised({"config": {}}) is True and layer_input_normalised({"config": None}) is True
    x = np.array([[3.0, 4.0]], dtype=np.float32)
    assert prepare_input(x, False).tolist() == [[3.0, 4.0]]
    np.testing.assert_allclose(prepare_input(x, True), [[0.6, 0.8]], rtol=1e-6)


def test_matrix_maker_feeds_a_layer_what_its_policy_says(raw_space: dict[str, Any]) -> None:
    ws, ids = raw_space["ws"], raw_space["ids"][:5]
    seen: list[np.ndarray] = []

    def capture(x: np.ndarray) -> np.ndarray:
        seen.append(x.copy())
        return x

    for policy in (False, True):
        out = MatrixMaker(ws, input_normalised=policy).matrix(ids, ["new"], capture)
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)  # outputs always unit length
    np.testing.assert_allclose(seen[0], raw_space["new"][:5], rtol=1e-6)
    np.testing.assert_allclose(seen[1], l2_normalize(raw_space["new"][:5]), rtol=1e-6)


def test_the_report_honours_the_stored_policy(raw_space: dict[str, Any]) -> None:
    ws = raw_space["ws"]
    honoured = build_report(ws, raw_space["runs"][False], ReportOptions(n_boot=50, backfill_steps=3), write=False).headline
    ignored = build_report(ws, raw_space["runs"][True], ReportOptions(n_boot=50, backfill_steps=3), write=False).headline
    assert honoured["old_old_top1"] > 0.5
    assert honoured["upgraded_top1"] == pytest.approx(honoured["old_old_top1"], abs=1e-9)  # the exact map
    assert ignored["upgraded_top1"] < honoured["upgraded_top1"] - 0.2  # the same layer fed normalised vectors


def test_the_bundle_applies_the_same_policy(raw_space: dict[str, Any], tmp_path: Path) -> None:
    ws, new, old = raw_space["ws"], raw_space["new"], raw_space["old"]
    out = tmp_path / "bundle"
    manifest = export_bundle(ws, out, [raw_space["runs"][False]], gallery=False, probes=8)["manifest"]
    assert manifest["normalisation"]["input"] == "none"
    applied = load_bundle(out)(new[:N_QUERY], normalise_output=True)
    np.testing.assert_allclose(applied, l2_normalize(old[:N_QUERY]), atol=2e-4)
    unflagged = export_bundle(ws, tmp_path / "default", [raw_space["runs"][None]], gallery=False, probes=8)
    assert unflagged["manifest"]["normalisation"]["input"] == "l2"  # the same default the report uses
