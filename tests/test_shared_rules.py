"""The command line and the app refuse the same bad input with the same sentence: the rules live in core."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from app_fixtures import close_error_dialogs, error_dialogs, no_threads_left, wait_for_jobs, window
from pytestqt.qtbot import QtBot

from embridge.app.main_window import MainWindow
from embridge.core.cli.main import main
from embridge.core.errors import InputError
from embridge.core.models.adding import parse_input_shape
from embridge.core.store import Workspace
from embridge.core.train.requirements import requirement_problems

__all__ = ["no_threads_left", "window"]
PREFIX = "embridge: error: "


def cli_error(capsys: pytest.CaptureFixture[str], *args: str, code: int = 1) -> str:
    """The one error line of a refused command (exit status ``code``), without the program's prefix."""
    assert main(list(args)) == code
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(PREFIX)
    return err[len(PREFIX):]


def _unlabelled_workspace(path: Path, label: str | None = None) -> Path:
    """Old (8-d) and new (12-d) vectors-only models over 40 items that carry no label (or all ``label``)."""
    rng = np.random.default_rng(0)
    with Workspace.create(path) as ws:
        ids = ws.add_items([{"key": f"k{i}", "split": "query" if i < 10 else "gallery", "label": label}
                            for i in range(40)])
        for name, role, dim in (("old", "old", 8), ("new", "new", 12)):
            ws.add_model(name, role, {"name": name, "kind": "vectors", "dim": dim, "sha256": name * 32}, None)
            ws.add_vector_set(name, ids, rng.standard_normal((40, dim)).astype(np.float32))
    return path


@pytest.mark.parametrize("shape", ["0,28,28", "1,0", "-3", "1,a,2"])
def test_input_shape_rule(shape: str) -> None:
    with pytest.raises(InputError, match="^--input-shape: expected .*integers like 1,28,28"):
        parse_input_shape(shape)
    assert parse_input_shape(" (1, 28, 28) ") == parse_input_shape("1x28x28") == (1, 28, 28)
    assert parse_input_shape("") is None and parse_input_shape(None) is None


def test_a_zero_input_dimension_is_refused_alike_by_the_command_and_the_models_page(
        qtbot: QtBot, window: MainWindow, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ws = _unlabelled_workspace(tmp_path / "ws")
    checkpoint = tmp_path / "net.pt"
    torch.jit.script(torch.nn.Linear(4, 3)).save(str(checkpoint))
    refused = cli_error(capsys, "model", "add", "-w", str(ws), "--name", "net", "--path", str(checkpoint),
                        "--input-shape", "0,28,28", code=2)
    rule = "--input-shape: expected positive integers like 1,28,28, got '0,28,28'"
    assert refused == f"{rule} (see 'embridge model add --help')"  # a usage error, exit status 2
    assert window.ctx.open_workspace(ws)
    page = window.show_page("models")
    page.path.setText(str(checkpoint))
    page.name.setText("net")
    page.input_shape.setText("0,28,28")
    page.add_from_form()
    qtbot.waitUntil(lambda: bool(error_dialogs()), timeout=10_000)
    wait_for_jobs(qtbot, window)
    (dialog,) = error_dialogs()
    assert dialog.message == rule.replace("--input-shape", "Input shape")  # the same rule, the form's field
    close_error_dialogs()
    assert [m["name"] for m in window.ctx.ws.models()] == ["old", "new"]  # nothing was added by either


def test_a_method_the_pair_cannot_train_is_refused_alike_by_the_command_and_the_train_page(
        qtbot: QtBot, window: MainWindow, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ws = _unlabelled_workspace(tmp_path / "ws")
    no_labels = cli_error(capsys, "train", "-w", str(ws), "--method", "bct", "--device", "cpu")
    assert no_labels == "models: BCT head needs labelled items; this workspace has none"
    alias = cli_error(capsys, "train", "-w", str(ws), "--method", "oca", "--device", "cpu")  # bt2 by another name
    assert alias == cli_error(capsys, "train", "-w", str(ws), "--method", "bt2", "--device", "cpu")
    assert alias.endswith("needs labelled items; this workspace has none")
    bridges = {kind: cli_error(capsys, "train", "-w", str(ws), "--method", kind, "--device", "cpu")
               for kind in ("fusion", "cascade")}  # recorded as failed runs after their data was read before
    assert bridges["fusion"].startswith("models: Fusion (old + mapped new query) chooses its α on dev queries with "
                                        "judged documents or labels, and this workspace has neither")
    assert "chooses its K on dev queries" in bridges["cascade"]
    same = cli_error(capsys, "train", "-w", str(ws), "--method", "affine", "--old", "new", "--new", "new", code=2)
    assert same == ("--old/--new: old and new model are both 'new'; choose two different models (see 'embridge "
                    "train --help')")
    with Workspace.open(ws) as opened:
        assert opened.runs("train") == []  # refused before any run was recorded
    assert window.ctx.open_workspace(ws)
    train = window.show_page("train")
    train.select_method("bct")
    assert train.requirement_problems("bct") == [no_labels.removeprefix("models: ")]
    assert not train.train_button.isEnabled()
    for kind, refused in bridges.items():
        train.select_method(kind)
        assert train.requirement_problems(kind) == [refused.removeprefix("models: ")]
        assert not train.train_button.isEnabled()
    train.new_model.setCurrentText("new")
    train.old_model.setCurrentText("new")
    train.select_method("affine")
    assert train.requirement_problems("affine") == [
        same.removeprefix("--old/--new: ").removesuffix(" (see 'embridge train --help')")]
    assert not train.train_button.isEnabled()
    train.old_model.setCurrentText("old")
    train.select_method("affine")
    assert train.requirement_problems("affine") == [] and train.train_button.isEnabled()
    assert requirement_problems("bct", {"name": "a", "dim": 4}, {"name": "b", "dim": 8}, labelled_items=3) == []
    assert requirement_problems("fusion", {"name": "a", "dim": 4}, {"name": "b", "dim": 8}, 0, judged=True) == []


def test_a_classifier_head_on_one_label_is_refused_before_a_run_is_recorded(
        qtbot: QtBot, window: MainWindow, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """bct and bt2 on items that all carry one label got past the check (labels exist) and failed inside the
    fit, leaving a failed run and its folds in the workspace."""
    ws = _unlabelled_workspace(tmp_path / "ws", label="a")
    before = (ws / "embridge.db").read_bytes()
    one = cli_error(capsys, "train", "-w", str(ws), "--method", "bct", "--device", "cpu")
    assert one == ("models: BCT head trains a classifier and needs at least two classes; every labelled item of "
                   "this workspace has the same label")
    assert cli_error(capsys, "train", "-w", str(ws), "--method", "bt2", "--device", "cpu").endswith(
        "needs at least two classes; every labelled item of this workspace has the same label")
    with Workspace.open(ws) as opened:
        assert opened.runs() == [] and opened.folds() == {}
    assert (ws / "embridge.db").read_bytes() == before
    assert window.ctx.open_workspace(ws)
    train = window.show_page("train")
    train.select_method("bct")
    assert train.requirement_problems("bct") == [one.removeprefix("models: ")] and not train.train_button.isEnabled()


def test_model_list_and_the_models_page_give_the_same_pair_warnings(
        qtbot: QtBot, window: MainWindow, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ws = _unlabelled_workspace(tmp_path / "ws")
    assert main(["model", "list", "-w", str(ws), "--json"]) == 0
    out, err = capsys.readouterr()
    warnings = json.loads(out)["warnings"]
    assert len(warnings) == 1 and warnings[0].startswith("Dimensions differ: old gives 8-d vectors, new 12-d.")
    assert err == f"warning: {warnings[0]}\n"  # with --json a person still sees it (it reached only the JSON)
    assert warnings[0].endswith("every training method learns a layer between the two widths.")  # not "the Train page"
    from embridge.core.adapters.registry import METHODS

    assert not any(info.equal_dims for info in METHODS.values())  # what the warning says
    assert main(["model", "list", "-w", str(ws)]) == 0
    assert f"warning: {warnings[0]}" in capsys.readouterr().out
    assert window.ctx.open_workspace(ws)
    page = window.show_page("models")
    assert page.warnings.text() == "\n".join(f"⚠ {w}" for w in warnings)
