"""A folder output (a local store, a dataset folder) that is a file, or in a folder no file can be written
to, is refused before any work: one line naming the option, no checkpoint, nothing written. Before, such a
target failed only after the whole gallery was read and transformed or embedded, naming no option (and a
refused migration left a checkpoint reading 'running')."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers.workspace_files import table_dump
from scale_fixtures import mlp_items
from store_fixtures import fct_upgrade, parquet_dataset
from test_report_gate import _without_dac_override

from embridge.core.cli.main import main

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def upgrade(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return fct_upgrade(tmp_path_factory.mktemp("targets"))


def _refused(capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> None:
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and needle in err[0], err


def test_a_file_at_a_folder_output_is_refused_naming_the_option(upgrade: dict, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str],
                                                                 demo_copy: Path) -> None:
    source = parquet_dataset(tmp_path / "src", upgrade["vectors"]["v1"])
    file = tmp_path / "notes.txt"
    file.write_text("keep me")
    bundle = str(upgrade["bundle"])
    is_a_file = f"{file}: is a file, not a folder"
    _refused(capsys, ["migrate", "--bundle", bundle, "--from", source, "--to", f"parquet://{file}"],
             f"--to {is_a_file}")
    _refused(capsys, ["transform", "--bundle", bundle, "--from", source, "--to", f"parquet://{file}"],
             f"--to {is_a_file}")
    items = mlp_items(tmp_path / "items", 50)
    _refused(capsys, ["embed-dataset", "--model", str(items["model"]), "--from", f"parquet://{items['items']}",
                      "--to", f"parquet://{file}"], f"--to {is_a_file}")
    rows = table_dump(demo_copy)
    _refused(capsys, ["backfill", "--workspace", str(demo_copy), "--model", "new-cnn", "--to-store",
                      f"parquet://{file}"], f"--to-store {is_a_file}")
    assert table_dump(demo_copy) == rows  # no run, nothing staged
    assert not (demo_copy / "scale-jobs").exists() or not any((demo_copy / "scale-jobs").iterdir())
    assert file.read_text() == "keep me" and not (tmp_path / "notes.txt.embridge").exists()


def test_a_migration_into_a_folder_that_takes_no_file_leaves_no_checkpoint(upgrade: dict, tmp_path: Path) -> None:
    source = parquet_dataset(tmp_path / "src", upgrade["vectors"]["v1"])
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        args = ["migrate", "--bundle", str(upgrade["bundle"]), "--from", source, "--to", f"parquet://{locked / 'new'}"]
        out = subprocess.run([sys.executable, "-m", "embridge.core.cli.main", *args], capture_output=True,
                             text=True, timeout=300, cwd=REPO, preexec_fn=_without_dac_override)  # root as a user
        err = out.stderr.strip().splitlines()
        assert out.returncode == 1 and len(err) == 1, out.stderr
        assert f"--to {locked / 'new'}: cannot write in {locked} (Permission denied)" in err[0]
        assert list(locked.iterdir()) == []  # no checkpoint folder, no collection
    finally:
        locked.chmod(0o755)


def test_an_export_into_a_folder_that_takes_no_file_is_refused_before_its_run(
        demo_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from embridge.core.store import Workspace
    from embridge.core.train.runs import train_run

    with Workspace.open(demo_copy) as ws:
        train_run(ws, "procrustes", device="cpu")
    rows = table_dump(demo_copy)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        out = subprocess.run([sys.executable, "-m", "embridge.core.cli.main", "bundle", "export", "-w", str(demo_copy),
                              "--out", str(locked / "b.zip")], capture_output=True, text=True, timeout=300, cwd=REPO,
                             preexec_fn=_without_dac_override)
    finally:
        locked.chmod(0o755)
    err = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(err) == 1, out.stderr
    assert f"--out {locked / 'b.zip'}: cannot write in {locked} (Permission denied)" in err[0]
    assert table_dump(demo_copy) == rows and list(locked.iterdir()) == []  # no export run recorded
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    code = main(["bundle", "export", "-w", str(demo_copy), "--out", str(notes / "b.zip")])
    assert code == 1 and table_dump(demo_copy) == rows
    assert f"--out {notes / 'b.zip'}: {notes} is a file, not a folder, so nothing can be written under it" in \
        capsys.readouterr().err


def test_a_lancedb_database_folder_holding_a_workspace_is_refused(upgrade: dict, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """As a Qdrant, Chroma or Parquet store folder is (LanceDB writes its tables into the database folder);
    files beside a new table, such as its source or the bundle, are not touched and stay allowed."""
    from embridge.core.store import Workspace

    db = tmp_path / "db"
    source = parquet_dataset(db / "src", upgrade["vectors"]["v1"])
    Workspace.create(db / "ws").close()
    bundle = str(upgrade["bundle"])
    for command in ("migrate", "transform"):
        _refused(capsys, [command, "--bundle", bundle, "--from", source, "--to", f"lancedb://{db}?table=t2"],
                 f"is a folder holding the workspace {db / 'ws'}")
    assert sorted(p.name for p in db.iterdir()) == ["src", "ws"]
