"""A report killed after writing its files but before its row commits leaves ``reports/<id>/`` that no
row names: the next report takes the folder over, and the sweep removes it once it is old."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from embridge.core.cli.main import main
from embridge.core.store import Workspace

KILLED_AT_REGISTER = """
import os, signal, sys
from embridge.core.store import Workspace
from embridge.core.cli.main import main

def killed(*args, **kwargs):  # the files are written; the row and the run's completion are not committed
    os.kill(os.getpid(), signal.SIGKILL)

Workspace.add_report = killed
main(["report", "-w", sys.argv[1], "--bootstrap", "20"])
"""


def _kill_a_report(ws_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", KILLED_AT_REGISTER, str(ws_path)], capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr


@pytest.fixture
def trained(demo_copy: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    assert main(["train", "-w", str(demo_copy), "--method", "procrustes"]) == 0
    capsys.readouterr()
    return demo_copy


def _left(ws_path: Path, report_id: int) -> Path:
    """The folder the killed report left: its two files under their final names, and no row."""
    folder = ws_path / "reports" / str(report_id)
    assert sorted(p.name for p in folder.iterdir()) == ["report.html", "report.json"]
    with Workspace.open(ws_path) as ws:
        assert report_id not in [int(r["id"]) for r in ws.reports()]
        assert ws.runs("report")[-1]["status"] == "interrupted"
    return folder


def test_the_next_report_takes_over_a_traineds_folder_and_removes_it_when_it_fails(
        trained: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The folder was treated as someone else's: a report that then failed left the killed one's files
    under the final name, where they read as report 1 of a run that never finished."""
    _kill_a_report(trained)
    folder = _left(trained, 1)

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Workspace, "add_report", full_disk)
    assert main(["report", "-w", str(trained), "--bootstrap", "20"]) == 1
    assert not folder.exists()
    monkeypatch.undo()

    assert main(["report", "-w", str(trained), "--bootstrap", "20", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    with Workspace.open(trained) as ws:
        (row,) = ws.reports()
        run_id = ws.runs("report")[-1]["id"]
    assert int(row["id"]) == 1 and Path(out["report_json"]) == folder / "report.json"
    assert json.loads((folder / "report.json").read_text())["report_run_id"] == run_id


def test_the_sweep_removes_a_traineds_folder_once_old_and_nothing_else(
        trained: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["report", "-w", str(trained), "--bootstrap", "20"]) == 0  # report 1, registered
    _kill_a_report(trained)
    orphan = _left(trained, 2)
    users = trained / "reports" / "7"
    users.mkdir()
    (users / "report.json").write_text("{}")
    (users / "notes.txt").write_text("mine")

    with Workspace.open(trained):
        pass  # a fresh folder is left alone: its writer may be about to commit
    assert orphan.exists()
    monkeypatch.setattr("embridge.core.store.workspace_folder.TEMP_MAX_AGE_S", -60)  # everything counts as old
    with Workspace.open(trained) as ws:
        assert [int(r["id"]) for r in ws.reports()] == [1]
    assert not orphan.exists()
    assert sorted(p.name for p in (trained / "reports" / "1").iterdir()) == ["report.html", "report.json"]
    assert sorted(p.name for p in users.iterdir()) == ["notes.txt", "report.json"]  # not only a report's files
