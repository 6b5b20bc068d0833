"""The vector-store dialogs: import a stored gallery (Gallery page) and migrate a store (Export page)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from app_fixtures import error_dialogs, no_threads_left, wait_for_jobs, window
from bundle_fixtures import build_upgrade_workspace
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot
from store_fixtures import fill_source, read_all

from embridge.app.main_window import MainWindow
from embridge.core.bundle import export_bundle, load_bundle
from embridge.core.store import Workspace

__all__ = ["no_threads_left", "window"]
pytestmark = pytest.mark.usefixtures("no_threads_left")


@pytest.fixture
def upgrade(tmp_path: Path) -> dict[str, Any]:
    up = build_upgrade_workspace(tmp_path / "ws", with_report=False)
    with Workspace.open(up["path"]) as ws:
        export_bundle(ws, tmp_path / "fct.zip", [up["runs"]["fct"]])
        labels = [str(x) for x in ws.labels(up["ids"])]
    return {**up, "bundle": tmp_path / "fct.zip", "labels": labels}


def click(qtbot: QtBot, button: object) -> None:
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def _import_dialog_on_a_parquet_store(qtbot: QtBot, window: MainWindow, upgrade: dict,
                                      tmp_path: Path) -> tuple[Any, Any, Any]:
    """(the Parquet source of the upgrade's v1 vectors, the Gallery page, its import dialog filled for it)."""
    v1 = upgrade["vectors"]["v1"]
    case = fill_source("parquet", tmp_path, list(range(len(v1))), v1, upgrade["labels"])
    assert window.ctx.open_workspace(upgrade["path"])
    gallery = window.show_page("gallery")
    click(qtbot, gallery.store_import_button)
    dialog = gallery.store_dialog
    dialog.uri.setText(case.source)
    dialog.model.setText("store-v1")
    return case, gallery, dialog


def test_import_from_a_store_and_migrate_switch_cancel_resume_rollback(
        qtbot: QtBot, window: MainWindow, upgrade: dict, tmp_path: Path) -> None:
    v1 = upgrade["vectors"]["v1"]
    case, gallery, dialog = _import_dialog_on_a_parquet_store(qtbot, window, upgrade, tmp_path)
    assert dialog.isVisible()
    dialog.label_field.setText("label")
    click(qtbot, dialog.import_button)
    wait_for_jobs(qtbot, window)
    assert not error_dialogs()
    assert f"Imported {len(v1)} points" in dialog.result.toPlainText()
    assert dialog.progress.value() == dialog.progress.maximum() > 0
    with Workspace.open(upgrade["path"]) as ws:
        keys = [str(i) for i in range(len(v1))]
        np.testing.assert_allclose(ws.vectors_for("store-v1", ws.ids_for_keys(keys)), v1)
        assert ws.labels(ws.ids_for_keys(keys)) == upgrade["labels"]
    other = tmp_path / "other"  # another workspace: the dialog no longer tells of this one's import
    Workspace.create(other).close()
    assert window.ctx.open_workspace(other)
    assert dialog.result.toPlainText() == "" and dialog.stage.text() == "" and dialog.progress.value() == 0
    assert window.ctx.open_workspace(upgrade["path"])

    export = window.show_page("export")
    export.refresh()
    click(qtbot, export.migrate_store_button)
    migrate = export.store_dialog
    assert migrate.bundle.text() == str(upgrade["bundle"])  # the selected bundle, filled in
    migrate.source.setText(case.source)
    migrate.target.setText(case.target)
    migrate.alias.setText("docs")
    migrate.switch.setChecked(True)
    migrate.batch.setValue(1)  # slow enough to cancel part-way

    cancelled = {"at": 0}

    def cancel_once(done: int, total: int, info: dict) -> None:
        if 0 < done < total and migrate.job is not None and not cancelled["at"]:
            cancelled["at"] = done
            click(qtbot, migrate.cancel_button)

    click(qtbot, migrate.migrate_button)
    assert migrate.job is not None and migrate.cancel_button.isEnabled()
    migrate.job.progressed.connect(cancel_once)
    wait_for_jobs(qtbot, window)
    assert cancelled["at"] > 0 and migrate.stage.text().startswith("cancelled")
    assert migrate.stage.text().endswith("(press Migrate again with the same fields to resume: the points written "
                                         "so far are kept)")
    checkpoint = json.loads((tmp_path / "pq.embridge" / "migrate-docs_v2.json").read_text())
    assert 0 < checkpoint["written"] < len(v1) and checkpoint["status"] == "running"
    assert not (tmp_path / "pq" / "docs").exists()  # nothing switched before verification

    migrate.batch.setValue(50)
    click(qtbot, migrate.migrate_button)
    wait_for_jobs(qtbot, window)
    assert not error_dialogs()
    text = migrate.result.toPlainText()
    assert "Migration completed" in text and "alias 'docs' now serves 'docs_v2'" in text
    assert f"resumed from {checkpoint['written']}" in text
    assert "sampled vectors match (" in text and "against the bundle's transform; max abs difference" in text
    assert os.readlink(tmp_path / "pq" / "docs") == "docs_v2"
    got = read_all(case.alias_uri)
    np.testing.assert_allclose(np.stack([got[str(i)][0] for i in range(len(v1))]),
                               load_bundle(upgrade["bundle"])(v1, normalise_output=True), rtol=1e-4, atol=1e-5)

    click(qtbot, migrate.check_button)
    wait_for_jobs(qtbot, window)
    assert f"{len(v1)} points, single" in migrate.result.toPlainText()

    click(qtbot, migrate.rollback_button)
    wait_for_jobs(qtbot, window)
    assert "alias 'docs' now serves 'docs_v1'" in migrate.result.toPlainText()
    assert f"{len(v1)} points are v1's: queries must be embedded by v1 again" in migrate.result.toPlainText()
    assert os.readlink(tmp_path / "pq" / "docs") == "docs_v1"

    # a refused start leaves no earlier result beside its reason; the alias may come in From's URI, as the
    # command line takes it (the dialog demanded the Alias field)
    reported: list[str] = []
    report = window.ctx.reporter.report
    window.ctx.reporter.report = lambda title, text, details=None: reported.append(text)  # type: ignore[method-assign]
    migrate.source.setText("")
    click(qtbot, migrate.rollback_button)
    window.ctx.reporter.report = report  # type: ignore[method-assign]
    assert reported == ["Fill in From first."]
    assert migrate.result.toPlainText() == "" and migrate.stage.text() == ""
    migrate.alias.setText("")
    migrate.source.setText(case.source + ("&" if "?" in case.source else "?") + "alias=docs")
    click(qtbot, migrate.rollback_button)
    wait_for_jobs(qtbot, window)
    assert not error_dialogs()
    assert "alias 'docs' already serves 'docs_v1' (before: docs_v1)" in migrate.result.toPlainText()
    migrate.close()
    dialog.close()


def test_store_dialogs_report_missing_fields_and_store_errors(qtbot: QtBot, window: MainWindow, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    assert window.ctx.open_workspace(tmp_path / "ws", create=True)
    reported: list[tuple[str, str]] = []
    monkeypatch.setattr(window.ctx.reporter, "report", lambda title, text, details=None: reported.append((title, text)))
    gallery = window.show_page("gallery")
    click(qtbot, gallery.store_import_button)
    click(qtbot, gallery.store_dialog.import_button)
    assert reported[-1][1] == "Enter the store's URI first."
    gallery.store_dialog.uri.setText(f"parquet://{tmp_path / 'nothing'}")
    click(qtbot, gallery.store_dialog.import_button)
    wait_for_jobs(qtbot, window)
    assert reported[-1][1].endswith("nothing: no such collection")
    assert gallery.store_dialog.stage.text().startswith("failed: ")
    with caplog.at_level(logging.INFO):  # a password in the URI: not in the job's title, its error or the log
        gallery.store_dialog.uri.setText("postgresql://me:s3cret-pw@127.0.0.1:1/db?table=docs")
        click(qtbot, gallery.store_dialog.import_button)
        wait_for_jobs(qtbot, window)
    assert "cannot connect to PostgreSQL" in reported[-1][1] and "me:***@127.0.0.1" in reported[-1][0]
    assert "s3cret" not in repr(reported) + caplog.text and "me:***@" in caplog.text
    gallery.store_dialog.uri.setText("  ")  # refused before any job: the failure above is not left beside it
    click(qtbot, gallery.store_dialog.import_button)
    assert reported[-1][1] == "Enter the store's URI first." and gallery.store_dialog.stage.text() == ""
    export = window.show_page("export")
    click(qtbot, export.migrate_store_button)
    click(qtbot, export.store_dialog.migrate_button)
    assert reported[-1][1] == "Fill in Bundle, From, To first."
    gallery.store_dialog.close()
    export.store_dialog.close()


def _store_with_labels(tmp_path: Path) -> str:
    """A real Parquet collection of 12 points whose payload fields are ``label`` and ``body``."""
    vectors = np.random.default_rng(0).normal(size=(12, 8)).astype(np.float32)
    return fill_source("parquet", tmp_path, list(range(12)), vectors, [str(i % 3) for i in range(12)]).source


def _shown_error(qtbot: QtBot, window: MainWindow) -> str:
    """The one line the error dialog shows for the job that just failed (then closes it)."""
    wait_for_jobs(qtbot, window)
    qtbot.waitUntil(lambda: bool(error_dialogs()))
    dialogs = error_dialogs()
    text = dialogs[-1].message_label.text()
    for dialog in dialogs:
        dialog.close()
    return text


def test_store_dialog_errors_name_the_form_fields_not_the_options(qtbot: QtBot, window: MainWindow,
                                                                  tmp_path: Path) -> None:
    """Core's refusals name the command line's options; the dialogs show them with their own field labels."""
    uri = _store_with_labels(tmp_path)
    assert window.ctx.open_workspace(tmp_path / "ws", create=True)
    gallery = window.show_page("gallery")
    click(qtbot, gallery.store_import_button)
    dialog = gallery.store_dialog
    caption = dialog.form.labelForField(dialog.label_field).text()
    assert caption.replace("&", "") == "Label field"
    dialog.uri.setText(uri)
    dialog.model.setText("store-v1")
    dialog.label_field.setText("no_such_field")
    click(qtbot, dialog.import_button)
    shown = _shown_error(qtbot, window)
    assert "no point has a 'no_such_field' field (Label field); check its spelling" in shown
    assert "--label-field" not in shown
    assert dialog.stage.text() == f"failed: {shown}"  # the dialog's own status line says the same
    assert dialog.progress.value() == 0  # it read every point before refusing, and stored none: no full bar

    dialog.label_field.setText("label")
    dialog.text_field.setText("no_text")
    click(qtbot, dialog.import_button)
    shown = _shown_error(qtbot, window)
    assert "has no 'no_text' field (Text field)" in shown and "--text-field" not in shown

    export = window.show_page("export")
    click(qtbot, export.migrate_store_button)
    migrate = export.store_dialog
    migrate.bundle.setText(str(tmp_path / "any.zip"))
    migrate.source.setText(uri)
    migrate.target.setText(uri.replace("docs_v1", "docs_v2"))
    migrate.order.setCurrentText("planner")  # real new vectors are needed to choose by the planner
    click(qtbot, migrate.migrate_button)
    shown = _shown_error(qtbot, window)
    assert shown == ("Backfill order: chooses which points get real new-model vectors; give those with "
                     "New vectors")
    migrate.target.setText("not a uri")
    click(qtbot, migrate.check_button)
    shown = _shown_error(qtbot, window)
    assert shown.startswith("To: 'not a uri' is not a store URI") and "--uri" not in shown
    migrate.alias.setText("no_such_alias")  # rollback's advice names the migration's switch: here its check box
    click(qtbot, migrate.rollback_button)
    shown = _shown_error(qtbot, window)
    assert shown.startswith("Alias: 'no_such_alias' is not an alias of") and "--" not in shown, shown
    assert migrate.switch.text().replace("&", "") in shown, shown
    migrate.close()
    dialog.close()


def test_gallery_path_fields_and_their_buttons_do_not_overlap_at_the_minimum_size(
        qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    from PySide6.QtCore import QPoint, QRect
    from PySide6.QtWidgets import QAbstractButton, QWidget

    from embridge.app.main_window import MIN_SIZE

    def in_window(widget: QWidget) -> QRect:
        return QRect(widget.mapTo(window, QPoint(0, 0)), widget.size())

    assert window.ctx.open_workspace(tmp_path / "ws", create=True)
    window.resize(MIN_SIZE)
    qtbot.waitUntil(lambda: window.size() == MIN_SIZE)
    gallery = window.show_page("gallery")
    qtbot.waitUntil(lambda: gallery.import_path.edit.isVisible())
    page = in_window(gallery)
    for field in (gallery.import_path, gallery.import_ids, gallery.import_qrels):
        edit = in_window(field.edit)
        buttons = field.findChildren(QAbstractButton)
        assert buttons and edit.width() >= 200
        for button in buttons:
            assert not edit.intersects(in_window(button)), (button.text(), edit, in_window(button))
            assert page.contains(in_window(button)), button.text()  # whole, not cut off


def test_an_import_that_ends_after_another_workspace_opened_says_where_it_went(
        qtbot: QtBot, window: MainWindow, upgrade: dict, tmp_path: Path) -> None:
    """The dialog said 'completed (vectors: 240 of 240)' over the workspace opened meanwhile, which holds
    nothing of it."""
    _case, _gallery, dialog = _import_dialog_on_a_parquet_store(qtbot, window, upgrade, tmp_path)
    click(qtbot, dialog.import_button)
    other = tmp_path / "other"
    Workspace.create(other).close()
    assert window.ctx.open_workspace(other)  # before the import's ending reaches the window
    wait_for_jobs(qtbot, window)
    qtbot.waitUntil(lambda: dialog.job is None, timeout=30_000)
    assert dialog.stage.text() == f"completed in {upgrade['path']}, which is no longer open"
    assert dialog.progress.value() == 0 and not error_dialogs()
    with Workspace.open(upgrade["path"]) as ws:
        assert len(ws.vector_sets("store-v1")) == 1


def test_a_blank_split_imports_into_the_gallery_and_an_unticked_alias_is_said_unmoved(
        qtbot: QtBot, window: MainWindow, upgrade: dict, tmp_path: Path) -> None:
    """A blank Split stored the points as unassigned items (the command line's default is the gallery); an
    Alias typed without 'Move the alias' ticked was dropped without a word (the command line refuses it)."""
    v1 = upgrade["vectors"]["v1"]
    case, gallery, dialog = _import_dialog_on_a_parquet_store(qtbot, window, upgrade, tmp_path)
    dialog.split.setCurrentText("")
    click(qtbot, dialog.import_button)
    wait_for_jobs(qtbot, window)
    assert not error_dialogs()
    with Workspace.open(upgrade["path"]) as ws:
        ids = ws.ids_for_keys([str(i) for i in range(len(v1))])
        assert {item["split"] for item in ws.items(ids=ids.tolist())} == {"gallery"}
    export = window.show_page("export")
    export.refresh()
    click(qtbot, export.migrate_store_button)
    migrate = export.store_dialog
    migrate.source.setText(case.source)
    migrate.target.setText(case.target)
    migrate.alias.setText("docs")
    migrate.switch.setChecked(False)
    click(qtbot, migrate.migrate_button)
    wait_for_jobs(qtbot, window)
    assert not error_dialogs()
    text = migrate.result.toPlainText()
    assert "Migration completed" in text and text.endswith(
        "The alias 'docs' was not moved: 'Move the alias to the new collection once verified' was not ticked.")


def test_closing_the_window_closes_the_store_dialogs(qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    """The migration dialog stayed on screen after the main window closed, until Qt quit."""
    assert window.ctx.open_workspace(tmp_path / "ws", create=True)
    window.show_page("gallery").open_store_import()
    window.show_page("export").open_store_migration()
    shown = [window.show_page("gallery").store_dialog, window.show_page("export").store_dialog]
    assert all(d.isVisible() for d in shown)
    window.close()
    assert not any(d.isVisible() for d in shown)


def test_a_bundle_that_cannot_migrate_is_not_offered_to_the_migration(qtbot: QtBot, window: MainWindow,
                                                                       upgrade: dict, tmp_path: Path) -> None:
    """The dialog came filled with a query-side (bt2) bundle, which failed only once a migration started."""
    with Workspace.open(upgrade["path"]) as ws:
        export_bundle(ws, tmp_path / "bt2.zip", [upgrade["runs"]["bt2"]])
    assert window.ctx.open_workspace(upgrade["path"])
    page = window.show_page("export")
    page.refresh()
    assert Path(page._bundles[page.table.currentRow()]["path"]).name == "bt2.zip"  # the newest, selected
    page.open_store_migration()
    dialog = page.store_dialog
    assert dialog.bundle.text() == ""
    assert dialog.stage.text().startswith("The selected bundle cannot migrate a store: a joint (bt2) layer maps new "
                                          "queries into the old space") and dialog.stage.wordWrap()
    with Workspace.open(upgrade["path"]) as ws:
        export_bundle(ws, tmp_path / "fct-again.zip", [upgrade["runs"]["fct"]])
    dialog.close()
    page.refresh()
    page.table.selectRow([Path(b["path"]).name for b in page._bundles].index("fct-again.zip"))
    page.open_store_migration()
    assert dialog.bundle.text() == str(tmp_path / "fct-again.zip")
    assert dialog.stage.text() == ""  # the earlier bundle's refusal is not left beside the one filled in
