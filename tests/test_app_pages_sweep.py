"""What a new user met on the pages: the suggested bundle destination, controls that allowed what
the core refuses, the Reports table before any report, and the judged metrics (nDCG@10, MRR@10)
and per-cell protocols that `embridge report` and `embridge plan` print."""

from __future__ import annotations

import html
from pathlib import Path

import pytest
from app_fixtures import error_dialogs, no_threads_left, wait_for_jobs, window
from judged_fixtures import build_judged_workspace
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from embridge.app.main_window import MainWindow
from embridge.app.pages.export_page import GALLERY_CHOICES
from embridge.app.pages.page import format_value
from embridge.app.pages.plan_page import COLUMNS
from embridge.core.formatting import format_share
from embridge.core.report.build import ReportOptions, build_report
from embridge.core.report.limits import MAX_BOOTSTRAP, MIN_BOOTSTRAP
from embridge.core.store import Workspace
from embridge.core.train.runs import train_run

__all__ = ["no_threads_left", "window"]
pytestmark = pytest.mark.usefixtures("no_threads_left")


def click(qtbot: QtBot, button: object) -> None:
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def headers(table: object) -> list[str]:
    return [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]  # type: ignore[attr-defined]


def test_untouched_export_page_builds_a_bundle_outside_the_workspace(qtbot: QtBot, window: MainWindow,
                                                                     demo_copy: Path) -> None:
    with Workspace.open(demo_copy) as ws:
        run_id = train_run(ws, "procrustes", device="cpu")["run_id"]
    window.ctx.open_workspace(demo_copy)
    page = window.show_page("export")
    assert not page.verify_button.isEnabled() and not page.open_button.isEnabled()  # no bundle to act on
    suggested = Path(page.out.text())
    assert suggested.parent == demo_copy.resolve().parent and suggested.name == f"run{run_id}-procrustes-ws.zip"
    click(qtbot, page.build_button)
    wait_for_jobs(qtbot, window, 120_000)
    assert not error_dialogs()
    assert suggested.is_file()
    with Workspace.open(demo_copy) as ws:
        assert [Path(b["path"]).resolve() for b in ws.bundles()] == [suggested]
    assert page.table.rowCount() == 1 and page.verify_button.isEnabled() and page.open_button.isEnabled()
    page.table.clearSelection()
    assert not page.verify_button.isEnabled() and not page.open_button.isEnabled()
    # the next suggestion never overwrites the bundle just written
    second = Path(page.out.text())
    assert second != suggested and not second.exists()
    # with the first bundle selected, a second build shows the bundle it wrote, not the one selected before
    page.table.selectRow(0)
    click(qtbot, page.build_button)
    wait_for_jobs(qtbot, window, 120_000)
    assert page.table.rowCount() == 2 and page.table.currentRow() == 0 and page.table.selectedItems()
    assert Path(page.details.toPlainText().split("\n")[0]).resolve() == second.resolve()


def test_bootstrap_box_takes_the_cores_range_and_empty_reports_keep_their_header(qtbot: QtBot, window: MainWindow,
                                                                                 demo_copy: Path) -> None:
    window.ctx.open_workspace(demo_copy)
    reports = window.show_page("reports")
    assert (reports.n_boot.minimum(), reports.n_boot.maximum()) == (MIN_BOOTSTRAP, MAX_BOOTSTRAP)
    assert headers(reports.metrics) == ["Metric"]
    reports.show_report(None)
    assert headers(reports.metrics) == ["Metric"]
    plan = window.show_page("plan")  # a target share of 0, which the core refuses, cannot be entered
    assert plan.target_share.minimum() > 0 and plan.gain_threshold.minimum() == 0


def test_judged_metrics_and_each_numbers_protocol_show_as_the_command_line_prints_them(
        qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    build_judged_workspace(tmp_path / "judged", n_docs=300, n_queries=200)
    with Workspace.open(tmp_path / "judged") as ws:
        run_id = int(train_run(ws, "procrustes", device="cpu")["run_id"])
        report = build_report(ws, run_id, ReportOptions(n_boot=50))
    head = report.headline
    window.ctx.open_workspace(tmp_path / "judged")
    counts = window.show_page("gallery").counts_label.text()  # where relevance comes from, as `info` says it
    assert "relevance judgments: dev 40 " in counts and "labelled" not in counts, counts
    window.ctx.set_focus_run(run_id)
    reports = window.show_page("reports")
    assert reports.report is not None and reports.report.report_id == report.report_id
    table, names = reports.metrics, headers(reports.metrics)
    up = report.upgraded_cell
    rows = {table.item(r, 0).text(): r for r in range(table.rowCount())}
    for key in ("ndcg@10", "mrr@10"):
        assert key in head and f"gain_retained_{key}" in head
        passes = table.item(rows[key], names.index(f"{up} vs old/old")).text()
        assert passes == ("pass" if head[f"compatible_{key}"] else "fail")
        gain = table.item(rows[key], names.index(f"{up} gain retained")).text()
        assert gain == format_share(head[f"gain_retained_{key}"]) != ""  # a share, as `embridge report` prints it
    assert "gain retained (nDCG@10)" in reports.verdict.text()
    browser, marked = reports.flips, 0  # each listed result marked relevant by its judged grade, as the metrics count it
    for kind in (0, 1):
        browser.kind.setCurrentIndex(kind)
        for row, entry in enumerate(browser.visible_entries()):
            browser._show(row)
            for view, items in ((browser.old_results, entry["old"]), (browser.new_results, entry["upgraded"])):
                marks = [view.item(i).text().split()[1] for i in range(view.count())]
                assert marks == ["✓" if item["grade"] > 0 else "✗" for item in items]
                marked += marks.count("✓")
    assert browser.entries and marked > 0

    train = window.show_page("train")  # the run's criterion, on the metric that decides it, as `runs` lists it
    with Workspace.open(tmp_path / "judged") as ws:
        run_metrics = ws.run(run_id)["metrics"]
    names = headers(train.runs_table)
    criterion = train.runs_table.item(0, names.index("Criterion")).text()
    for name, key in (("New/new nDCG@10", "new_new_ndcg@10"), ("Upgraded nDCG@10", "ndcg@10"),
                      ("Gain retained (nDCG@10)", "gain_retained_ndcg@10")):
        assert not train.runs_table.isColumnHidden(names.index(name))
        shown = format_share(run_metrics[key]) if key.startswith("gain") else format_value(run_metrics[key])
        assert key.startswith("gain") or shown == f"{run_metrics[key]:.3f}"  # as `runs` prints it: 0.780, not 0.78
        assert train.runs_table.item(0, names.index(name)).text() == shown != ""  # a gain as a share
    assert criterion == f"{'passes' if run_metrics['compatible_ndcg@10'] else 'FAILS'} (nDCG@10)"
    export = window.show_page("export")  # the run pickers name the number the criterion is decided on
    shown = f"upgraded nDCG@10 {run_metrics['ndcg@10']:.3f}"
    assert shown in export.run_combo.currentText() and shown in export.run_info.text()
    assert "top-1" not in export.run_combo.currentText()

    plan_page = window.show_page("plan")
    click(qtbot, plan_page.plan_button)
    wait_for_jobs(qtbot, window, 120_000)
    assert not error_dialogs() and plan_page.plan is not None
    plan, column = plan_page.plan, COLUMNS.index("nDCG@10")
    assert not plan_page.options.isColumnHidden(column)
    for row, option in enumerate(plan.options):
        expected = format_share(option["quality"]["ndcg@10"]) if "ndcg@10" in option["quality"] else ""
        assert plan_page.options.item(row, column).text() == expected
    summary = html.unescape(plan_page.summary.text())
    lines = plan.measured_on()
    assert {"old/old", "new/new", up} <= {line.split(" measured on ")[0] for line in lines}
    for line in lines:
        assert line in summary


def test_a_refused_destination_names_the_field_not_the_option(qtbot: QtBot, window: MainWindow,
                                                             demo_copy: Path) -> None:
    with Workspace.open(demo_copy) as ws:
        train_run(ws, "procrustes", device="cpu")
    window.ctx.open_workspace(demo_copy)
    page = window.show_page("export")
    inside = demo_copy / "mine.zip"
    page.out.setText(str(inside))
    click(qtbot, page.build_button)
    wait_for_jobs(qtbot, window, 120_000)
    qtbot.waitUntil(lambda: bool(error_dialogs()), timeout=10_000)
    dialogs = error_dialogs()
    assert len(dialogs) == 1
    text = dialogs[0].message_label.text()
    assert text.startswith(f"Destination {inside}: is inside the workspace") and "--out" not in text
    dialogs[0].close()
    assert not inside.exists()
    with Workspace.open(demo_copy) as ws:
        assert ws.bundles() == []
    yes = next(text for text, choice in GALLERY_CHOICES.items() if choice is True)
    page.gallery.setCurrentText(yes)  # a transformed gallery of a backward layer: the field is named
    page.out.setText(str(demo_copy.parent / "gallery.zip"))
    click(qtbot, page.build_button)
    wait_for_jobs(qtbot, window, 120_000)
    qtbot.waitUntil(lambda: bool(error_dialogs()), timeout=10_000)
    text = error_dialogs()[0].message_label.text()
    assert text.startswith("Transformed gallery: a transformed gallery needs an old->new") and "--gallery" not in text
    error_dialogs()[0].close()


def test_an_existing_destination_is_replaced_only_when_the_user_agrees_and_only_if_a_bundle(
        qtbot: QtBot, window: MainWindow, demo_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from embridge.app import dialogs

    with Workspace.open(demo_copy) as ws:
        train_run(ws, "procrustes", device="cpu")
    window.ctx.open_workspace(demo_copy)
    page = window.show_page("export")
    questions: list[str] = []
    answer = {"yes": False}
    monkeypatch.setattr(dialogs, "confirm", lambda parent, title, text: questions.append(text) or answer["yes"])
    notes = tmp_path / "notes.zip"
    notes.write_bytes(b"not a bundle")
    page.out.setText(str(notes))
    click(qtbot, page.build_button)  # declined: nothing runs
    assert len(questions) == 1 and str(notes) in questions[0] and page.building.job is None
    answer["yes"] = True
    click(qtbot, page.build_button)  # agreed, but it is no bundle: refused, kept
    wait_for_jobs(qtbot, window, 120_000)
    qtbot.waitUntil(lambda: bool(error_dialogs()), timeout=10_000)
    dialogs_shown = error_dialogs()
    refusal = dialogs_shown[0].message_label.text()
    assert len(dialogs_shown) == 1 and "is not a bundle" in refusal and "--" not in refusal  # no option the app lacks
    dialogs_shown[0].close()
    assert notes.read_bytes() == b"not a bundle"
    bundle = tmp_path / "upgrade.zip"
    page.out.setText(str(bundle))
    click(qtbot, page.build_button)  # a new name: no question
    wait_for_jobs(qtbot, window, 120_000)
    assert len(questions) == 2 and bundle.is_file() and not error_dialogs()
    first = bundle.stat().st_ino
    page.out.setText(str(bundle))
    click(qtbot, page.build_button)  # the earlier bundle, replaced once agreed
    wait_for_jobs(qtbot, window, 120_000)
    assert len(questions) == 3 and not error_dialogs() and bundle.is_file() and bundle.stat().st_ino != first
