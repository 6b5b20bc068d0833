"""The Train page: the call an untouched form makes, every number with its own protocol, nDCG with
judgments, what a cancelled run says, a layout that clips nothing, and a live plot that never blocks."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from app_fixtures import error_dialogs, no_threads_left, wait_for_jobs, window
from PySide6.QtCore import QCoreApplication, QPoint, QRect
from PySide6.QtWidgets import QTextBrowser, QWidget
from pytestqt.qtbot import QtBot

from embridge.app.main_window import MainWindow
from embridge.app.pages.train_result import result_text
from embridge.core.formatting import format_share as pct

__all__ = ["no_threads_left", "window"]
pytestmark = pytest.mark.usefixtures("no_threads_left")


def cli_settings(argv: list[str]) -> dict[str, Any]:
    """The settings ``embridge train`` records for this command line (what ``cmd_train`` passes)."""
    from embridge.core.cli.main import build_parser
    from embridge.core.cli.train_cmds import parse_settings

    args = build_parser().parse_args(argv)
    return {"seed": args.seed, **parse_settings(args), "device": args.device}


def summary_of(run: dict[str, Any]) -> dict[str, Any]:
    """What ``train_run`` returned for ``run``, from its record."""
    return {**run["metrics"], "run_id": run["id"], "method": run["method"], "status": run["status"],
            "duration_s": run["duration_s"]}


def test_untouched_auto_form_makes_the_cli_call_and_cancel_says_so(qtbot: QtBot, window: MainWindow,
                                                                   demo_copy: Path) -> None:
    window.ctx.open_workspace(demo_copy)
    train = window.show_page("train")
    train.select_method("auto")
    assert not train.form_note.isHidden() and "own defaults" in train.form_note.text()
    assert train.form.changed() == {}
    train.train_from_form()
    assert train.job is not None
    qtbot.waitUntil(lambda: bool(train.live.table()), timeout=120_000)  # it is training
    train.cancel()
    wait_for_jobs(qtbot, window, timeout_ms=120_000)
    assert not error_dialogs()
    run = window.ctx.ws.runs("train")[-1]
    assert run["config"]["settings"] == cli_settings(["train", "-w", str(demo_copy), "--method", "auto"])
    assert run["status"] == "cancelled"
    text = train.result_label.text()
    assert text.startswith("Training cancelled") and "stops early after" not in text
    stored = [a for a in window.ctx.ws.adapters() if a["run_id"] == run["id"]]
    assert ("No layer was stored" in text) == (not stored)
    assert (f"Run {run['id']} is recorded as cancelled" in text) == bool(stored)


def test_changed_fields_are_passed_and_new_new_names_its_sample(qtbot: QtBot, window: MainWindow,
                                                               demo_copy: Path) -> None:
    window.ctx.open_workspace(demo_copy)
    train = window.show_page("train")
    train.select_method("auto")
    train.form.editor("lr").setValue(0.01)
    assert train.form.changed() == {"lr": 0.01}
    train.select_method("lowrank")
    assert train.form_note.isHidden()
    train.form.editor("epochs").setValue(2)
    train.form.editor("rank").setValue(8)
    train.train_from_form()
    wait_for_jobs(qtbot, window, timeout_ms=120_000)
    assert not error_dialogs()
    run = window.ctx.ws.runs("train")[-1]
    assert run["config"]["settings"] == cli_settings(
        ["train", "-w", str(demo_copy), "--method", "lowrank", "--epochs", "2", "--set", "rank=8"])

    metrics, text = run["metrics"], train.result_label.text()
    new_new, old_old = metrics["protocols"]["new/new"]["text"], metrics["protocols"]["old/old"]["text"]
    assert "evaluation sample" in new_new and "evaluation sample" not in old_old
    # new/new's own floor, old/old on its sample, is listed beside it under the sample's protocol
    assert (f"new/new top-1 {metrics['new_new_top1']:.3f}, old/old top-1 on this sample "
            f"{metrics['old_old_sample_top1']:.3f}, upgraded top-1 on this sample "
            f"{metrics['upgraded_sample_top1']:.3f}, gain retained {pct(metrics['gain_retained'])} ({new_new})") in text
    assert f"old/old top-1 {metrics['old_old_top1']:.3f}" in text and f"({old_old})" in text
    assert f"whole gallery ({metrics['protocols']['old/old']['n_gallery']} items)" not in new_new
    from embridge.core.cli.train_cmds import _train_text

    cli = _train_text(summary_of(run) | {"adapter_id": 1, "adapter_path": "x", "kind": metrics["kind"]})
    assert f"new/new measured on {new_new}" in cli and f"measured on {old_old} (old/old and upgraded)" in cli


@pytest.fixture(scope="module")
def text_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from embridge.core.demo_text import build_text_demo

    path = tmp_path_factory.mktemp("text") / "ws"
    build_text_demo(path).close()
    return path


def test_judged_result_shows_ndcg_and_mrr_with_their_protocol(qtbot: QtBot, window: MainWindow,
                                                             text_demo: Path) -> None:
    window.ctx.open_workspace(text_demo)
    train = window.show_page("train")
    train.select_method("procrustes")
    train.train_from_form()
    wait_for_jobs(qtbot, window, timeout_ms=120_000)
    assert not error_dialogs()
    metrics = window.ctx.ws.runs("train")[-1]["metrics"]
    text = train.result_label.text()
    upgraded = metrics["heldout_protocol"]
    assert f"upgraded nDCG@10 {metrics['ndcg@10']:.3f}" in text and f"upgraded MRR@10 {metrics['mrr@10']:.3f}" in text
    assert f"old/old nDCG@10 {metrics['old_old_ndcg@10']:.3f}" in text
    assert f"new/new nDCG@10 {metrics['new_new_ndcg@10']:.3f}" in text
    upgraded_part = text[text.index("upgraded top-1"):]
    assert upgraded_part.index("upgraded MRR@10") < upgraded_part.index(f"({upgraded})")
    assert train.live.table() and train.live.metric_name == "judged_ndcg@10"  # what the live plot was named by


def _rect(widget: QWidget, page: QWidget) -> QRect:
    return QRect(widget.mapTo(page, QPoint(0, 0)), widget.size())


@pytest.mark.parametrize("size", ["large", "minimum"])
def test_layout_clips_and_overlaps_nothing(qtbot: QtBot, window: MainWindow, demo_copy: Path, size: str) -> None:
    from embridge.core.store import Workspace
    from embridge.core.train.runs import train_run

    with Workspace.open(demo_copy) as ws:
        train_run(ws, "procrustes")
    if size == "large":
        window.resize(1400, 900)
    else:
        window.resize(window.minimumSize())
    window.ctx.open_workspace(demo_copy)
    train = window.show_page("train")
    for method in ("mlp", "auto"):
        train.select_method(method)
        qtbot.wait(50)
        buttons = [_rect(b, train) for b in (train.train_button, train.cancel_button)]
        settings = _rect(train.settings_scroll, train)
        assert not any(b.intersects(settings) for b in buttons)
        label = train.protocol_label
        qtbot.waitUntil(lambda: train.pair_describer.shown_for is not None, timeout=30_000)  # described in the background
        assert label.text()  # the whole sentence, once the layout has taken the new text in (a queued event)
        qtbot.waitUntil(lambda shown=label: shown.height() >= shown.heightForWidth(shown.width()), timeout=5_000)
    summary = summary_of(window.ctx.ws.runs("train")[-1])
    train._trained(summary)
    assert isinstance(train.result_label, QTextBrowser)
    assert train.result_label.toPlainText() == result_text(summary)
    plot, result, table = (_rect(w, train) for w in (train.plot, train.result_label, train.runs_table))
    assert not plot.intersects(result) and not result.intersects(table)


def test_rapid_progress_redraws_a_bounded_number_of_times_off_the_gui_thread(qtbot: QtBot, window: MainWindow,
                                                                            demo_copy: Path) -> None:
    window.ctx.open_workspace(demo_copy)
    train = window.show_page("train")
    plot = train.plot
    start = time.monotonic()
    for step in range(300):  # far more reports than a training loop sends
        epoch = 1 + step // 10
        train._progress(step, 300, {"epoch": epoch, "loss": 1.0 / (step + 1), "last_epoch": epoch - 1,
                                    "last_train_loss": 1.0 / epoch, "last_val_metric": 0.5 + epoch / 100,
                                    "last_lr": 0.001, "patience": 8, "epochs_without_gain": 0})
    busy = time.monotonic() - start
    qtbot.waitUntil(lambda: plot.draws >= 1 and not plot._busy and not plot._timer.isActive(), timeout=30_000)
    elapsed = time.monotonic() - start
    assert busy < 2.0  # the reports themselves never drew
    assert 1 <= plot.draws <= 2 + elapsed * 1000 / plot._timer.interval()
    assert plot.image.isVisible() and not plot.image.pixmap().isNull()
    plot.flush()
    assert plot.figure is None  # nothing pending: the last rows are on screen already
    train.reset()
    assert not plot._timer.isActive() and plot.image.isHidden()


def test_a_recorded_runs_curves_are_built_and_rendered_off_the_gui_thread(qtbot: QtBot, window: MainWindow,
                                                                         demo_copy: Path) -> None:
    """Choosing a trained run drew its recorded curves on the GUI thread (216-516 ms a figure); the
    recipe now runs on a pool thread and a resize renders the image again at the new size."""
    import threading

    from embridge.core.report.figures import training_curves

    window.ctx.open_workspace(demo_copy)
    train = window.show_page("train")
    plot = train.plot
    built_on: list[threading.Thread] = []
    epochs = [{"epoch": e, "train_loss": 1.0 / (e + 1), "val_metric": 0.5 + e / 20} for e in range(5)]

    def recipe() -> Any:
        built_on.append(threading.current_thread())
        return training_curves(epochs)

    plot.schedule(recipe)
    qtbot.waitUntil(lambda: plot.image_source == "recorded" and not plot._busy, timeout=30_000)
    assert built_on and all(t is not threading.main_thread() for t in built_on)
    assert plot.figure is None and plot.image_axes >= 2  # no canvas drawn here; the loss and the metric
    first = plot.image.pixmap().size()
    window.resize(window.width() + 160, window.height() + 120)
    qtbot.waitUntil(lambda: len(built_on) == 2 and not plot._busy and plot.image.pixmap().size() != first,
                    timeout=30_000)
    assert all(t is not threading.main_thread() for t in built_on)


def test_the_plot_shows_the_selected_runs_curves_not_the_latest_runs(qtbot: QtBot, window: MainWindow,
                                                                     demo_copy: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Selecting an older run changed the sentence but the plot kept drawing the latest run's curves."""
    from embridge.core.report import report_export
    from embridge.core.store import Workspace
    from embridge.core.train.runs import train_run

    with Workspace.open(demo_copy) as ws:
        first = train_run(ws, "mlp", device="cpu", config={"epochs": 2})["run_id"]
        train_run(ws, "mlp", device="cpu", config={"epochs": 4})
        train_run(ws, "procrustes", device="cpu", config={"whiten": False})
        epochs = {int(r["id"]): len(r["epochs"]) for r in ws.runs("train")}
    drawn: list[int] = []
    real = report_export.report_figure_recipes

    def spy(report: Any) -> Any:
        drawn.append(len(report["run"]["epochs"]))
        return real(report)

    monkeypatch.setattr(report_export, "report_figure_recipes", spy)
    window.ctx.open_workspace(demo_copy)
    train = window.show_page("train")
    plot = train.plot
    rows = {int(train.runs_table.item(r, 0).text()): r for r in range(train.runs_table.rowCount())}
    train.runs_table.selectRow(rows[first])
    qtbot.waitUntil(lambda: bool(drawn) and drawn[-1] == epochs[first] and not plot._busy
                    and plot.image_source == "recorded", timeout=30_000)
    assert str(first) in train.result_label.toPlainText()
    second = sorted(epochs)[1]
    assert len({epochs[first], epochs[second], epochs[max(epochs)]}) == 3  # each run's curves tell it apart
    train.runs_table.selectRow(rows[second])
    qtbot.waitUntil(lambda: drawn[-1] == epochs[second] and not plot._busy, timeout=30_000)
    assert str(second) in train.result_label.toPlainText()


def test_pages_that_import_torch_wait_for_the_start_up_warm_up_instead_of_freezing(
        qtbot: QtBot, window: MainWindow, demo_copy: Path) -> None:
    """Opened in the first second, the Train page's refresh imported torch's modules on the GUI thread while
    the warm-up held the import lock: the window froze for up to 1 s (Plan and Reports alike)."""
    from embridge.core.store import Workspace
    from embridge.core.train.runs import train_run

    with Workspace.open(demo_copy) as ws:
        train_run(ws, "procrustes", device="cpu")
    window.ctx.open_workspace(demo_copy)
    window.ctx.loading_libraries = True  # as while the warm-up job runs
    for key in ("train", "plan", "reports"):
        page = window.show_page(key)
        assert page._stack.currentWidget() is page.loading, key
    train = window.pages["train"]
    assert train.runs_table.rowCount() == 0
    models = window.show_page("models")  # a page that imports nothing heavy shows at once
    assert models._stack.currentWidget() is models.body
    window.show_page("train")
    window.ctx._libraries_done()  # the warm-up ended: the visible page refreshes
    assert train._stack.currentWidget() is train.body and train.runs_table.rowCount() == 1


def test_another_workspace_shows_nothing_of_the_previous_ones_runs_or_training(qtbot: QtBot, window: MainWindow,
                                                                              demo_copy: Path, tmp_path: Path) -> None:
    """With a run selected, opening a workspace without runs showed the previous workspace's curves and sentence
    (emptying the table re-selected its latest run); a training still running there took over the new page."""
    from embridge.core.store import Workspace
    from embridge.core.train.runs import train_run

    with Workspace.open(demo_copy) as ws:
        for epochs in (2, 3):
            train_run(ws, "mlp", device="cpu", config={"epochs": epochs})
    window.ctx.open_workspace(demo_copy)
    train = window.show_page("train")
    train.runs_table.selectRow(1)
    job = train.train("mlp", "old-mlp", "new-cnn", device="cpu", config={"epochs": 400, "patience": 400})
    assert job is not None
    qtbot.waitUntil(lambda: "epoch" in train.result_label.toPlainText(), timeout=60_000)
    assert window.ctx.open_workspace(tmp_path / "empty", create=True)
    for _ in range(20):  # the other workspace's training reports progress meanwhile
        QCoreApplication.processEvents()
        time.sleep(0.05)
    assert train.runs_table.rowCount() == 0 and train.result_label.toPlainText() == ""
    assert train.plot.image_source is None and not train.plot._pending_work()
    job.cancel()
    qtbot.waitUntil(lambda: job.outcome is not None, timeout=60_000)
    QCoreApplication.processEvents()
    assert train.result_label.toPlainText() == "" and train.cancel_button.isEnabled() is False


def test_a_heads_held_out_text_lists_its_ceiling_under_the_samples_protocol() -> None:
    """A bct / bt2 run's protocols name head/head; the Train page looked its numbers up and raised KeyError."""
    from embridge.app.pages.train_result import heldout_text

    summary = {"old_old_top1": 0.5, "new_new_top1": 0.6, "ceiling_top1": 0.62, "upgraded_top1": 0.52,
               "old_old_sample_top1": 0.55, "upgraded_sample_top1": 0.57,
               "protocols": {"old/old": {"text": "A"}, "new→old": {"text": "A"}, "new/new": {"text": "B"},
                             "head/head": {"text": "B"}}}
    assert heldout_text(summary) == ("old/old top-1 0.500, upgraded top-1 0.520 (A); new/new top-1 0.600, old/old top-1 "
                                     "on this sample 0.550, upgraded top-1 on this sample 0.570, head/head top-1 0.620 (B)")


def test_a_finished_run_replaces_its_live_points_with_its_recorded_curves(
        qtbot: QtBot, window: MainWindow, demo_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A closed-form sweep's live points are the last setting it tried; once it ends, the page draws
    the figure per setting that the run recorded (and its report draws), not that last point."""
    window.ctx.open_workspace(demo_copy)
    train = window.show_page("train")
    drawn: list[str] = []
    live, recorded = train.plot.schedule_rows, train.plot.schedule
    monkeypatch.setattr(train.plot, "schedule_rows", lambda *a, **k: (drawn.append("live"), live(*a, **k))[1])
    monkeypatch.setattr(train.plot, "schedule", lambda *a, **k: (drawn.append("recorded"), recorded(*a, **k))[1])
    train.select_method("procrustes")
    train.train_from_form()
    wait_for_jobs(qtbot, window, timeout_ms=120_000)
    assert not error_dialogs()
    assert "live" in drawn and drawn[-1] == "recorded", drawn
    assert window.ctx.ws.runs("train")[-1]["epochs"]  # the per-setting rows that figure draws


def test_showing_the_train_page_stores_no_folds_so_a_seeded_run_matches_the_cli(
        qtbot: QtBot, window: MainWindow, demo_copy: Path, tmp_path: Path) -> None:
    """Describing the pair choices drew the folds with seed 0 and stored them, so a later training with
    seed 7 (from the page or the command line) ran on another split than `embridge train --seed 7` gives."""
    import shutil

    from embridge.core.cli.main import main
    from embridge.core.store import Workspace

    twin = tmp_path / "twin"
    shutil.copytree(demo_copy, twin)
    window.ctx.open_workspace(demo_copy)
    train = window.show_page("train")
    train.refresh()
    qtbot.waitUntil(lambda: train.pair_describer.shown_for is not None, timeout=30_000)  # the protocol was described
    wait_for_jobs(qtbot, window)
    window.ctx.close_workspace()
    for path in (demo_copy, twin):
        with Workspace.open(path) as ws:
            assert not any(len(v) for v in ws.fold_ids().values())
        assert main(["train", "--workspace", str(path), "--method", "procrustes", "--seed", "7", "--json"]) == 0
    with Workspace.open(demo_copy) as a, Workspace.open(twin) as b:
        assert {k: v.tolist() for k, v in a.fold_ids().items()} == {k: v.tolist() for k, v in b.fold_ids().items()}
        assert a.runs("train")[-1]["metrics"]["upgraded_top1"] == b.runs("train")[-1]["metrics"]["upgraded_top1"]


def test_a_refused_training_names_the_forms_field(qtbot: QtBot, window: MainWindow, demo_copy: Path) -> None:
    """A model renamed from the command line before Train was pressed: the dialog said '--new: no model
    named ...', a flag this window does not show."""
    from app_fixtures import close_error_dialogs

    window.ctx.open_workspace(demo_copy)
    train = window.show_page("train")
    train.train("procrustes", "old-mlp", "gone-model")
    wait_for_jobs(qtbot, window)
    qtbot.waitUntil(lambda: bool(error_dialogs()), timeout=10_000)
    (dialog,) = error_dialogs()
    assert dialog.message.startswith("New model: no model named 'gone-model'") and "--new" not in dialog.message
    close_error_dialogs()


def test_the_protocol_of_another_pair_is_never_left_on_show(qtbot: QtBot, window: MainWindow, demo_copy: Path) -> None:
    """Described in the background, the label kept the previous pair's (or workspace's) protocol until the new
    description arrived; it says the description is being worked out instead."""
    window.ctx.open_workspace(demo_copy)
    train = window.show_page("train")
    qtbot.waitUntil(lambda: train.pair_describer.shown_for is not None, timeout=30_000)
    first = train.protocol_label.text()
    train.old_model.setCurrentText("new-cnn")
    train.new_model.setCurrentText("old-mlp")
    train.old_model.activated.emit(train.old_model.currentIndex())
    assert train.protocol_label.text().startswith("Working out") and train.pairs.count() == 0
    qtbot.waitUntil(lambda: train.pair_describer.shown_for == (str(window.ctx.ws.root), "new-cnn", "old-mlp"), timeout=30_000)
    assert train.protocol_label.text() and not train.protocol_label.text().startswith("Working out")
    assert train.protocol_label.text() != first or train.pairs.count() > 0
    wait_for_jobs(qtbot, window)


def test_the_page_keeps_describing_its_own_run_when_the_command_line_records_another(
        qtbot: QtBot, window: MainWindow, demo_copy: Path) -> None:
    """A run the command line recorded while the page trained took over its sentence at the next refresh
    (the latest run), though the page had just trained another."""
    from embridge.core.store import Workspace
    from embridge.core.train.runs import train_run

    window.ctx.open_workspace(demo_copy)
    train = window.show_page("train")
    train.select_method("procrustes")
    train.train_from_form()
    wait_for_jobs(qtbot, window, timeout_ms=120_000)
    own = train.result_label.text()
    (ours,) = window.ctx.ws.runs("train")
    with Workspace.open(demo_copy) as ws:  # the command line, meanwhile
        train_run(ws, "affine", device="cpu")
    train.refresh()  # what the database watch does
    assert train._current_run()["id"] == ours["id"] and train.result_label.text() == own
    train.runs_table.selectRow(0)  # the user picks the newer run: it is described
    assert train._current_run()["method"] == "affine" and train.result_label.text() != own
