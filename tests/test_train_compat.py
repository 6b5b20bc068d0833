"""Every kind passes the compatibility criterion on held-out class-structured synthetic data.

Data: 16 classes, the old model (32-d) separates only 8 of them, the new model (48-d) all;
a shared mean in both spaces. Fit on 50 %, select on 25 %, report on the other 25 %.
Margins were set from five seeds of this setup (the seed used here is 0): upgraded minus
old/old was at least +0.06 for the maps, +0.11 for bt2, +0.15 for bct, +0.17 for fct.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from train_fixtures import one_torch_thread  # noqa: F401 (autouse fixture)

from embridge.core.synthetic import class_structured_pair
from embridge.core.train import FitResult, PairData, allowed_settings, evaluate_heldout, fit_adapter

NEW_TO_OLD = ["procrustes", "affine", "lowrank", "mlp", "bct", "bt2", "fusion"]


SETTINGS = {"epochs": 10, "device": "cpu", "hidden": 128, "seed": 0}


@pytest.fixture(scope="module")
def runs() -> dict[str, tuple[FitResult, dict[str, Any]]]:
    pair = class_structured_pair(1200, 16, 32, 48, 8, seed=0)
    tr, va, te = pair.splits((0.5, 0.25, 0.25), seed=0)
    data = PairData(tr.old, tr.new, va.old, va.new, tr.labels, va.labels)
    out = {}
    for kind in [*NEW_TO_OLD, "fct"]:
        result = fit_adapter(kind, data, {k: v for k, v in SETTINGS.items() if k in allowed_settings(kind)})
        out[kind] = (result, evaluate_heldout(result.adapter, te.old, te.new, te.labels))
    return out


@pytest.mark.parametrize("kind", NEW_TO_OLD)
def test_new_to_old_kinds_pass_the_criterion(runs: dict[str, tuple[FitResult, dict[str, Any]]], kind: str) -> None:
    result, ev = runs[kind]
    assert result.status == "completed" and result.val_metric_name == "label_top1"
    assert ev["compatible"] is True
    assert ev["upgraded_top1"] > ev["old_old_top1"] + 0.04  # seed 0: +0.08 (lowrank, mlp) to +0.20 (bct)
    assert ev["new_new_top1"] > ev["upgraded_top1"]  # a map alone does not reach a full backfill here
    expected_gain = (ev["upgraded_top1"] - ev["old_old_top1"]) / (ev["new_new_top1"] - ev["old_old_top1"])
    assert ev["gain_retained"] == pytest.approx(expected_gain)


def test_classifier_heads_gain_most(runs: dict[str, tuple[FitResult, dict[str, Any]]]) -> None:
    bct = runs["bct"][1]
    assert bct["upgraded_top1"] > bct["old_old_top1"] + 0.10  # seed 0: +0.20
    assert bct["upgraded_top1"] > runs["affine"][1]["upgraded_top1"]


def test_bt2_keeps_the_new_models_own_retrieval(runs: dict[str, tuple[FitResult, dict[str, Any]]]) -> None:
    result, ev = runs["bt2"]
    # the orthogonal head is an isometry of the new space: new/new with its a + k outputs stays at
    # the raw new model's new/new (measured: equal to +0.013 over five seeds)
    assert ev["head_new_new_top1"] >= ev["new_new_top1"] - 0.02
    # BT²'s widening: new dim (48) + extra_dims (32) outputs, the first 32 old-compatible
    assert result.adapter.out_dim == 48 + 32 and result.adapter.old_dims == 32


@pytest.mark.parametrize("kind", ["bct", "bt2"])
def test_training_improves_on_the_closed_form_start(runs: dict[str, tuple[FitResult, dict[str, Any]]], kind: str) -> None:
    result, _ = runs[kind]
    start = result.metrics[0]["val_metric"]
    assert result.best_epoch >= 1 and result.best_val_metric > start + 0.02  # seed 0: +0.07 (bct), +0.03 (bt2)
    assert result.best_val_metric == max(m["val_metric"] for m in result.metrics)


def test_fct_transformed_gallery_beats_old_old(runs: dict[str, tuple[FitResult, dict[str, Any]]]) -> None:
    result, ev = runs["fct"]
    assert result.adapter.direction == "forward"
    assert ev["new_fct_top1"] == ev["upgraded_top1"]
    assert ev["new_fct_top1"] > ev["old_old_top1"] + 0.10  # seed 0: +0.19


def test_fusion_never_loses_to_its_base_on_validation(runs: dict[str, tuple[FitResult, dict[str, Any]]]) -> None:
    fusion, _ = runs["fusion"]
    alphas = [m for m in fusion.metrics if "alpha" in m]
    assert [m["alpha"] for m in alphas] == pytest.approx([0.1 * i for i in range(11)])
    assert fusion.best_val_metric == max(m["val_metric"] for m in alphas)
    assert fusion.best_val_metric >= runs["mlp"][0].best_val_metric  # mlp is fusion's default base
    assert float(fusion.adapter.alpha) in [m["alpha"] for m in alphas if m["val_metric"] == fusion.best_val_metric]


def test_results_are_plain_and_json_ready(runs: dict[str, tuple[FitResult, dict[str, Any]]]) -> None:
    import json

    for result, ev in runs.values():
        json.dumps(result.to_dict())
        json.dumps(ev)
        assert result.device == "cpu" and result.duration_s > 0
        assert all(isinstance(v, float) for m in result.metrics for v in m.values())
    assert np.isfinite([ev["upgraded_top1"] for _, ev in runs.values()]).all()
