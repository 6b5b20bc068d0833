"""Numbers measured on data the workspace has since outgrown are named as such on every surface.

The gallery grows (an import and its embedding) after a layer was trained and reported: the runs
listing and the app's pages say the recorded numbers describe the earlier data, a plan measures a
fresh report instead of weighing the old one, and an export warns that the numbers it ships are not
the workspace's current ones. Nothing is flagged while the data stays as it was.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from embridge.core.cli.main import main
from embridge.core.data_state import DataState, changes_since
from embridge.core.store import Workspace


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def _grow_gallery(ws: Path, tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Twelve more gallery images (copies of query images under their labels), embedded by the old model."""
    extra = tmp / f"extra-{tmp.name}"
    for label in ("0", "1", "2"):
        (extra / label).mkdir(parents=True)
        for image in sorted((ws / "demo-items" / "query" / label).iterdir())[:4]:
            shutil.copy(image, extra / label / f"{tmp.name}-{image.name}")
    _run(["import", "-w", str(ws), "--path", str(extra), "--format", "images", "--split", "gallery"], capsys)
    _run(["embed", "-w", str(ws), "--model", "old-mlp"], capsys)


def test_numbers_measured_before_the_gallery_grew_are_named_stale(demo_copy: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    ws = str(demo_copy)
    _run(["train", "-w", ws, "--method", "procrustes"], capsys)
    _run(["report", "-w", ws, "--run", "1"], capsys)
    listed = json.loads(_run(["runs", "-w", ws, "--json"], capsys))["runs"]
    assert [r["stale"] for r in listed] == [None, None]
    plan = json.loads(_run(["plan", "-w", ws, "--run", "1", "--json"], capsys))
    assert plan["report_id"] == 1 and not any("measured before" in n for n in plan["notes"])  # current: reused

    _grow_gallery(demo_copy, tmp_path, capsys)
    listed = json.loads(_run(["runs", "-w", ws, "--json"], capsys))["runs"]
    train, report = listed[0], listed[1]
    for run in (train, report):
        assert run["stale"].startswith("measured before the workspace changed (12 items added; model 'old-mlp' has "
                                       "vectors added (vector set ")
        assert run["stale"].endswith("'embridge report --run 1' measures it as it is now")
    text = _run(["runs", "-w", ws], capsys)
    assert text.count("measured before the workspace changed") == 2

    with Workspace.open(demo_copy) as w:
        gallery = w.gallery_count()
        reports = len(w.reports())
    plan = json.loads(_run(["plan", "-w", ws, "--run", "1", "--json"], capsys))
    assert plan["report_id"] == reports + 1 and plan["gallery_full"] == gallery == 997 + 12
    assert "report 1 was measured before the workspace changed (12 items added" in plan["notes"][-1]
    assert plan["protocols"]["old/old"]["text"].endswith(f"against the whole gallery ({gallery} items), relevance: "
                                                          "same label; exact cosine search")
    # the fresh report is current; the training run's own held-out numbers still describe the old gallery
    listed = json.loads(_run(["runs", "-w", ws, "--json"], capsys))["runs"]
    assert listed[0]["stale"] is not None and listed[-1]["kind"] == "report" and listed[-1]["stale"] is None

    exported = json.loads(_run(["bundle", "export", "-w", ws, "--run", "1", "--out", str(tmp_path / "b.zip"),
                                "--json"], capsys))
    assert exported["stale"] is None and exported["warning"] is None  # ships the fresh report
    _grow_gallery(demo_copy, tmp_path / "again", capsys)
    exported = json.loads(_run(["bundle", "export", "-w", ws, "--run", "1", "--out", str(tmp_path / "c.zip"),
                                "--json"], capsys))
    assert exported["warning"].startswith("WARNING: the bundle's numbers were measured before the workspace "
                                          "changed (12 items added; model 'old-mlp' has vectors added")
    text = _run(["bundle", "export", "-w", ws, "--run", "1", "--out", str(tmp_path / "d.zip")], capsys)
    assert text.rstrip().splitlines()[-1] == exported["warning"]


def test_only_the_measured_models_vectors_count() -> None:
    """A third model's new vectors change nothing the old/new pair was measured on."""
    then = DataState(100, 100, 0, {"1": [1], "2": [2], "3": [3]}, {"1": "old", "2": "new", "3": "other"})
    now = DataState(100, 100, 0, {"1": [1], "2": [2], "3": [3, 4]}, {"1": "old", "2": "new", "3": "other"})
    assert changes_since(then, now, ("old", "new")) == []
    assert changes_since(then, now, None) == ["model 'other' has vectors added (vector set 4)"]
    renamed = DataState(100, 100, 0, {"1": [1], "2": [2, 5], "3": [3]}, {"1": "old", "2": "new-v2", "3": "other"})
    assert changes_since(then, renamed, ("old", "new")) == ["model 'new-v2' has vectors added (vector set 5)"]
    more = DataState(103, 103, 7, {"1": [1], "2": [2], "3": [3]}, {"1": "old", "2": "new", "3": "other"})
    assert changes_since(then, more, ("old", "new")) == ["3 items added", "7 relevance judgments added"]
    assert DataState.from_json(more.to_json()) == more
