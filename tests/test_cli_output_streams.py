"""The command's output streams: progress that cannot be written is not the work, output that cannot be
written is one line, and a line break inside a path given is shown as part of it, not obeyed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from embridge.core.cli.main import main
from embridge.core.store import Workspace

CLI = [sys.executable, "-m", "embridge.core.cli.main"]


def test_an_unwritable_stderr_does_not_fail_the_work(demo_copy: Path) -> None:
    """Progress went to a full stderr: the training failed, recorded as the workspace's disk being full."""
    with open("/dev/full", "w") as full:
        done = subprocess.run([*CLI, "train", "-w", str(demo_copy), "--method", "procrustes", "--device", "cpu",
                               "--json"], stdout=subprocess.PIPE, stderr=full, text=True, timeout=600)
    assert done.returncode == 0 and json.loads(done.stdout)["status"] == "completed"
    with Workspace.open(demo_copy) as ws:
        assert [r["status"] for r in ws.runs("train")] == ["completed"]


def test_an_unwritable_stdout_is_one_line_and_a_reader_that_quit_is_quiet(demo_copy: Path) -> None:
    with open("/dev/full", "w") as full:
        done = subprocess.run([*CLI, "info", "-w", str(demo_copy), "--json"], stdout=full, stderr=subprocess.PIPE,
                              text=True, timeout=300)
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr  # a traceback before
    assert "its output could not be written (No space left on device)" in done.stderr
    reader = subprocess.Popen([*CLI, "info", "-w", str(demo_copy), "--json"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    assert reader.stdout is not None and reader.stderr is not None
    reader.stdout.close()  # the reader quits before reading anything (| head -c 0)
    err = reader.stderr.read()
    reader.stderr.close()
    assert reader.wait(timeout=300) == 1 and "Traceback" not in err and "BrokenPipeError" not in err, err


def test_a_line_break_in_a_path_given_is_shown_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """It printed as two lines ("created workspace .../WS" and "fake line"), and an error line named the path
    with a space in its place."""
    odd = tmp_path / "WS\nfake line"
    assert main(["init", "--workspace", str(odd)]) == 0
    out = capsys.readouterr().out
    assert out == f"created workspace {tmp_path}/WS\\x0afake line\n"
    missing = tmp_path / "nope\nx"
    assert main(["info", "--workspace", str(missing)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tmp_path}/nope\\x0ax: not an Embridge workspace" in err
    shutil.rmtree(odd)

