"""``plan`` on workspaces whose records do not line up: a report.json that is not the report its row names,
a layer whose training run record is gone, and a gallery the workspace already holds every new vector of."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from judged_fixtures import build_judged_workspace

from embridge.core.errors import InputError
from embridge.core.plan import Throughput, plan_upgrade
from embridge.core.report.build import ReportOptions, build_report
from embridge.core.store import Workspace
from embridge.core.train.runs import train_run

RATE = Throughput(embed_items_per_s=500.0, adapter_items_per_s=1e6)


@pytest.fixture
def judged(tmp_path: Path) -> dict[str, Any]:
    case = build_judged_workspace(tmp_path / "ws", n_docs=200, n_queries=60)
    with Workspace.open(case["path"]) as ws:
        affine = train_run(ws, "affine", device="cpu")["run_id"]
        fusion = train_run(ws, "fusion", device="cpu")["run_id"]
        report = build_report(ws, affine, ReportOptions(n_boot=20, backfill_steps=5))
    return {**case, "affine": affine, "fusion": fusion, "report": report}


def test_a_gallery_whose_new_vectors_are_all_held_says_the_backfill_copies_them(judged: dict) -> None:
    """The note was given only while some, not all, items held new vectors: 'Re-embeds all 200' stood alone."""
    with Workspace.open(judged["path"]) as ws:
        plan = plan_upgrade(ws, report=judged["report"], throughput=RATE)
    assert judged["report"].sizes["gallery"] == judged["report"].sizes["gallery_full"] == 200
    assert any("the 200 whose new vectors this workspace holds" in note and "copies them" in note
               for note in plan.notes), plan.notes


def test_a_report_file_that_is_not_the_report_its_row_names_is_one_line(judged: dict) -> None:
    """A report.json without its report_id ended in 'unexpected TypeError: int() argument ...'."""
    path = Path(judged["report"].json_file)
    path = path if path.is_absolute() else judged["path"] / path
    for stored in ({"schema": "embridge.report/1"}, {**json.loads(path.read_text()), "report_id": 99}):
        path.write_text(json.dumps(stored))
        with Workspace.open(judged["path"]) as ws, pytest.raises(InputError) as caught:
            plan_upgrade(ws, run_id=judged["affine"], throughput=RATE)
        assert str(caught.value).startswith(f"{path}: holds report {stored.get('report_id')}, not report "
                                            f"{judged['report'].report_id}")


def test_a_layer_whose_run_record_is_gone_is_not_offered_and_blocks_nothing(judged: dict) -> None:
    """Every plan of the model pair failed with 'no run with id N', N a run nobody asked for."""
    with sqlite3.connect(judged["path"] / "embridge.db") as db:  # as a hand edit would, foreign keys unchecked
        db.execute("delete from runs where id = ?", [judged["fusion"]])
    with Workspace.open(judged["path"]) as ws:
        plan = plan_upgrade(ws, run_id=judged["affine"], throughput=RATE)
    assert "fusion" not in {o["name"] for o in plan.options}
