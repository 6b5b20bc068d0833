"""Changes made outside the app (the command line, another process) show on its pages: each page
re-reads the workspace when shown, View ▸ Refresh (F5) re-reads it at once, and a low-rate check
of the workspace database refreshes the visible page without any click."""

from __future__ import annotations

from pathlib import Path

import pytest
from app_fixtures import no_threads_left, window
from pytestqt.qtbot import QtBot

from embridge.app.main_window import MainWindow
from embridge.core.models.manage import rename_model
from embridge.core.report.build import ReportOptions, build_report
from embridge.core.store import Workspace
from embridge.core.train.runs import train_run

__all__ = ["no_threads_left", "window"]
pytestmark = pytest.mark.usefixtures("no_threads_left")


def outside_train_and_report(path: Path) -> tuple[int, int]:
    """What `embridge train` and `embridge report` do, from a handle of its own."""
    with Workspace.open(path) as ws:
        run_id = int(train_run(ws, "procrustes", device="cpu")["run_id"])
        report = build_report(ws, run_id, ReportOptions(n_boot=20))
        return run_id, int(report.report_id or 0)


def combo_items(combo: object) -> list[str]:
    return [combo.itemText(i) for i in range(combo.count())]  # type: ignore[attr-defined]


def test_pages_show_a_run_report_and_rename_made_outside_after_a_page_change(
        qtbot: QtBot, window: MainWindow, demo_copy: Path) -> None:
    window.ctx.open_workspace(demo_copy)
    for key in ("workspace", "train", "reports", "plan", "export", "models"):
        window.show_page(key)
    window.watch.stop()  # only the page change re-reads here
    assert window.pages["reports"].run_combo.count() == 0
    run_id, report_id = outside_train_and_report(demo_copy)
    with Workspace.open(demo_copy) as ws:
        rename_model(ws, "new-cnn", "new-cnn-v2")
        runs = ws.runs()

    assert window.show_page("workspace").runs.rowCount() == len(runs)
    reports = window.show_page("reports")
    assert reports.run_combo.count() == 1 and f"run {run_id}" in reports.run_combo.currentText()
    assert combo_items(reports.report_combo) == [f"report {report_id} · run {run_id}"]
    assert reports.report is not None and reports.report.report_id == report_id
    assert window.show_page("plan").run_combo.count() == 1
    assert window.show_page("export").run_combo.count() == 1
    assert "new-cnn-v2" in combo_items(window.show_page("train").new_model)
    models = window.show_page("models")
    assert [models.table.item(r, 0).text() for r in range(models.table.rowCount())] == ["old-mlp", "new-cnn-v2"]


def test_refresh_action_rereads_the_visible_page(qtbot: QtBot, window: MainWindow, demo_copy: Path) -> None:
    window.ctx.open_workspace(demo_copy)
    page = window.show_page("export")
    window.watch.stop()
    assert page.run_combo.count() == 0
    outside_train_and_report(demo_copy)
    assert page.run_combo.count() == 0
    refresh = next(a for a in window.findChildren(type(window.menuBar().actions()[0])) if a.text() == "&Refresh")
    assert refresh.shortcut().toString() == "F5"
    refresh.trigger()
    assert page.run_combo.count() == 1


def test_the_visible_page_follows_the_database_without_a_click(qtbot: QtBot, window: MainWindow,
                                                               demo_copy: Path) -> None:
    window.ctx.open_workspace(demo_copy)
    page = window.show_page("workspace")
    assert window.watch.isActive()
    before = page.runs.rowCount()
    outside_train_and_report(demo_copy)
    with Workspace.open(demo_copy) as ws:
        count = len(ws.runs())
    assert count > before
    qtbot.waitUntil(lambda: page.runs.rowCount() == count, timeout=10_000)
    assert "completed" in [page.runs.item(r, 3).text() for r in range(page.runs.rowCount())]
    window.ctx.close_workspace()
    assert not window.watch.isActive()


def test_no_refresh_without_a_change(qtbot: QtBot, window: MainWindow, demo_copy: Path) -> None:
    """The app's own reads never look like a change (no refresh every tick)."""
    window.ctx.open_workspace(demo_copy)
    window.show_page("workspace")
    calls: list[int] = []
    page = window.pages["workspace"]
    original = page.refresh
    page.refresh = lambda: (calls.append(1), original())[1]  # type: ignore[method-assign]
    qtbot.wait(4_000)
    assert calls == []


def test_a_jobs_result_is_not_shown_in_a_workspace_opened_while_it_ran(qtbot: QtBot, window: MainWindow,
                                                                        tmp_path: Path) -> None:
    """A training started in one workspace finished while another was open, and that one's Train page
    showed its numbers (and took its run as the focus run)."""
    import threading

    from app_fixtures import wait_for_jobs

    first, second = tmp_path / "a", tmp_path / "b"
    for root in (first, second):
        Workspace.create(root).close()
    assert window.ctx.open_workspace(first)
    release, delivered = threading.Event(), []

    def slow(ws: Workspace, on_progress: object, should_stop: object) -> str:
        release.wait(30)
        return str(ws.root)

    assert window.ctx.run("slow job", slow, delivered.append) is not None
    assert window.ctx.open_workspace(second)
    release.set()
    wait_for_jobs(qtbot, window)
    assert delivered == []  # the result stays recorded in the first workspace, not shown in the second
    assert window.ctx.run("quick job", slow, delivered.append) is not None  # in the open one: delivered
    wait_for_jobs(qtbot, window)
    assert delivered == [str(second)]


def test_the_plan_pages_curves_follow_the_run_box_back_to_the_planned_run(qtbot: QtBot, window: MainWindow,
                                                                         demo_copy: Path) -> None:
    """Back on the run just planned, the curves of the other run's report stayed on screen."""
    from app_fixtures import wait_for_jobs

    with Workspace.open(demo_copy) as ws:
        for method in ("procrustes", "affine"):
            run = train_run(ws, method, device="cpu")
            build_report(ws, run["run_id"], ReportOptions(n_boot=20, backfill_steps=3))
    window.ctx.open_workspace(demo_copy)
    plan_page = window.show_page("plan")
    runs = [int(r["id"]) for r in plan_page._runs]
    first, second = sorted(runs)
    plan_page.run_combo.setCurrentIndex(runs.index(first))
    plan_page.make_plan(first, device="cpu")
    wait_for_jobs(qtbot, window)
    assert plan_page.plan is not None and plan_page.plan.run_id == first
    planned_report, rows = plan_page._curves_for, plan_page.options.rowCount()
    summary = plan_page.summary.text()
    assert rows > 0 and "Recommendation" in summary
    plan_page.run_combo.setCurrentIndex(runs.index(second))
    assert plan_page._curves_for != planned_report  # the other run's report
    # its options and recommendation were the planned run's, shown under the other run's name
    assert plan_page.options.rowCount() == 0 and "Recommendation" not in plan_page.summary.text()
    assert f"No plan of run {second} yet" in plan_page.summary.text()
    plan_page.refresh()  # the periodic refresh keeps the box where the user put it
    assert plan_page.run_combo.currentIndex() == runs.index(second) and plan_page.options.rowCount() == 0
    plan_page.run_combo.setCurrentIndex(runs.index(first))
    assert plan_page._curves_for == planned_report == plan_page.plan.report_id
    assert plan_page.options.rowCount() == rows and plan_page.summary.text() == summary


def test_failed_background_loads_leave_no_page_waiting(qtbot: QtBot, window: MainWindow, demo_copy: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed device detection said "detecting…" for the session, and a failed plotting load left the Plan
    page on "Drawing the partial-backfill curves…" with every later attempt blocked."""
    from app_fixtures import close_error_dialogs, wait_for_jobs

    from embridge.app import context, preload
    from embridge.app.pages import plan_page as plan_module

    def broken(*_names: str) -> dict[str, str]:
        raise RuntimeError("no libraries today")

    monkeypatch.setattr(context, "preload", broken)
    monkeypatch.setattr(preload, "preload", broken)
    window.ctx.detect_devices()
    wait_for_jobs(qtbot, window)
    close_error_dialogs()
    assert window.ctx.device_label.startswith("unknown") and not window.ctx.loading_libraries

    with Workspace.open(demo_copy) as ws:
        run = train_run(ws, "procrustes", device="cpu")
        build_report(ws, run["run_id"], ReportOptions(n_boot=20, backfill_steps=3))
    monkeypatch.setattr(plan_module, "PLOT_MODULES", (*plan_module.PLOT_MODULES, "embridge_not_a_plot_module"))
    window.ctx.open_workspace(demo_copy)
    page = window.show_page("plan")
    wait_for_jobs(qtbot, window)
    close_error_dialogs()
    assert not page._loading and "could not be drawn" in page.plot.placeholder.text()


def test_a_refresh_keeps_the_users_picks_by_name_not_by_row(qtbot: QtBot, window: MainWindow,
                                                           demo_copy: Path, tmp_path: Path) -> None:
    """A refresh (the watch after a command-line write, F5, a page change) put the Train page's Old and New
    boxes back on the models of those roles, so Train fitted another pair than the one picked; the Models
    and Export pages kept a row number, so Set role acted on the model below a removed one."""
    from embridge.core.models.manage import remove_model

    with Workspace.open(demo_copy) as ws:
        for name in ("m0", "m1", "m2"):
            ws.add_model(name, "other", {"name": name, "kind": "vectors", "dim": 4, "sha256": name * 32}, None)
        for n in (1, 2):
            ws.add_bundle(None, None, tmp_path / f"b{n}.zip", f"{n}" * 64, {})
    window.watch.stop()
    assert window.ctx.open_workspace(demo_copy)
    train = window.show_page("train")
    for combo, name in ((train.old_model, "m0"), (train.new_model, "m1")):  # what a user's pick does
        combo.setCurrentText(name)
        combo.activated.emit(combo.currentIndex())
    models = window.show_page("models")
    models.table.selectRow([m["name"] for m in models._models].index("m2"))
    export = window.show_page("export")
    export.table.selectRow([b["id"] for b in export._bundles].index(1))
    with Workspace.open(demo_copy) as ws:
        remove_model(ws, "m1")  # listed above m2, and the New box's pick
        ws.add_bundle(None, None, tmp_path / "b3.zip", "3" * 64, {})  # listed above bundle 1
    for key in ("train", "models", "export"):
        window.show_page(key).refresh()
    assert train.old_model.currentText() == "m0"  # kept: still offered
    assert train.new_model.currentText() == "new-cnn"  # gone: the new role's model again
    assert models.selected_name() == "m2"
    assert export._bundles[export.table.currentRow()]["id"] == 1
    qtbot.waitUntil(lambda: not window.ctx.jobs.running(), timeout=30_000)


def test_a_refresh_leaves_the_run_box_on_a_run_without_a_report(qtbot: QtBot, window: MainWindow,
                                                               demo_copy: Path) -> None:
    """With the run picked on the Reports page still without a report, a refresh (F5, a job's end, the
    watch) moved the Run box to the run of the newest report, so Build report built that run's."""
    reported_run, report_id = outside_train_and_report(demo_copy)
    with Workspace.open(demo_copy) as ws:
        newer = int(train_run(ws, "affine", device="cpu")["run_id"])
    window.watch.stop()
    assert window.ctx.open_workspace(demo_copy)
    reports = window.show_page("reports")
    reports.run_combo.setCurrentIndex([r["id"] for r in reports._runs].index(newer))
    reports.report_combo.setCurrentIndex(-1)  # what the run picked without a report shows
    for _ in range(2):
        window.refresh_pages()
        assert reports.run_combo.currentText().startswith(f"run {newer} ")
        assert reports.report is None and reports.report_combo.currentIndex() == -1
    reports.run_combo.setCurrentIndex([r["id"] for r in reports._runs].index(reported_run))
    window.refresh_pages()  # the run with a report: its report is the one shown
    assert reports.report is not None and reports.report.report_id == report_id
    qtbot.waitUntil(lambda: not window.ctx.jobs.running(), timeout=30_000)


def test_the_transformed_gallery_is_offered_only_for_a_forward_layer(qtbot: QtBot, window: MainWindow,
                                                                    demo_copy: Path) -> None:
    """The Export page offered 'Transformed gallery: yes' for a backward layer, which the export then
    always refused."""
    with Workspace.open(demo_copy) as ws:
        backward = int(train_run(ws, "procrustes", device="cpu")["run_id"])
        forward = int(train_run(ws, "fct", device="cpu", config={"epochs": 1})["run_id"])
    window.watch.stop()
    assert window.ctx.open_workspace(demo_copy)
    export = window.show_page("export")
    export.refresh()
    shown = {}
    for run_id in (backward, forward):
        export.run_combo.setCurrentIndex([r["id"] for r in export._runs].index(run_id))
        shown[run_id] = export.gallery.isEnabled()
    assert shown == {backward: False, forward: True}
    export.run_combo.setCurrentIndex([r["id"] for r in export._runs].index(backward))
    assert export.gallery.currentIndex() == 0 and "only an old→new" in export.gallery.toolTip()


def test_a_workspace_moved_away_while_open_is_closed_with_a_notice(qtbot: QtBot, window: MainWindow,
                                                                   demo_copy: Path) -> None:
    """Renamed in a file manager while open: pages kept its contents, jobs failed advising 'embridge init'
    at the old path, and Models page edits still went to the moved folder through the open handle."""
    from app_fixtures import close_error_dialogs, error_dialogs

    assert window.ctx.open_workspace(demo_copy)
    moved = demo_copy.with_name("moved")
    demo_copy.rename(moved)
    window._check_workspace()  # what the watch's next tick does
    assert window.ctx.ws is None and window.workspace_label.text() == "No workspace"
    qtbot.waitUntil(lambda: bool(error_dialogs()), timeout=5_000)
    (dialog,) = error_dialogs()
    assert "is no longer there" in dialog.message and str(demo_copy) in dialog.message
    close_error_dialogs()
    assert not demo_copy.exists() and (moved / "embridge.db").is_file()  # nothing made at the old path


def test_a_workspace_deleted_and_made_again_at_its_path_is_reopened(qtbot: QtBot, window: MainWindow,
                                                                    demo_copy: Path, tmp_path: Path) -> None:
    """Deleted and rebuilt between two watch ticks: the pages read the deleted database through the open handle
    while jobs opened the new one by path, so a run picked in the app was another run of the new workspace."""
    import shutil

    from app_fixtures import close_error_dialogs, error_dialogs

    assert window.ctx.open_workspace(demo_copy)
    with Workspace.open(demo_copy) as ws:
        train_run(ws, "procrustes", device="cpu")
    window._check_workspace()
    assert [r["method"] for r in window.ctx.ws.runs("train")] == ["procrustes"]
    fresh = tmp_path / "fresh"
    Workspace.create(fresh).close()
    shutil.rmtree(demo_copy)
    shutil.copytree(fresh, demo_copy)  # a new database file at the same path, with no run
    window._check_workspace()
    assert window.ctx.ws is not None and window.ctx.ws.runs("train") == []
    qtbot.waitUntil(lambda: bool(error_dialogs()), timeout=5_000)
    (dialog,) = error_dialogs()
    assert "was replaced by another" in dialog.message and str(demo_copy) in dialog.message
    close_error_dialogs()


def test_a_ray_watcher_running_does_not_hold_back_changes_made_outside(qtbot: QtBot, window: MainWindow,
                                                                       demo_copy: Path) -> None:
    """The watch skipped every tick while any job ran, and the watcher of a detached Ray backfill runs for
    as long as the backfill does: the pages showed nothing of what the command line changed meanwhile."""
    import threading

    from app_fixtures import wait_for_jobs

    window.ctx.open_workspace(demo_copy)
    models = window.show_page("models")
    release = threading.Event()
    watcher = window.ctx.run_plain("Backfill on Ray (watching)", lambda on_progress, should_stop: release.wait(60))
    window.ray_jobs._ray_job_ids.add(watcher.id)  # as RayJobs._watch registers the job following one
    try:
        with Workspace.open(demo_copy) as ws:
            rename_model(ws, "new-cnn", "new-cnn-v2")
        window._check_workspace()  # what the watch's next tick does
        names = [models.table.item(r, 0).text() for r in range(models.table.rowCount())]
        assert names == ["old-mlp", "new-cnn-v2"] and watcher.running
    finally:
        release.set()
        wait_for_jobs(qtbot, window)
