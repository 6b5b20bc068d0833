"""The whole workflow through the widgets on a copy of the demo workspace."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from app_fixtures import close_error_dialogs, error_dialogs, no_threads_left, wait_for_jobs, window
from PIL import Image
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from pytestqt.qtbot import QtBot

from embridge.app import dialogs
from embridge.app.main_window import MainWindow
from embridge.app.pages.plan_page import CHOSEN
from embridge.app.pages.report_widgets import FAIL_COLOUR, PASS_COLOUR
from embridge.core.store import Workspace

__all__ = ["no_threads_left", "window"]
pytestmark = pytest.mark.usefixtures("no_threads_left")


def click(qtbot: QtBot, button: object) -> None:
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def open_through_page(qtbot: QtBot, win: MainWindow, path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    page = win.show_page("workspace")
    monkeypatch.setattr(dialogs, "choose_directory", lambda *a, **k: str(path))
    click(qtbot, page.open_button)
    assert win.ctx.ws is not None


def write_digit_folder(root: Path, count: int) -> Path:
    rng = np.random.default_rng(0)
    for n in range(count):
        folder = root / str(n % 2)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8), mode="L").save(folder / f"x{n}.png")
    return root


def test_open_models_import_embed_train_report_plan_export(qtbot: QtBot, window: MainWindow, demo_copy: Path,
                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    open_through_page(qtbot, window, demo_copy, monkeypatch)
    workspace = window.pages["workspace"]
    assert "old-mlp" in workspace.summary.toPlainText() and "new-cnn" in workspace.summary.toPlainText()
    settings = json.loads((Path(os.environ["EMBRIDGE_CONFIG_DIR"]) / "settings.json").read_text())
    assert settings["recent_workspaces"][0] == str(demo_copy.resolve())
    assert window.workspace_label.text().endswith(str(demo_copy.resolve()))

    # Models: the demo pair differs in dimension; add an embeddings-only model through the form.
    models = window.show_page("models")
    assert models.table.rowCount() == 2
    assert "Dimensions differ: old-mlp gives 32-d vectors, new-cnn 64-d" in models.warnings.text()
    with Workspace.open(demo_copy) as ws:
        keys = [it["key"] for it in ws.items("query")]
    from embridge.core.models import save_vectors_model

    npz = save_vectors_model(tmp_path / "query-vectors.npz", keys, np.random.default_rng(1).normal(size=(len(keys), 5)))
    models.path.setText(str(npz))
    assert models.name.text() == "query-vectors"
    models.role.setCurrentText("other")
    click(qtbot, models.add_button)
    wait_for_jobs(qtbot, window)
    assert models.table.rowCount() == 3
    models.table.selectRow(2)
    details = models.spec_view.toPlainText()
    assert "kind: vectors\n" in details and "dimensions: 5\n" in details
    spec = json.loads(details.split("spec:\n", 1)[1])
    assert spec["kind"] == "vectors" and spec["dim"] == 5

    # Gallery: import a small image folder as a new split, then embed it with the old model.
    gallery = window.show_page("gallery")
    sets_before = gallery.sets_table.rowCount()
    gallery.import_path.setText(str(write_digit_folder(tmp_path / "extra", 6)))
    gallery.import_split.setCurrentText("extra")
    click(qtbot, gallery.import_button)
    wait_for_jobs(qtbot, window)
    assert "extra: 6" in gallery.counts_label.text()
    gallery.embed_model.setCurrentText("old-mlp")
    gallery.embed_split.setCurrentText("extra")
    gallery.embed_sample.setValue(4)
    click(qtbot, gallery.embed_button)
    wait_for_jobs(qtbot, window)
    assert gallery.sets_table.rowCount() == sets_before + 1
    embeds = [r for r in window.ctx.ws.runs("embed") if r["method"] == "old-mlp"]
    assert embeds and embeds[-1]["status"] == "completed" and embeds[-1]["metrics"]["count"] == 4
    assert gallery.embed_result.text().startswith("Embedded 4 items with old-mlp (dim ")  # the command's sentence
    assert not error_dialogs()

    # Train: a trainable method for a few epochs, with the live plot.
    train = window.show_page("train")
    assert [train.old_model.currentText(), train.new_model.currentText()] == ["old-mlp", "new-cnn"]
    train.select_method("lowrank")
    assert "Low-rank" in train.explain.text() and train.train_button.isEnabled()
    train.form.editor("epochs").setValue(2)
    train.form.editor("rank").setValue(8)
    click(qtbot, train.train_button)
    assert train.cancel_button.isEnabled() and not train.train_button.isEnabled()
    wait_for_jobs(qtbot, window)
    assert not error_dialogs()
    assert "upgraded top-1" in train.result_label.text()
    assert train.live.table()  # live rows arrived while it trained
    # the run's recorded curves replace the live ones, rendered off the GUI thread like them
    qtbot.waitUntil(lambda: train.plot.image_source == "recorded", timeout=30_000)
    assert train.plot.image_axes == 3 and train.plot.figure is None  # loss (+ lr) and validation, no canvas
    assert train.runs_table.item(0, 1).text() == "lowrank" and train.runs_table.item(0, 2).text() == "completed"

    # Reports: build the run's report; the table colours the core's verdicts, flips show items.
    reports = window.show_page("reports")
    assert "lowrank" in reports.run_combo.currentText()
    reports.n_boot.setValue(200)
    click(qtbot, reports.build_button)
    wait_for_jobs(qtbot, window)
    assert not error_dialogs()
    report = reports.report
    assert report is not None and report.run["id"] == int(train.runs_table.item(0, 0).text())
    upgraded = report.upgraded_cell
    assert upgraded == "new→old"
    headers = [reports.metrics.horizontalHeaderItem(c).text() for c in range(reports.metrics.columnCount())]
    # the demo's new model embedded a sample of the gallery: new/new's column says it searched only that
    assert headers[1:4] == [c if c in ("old/old", upgraded) else f"{c} (on the sample)" for c in list(report.cells)[:3]]
    assert f"{upgraded} vs old/old" in headers
    verdict_col = headers.index(f"{upgraded} vs old/old")
    verdicts = {reports.metrics.item(r, 0).text(): reports.metrics.item(r, verdict_col).text()
                for r in range(reports.metrics.rowCount())}
    assert verdicts["top1"] == ("pass" if report.comparison["top1"]["passes"] else "fail")
    colour = reports.metrics.item(0, headers.index(upgraded)).background().color()
    assert colour == (PASS_COLOUR if report.comparison["top1"]["passes"] else FAIL_COLOUR)
    reports.tabs.setCurrentWidget(reports.figure_tabs)
    assert {"cells", "recall", "flips", "backfill", "training"} <= set(reports.plots)
    for plot in reports.plots.values():  # each tab's figure is built and drawn off the GUI thread when shown
        reports.figure_tabs.setCurrentWidget(plot)
        qtbot.waitUntil(lambda plot=plot: plot.image_source == "recorded" and plot.image_axes >= 1, timeout=30_000)
        assert plot.figure is None
    n_flips = report.flipped_queries["n_negative"] + report.flipped_queries["n_positive"]
    assert len(reports.flips.entries) == min(n_flips, 2 * 500) > 0
    first = reports.flips.entries[0]
    assert first["query"]["path"].endswith(".png") and len(first["old"]) == 5  # real workspace items
    reports.tabs.setCurrentWidget(reports.flips)
    reports.flips.kind.setCurrentIndex(0 if reports.flips.visible_entries() else 1)
    assert not reports.flips.query_view.pixmap().isNull()  # the query's thumbnail

    # Plan: options with costs, the recommendation highlighted, the report's backfill curves.
    plan_page = window.show_page("plan")
    click(qtbot, plan_page.plan_button)
    wait_for_jobs(qtbot, window)
    assert not error_dialogs()
    plan = plan_page.plan
    assert plan is not None and plan_page.options.rowCount() == len(plan.options)
    chosen = [o["name"] for o in plan.options].index(plan.recommendation)
    assert plan_page.options.item(chosen, 0).background().color() == CHOSEN
    assert plan.reason in plan_page.summary.text()
    # the backfill curves are built and drawn on a pool thread (on the GUI thread they took 220-285 ms)
    qtbot.waitUntil(lambda: plan_page.plot.image_source == "recorded", timeout=30_000)
    assert plan_page.plot.figure is None and plan_page.plot.image_axes >= 1

    # Export: build a bundle of that run, verify it and open its folder.
    export = window.show_page("export")
    assert export.run_combo.currentText().startswith("run ") and "lowrank" in export.run_combo.currentText()
    out = tmp_path / "bundle.zip"
    export.out.setText(str(out))
    click(qtbot, export.build_button)
    wait_for_jobs(qtbot, window)
    assert out.is_file() and export.table.rowCount() == 1
    export.table.selectRow(0)
    assert "adapter: lowrank" in export.details.toPlainText()
    assert f"report: {report.report_id}" in export.details.toPlainText()
    click(qtbot, export.verify_button)
    wait_for_jobs(qtbot, window)
    assert export.details.toPlainText().startswith(f"✔ {out.resolve()} verified")
    window.show_page("plan")
    export = window.show_page("export")  # shown again: the result stays with the bundle it checked
    assert export.details.toPlainText().startswith(f"✔ {out.resolve()} verified")
    os.utime(out, ns=(out.stat().st_atime_ns, out.stat().st_mtime_ns + 10**9))  # the file changed since
    window.show_page("plan")
    export = window.show_page("export")
    assert not export.details.toPlainText().startswith("✔")
    opened: list[str] = []
    monkeypatch.setattr(dialogs, "open_path", lambda path: opened.append(path) or True)
    click(qtbot, export.open_button)
    assert opened == [str(out.resolve().parent)]
    assert not error_dialogs()


def test_a_corrupt_checkpoint_shows_an_error_dialog_not_a_crash(qtbot: QtBot, window: MainWindow, demo_copy: Path,
                                                               tmp_path: Path) -> None:
    window.ctx.open_workspace(demo_copy)
    models = window.show_page("models")
    broken = tmp_path / "broken.pt"
    broken.write_bytes(np.random.default_rng(0).bytes(4096))
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(broken))])
    drop = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    models.dropEvent(drop)  # what dropping the file on the page delivers
    qtbot.waitUntil(lambda: bool(error_dialogs()), timeout=30_000)
    (dialog,) = error_dialogs()
    assert dialog.windowTitle() == "Add model broken failed"
    assert dialog.message.startswith(f"{broken}:")
    assert dialog.details is None  # a user error, explained in one line
    close_error_dialogs()
    wait_for_jobs(qtbot, window)
    assert models.table.rowCount() == 2  # nothing was registered
    assert window.isVisible()


def test_cancelling_training_from_the_train_page(qtbot: QtBot, window: MainWindow, demo_copy: Path) -> None:
    window.ctx.open_workspace(demo_copy)
    train = window.show_page("train")
    job = train.train("lowrank", "old-mlp", "new-cnn", "cpu", {"epochs": 100_000, "patience": 100_000})
    assert job is not None
    qtbot.waitUntil(lambda: job.done > 0, timeout=30_000)
    click(qtbot, train.cancel_button)
    wait_for_jobs(qtbot, window)
    assert job.outcome.status == "cancelled" and not error_dialogs()
    assert train.runs_table.item(0, 2).text() == "cancelled"
    assert train.train_button.isEnabled() and not train.cancel_button.isEnabled()


def test_build_demo_runs_the_core_builder_then_opens_the_result(qtbot: QtBot, window: MainWindow, tmp_path: Path,
                                                                demo_workspace_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    import embridge.core.demo

    calls: list[Path] = []

    def fake_build(path: Path, seed: int = 0, on_progress: object = None, should_stop: object = None) -> Workspace:
        calls.append(Path(path))  # the real builder trains two models: the session's demo stands in for it
        shutil.copytree(demo_workspace_path, path)
        return Workspace.open(path)

    monkeypatch.setattr(embridge.core.demo, "build_demo", fake_build)
    monkeypatch.setattr(dialogs, "choose_directory", lambda *a, **k: str(tmp_path / "demo"))
    page = window.show_page("workspace")
    click(qtbot, page.demo_button)
    # one build at a time: a second click started another on the same folder, which failed saying another
    # process was building it
    assert not page.demo_button.isEnabled()
    page.start_demo(tmp_path / "demo")
    wait_for_jobs(qtbot, window)
    assert calls == [tmp_path / "demo"] and page.demo_button.isEnabled()
    assert window.ctx.ws is not None and Path(window.ctx.ws.root) == tmp_path / "demo"


def test_train_page_explains_and_blocks_a_method_the_workspace_cannot_run(qtbot: QtBot, window: MainWindow,
                                                                          demo_copy: Path) -> None:
    window.ctx.open_workspace(demo_copy)
    train = window.show_page("train")
    train.select_method("bct")
    assert "Needs labels: yes" in train.explain.text() and train.train_button.isEnabled()
    train._overview["labelled_items"] = 0  # the same workspace, as if its items had no labels
    train.select_method("procrustes")
    train.select_method("bct")
    assert "BCT head needs labelled items; this workspace has none" in train.explain.text()
    assert not train.train_button.isEnabled()
    train.new_model.setCurrentText("old-mlp")
    train.select_method("affine")
    assert "old and new model are both &#x27;old-mlp&#x27;; choose two different models" in train.explain.text()
    assert not train.train_button.isEnabled()
    assert [train.form.editor(k) is not None for k in ("ridge_grid", "seed", "epochs")] == [True, True, False]
