"""A damaged vector set the app's commands pass over is warned of in its log, as the command line does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from app_fixtures import error_dialogs, no_threads_left, wait_for_jobs, window  # noqa: F401 - fixtures
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from embridge.app.main_window import MainWindow
from embridge.core.store import Workspace


def _workspace_with_a_damaged_id_list(tmp_path: Path) -> Path:
    """60 items, a vectors-only model 'new' embedded into one set, whose id list was then deleted."""
    from embridge.core.embed import embed_split
    from embridge.core.models.adding import add_model

    ws_path = tmp_path / "ws"
    vectors = np.random.default_rng(0).standard_normal((60, 8)).astype(np.float32)
    np.savez(tmp_path / "new.npz", ids=np.array([f"i{i}" for i in range(60)]), vectors=vectors)
    with Workspace.create(ws_path) as ws:
        ws.add_items([{"key": f"i{i}", "split": "gallery"} for i in range(60)])
        add_model(ws, tmp_path / "new.npz", "new", role="new")
        embed_split(ws, "new", None, 0, 0)
        path = Path(ws.vector_sets("new")[0]["path"])
    path.with_name(path.name.replace(".npy", ".ids.npy")).unlink()
    return ws_path


def test_a_passed_over_set_is_warned_of_in_the_log(qtbot: QtBot, window: MainWindow,  # noqa: F811
                                                   tmp_path: Path) -> None:
    """The command line printed a WARNING line for the set its embed passed over; the app, which runs the
    same readers in-process, said nothing, so its smaller sample was a silent one."""
    ws_path = _workspace_with_a_damaged_id_list(tmp_path)
    window.log_dock.hide()
    assert window.ctx.open_workspace(ws_path)
    page = window.show_page("gallery")
    page.embed("new", sample=30)  # a sample is drawn around the items already held: a reader of every set
    wait_for_jobs(qtbot, window)
    qtbot.waitUntil(lambda: "was passed over" in window.log_view.toPlainText(), timeout=5_000)
    lines = [line for line in window.log_view.toPlainText().splitlines() if "was passed over" in line]
    assert len(lines) == 1 and "WARNING" in lines[0] and "vector set 1 of model 'new'" in lines[0]
    qtbot.waitUntil(window.log_dock.isVisible, timeout=5_000)  # not left in a hidden log
    assert not error_dialogs(window)
    with Workspace.open(ws_path) as ws:
        assert ws.ids_with_vectors("new").size == 30  # the sample was embedded again


def test_verify_stored_files_names_a_changed_file_and_writes_nothing(qtbot: QtBot, window: MainWindow,  # noqa: F811
                                                                     tmp_path: Path) -> None:
    """The Workspace page's "Verify stored files" runs the same check as `embridge info --verify`."""
    ws_path = _workspace_with_a_damaged_id_list(tmp_path)
    with Workspace.open(ws_path) as ws:
        vectors = Path(ws.vector_sets("new")[0]["path"])
    before = vectors.read_bytes()
    window.log_dock.hide()
    assert window.ctx.open_workspace(ws_path)
    page = window.show_page("workspace")
    qtbot.waitUntil(page.verify_button.isEnabled, timeout=10_000)
    qtbot.mouseClick(page.verify_button, Qt.MouseButton.LeftButton)
    wait_for_jobs(qtbot, window)
    qtbot.waitUntil(lambda: "damaged; nothing was changed" in page.summary.toPlainText(), timeout=10_000)
    text = page.summary.toPlainText()
    assert "DAMAGED: id list of vector set #1 (new, 60 x 8)" in text and "missing" in text
    qtbot.waitUntil(window.log_dock.isVisible, timeout=5_000)
    assert vectors.read_bytes() == before and page.verify_button.isEnabled()
    assert not error_dialogs(window)
    Workspace.create(tmp_path / "other").close()  # another workspace, then this one again: no earlier check
    assert window.ctx.open_workspace(tmp_path / "other") and window.ctx.open_workspace(ws_path)
    page.refresh()
    assert "Last check" not in page.summary.toPlainText()


def test_the_gallery_table_marks_a_damaged_set_as_info_does(qtbot: QtBot, window: MainWindow,  # noqa: F811
                                                            tmp_path: Path) -> None:
    """A vector file cut short showed as a plain row; only a file gone was marked."""
    from embridge.core.embed import embed_split

    ws_path = _workspace_with_a_damaged_id_list(tmp_path)
    with Workspace.open(ws_path) as ws:
        embed_split(ws, "new", None, 0, 0)  # set 2: every item again
        second = Path(ws.vector_sets("new")[1]["path"])
    second.write_bytes(second.read_bytes()[:100])
    assert window.ctx.open_workspace(ws_path)
    page = window.show_page("gallery")
    paths = [page.sets_table.item(row, 6).text() for row in range(page.sets_table.rowCount())]
    assert paths[0].startswith("MISSING: ") and paths[1] == f"DAMAGED: {second}", paths
    assert not error_dialogs(window)


def test_a_failed_jobs_error_dialog_repeats_the_sets_passed_over(qtbot: QtBot, window: MainWindow,  # noqa: F811
                                                                  tmp_path: Path) -> None:
    """A job failing for want of the vectors a damaged set held gave its error alone: the set's warning, which
    may be why, was only in the log (the command line prints it after its error line)."""
    from embridge.core.errors import InputError

    ws_path = _workspace_with_a_damaged_id_list(tmp_path)
    assert window.ctx.open_workspace(ws_path)

    def job(ws: Workspace, on_progress: object, should_stop: object) -> None:
        if ws.ids_with_vectors("new").size == 0:  # the damaged set is passed over: no item has new's vectors
            raise InputError("--new", "no item has vectors of model 'new'")

    window.ctx.run("Train", job)
    wait_for_jobs(qtbot, window)
    qtbot.waitUntil(lambda: bool(error_dialogs(window)), timeout=5_000)
    (dialog,) = error_dialogs(window)
    assert dialog.headline.startswith("--new: no item has vectors of model 'new' WARNING: vector set 1 of model "
                                      "'new' was passed over: its items count as holding none"), dialog.headline
    dialog.close()
