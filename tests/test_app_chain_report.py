"""A chain report on the Reports page: its matrix, AC and AM, and where they were measured, as ``embridge
chain`` says them (the page read a chain report as an upgrade report: 'protocol not recorded', no headline,
an empty table)."""

from __future__ import annotations

from pathlib import Path

import pytest
from app_fixtures import no_threads_left, wait_for_jobs, window
from pytestqt.qtbot import QtBot
from report_fixtures import build_chain_workspace

from embridge.app.main_window import MainWindow
from embridge.core.report.chain import chain_report
from embridge.core.report.chain_text import chain_lines
from embridge.core.store import Workspace

__all__ = ["no_threads_left", "window"]
pytestmark = pytest.mark.usefixtures("no_threads_left")


def test_the_reports_page_shows_a_chain_reports_matrix_ac_and_am(qtbot: QtBot, window: MainWindow,
                                                                  tmp_path: Path) -> None:
    info = build_chain_workspace(tmp_path / "ws")
    with Workspace.open(info["path"]) as ws:
        chain = chain_report(ws, info["models"], info["runs"]).chain
    assert chain is not None
    assert window.ctx.open_workspace(info["path"])
    window.show_page("reports")
    wait_for_jobs(qtbot, window)
    page = window.pages["reports"]
    # the run in focus has no report: said as such, with the others on offer (it read "No report yet")
    run = page._runs[page.run_combo.currentIndex()]["id"]
    assert page.verdict.text().startswith(f"Run {run} has no report yet: build one for it, or choose one of the ")
    assert "of other runs in the Report list" in page.verdict.text()
    page.report_combo.setCurrentIndex(0)  # the newest report: the chain's (the focused run has none)
    text = page.verdict.text()
    assert "protocol not recorded" not in text
    assert f"AC {chain['ac']:.3f}  AM {chain['am']:.3f}" in text and "v1 → v2 → v3" in text
    for line in chain_lines(chain)[-len(chain["measured_on"]):]:  # the command's 'measured on' sentences
        assert line[1:] in text
    assert chain["criterion"] and all(f"{c['query']} queries / {c['gallery']} gallery" in text
                                      for c in chain["criterion"])
    table = page.metrics
    headers = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    assert headers[1:] == ["v1/v1", "v2/v1", "v2/v2", "v3/v1", "v3/v2", "v3/v3"]
    rows = {table.item(r, 0).text(): r for r in range(table.rowCount())}
    metric = chain["metric"]
    assert metric in rows
    shown = float(table.item(rows[metric], headers.index("v3/v1")).text())
    assert shown == pytest.approx(chain["matrix"][2][0], abs=0.0005)
