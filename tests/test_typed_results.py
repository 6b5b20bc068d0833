"""Reports, plans and runs are typed objects with one headline definition and a versioned JSON form.

Every surface (the command line's report and plan JSON, report.json and report.html, the app's
Reports page, a bundle's manifest) shows the headline numbers and per-cell headline metrics of
:mod:`embridge.core.evaluation.headline`, measured on the demo.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import numpy as np
import pytest
from app_fixtures import no_threads_left, window
from pytestqt.qtbot import QtBot
from report_fixtures import DemoCase, demo_case

from embridge.app.main_window import MainWindow
from embridge.core.cli.main import main
from embridge.core.cli.report_cmds import report_data
from embridge.core.errors import InputError
from embridge.core.evaluation.headline import (
    HEADLINE,
    REPORT_SUMMARY,
    RUN_SUMMARY,
    headline_metrics,
    table_metrics,
)
from embridge.core.formatting import format_duration, format_share
from embridge.core.json_values import dumps, json_safe
from embridge.core.plan import Plan, plan_upgrade
from embridge.core.report.build import load_report
from embridge.core.report.report_record import Report
from embridge.core.run_record import RunRecord
from embridge.core.store import Workspace

__all__ = ["no_threads_left", "window"]


@pytest.fixture(scope="module")
def case(demo_workspace_path: Path, tmp_path_factory: pytest.TempPathFactory) -> DemoCase:
    return demo_case(demo_workspace_path, tmp_path_factory)


def test_one_headline_definition() -> None:
    assert HEADLINE == ("old_old_top1", "new_new_top1", "upgraded_top1", "gain_retained")
    assert set(HEADLINE) <= set(REPORT_SUMMARY) and set(HEADLINE) <= set(RUN_SUMMARY)
    assert headline_metrics(10, "mAP@R") == ["top1", "top5", "recall@10", "mAP@R"]
    # tables expand recall@k to every k and add judged metrics only where a cell has them
    assert table_metrics([1, 5, 10], 10, "mAP", present={"top1": 0.5}) == \
        ["top1", "top5", "recall@1", "recall@5", "recall@10", "mAP"]
    assert table_metrics([1, 10], 10, "mAP", present={"ndcg@10": 0.4})[-1] == "ndcg@10"


def test_every_surface_shows_the_same_headline(case: DemoCase, capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path) -> None:
    report = case.report
    metrics = report.headline_metrics
    assert metrics == ["top1", "top5", "recall@10", "mAP"]
    assert all(isinstance(report.headline[k], float) for k in HEADLINE)

    # the command line's report JSON: the headline numbers at top level, every headline metric per cell
    cli = json_safe(report_data(report))
    assert {k: cli[k] for k in HEADLINE} == {k: report.headline[k] for k in HEADLINE}
    for name, cell in cli["cells"].items():  # the table's metrics, and the information-retrieval recall beside them
        assert [m for m in cell if m != "n_queries" and not m.startswith("recall_frac@")] == report.table_metrics(
            report.cells[name])
        assert {m: v for m, v in cell.items() if m.startswith("recall_frac@")} == report.recall_fractions(name) != {}
        assert {m: cell[m] for m in metrics} == {m: report.cells[name]["metrics"][m] for m in metrics}

    # report.json: the same headline, CIs for exactly the headline metrics; the stored summary and report.html
    stored = json.loads(Path(str(report.json_file)).read_text(encoding="utf-8"))
    assert {k: stored["headline"][k] for k in HEADLINE} == {k: report.headline[k] for k in HEADLINE}
    assert all(list(cell["ci"]) == metrics for cell in stored["cells"].values())
    page = html.unescape(Path(str(report.html_file)).read_text(encoding="utf-8"))
    assert all(f"<th>{m}</th>" in page for m in metrics)
    assert f'<td class="n">{report.headline["upgraded_top1"]:.4f}</td>' in page  # the verdict's number table

    # the plan (command line): the stay and full-backfill options carry exactly the headline metrics
    assert main(["plan", "--workspace", str(case.path), "--device", "cpu", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    options = {o["name"]: o for o in plan["options"]}
    assert list(options["stay"]["quality"]) == metrics and list(options["full_backfill"]["quality"]) == metrics
    assert options["stay"]["quality"]["top1"] == report.headline["old_old_top1"]
    assert options["full_backfill"]["quality"]["top1"] == report.headline["ceiling_top1"]

    # a bundle's manifest: the report's summary and the run's summary both lead with the headline
    from embridge.core.bundle.bundle_export import export_bundle

    with Workspace.open(case.path) as ws:
        manifest = export_bundle(ws, tmp_path / "b.zip", [case.run_id])["manifest"]
    values = manifest["metrics"]["values"]
    assert {k: values[k] for k in HEADLINE} == {k: report.headline[k] for k in HEADLINE}
    step = manifest["chain"][0]["metrics"]
    assert set(HEADLINE) <= set(step) and set(step) <= set(RUN_SUMMARY)
    assert step["upgraded_top1"] == pytest.approx(report.headline["upgraded_top1"])


def test_reports_page_table_lists_the_headline_metrics(case: DemoCase, qtbot: QtBot,
                                                       window: MainWindow) -> None:
    window.ctx.open_workspace(case.path)
    reports = window.show_page("reports")
    reports.show_report(case.report)
    rows = [reports.metrics.item(r, 0).text() for r in range(reports.metrics.rowCount())]
    cli_cells = report_data(case.report)["cells"]
    assert rows == [m for m in next(iter(cli_cells.values())) if m != "n_queries" and not m.startswith("recall_frac@")]
    assert set(case.report.headline_metrics) <= set(rows)
    assert f"upgraded top-1 {format_share(case.report.headline['upgraded_top1'])}" in reports.verdict.text()


def test_report_plan_and_run_round_trip_with_their_schema(case: DemoCase) -> None:
    report = case.report
    data = report.to_json()
    assert data["schema"] == "embridge.report/1" and report.schema_version == Report.SCHEMA_VERSION == 1
    again = Report.from_json(json.loads(json.dumps(data)))
    assert again.to_json() == data and again.headline_metrics == report.headline_metrics
    with Workspace.open(case.path) as ws:
        loaded = load_report(ws, int(report.report_id or 0))
        assert loaded.to_json() == data and loaded.run_id == case.run_id
        run = RunRecord.from_row(ws.run(case.run_id))
        plan = plan_upgrade(ws, case.run_id, device="cpu")
    assert run.to_json()["schema_version"] == 1 and RunRecord.from_json(run.to_json()) == run
    assert run.headline == {k: run.metrics[k] for k in HEADLINE} and run.completed and run.kind == "train"
    plan_json = plan.to_json()
    assert plan_json["schema"] == "embridge.plan/1" and plan.schema_version == 1
    assert Plan.from_json(json.loads(dumps(plan_json))).to_json() == plan_json
    assert plan.recommended["name"] == plan.recommendation and plan.report_id == report.report_id
    with pytest.raises(InputError, match="embridge.report/2"):
        Report.from_json({**data, "schema": "embridge.report/2"})
    with pytest.raises(InputError, match="not an embridge report"):
        Report.from_json({"schema": "something/1"})
    with pytest.raises(InputError, match="embridge.plan/9"):
        Plan.from_json({**plan_json, "schema": "embridge.plan/9"})
    with pytest.raises(InputError, match="schema version 7"):
        RunRecord.from_json({**run.to_json(), "schema_version": 7})


def test_one_json_conversion_and_one_formatter() -> None:
    value = {"a": np.float32(0.5), 2: [np.nan, np.int64(3)], "b": np.array([1.0, np.inf]), "p": Path("x/y")}
    assert json_safe(value) == {"a": 0.5, "2": [None, 3], "b": [1.0, None], "p": "x/y"}
    assert dumps({"x": math.nan}) == '{"x": null}'
    assert [format_share(v) for v in (0.1234, None, math.nan, math.inf, "x")] == ["12.3%", "n/a", "n/a", "n/a", "n/a"]
    assert format_share(0.956, 0) == "96%"
    assert [format_duration(s) for s in (None, 4.25, 600, 9000)] == \
        ["an unmeasured time", "about 4.2 s", "about 10 min", "about 2.5 h"]


def test_times_under_a_tenth_of_a_second_do_not_read_as_free() -> None:
    """A 43 ms re-embedding read '0.0 s' in the plan's table and 'about 0.0 s' in its recommendation."""
    from embridge.core.formatting import format_seconds

    assert [format_seconds(s) for s in (0.0428, 0.0001, 0.0005, 0.0, 0.25, 61)] == \
        ["43 ms", "under 1 ms", "1 ms", "0 s", "0.2 s", "1 min 01 s"]
    assert [format_duration(s) for s in (0.0428, 0.1, 1e-5)] == ["about 43 ms", "about 0.1 s", "under 1 ms"]


def test_a_protocol_of_one_query_says_query() -> None:
    """'1 test queries (query split)' in every sentence naming where a number was measured."""
    from embridge.core.evaluation.task import Protocol

    one = Protocol("test queries (query split)", 1, "the whole gallery", 20, "same label")
    assert one.describe().startswith("1 test query (query split) against the whole gallery (20 items)")
    two = Protocol("test queries (query split)", 2, "the whole gallery", 20, "same label")
    assert two.describe().startswith("2 test queries (query split) against")
