"""An error about a temp file names its folder: the temp file is gone by the time the user reads the line."""

from __future__ import annotations

import argparse
import errno
from pathlib import Path

import pytest

from embridge.core.cli import main as cli_main
from embridge.core.store.files import disk_error


def test_disk_error_names_the_folder_of_a_temp_file(tmp_path: Path) -> None:
    exc = OSError(errno.EACCES, "Permission denied")
    assert str(disk_error(exc, tmp_path / "reports" / ".tmp-scratch-ab12", "finish the report run")) == (
        f"{tmp_path / 'reports'}: cannot finish the report run (Permission denied)")
    assert str(disk_error(exc, tmp_path / "out.npy", "write")) == f"{tmp_path / 'out.npy'}: cannot write (Permission denied)"


def test_the_command_line_names_the_folder_of_a_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    def handler(args: argparse.Namespace) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "adapters" / ".tmp-scratch-x1"))

    from embridge.core.cli import workspace_cmds

    monkeypatch.setattr(workspace_cmds, "cmd_info", handler)  # registered when the parser is built
    assert cli_main.main(["info", "-w", str(tmp_path)]) == 1
    assert capsys.readouterr().err == f"embridge: error: {tmp_path / 'adapters'}: Permission denied\n"

