"""``auto --time-budget``: cheapest candidates first, the rest skipped with the reason, training
candidates stopped at the end of an epoch in their best state, and every candidate's time recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from train_fixtures import one_torch_thread, small_labelled_pairs  # noqa: F401 (autouse fixture)

from embridge.core.cli.main import main
from embridge.core.store import Workspace
from embridge.core.train import PairData, fit_adapter


@pytest.fixture(scope="module")
def data() -> PairData:
    return small_labelled_pairs(3)


def test_a_spent_budget_skips_every_later_candidate_with_the_reason(data: PairData) -> None:
    wanted = ["bct", "mlp", "affine", "procrustes", "fusion"]  # listed out of order on purpose
    result = fit_adapter("auto", data, {"candidates": wanted, "time_budget": 1e-6, "device": "cpu"})
    kinds = [c["kind"] for c in result.candidates]
    assert kinds == ["procrustes", "affine", "mlp", "bct", "fusion"]  # cheapest first
    ran, *rest = result.candidates
    assert ran["status"] == "completed" and ran["duration_s"] > 0  # the first candidate always runs
    assert all(c["status"] == "skipped" and c["reason"].startswith("time budget of 1e-06 s spent")
               and c["duration_s"] == 0.0 for c in rest)
    assert result.kind == "procrustes" and result.adapter is not None
    assert "not tried within the 1e-06 s time budget: affine, mlp, bct, fusion" in result.reason
    budget = result.budget
    assert budget["seconds"] == 1e-6 and budget["skipped"] == ["affine", "mlp", "bct", "fusion"]
    assert budget["stopped_at_epoch_end"] == []
    assert budget["spent_s"] >= budget["candidates_s"] == pytest.approx(ran["duration_s"], abs=1e-3)


def test_the_candidate_table_keeps_the_run_order_whatever_the_reason_a_row_was_skipped(data: PairData) -> None:
    """Rows skipped because the data has no labels were listed before rows the budget skipped later."""
    unlabelled = PairData(data.old_train, data.new_train, data.old_val, data.new_val)
    result = fit_adapter("auto", unlabelled, {"candidates": ["bct", "mlp", "procrustes"], "time_budget": 1e-6,
                                              "device": "cpu"})
    assert [(c["kind"], c["status"]) for c in result.candidates] == [
        ("procrustes", "completed"), ("mlp", "skipped"), ("bct", "skipped")]
    assert result.candidates[1]["reason"].startswith("time budget") and result.candidates[2]["reason"] == "needs labels"


def test_a_training_candidate_stops_at_an_epochs_end_in_its_best_state(data: PairData) -> None:
    """Tolerance: the budget is checked after each validated epoch, so the run ends within one epoch of it."""
    settings = {"candidates": ["mlp"], "epochs": 400, "patience": 400, "hidden": 64, "time_budget": 0.5,
                "device": "cpu"}
    fit_adapter("mlp", data, {"epochs": 1, "hidden": 64, "device": "cpu"})  # torch's first training step loads
    # its kernels (about a second, once a process), which would spend the budget before epoch 1
    result = fit_adapter("auto", data, settings)
    (row,) = result.candidates
    epochs_run = len(result.metrics) - 1  # metrics hold epoch 0 (the closed-form start) too
    assert row["status"] == "completed" and 1 <= epochs_run < 400
    assert row["reason"] == f"stopped at the end of epoch {epochs_run}: the time budget was spent"
    assert result.budget["stopped_at_epoch_end"] == ["mlp"] and result.budget["skipped"] == []
    spent, took = result.budget["spent_s"], row["duration_s"]
    assert spent >= round(took, 3) and took >= 0.5  # it stopped only once the budget was spent (spent_s: ms)
    epoch_time = took / (epochs_run + 1)  # mean seconds per validated epoch
    assert took - 0.5 <= max(5 * epoch_time, 3.0)  # overrun: one epoch, with room for a busy machine
    best = max(m["val_metric"] for m in result.metrics)
    assert result.best_val_metric == best == pytest.approx(data.validation().value(result.adapter))


def test_a_training_candidate_whose_set_up_spent_the_budget_trains_no_epoch(data: PairData) -> None:
    """Its set-up (closed-form start, mining, first validation) and then a whole epoch ran past a spent
    budget: the overrun was more than the one epoch the documentation allows."""
    result = fit_adapter("auto", data, {"candidates": ["mlp"], "epochs": 50, "hidden": 64, "time_budget": 1e-6,
                                        "device": "cpu"})
    (row,) = result.candidates
    assert row["status"] == "completed" and [m["epoch"] for m in result.metrics] == [0.0]
    assert row["reason"].startswith("stopped before epoch 1: the time budget was spent while the layer was set up")
    assert result.budget["stopped_at_epoch_end"] == ["mlp"]
    assert result.best_val_metric == pytest.approx(data.validation().value(result.adapter))  # the start it kept


def test_without_a_budget_nothing_is_skipped_and_no_budget_is_recorded(data: PairData) -> None:
    result = fit_adapter("auto", data, {"candidates": ["affine", "procrustes"], "device": "cpu"})
    assert [c["status"] for c in result.candidates] == ["completed", "completed"] and result.budget is None


@pytest.mark.parametrize("bad", [0, -1, "soon", True, float("inf")])
def test_a_bad_budget_names_the_setting(data: PairData, bad: object) -> None:
    with pytest.raises(Exception, match="'time_budget' must be a positive number of seconds"):
        fit_adapter("auto", data, {"candidates": ["procrustes"], "time_budget": bad})


def test_cli_records_the_budget_and_each_candidates_time(demo_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "-w", str(demo_copy), "--method", "auto", "--time-budget", "0.000001", "--device", "cpu",
                 "--set", 'candidates=["mlp", "procrustes", "affine"]', "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["budget"]["seconds"] == 1e-6 and out["budget"]["skipped"] == ["affine", "mlp"]
    assert [(c["kind"], c["status"]) for c in out["candidates"]] == [
        ("procrustes", "completed"), ("affine", "skipped"), ("mlp", "skipped")]
    with Workspace.open(demo_copy) as ws:
        stored = ws.runs("train")[-1]["metrics"]
    assert stored["budget"] == out["budget"] and stored["candidates"] == out["candidates"]
    assert main(["runs", "-w", str(demo_copy), "--kind", "train", "--json"]) == 0  # listed too, with each one's time
    listed = json.loads(capsys.readouterr().out)["runs"][-1]["metrics"]
    assert listed["candidates"] == out["candidates"] and listed["budget"] == out["budget"]
    code = main(["train", "-w", str(demo_copy), "--method", "auto", "--time-budget", "0.000001",
                 "--set", 'candidates=["procrustes", "affine"]'])
    text = capsys.readouterr().out
    assert code == 0 and "candidate affine      validation label top-1 n/a (skipped): time budget of 1e-06 s spent" in text
    assert "time budget 1e-06s:" in text and "skipped affine" in text


def test_cli_refuses_a_budget_for_a_single_method_or_a_bad_value(demo_copy: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "-w", str(demo_copy), "--method", "mlp", "--time-budget", "10"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--time-budget" in err[0] and "only applies to --method auto" in err[0]
    assert main(["train", "-w", str(demo_copy), "--method", "auto", "--time-budget", "0"]) == 2
    assert "argument --time-budget: expected a number above 0" in capsys.readouterr().err
