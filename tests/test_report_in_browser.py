"""The HTML report in a real browser: headless Chromium loads it without console errors, every
figure is drawn at a visible size, and nothing is wider than a 1280-px page."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.headless_chromium import Page
from report_fixtures import DemoCase, demo_case

from embridge.core.report.report_export import report_figures

PAGE_WIDTH = 1280
MEASURE = """(() => {
  const width = document.documentElement.clientWidth;
  const box = el => el.getBoundingClientRect();
  const figures = [...document.querySelectorAll('figure')].map(f => {
    const svg = f.querySelector('svg'), r = svg ? box(svg) : {width: 0, height: 0, left: 0, right: 0};
    const style = svg ? getComputedStyle(svg) : {display: 'none', visibility: 'hidden'};
    return {id: f.id, width: r.width, height: r.height, left: r.left, right: r.right,
            shown: !!svg && style.display !== 'none' && style.visibility !== 'hidden',
            marks: svg ? svg.querySelectorAll('path, use, rect, text').length : 0};
  });
  const tables = [...document.querySelectorAll('table')].map((t, i) => ({index: i, left: box(t).left,
    right: box(t).right, scroll: t.parentElement.scrollWidth > t.parentElement.clientWidth + 1}));
  return {width, scrollWidth: document.documentElement.scrollWidth, figures, tables,
          title: document.title};
})()"""


@pytest.fixture(scope="module")
def case(demo_workspace_path: Path, tmp_path_factory: pytest.TempPathFactory) -> DemoCase:
    return demo_case(demo_workspace_path, tmp_path_factory)


def test_report_loads_cleanly_with_every_figure_visible_and_tables_fitting(case: DemoCase) -> None:
    html = Path(case.report.html_file)
    with Page(width=PAGE_WIDTH, height=900) as page:
        page.load(html)
        seen = page.evaluate(MEASURE)
        errors = list(page.console)
    assert errors == [], errors
    assert seen["title"]
    expected = set(report_figures(case.report))
    assert {f["id"].removeprefix("figure-") for f in seen["figures"]} == expected
    for figure in seen["figures"]:
        assert figure["shown"], figure
        assert figure["width"] >= 300 and figure["height"] >= 150, figure  # drawn at a readable size
        assert figure["marks"] > 10, figure  # bars, lines and labels were rendered
        assert 0 <= figure["left"] and figure["right"] <= seen["width"], figure
    assert seen["tables"], "the report has no tables"
    for table in seen["tables"]:
        assert table["left"] >= 0 and table["right"] <= seen["width"] + 0.5, table
    assert seen["scrollWidth"] <= seen["width"], "the page scrolls sideways at 1280 px"


def test_a_broken_page_is_caught(tmp_path: Path) -> None:
    """The check sees console errors and a figure wider than the page (it can fail)."""
    bad = tmp_path / "bad.html"
    bad.write_text("<html><head><title>t</title></head><body><script>console.error('boom');"
                   "undefined_function();</script><table style='width:2000px'><tr><td>wide</td></tr></table>"
                   "</body></html>", encoding="utf-8")
    with Page(width=PAGE_WIDTH, height=900) as page:
        page.load(bad)
        seen = page.evaluate(MEASURE)
        errors = list(page.console)
    assert {e["source"] for e in errors} >= {"console", "exception"}
    assert any("boom" in e["text"] for e in errors)
    assert seen["tables"][0]["right"] > seen["width"]


def test_labels_of_dollars_and_great_length_are_drawn_as_typed_within_the_page(
        demo_workspace_path: Path, tmp_path: Path) -> None:
    """A label holding '$...$' was read as math and failed the whole report (exit 3: "Unknown symbol"),
    and one of 10,000 characters made the page 164,666 px wide."""
    import shutil

    from embridge.core.report.build import build_report
    from embridge.core.store import Workspace
    from embridge.core.train.runs import train_run

    shutil.copytree(demo_workspace_path, tmp_path / "ws")
    long_label = "L" * 10_000
    with Workspace.open(tmp_path / "ws") as ws:
        with ws.transaction():
            ws.db.execute("update items set label = ? where label = '3'", [r"$\foo$ and $HOME_$"])
            ws.db.execute("update items set label = ? where label = '5'", ["$5 or $10"])
            ws.db.execute("update items set label = ? where label = '7'", [long_label])
        report = build_report(ws, train_run(ws, "affine", device="cpu")["run_id"])
    html = Path(report.html_file)
    text = html.read_text(encoding="utf-8")
    assert r"$\foo$ and $HOME_$" in text and "$5 or $10" in text and long_label in text
    with Page(width=PAGE_WIDTH, height=900) as page:
        page.load(html)
        seen = page.evaluate(MEASURE)
        errors = list(page.console)
    assert errors == [] and seen["figures"], errors
    assert seen["scrollWidth"] <= seen["width"], f"the page is {seen['scrollWidth']} px wide"
