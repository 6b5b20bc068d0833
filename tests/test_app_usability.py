"""What a new user trips over, through the widgets: where numbers come from, what the automatic
choice chose, stale pages, selections, counts, models, help, plots and layout."""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import pytest
from app_fixtures import close_error_dialogs, error_dialogs, no_threads_left, wait_for_jobs, window
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from pytestqt.qtbot import QtBot

from embridge.app import dialogs
from embridge.app.main_window import MIN_SIZE, MainWindow
from embridge.app.pages.plan_page import CHOSEN
from embridge.core.formatting import format_share
from embridge.core.report.number_source import source_of_report, source_of_run
from embridge.core.run_record import stated_protocol
from embridge.core.store import Workspace

__all__ = ["no_threads_left", "window"]
pytestmark = pytest.mark.usefixtures("no_threads_left")
FAST_AUTO = {"candidates": ["procrustes", "affine"]}


def click(qtbot: QtBot, button: object) -> None:
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def train_in_core(path: Path, method: str, config: dict | None = None) -> dict:
    from embridge.core.train.runs import train_run

    with Workspace.open(path) as ws:
        return train_run(ws, method, device="cpu", config=config)


def test_auto_choice_shows_winner_candidates_and_source_everywhere(qtbot: QtBot, window: MainWindow,
                                                                   demo_copy: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    window.ctx.open_workspace(demo_copy)
    train = window.show_page("train")
    train.select_method("auto")
    assert train.train(("auto"), "old-mlp", "new-cnn", "cpu", FAST_AUTO) is not None
    wait_for_jobs(qtbot, window)
    assert not error_dialogs()
    run = window.ctx.ws.runs("train")[-1]
    winner = run["metrics"]["kind"]
    scores = {c["kind"]: c["val_metric"] for c in run["metrics"]["candidates"]}
    assert winner in FAST_AUTO["candidates"] and set(scores) == set(FAST_AUTO["candidates"])
    assert scores[winner] == max(scores.values())
    header = [train.runs_table.horizontalHeaderItem(c).text() for c in range(train.runs_table.columnCount())]
    row = {h: train.runs_table.item(0, c).text() for c, h in enumerate(header)}
    assert row["Method"] == f"auto → {winner}"
    for kind, score in scores.items():
        assert f"{kind} {score:.3f}" in row["Candidates"]
    assert f"{winner} {scores[winner]:.3f} (chosen)" in row["Candidates"]
    assert f"{winner} won" in row["Note"]
    top1 = run["metrics"]["upgraded_top1"]
    source = source_of_run(run)
    protocol = run["metrics"]["protocols"]["old/old"]
    assert source.label() == run["metrics"]["heldout_protocol"]  # the CLI's "measured on" sentence, verbatim
    sample = run["metrics"]["protocols"]["new/new"]["n_gallery"]  # the demo's new/new searched its 600-item sample
    assert sample == 600 and protocol["n_gallery"] == 997
    assert row["Measured on"] == (f"{protocol['n_queries']} {protocol['query_set']} / 997 items; new/new 600 items, "
                                  "gain retained there")
    assert row["Pairs"] == run["metrics"]["pairs_used"] == "documents"  # the demo has no judged train queries
    tip = train.runs_table.item(0, header.index("Measured on")).toolTip()
    assert tip.startswith(source.label() + "; new/new (and the _sample numbers") and "(600 items)" in tip
    assert f"auto → {winner}" in train.result_label.text()
    assert f"upgraded top-1 {top1:.3f}" in train.result_label.text()
    columns = [train.runs_table.horizontalHeaderItem(c).text() for c in range(train.runs_table.columnCount())]
    assert train.runs_table.isColumnHidden(columns.index("Upgraded nDCG@10"))  # no judgments: top-1 decides
    # new/new searched the 600-item sample: gain retained is measured there and listed under its protocol
    sample_protocol = run["metrics"]["protocols"]["new/new"]["text"]
    assert f"gain retained {format_share(run['metrics']['gain_retained'])} ({sample_protocol})" in train.result_label.text()
    assert f"Validated on {run['metrics']['val_protocol']}" in train.result_label.text()
    picker = f"run {run['id']} · auto → {winner} · upgraded top-1 {top1:.3f} ({source.short()})"
    for key in ("reports", "plan", "export"):
        assert window.show_page(key).run_combo.currentText() == picker
    export = window.pages["export"]
    assert "Candidates (validation label top-1): " in export.run_info.text()
    assert f"upgraded top-1 {top1:.3f} ({source.label()})" in export.run_info.text()
    assert Path(export.out.text()).name.startswith(f"run{run['id']}-{winner}")

    # the report measures the run's test queries as training did: the same number, the same protocol
    reports = window.show_page("reports")
    reports.n_boot.setValue(100)
    click(qtbot, reports.build_button)
    wait_for_jobs(qtbot, window, 120_000)
    assert not error_dialogs()
    head = reports.report.headline
    assert head["upgraded_top1"] == top1 and source_of_report(reports.report).label() == source.label()
    assert f"Measured on: {source.label()}" in html.unescape(reports.verdict.text())
    assert f"upgraded top-1 {format_share(top1)}" in reports.verdict.text()  # as `embridge report` says it
    plan_page = window.show_page("plan")
    click(qtbot, plan_page.plan_button)
    wait_for_jobs(qtbot, window)
    assert not error_dialogs() and plan_page.plan is not None
    assert f"measured on {source.label()}" in html.unescape(plan_page.summary.text())
    # the command line's JSON carries the same numbers and the same protocol
    from embridge.core.cli.main import main

    capsys.readouterr()
    assert main(["runs", "--workspace", str(demo_copy), "--json"]) == 0
    listed = next(r for r in json.loads(capsys.readouterr().out)["runs"] if r["id"] == run["id"])
    assert listed["metrics"]["upgraded_top1"] == top1
    assert listed["metrics"]["improvement_ci"] == run["metrics"]["improvement_ci"]  # as README says runs gives it
    assert listed["metrics"]["heldout_protocol"] == stated_protocol(run["metrics"])  # as report.json states it
    assert listed["metrics"]["heldout_protocol"].startswith(source.label()) and listed["chosen"] == f"auto → {winner}"
    assert listed["models"] == {"old": "old-mlp", "new": "new-cnn"}  # the pair a chain's --runs must link
    # each cell with its own gallery: new/new searched the evaluation sample, the others the whole gallery
    protocols = listed["metrics"]["cell_protocols"]
    assert protocols["upgraded"] == protocols["old/old"] == source.label()
    assert "evaluation sample" in protocols["new/new"] and "whole gallery" not in protocols["new/new"]


def test_switching_workspaces_clears_every_page(qtbot: QtBot, window: MainWindow, demo_copy: Path,
                                                tmp_path: Path) -> None:
    train_in_core(demo_copy, "affine")
    window.ctx.open_workspace(demo_copy)
    train = window.show_page("train")
    assert train.runs_table.rowCount() == 1
    train._trained({"run_id": 1, "method": "affine", "status": "completed", "upgraded_top1": 0.5, "n_queries": 3})
    train.plot.flush()
    assert train.plot.figure is not None and train.result_label.text()
    for key in ("reports", "plan", "export"):
        window.show_page(key)
    assert window.pages["export"].out.text()
    window.show_page("gallery").import_split.setCurrentText("extra")  # a split of this workspace's
    window.show_page("train")
    empty = tmp_path / "other"
    assert window.ctx.open_workspace(empty, create=True)
    assert train.result_label.text() == "" and train.plot.figure is None and train.runs_table.rowCount() == 0
    assert window.ctx.focus_run is None
    for key in ("reports", "plan", "export"):
        page = window.show_page(key)
        assert page.run_combo.count() == 0
    assert window.pages["reports"].report is None and window.pages["plan"].plan is None
    assert window.pages["export"].out.text() == "" and window.pages["export"].table.rowCount() == 0
    assert not window.pages["plan"].plan_button.isEnabled()  # nothing to plan without runs
    assert not window.pages["reports"].build_button.isEnabled()
    assert window.show_page("gallery").import_split.currentText() == ""
    assert not error_dialogs()


def test_pickers_follow_the_run_just_trained_or_reported(qtbot: QtBot, window: MainWindow, demo_copy: Path,
                                                          tmp_path: Path) -> None:
    first = train_in_core(demo_copy, "procrustes")
    window.ctx.open_workspace(demo_copy)
    train = window.show_page("train")
    train.train("affine", "old-mlp", "new-cnn", "cpu", {})
    wait_for_jobs(qtbot, window)
    second = window.ctx.ws.runs("train")[-1]["id"]
    assert window.ctx.focus_run == second
    for key in ("reports", "plan", "export"):
        assert window.show_page(key).run_combo.currentText().startswith(f"run {second} ·")
    # a report of the first run moves every picker to it
    reports = window.show_page("reports")
    reports.build(first["run_id"], n_boot=50)
    wait_for_jobs(qtbot, window, 120_000)
    assert reports.report.run["id"] == first["run_id"]
    for key in ("plan", "export"):
        assert window.show_page(key).run_combo.currentText().startswith(f"run {first['run_id']} ·")
    # exporting keeps the folder the user chose and suggests the next free name there
    export = window.show_page("export")
    chosen = tmp_path / "my-bundles" / "release.zip"
    chosen.parent.mkdir()
    export.out.setText(str(chosen))
    click(qtbot, export.build_button)
    wait_for_jobs(qtbot, window, 120_000)
    assert chosen.is_file() and not error_dialogs()
    suggested = Path(export.out.text())
    assert suggested.parent == chosen.parent.resolve() and not suggested.exists()


def test_a_fresh_open_focuses_the_run_the_command_line_defaults_to(qtbot: QtBot, window: MainWindow,
                                                                   demo_copy: Path) -> None:
    from embridge.core.report.build import ReportOptions, build_report

    first = train_in_core(demo_copy, "procrustes")["run_id"]
    second = train_in_core(demo_copy, "affine")["run_id"]
    with Workspace.open(demo_copy) as ws:
        own = build_report(ws, second, ReportOptions(n_boot=50)).report_id
        build_report(ws, first, ReportOptions(n_boot=50))  # the latest report is of the older run
    window.ctx.open_workspace(demo_copy)
    assert window.ctx.focus_run == second  # `report`, `plan` and `bundle export` take it without --run
    reports = window.show_page("reports")
    assert reports.report is not None and reports.report.report_id == own
    for key in ("reports", "plan", "export"):
        assert window.show_page(key).run_combo.currentText().startswith(f"run {second} ·"), key
    third = train_in_core(demo_copy, "affine", {"weight_decay": 1e-2})["run_id"]
    window.ctx.open_workspace(demo_copy)
    reports = window.show_page("reports")
    assert reports.report is None and reports.report_combo.currentIndex() == -1  # no other run's report instead
    assert reports.run_combo.currentText().startswith(f"run {third} ·") and reports.report_combo.count() == 2
    assert not error_dialogs()


def test_gallery_counts_say_which_splits_form_the_gallery(qtbot: QtBot, window: MainWindow, demo_copy: Path,
                                                          tmp_path: Path) -> None:
    from embridge.core.overview import gallery_splits

    folder = tmp_path / "mine"
    rng = np.random.default_rng(0)
    for n in range(30):
        (folder / str(n % 3)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8), mode="L").save(folder / str(n % 3) / f"{n}.png")
    window.ctx.open_workspace(demo_copy)
    gallery = window.show_page("gallery")
    gallery.import_items(str(folder), None, "mine")
    wait_for_jobs(qtbot, window)
    counts = window.ctx.ws.split_counts()
    parts = gallery_splits(counts)
    assert parts["mine"] == 30 and "query" not in parts
    total = sum(parts.values())
    assert total == counts["gallery"] + 30
    assert (f"Reports and plans search the gallery: {total} items (gallery {counts['gallery']} + mine 30); "
            f"queries: {counts['query']} (split 'query')") in gallery.counts_label.text()


def test_gallery_import_says_what_it_stored_as_the_command_line_does(qtbot: QtBot, window: MainWindow,
                                                                     tmp_path: Path) -> None:
    """A vectors file imported with no model keeps only its keys: the page says so, in the command
    line's words with the window's field named, not only in the log."""
    from embridge.core.cli.main import main

    root = tmp_path / "fresh"
    assert main(["init", "-w", str(root)]) == 0
    vectors = tmp_path / "ten.npz"
    np.savez(vectors, ids=np.array([f"k{i}" for i in range(10)]),
             vectors=np.random.default_rng(0).standard_normal((10, 6)).astype(np.float32))
    window.ctx.open_workspace(root)
    gallery = window.show_page("gallery")
    gallery.import_items(str(vectors), "vectors")
    wait_for_jobs(qtbot, window)
    shown = gallery.import_result.text()
    assert shown.startswith("Imported 10 items (vectors) from ")
    assert "only their keys: the vectors were not stored (pass a model in 'Vectors of model' to store them" in shown
    assert "--model" not in shown and not error_dialogs()
    assert window.ctx.ws.vector_sets() == [] and window.ctx.ws.item_count() == 10
    gallery.import_items(str(tmp_path / "missing.csv"))  # a failed import leaves no earlier import's words
    wait_for_jobs(qtbot, window)
    assert error_dialogs() and gallery.import_result.text() == ""
    close_error_dialogs()


def test_html_report_path_is_shown_when_no_browser_opens_it(qtbot: QtBot, window: MainWindow, demo_copy: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from embridge.core.report.build import ReportOptions, build_report

    run = train_in_core(demo_copy, "procrustes")
    with Workspace.open(demo_copy) as ws:
        build_report(ws, run["run_id"], ReportOptions(n_boot=50))
    window.ctx.open_workspace(demo_copy)
    reports = window.show_page("reports")
    assert reports.report is not None and reports.html_button.isEnabled()
    monkeypatch.setattr(dialogs, "open_path", lambda path: False)  # no browser on this machine
    click(qtbot, reports.html_button)
    note = reports.path_dialog
    assert note.isVisible() and not note.opened
    assert note.path_field.text() == reports.report.html_file and Path(note.path_field.text()).is_file()
    click(qtbot, note.copy_button)
    assert QGuiApplication.clipboard().text() == reports.report.html_file
    note.close()


def test_models_page_manages_models_and_refuses_duplicates(qtbot: QtBot, window: MainWindow, demo_copy: Path,
                                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from embridge.core.models import save_vectors_model

    with Workspace.open(demo_copy) as ws:
        keys = [it["key"] for it in ws.items("query")][:20]
    source = tmp_path / "src"
    source.mkdir()
    npz = save_vectors_model(source / "extra.npz", keys, np.random.default_rng(1).normal(size=(len(keys), 4)))
    window.ctx.open_workspace(demo_copy)
    models = window.show_page("models")
    models.add_model(str(npz), "extra", "other")
    wait_for_jobs(qtbot, window)
    assert models.table.rowCount() == 3 and not error_dialogs()
    # the same file again, under another name: refused with one line naming the other model
    models.add_model(str(npz), "extra-again", "other")
    wait_for_jobs(qtbot, window)
    qtbot.waitUntil(lambda: bool(error_dialogs()))
    (dialog,) = error_dialogs()
    assert "already in the workspace as model 'extra'" in dialog.message and "\n" not in dialog.message
    close_error_dialogs()
    assert models.table.rowCount() == 3
    # details: readable; a copied checkpoint names its stored copy, a vectors file is referenced
    # where it lies (the workspace keeps no copy), so its details say when it no longer exists
    models.table.selectRow(0)
    details = models.spec_view.toPlainText()
    first = window.ctx.ws.models()[0]
    assert first["file"] and Path(first["path"]).is_file()
    assert f"stored copy: {first['path']}" in details and first["path"].startswith(str(demo_copy))
    npz.unlink()
    models.table.selectRow(2)
    details = models.spec_view.toPlainText()
    assert details.startswith("name: extra\nrole: other")
    assert f"vectors file: {npz} (referenced, not copied; no longer exists)" in details
    assert "stored copy" not in details
    # rename, change role, remove
    monkeypatch.setattr(dialogs, "ask_text", lambda *a, **k: "extra-renamed")
    click(qtbot, models.rename_button)
    wait_for_jobs(qtbot, window)  # a change runs in the background: it may wait for another process's write
    assert [m["name"] for m in window.ctx.ws.models()][-1] == "extra-renamed"
    # refusals name the window's fields, not the command line's options
    models.table.selectRow(2)
    monkeypatch.setattr(dialogs, "ask_text", lambda *a, **k: window.ctx.ws.models()[0]["name"])
    click(qtbot, models.rename_button)
    wait_for_jobs(qtbot, window)
    models.input_shape.setText("1e300")
    models.path.setText(str(npz))
    models.add_from_form()
    qtbot.waitUntil(lambda: len(error_dialogs()) == 2)
    renamed, shaped = (d.message for d in error_dialogs())
    assert renamed.startswith("New name: a model named") and "--to" not in renamed
    assert shaped.startswith("Input shape: expected integers") and "--input-shape" not in shaped
    close_error_dialogs()
    models.input_shape.clear()
    models.table.selectRow(2)
    models.set_role.setCurrentText("new")
    click(qtbot, models.set_role_button)
    wait_for_jobs(qtbot, window)
    assert window.ctx.ws.model("extra-renamed")["role"] == "new"
    stored = Path(window.ctx.ws.model("extra-renamed")["path"])
    models.table.selectRow(2)
    monkeypatch.setattr(dialogs, "confirm", lambda *a, **k: True)
    click(qtbot, models.remove_button)
    wait_for_jobs(qtbot, window)
    assert models.table.rowCount() == 2 and not stored.exists()
    # a model with vector sets cannot be removed; nothing changes
    models.table.selectRow(0)
    click(qtbot, models.remove_button)
    wait_for_jobs(qtbot, window)
    qtbot.waitUntil(lambda: bool(error_dialogs()))
    (dialog,) = error_dialogs()
    assert "vector set(s)" in dialog.message and "nothing was removed" in dialog.message
    assert models.table.rowCount() == 2


def test_a_text_file_as_checkpoint_shows_one_line_on_top(qtbot: QtBot, window: MainWindow, demo_copy: Path,
                                                         tmp_path: Path) -> None:
    notes = tmp_path / "notes.pt"
    notes.write_text("these are my notes, not a model\n" * 20, encoding="utf-8")
    window.ctx.open_workspace(demo_copy)
    models = window.show_page("models")
    models.add_model(str(notes), "notes", "other")
    wait_for_jobs(qtbot, window)
    qtbot.waitUntil(lambda: bool(error_dialogs()))
    (dialog,) = error_dialogs()
    layout = dialog.layout()
    assert layout.itemAt(0).widget() is dialog.message_label  # the message first
    assert "\n" not in dialog.message_label.text() and dialog.message_label.text()
    assert dialog.details_view is None or not dialog.details_view.isVisible()  # no traceback in the way
    assert models.table.rowCount() == 2


def test_help_guide_tooltips_and_tie_wording(qtbot: QtBot, window: MainWindow, demo_copy: Path) -> None:
    from embridge.app.pages.report_widgets import EQUAL_COLOUR, fill_metrics_table
    from embridge.core.evaluation.compat import compare
    from embridge.core.report.wording import comparison_word, verdict_tone

    window.ctx.open_workspace(demo_copy)
    guide = window.show_guide()
    text = guide.findChild(type(guide.layout().itemAt(0).widget())).toPlainText()
    assert "Gain retained" in text and "equal" in text and "Models" in text
    guide.close()
    tips = {}
    for key in ("train", "plan"):
        page = window.show_page(key)
        for table in (page.runs_table,) if key == "train" else (page.options,):
            for c in range(table.columnCount()):
                item = table.horizontalHeaderItem(c)
                tips[item.text()] = item.toolTip()
    assert all(tips[h] for h in ("Gain retained", "Passes", "Acceptable", "Measured on", "Candidates"))
    train = window.pages["train"]
    train.select_method("mlp")
    assert "Learning rate" in train.form.editor("lr").toolTip()
    assert "Stop early" in train.form.editor("patience").toolTip()
    # a tie is "equal", not a failure
    rows = compare({"recall@100": 1.0, "top1": 0.7}, {"recall@100": 1.0, "top1": 0.6}, {"recall@100": 1.0, "top1": 0.9})
    assert comparison_word(rows["recall@100"]) == "equal" and comparison_word(rows["top1"]) == "pass"
    table = window.pages["reports"].metrics
    fill_metrics_table(table, {"new→old": {"recall@100": 1.0, "top1": 0.7}}, {"new→old": rows})
    r = [table.item(i, 0).text() for i in range(table.rowCount())].index("recall@100")
    assert table.item(r, 2).text() == "equal" and table.item(r, 2).background().color() == EQUAL_COLOUR
    assert verdict_tone("Bridging alone leaves much of the gain unused; see the partial-backfill curves") == "caution"


def test_layout_at_the_minimum_size(qtbot: QtBot, window: MainWindow, demo_copy: Path) -> None:
    from embridge.core.report.build import ReportOptions, build_report

    run = train_in_core(demo_copy, "procrustes")
    with Workspace.open(demo_copy) as ws:
        build_report(ws, run["run_id"], ReportOptions(n_boot=50))
    window.ctx.open_workspace(demo_copy)
    window.resize(MIN_SIZE)
    qtbot.waitUntil(lambda: window.width() == MIN_SIZE.width())
    assert window.minimumSize() == MIN_SIZE
    # a running job's card shows its whole Cancel button and needs no sideways scrolling
    job = window.pages["train"].train("mlp", "old-mlp", "new-cnn", "cpu", {"epochs": 100_000, "patience": 100_000})
    qtbot.waitUntil(lambda: job.done > 0, timeout=30_000)
    card = window.jobs_panel.rows[0]
    qtbot.waitUntil(lambda: card.cancel_button.isVisible())
    assert card.cancel_button.width() >= card.cancel_button.sizeHint().width()
    assert card.geometry().right() <= card.parentWidget().width()
    job.cancel()
    wait_for_jobs(qtbot, window)
    gallery = window.show_page("gallery")
    assert gallery.import_path.edit.width() >= 200
    start = window.show_page("workspace")
    assert start.demo_kind.width() >= start.demo_kind.sizeHint().width()  # its choices are read whole
    train = window.show_page("train")
    train.select_method("mlp")
    form = train.form.form
    row_height = form.itemAt(0, form.ItemRole.FieldRole).widget().sizeHint().height()
    viewport = train.form.parentWidget()
    assert viewport.height() >= 6 * row_height  # several settings rows are visible at once
    plan = window.show_page("plan")
    assert plan.plot.height() >= 140  # the curves stay legible, and the options table shows three rows at once
    assert plan.options.viewport().height() >= 3 * plan.options.verticalHeader().defaultSectionSize()
    plan.make_plan(run["run_id"], device="cpu")
    wait_for_jobs(qtbot, window)
    assert "Full backfill: Re-embeds all" in plan.summary.text()  # the backfill options' own notes, as plan's text
    chosen = [r for r in range(plan.options.rowCount()) if plan.options.item(r, 0).background().color() == CHOSEN]
    assert len(chosen) == 1  # the recommended row is scrolled into view, however few rows the table shows
    assert plan.options.viewport().rect().contains(plan.options.visualItemRect(plan.options.item(chosen[0], 0)))
    reports = window.show_page("reports")
    scroll = reports.verdict.parentWidget().parentWidget()
    assert scroll.height() >= 90 and reports.verdict.text()
    caption = [w for w in reports.findChildren(type(reports.verdict)) if w.text() == "Re&port:"][0]
    assert caption.buddy() is reports.report_combo  # shown as "Report:" with Alt+P, no literal '&'


def test_the_reports_verdict_and_every_metric_header_show_whole_at_the_default_size(
        qtbot: QtBot, window: MainWindow, demo_copy: Path) -> None:
    from embridge.core.report.build import ReportOptions, build_report

    run = train_in_core(demo_copy, "procrustes")
    with Workspace.open(demo_copy) as ws:
        build_report(ws, run["run_id"], ReportOptions(n_boot=50))
    window.ctx.open_workspace(demo_copy)
    window.resize(1400, 900)
    qtbot.waitUntil(lambda: window.width() == 1400)
    reports = window.show_page("reports")
    qtbot.waitUntil(lambda: reports.metrics.columnCount() > 4)
    scroll = reports.verdict.parentWidget().parentWidget()
    assert scroll.height() >= reports.split.height() // 4  # more than a few lines of the verdict at once
    header = reports.metrics.horizontalHeader()
    for column in range(reports.metrics.columnCount()):  # no header cut short by a stretched last section
        text = reports.metrics.horizontalHeaderItem(column).text()
        assert header.sectionSize(column) >= header.fontMetrics().horizontalAdvance(text), text


def test_cli_manages_models(demo_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from embridge.core.cli.main import main
    from embridge.core.models import save_vectors_model

    with Workspace.open(demo_copy) as ws:
        keys = [it["key"] for it in ws.items("query")][:10]
    npz = save_vectors_model(tmp_path / "v.npz", keys, np.random.default_rng(2).normal(size=(len(keys), 3)))
    w = ["--workspace", str(demo_copy)]
    assert main(["model", "add", *w, "--name", "v", "--path", str(npz)]) == 0
    assert main(["model", "add", *w, "--name", "v2", "--path", str(npz)]) == 1
    assert "already in the workspace as model 'v'" in capsys.readouterr().err
    assert main(["model", "rename", *w, "--name", "v", "--to", "v3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {"name": "v3", "was": "v"}
    assert main(["model", "set-role", *w, "--name", "v3", "--role", "new"]) == 0
    assert main(["model", "remove", *w, "--name", "old-mlp"]) == 1
    assert "nothing was removed" in capsys.readouterr().err
    assert main(["model", "remove", *w, "--name", "v3"]) == 0
    with Workspace.open(demo_copy) as ws:
        assert [m["name"] for m in ws.models()] == ["old-mlp", "new-cnn"]


def test_a_report_refusal_names_the_pages_check_box_not_the_command_line_flag(
        qtbot: QtBot, window: MainWindow, demo_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Reports page said '--heldout-gallery left the train fold out ...', a flag the page does not have."""
    from embridge.core.errors import InputError
    from embridge.core.report import build

    def refuse(*args: object, **kwargs: object) -> None:  # the refusal core gives on such a workspace
        raise InputError("models 'a', 'b'", "none of the 200 test queries has a relevant item in the gallery; "
                         "--heldout-gallery left the train fold out of the gallery, and with it every relevant "
                         "item; report without it")

    first = train_in_core(demo_copy, "procrustes")
    window.ctx.open_workspace(demo_copy)
    monkeypatch.setattr(build, "build_report", refuse)
    reports = window.show_page("reports")
    reports.build(first["run_id"], heldout_gallery=True, n_boot=50)
    wait_for_jobs(qtbot, window)
    qtbot.waitUntil(lambda: bool(error_dialogs()))  # the reporter shows its dialog on a queued signal
    (dialog,) = error_dialogs()
    assert "Held-out gallery left the train fold out" in dialog.message and "--heldout-gallery" not in dialog.message
    close_error_dialogs()


def _silent_disabled_buttons(window: MainWindow) -> list[str]:
    from PySide6.QtWidgets import QPushButton

    return [f"{key}: {b.text()}" for key, page in window.pages.items() for b in page.findChildren(QPushButton)
            if b.isVisibleTo(page) and not b.isEnabled() and not b.toolTip()]


def test_every_disabled_button_says_why(qtbot: QtBot, window: MainWindow, tmp_path: Path, demo_copy: Path) -> None:
    """Build report, Open HTML report, Build bundle, Verify, Train (while one runs or for a method the pair
    cannot train) and Cancel training were greyed out with no word of why."""
    assert window.ctx.open_workspace(tmp_path / "empty", create=True)
    for key in window.pages:
        window.show_page(key)
    assert _silent_disabled_buttons(window) == []
    assert window.pages["reports"].build_button.toolTip() == "Train a layer on the Train page first."
    window.ctx.open_workspace(demo_copy)
    for key in window.pages:
        window.show_page(key)
    train = window.pages["train"]
    job = train.train("mlp", "old-mlp", "new-cnn", "cpu", {"epochs": 100_000, "patience": 100_000})
    qtbot.waitUntil(lambda: job.done > 0, timeout=30_000)
    assert _silent_disabled_buttons(window) == []
    assert "cancel it or wait" in train.train_button.toolTip() and train.cancel_button.isEnabled()
    job.cancel()
    wait_for_jobs(qtbot, window)
    assert train.train_button.isEnabled() and not train.cancel_button.isEnabled()
    assert train.cancel_button.toolTip() == "No training runs now." and _silent_disabled_buttons(window) == []
