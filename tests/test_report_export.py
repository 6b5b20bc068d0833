"""report.json and report.html: schema, round trip, every figure inline, no network references."""

from __future__ import annotations

import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from report_fixtures import DemoCase, demo_case

from embridge.core.report.report_export import inline_svg, json_safe, report_figures, save_report
from embridge.core.report.report_record import Report
from embridge.core.store import Workspace


@pytest.fixture(scope="module")
def case(demo_workspace_path: Path, tmp_path_factory: pytest.TempPathFactory) -> DemoCase:
    return demo_case(demo_workspace_path, tmp_path_factory)


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.refs: list[tuple[str, str, str]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "xlink:href", "action", "srcset", "data") and value is not None:
                self.refs.append((tag, name, value))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_json_has_schema_and_round_trips(case: DemoCase) -> None:
    text = Path(case.report.json_file).read_text(encoding="utf-8")
    loaded = json.loads(text)
    assert loaded["schema"] == "embridge.report/1"
    assert loaded == case.report.to_json()
    assert loaded["report_id"] == case.report.report_id
    assert "NaN" not in text and "Infinity" not in text


def test_json_safe_writes_undefined_numbers_as_null() -> None:
    value = {"a": float("nan"), 3: np.float32(0.5), "b": (np.int64(2), float("inf")), "c": np.array([1.5])}
    assert json_safe(value) == {"a": None, "3": 0.5, "b": [2, None], "c": [1.5]}


def test_html_holds_every_figure_and_no_network_reference(case: DemoCase) -> None:
    page = Path(case.report.html_file).read_text(encoding="utf-8")
    figures = report_figures(case.report)
    assert set(figures) == {"cells", "recall", "flips", "per_label", "backfill", "training"}
    assert page.count("<svg") == len(figures)
    for name in figures:
        assert page.count(f'id="figure-{name}"') == 1
    assert "http://" not in page and "https://" not in page
    parser = _Collector()
    parser.feed(page)
    parser.close()
    assert "script" not in parser.tags and "link" not in parser.tags and "iframe" not in parser.tags
    for tag, attr, value in parser.refs:
        assert value.startswith("#") or (tag == "img" and value.startswith("data:")), (tag, attr, value)
    text = " ".join(parser.text)
    head = case.report.headline
    assert f"{head['upgraded_top1']:.4f}" in text and f"{head['old_old_top1']:.4f}" in text
    assert case.report.search["statement"] in text


def test_inline_svg_ids_are_prefixed_and_resolve(case: DemoCase) -> None:
    page = Path(case.report.html_file).read_text(encoding="utf-8")
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids))  # unique across all inlined figures
    refs = set(re.findall(r'href="#([^"]+)"', page)) | set(re.findall(r"url\(#([^)]+)\)", page))
    assert refs and refs <= set(ids)
    svg = '<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"><metadata>x</metadata>' \
          '<path id="a"/><use xlink:href="#a"/></svg>'
    assert inline_svg(svg, "f1") == '<svg><path id="f1-a"/><use xlink:href="#f1-a"/></svg>'


def test_no_temp_files_and_folder_named_by_id(case: DemoCase) -> None:
    folder = Path(case.report.json_file).parent
    assert folder.name == str(case.report.report_id)
    assert sorted(p.name for p in folder.iterdir()) == ["report.html", "report.json"]


def test_failed_registration_leaves_nothing(case: DemoCase, monkeypatch: pytest.MonkeyPatch) -> None:
    minimal = {"schema": "embridge.report/1", "kind": "upgrade", "headline": {"upgraded_top1": math.nan}}
    with Workspace.open(case.path) as ws:
        before = len(ws.reports())

        def broken(*args: object, **kwargs: object) -> None:
            raise OSError("disk went away")

        monkeypatch.setattr(ws, "add_report", broken)
        with pytest.raises(OSError):
            save_report(ws, Report.from_json(minimal))
        monkeypatch.undo()
        expected_id = max((r["id"] for r in ws.reports()), default=0) + 1
        assert not (case.path / "reports" / str(expected_id)).exists()
        assert len(ws.reports()) == before
        row = save_report(ws, Report.from_json(minimal))
        assert row["id"] == expected_id and row["summary"]["upgraded_top1"] is None
