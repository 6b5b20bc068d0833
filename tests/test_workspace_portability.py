"""A workspace keeps working where users put it: moved or copied, under names and terminals of any kind."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from embridge.core.cli.main import main
from embridge.core.store import Workspace


def test_a_moved_or_copied_workspace_reads_its_own_images(demo_workspace_path: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The demo's images live inside the workspace and are recorded relative to it: after a move, and
    in a copy whose original is gone, embedding reads the workspace's own files."""
    with sqlite3.connect(demo_workspace_path / "embridge.db") as db:
        paths = [p for (p,) in db.execute("select path from items where path is not null")]
    assert paths and all(p.startswith("demo-items/") for p in paths)

    original = tmp_path / "a" / "ws"
    shutil.copytree(demo_workspace_path, original)
    copy = tmp_path / "b" / "copy of ws"
    shutil.copytree(original, copy)
    moved = tmp_path / "moved"
    original.rename(moved)
    for ws in (moved, copy):
        capsys.readouterr()
        assert main(["embed", "-w", str(ws), "--model", "new-cnn", "--split", "gallery"]) == 0, capsys.readouterr().err
        with Workspace.open(ws) as w:
            item = w.items(split="gallery")[0]
            assert Path(item["path"]).is_relative_to(ws.absolute()) and Path(item["path"]).is_file()
            assert len(w.ids_with_vectors("new-cnn")) == w.gallery_count() + len(w.query_ids("new-cnn"))


@pytest.mark.skipif(sys.platform != "linux", reason="file names are bytes on Linux only; elsewhere they are text")
def test_a_path_that_is_not_utf8_is_refused_by_its_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = os.fsdecode(b"lat\xe9")
    assert main(["demo", "-w", str(tmp_path / name)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--workspace" in err and "lat\\xe9 (as a full path) is not valid UTF-8" in err
    assert list(tmp_path.iterdir()) == []


def test_a_terminal_without_arrows_gets_plain_signs(demo_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A Latin-1 or ASCII terminal cannot show '→': the listing is printed with '->' instead of a traceback."""
    assert main(["train", "-w", str(demo_copy), "--method", "procrustes"]) == 0
    capsys.readouterr()
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    done = subprocess.run([sys.executable, "-m", "embridge.core.cli.main", "runs", "-w", str(demo_copy)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and " new-cnn->old-mlp " in done.stdout
    assert all(ord(c) < 128 for c in done.stdout)


def test_an_output_name_too_long_for_its_temp_name_is_refused_first(demo_copy: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A 240-byte name is legal, but not with the temp prefix every output is written under first: it
    failed after the export had run (naming the folder, recording a failed run); it is refused up front."""
    assert main(["train", "-w", str(demo_copy), "--method", "procrustes"]) == 0
    capsys.readouterr()
    out = tmp_path / ("c" * 236 + ".zip")
    assert main(["bundle", "export", "-w", str(demo_copy), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--out {out}: its name is 240 bytes long" in err and "at most 237 bytes" in err
    with Workspace.open(demo_copy) as ws:
        assert ws.runs("export") == []
    assert main(["bundle", "export", "-w", str(demo_copy), "--out", str(tmp_path / ("c" * 233 + ".zip"))]) == 0


def test_a_workspace_path_longer_than_sqlite_opens_is_named_and_leaves_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """SQLite opens paths of at most about 512 bytes: it said only 'unable to open database file', and the
    refused init left its empty folders behind."""
    ws = tmp_path / ("f" * 200) / ("g" * 200) / ("h" * 100) / "ws"
    assert main(["init", "-w", str(ws)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "embridge.db: its full path is" in err and "shorter path" in err
    assert list(tmp_path.iterdir()) == []


def test_a_home_that_cannot_hold_matplotlibs_folder_prints_no_warning(demo_copy: Path, tmp_path: Path) -> None:
    """A read-only or missing home made matplotlib print a multi-line warning on every report."""
    assert main(["train", "-w", str(demo_copy), "--method", "procrustes"]) == 0
    (tmp_path / "home").write_text("a file where a home folder was expected")
    env = {k: v for k, v in os.environ.items() if k not in ("MPLCONFIGDIR", "XDG_CONFIG_HOME")}
    env["HOME"] = str(tmp_path / "home")
    done = subprocess.run([sys.executable, "-m", "embridge.core.cli.main", "report", "-w", str(demo_copy),
                           "--bootstrap", "20"], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "Matplotlib" not in done.stderr and "mkdir" not in done.stderr
    assert (demo_copy / "reports" / "1" / "report.html").is_file()
