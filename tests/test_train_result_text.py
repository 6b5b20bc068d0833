"""A run's summary reads the same wherever it was trained, and says what its counts count.

The Train page shows the sentence of the selected run (else the latest) from its stored record, so a
run made by ``embridge train`` reads as one trained in the app; ``embridge train`` names the train
count as the pairs fitted on and the other folds as items (queries included), never as pairs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from app_fixtures import error_dialogs, no_threads_left, wait_for_jobs, window
from pytestqt.qtbot import QtBot

from embridge.app.main_window import MainWindow
from embridge.app.pages.train_result import recorded_text, result_text
from embridge.core.cli.main import main
from embridge.core.evaluation.folds import split_pairs
from embridge.core.store import Workspace

__all__ = ["no_threads_left", "window"]


def cli_train(capsys: pytest.CaptureFixture[str], path: Path, *options: str) -> str:
    """What ``embridge train`` prints (stdout only), run in-process as the program runs it."""
    capsys.readouterr()
    assert main(["train", "--workspace", str(path), "--device", "cpu", *options]) == 0
    return capsys.readouterr().out


@pytest.fixture(scope="module")
def text_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled text demo: judged queries in every fold, so folds hold queries and query pairs exist."""
    from embridge.core.demo_text import build_text_demo

    path = tmp_path_factory.mktemp("text") / "ws"
    build_text_demo(path).close()
    return path


PAIR_CHOICES = [(None, "document and query pairs"), ("documents", "document pairs"),
                ("queries", "query pairs")]


@pytest.mark.parametrize(("pairs", "words"), PAIR_CHOICES)
def test_train_line_counts_pairs_fitted_on_and_items_per_fold(capsys: pytest.CaptureFixture[str],
                                                              text_demo: Path, tmp_path: Path,
                                                              pairs: str | None, words: str) -> None:
    path = tmp_path / "ws"
    shutil.copytree(text_demo, path)
    first = cli_train(capsys, path, "--method", "procrustes",
                      *(["--pairs", pairs] if pairs else [])).splitlines()[0]
    with Workspace.open(path) as ws:
        run = ws.runs("train")[-1]
        split = split_pairs(ws, run["config"]["old"], run["config"]["new"], 0)
        queries = ws.query_ids()
    counts = run["metrics"]["pairs"]
    in_fold = {fold: int(np.isin(ids, queries).sum()) for fold, ids in split.ids.items()}
    train, is_query = split.ids["train"], np.isin(split.ids["train"], queries)
    fitted = {"both": train, "queries": train[is_query], "documents": train[~is_query]}[counts["pairs"]]
    assert counts["train"] == fitted.size  # the train count: the (old, new) pairs fitted on
    assert run["config"]["fitted_on"] == f"{counts['pairs']} pairs of the train fold ({fitted.size} items)"
    assert in_fold["val"] > 0 and in_fold["test"] > 0  # other folds' counts hold queries: items, not pairs
    assert (counts["val"], counts["test"]) == (split.ids["val"].size, split.ids["test"].size)
    assert f"; fitted on {counts['train']} {words} of the train fold;" in first
    assert first.endswith("; items per fold embedded by both models (queries included): "
                          f"val {counts['val']}, test {counts['test']}")
    assert "pairs (train" not in first
    assert first.startswith(f"run #{run['id']}: procrustes completed on cpu")  # the method named once


def test_a_run_trained_by_the_command_line_shows_its_summary(qtbot: QtBot, window: MainWindow,
                                                             demo_copy: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    first: dict[str, Any] = json.loads(cli_train(capsys, demo_copy, "--method", "procrustes", "--json"))
    window.ctx.open_workspace(demo_copy)
    window.watch.stop()  # only the loads and refreshes below re-read the workspace
    train = window.show_page("train")
    assert train.runs_table.rowCount() == 1
    text = train.result_label.text()
    assert text == result_text(first)  # what the page says after training it itself (its summary)
    assert text.startswith(f"Run {first['run_id']} (procrustes, completed): ")
    assert f"upgraded top-1 {first['upgraded_top1']:.3f}" in text
    assert f"Fitted on {first['pairs']['train']} document pairs of the train fold" in text  # as the CLI says

    second: dict[str, Any] = json.loads(cli_train(capsys, demo_copy, "--method", "affine", "--json"))
    window.refresh_pages()  # View ▸ Refresh
    assert train.runs_table.rowCount() == 2 and train.runs_table.item(0, 0).text() == str(second["run_id"])
    assert train.result_label.text() == result_text(second)  # the latest run
    assert f"upgraded top-1 {second['upgraded_top1']:.3f}" in train.result_label.text()

    train.runs_table.selectRow(1)  # the user picks the older run
    assert train.result_label.text() == result_text(first)
    window.refresh_pages()
    assert train.runs_table.selectionModel().selectedRows()[0].row() == 1  # it stays selected, and shown
    assert train.result_label.text() == result_text(first)
    train.runs_table.clearSelection()
    assert train.result_label.text() == result_text(second)


def test_an_app_run_reads_as_its_record_and_a_refresh_keeps_it(qtbot: QtBot, window: MainWindow,
                                                               demo_copy: Path) -> None:
    window.ctx.open_workspace(demo_copy)
    window.watch.stop()
    train = window.show_page("train")
    assert train.result_label.text() == ""  # no run yet
    train.train("procrustes", "old-mlp", "new-cnn", device="cpu")
    wait_for_jobs(qtbot, window)
    assert not error_dialogs()
    shown = train.result_label.text()
    run = window.ctx.ws.runs("train")[-1]
    assert shown.startswith(f"Run {run['id']} (procrustes, completed): ")
    assert shown == recorded_text(run)  # the app's own sentence is the one its record gives
    window.refresh_pages()
    assert train.result_label.text() == shown


def test_a_run_recorded_before_gain_notes_existed_lists_its_gain() -> None:
    """Runs recorded by an older Embridge carry gain_retained without gain_retained_note: the Train page's
    runs table raised KeyError on opening such a workspace."""
    from embridge.app.pages.train_result import run_row

    run = {"id": 4, "kind": "train", "method": "procrustes", "status": "completed", "config": {},
           "metrics": {"old_old_top1": 0.5, "new_new_top1": 0.8, "upgraded_top1": 0.7, "gain_retained": 0.6667}}
    row = run_row(run)
    assert row[0] == 4 and "66.7%" in row


def test_the_page_says_which_settings_a_run_did_not_use(capsys: pytest.CaptureFixture[str], demo_copy: Path) -> None:
    """`embridge train` warns that a closed-form fit read no --epochs; the run's sentence on the Train page, from
    its record, says so too."""
    out = cli_train(capsys, demo_copy, "--method", "affine", "--epochs", "5", "--set", "patience=2")
    assert out.rstrip().splitlines()[-1] == ("WARNING: --epochs, patience not used: affine is a closed-form fit, "
                                             "with no training loop to give them to")
    with Workspace.open(demo_copy) as ws:
        run = ws.runs("train")[-1]
    assert recorded_text(run).endswith(". Not used: epochs, patience (affine is a closed-form fit, with no training "
                                       "loop to give them to)")


def test_a_gain_measured_against_a_head_or_on_the_sample_says_so_in_its_row() -> None:
    """The digits demo's bt2 row read New/new 0.995 and gain retained 61.9%, a share of head/head's gain on the
    evaluation sample that no number in the row gives."""
    from embridge.app.pages.train_result import RUN_COLUMNS, run_row

    metrics = {"old_old_top1": 0.790, "new_new_top1": 0.995, "upgraded_top1": 0.905, "gain_retained": 0.619,
               "ceiling_cell": "head/head", "ceiling_top1": 0.975, "old_old_sample_top1": 0.765}
    run = {"id": 1, "kind": "train", "method": "bt2", "status": "completed", "config": {}, "metrics": metrics}
    gain = run_row(run)[RUN_COLUMNS.index("Gain retained (top-1)")]
    assert gain == "61.9% (vs head/head, on the sample)"
    plain = {**metrics, "ceiling_cell": "new/new", "old_old_sample_top1": None}
    assert run_row({**run, "metrics": plain})[RUN_COLUMNS.index("Gain retained (top-1)")] == "61.9%"
