"""A user who may not look into their ``HOME`` (``sudo -u`` keeps root's) still gets the program, and a
workspace they may not write says so in every command's words.

Python 3.11's ``Path.exists`` raises on a parent without search permission: every command, ``--version``
included, ended in a traceback at start-up. ``train`` and ``backfill``, which make a folder before they
reach the database, said only "adapters: Permission denied".
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from embridge.core import mpl_config
from embridge.core.cli import main as cli_main


def test_a_config_folder_that_cannot_even_be_looked_into_gets_a_private_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "root-home"  # drwx------ and someone else's: staged, as the tests may run as root
    real_exists = Path.exists

    def exists(self: Path, *args: object, **kwargs: object) -> bool:
        if self == home or home in self.parents:
            raise PermissionError(13, "Permission denied", str(self))
        return real_exists(self, *args, **kwargs)

    monkeypatch.setattr(Path, "exists", exists)
    monkeypatch.delenv("MPLCONFIGDIR", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setattr(mpl_config.atexit, "register", lambda *a, **k: None)  # removed below, not at exit
    mpl_config.use_writable_matplotlib_config()
    folder = Path(os.environ["MPLCONFIGDIR"])
    try:
        assert folder.name.startswith("embridge-matplotlib-") and folder.is_dir() and os.access(folder, os.W_OK)
    finally:
        folder.rmdir()


def test_a_refused_folder_in_a_read_only_workspace_says_what_to_do(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from embridge.core.store import sqlite_errors

    ws = tmp_path / "ws"
    (ws / "adapters").mkdir(parents=True)
    refused = PermissionError(13, "Permission denied", str(ws / "adapters"))
    args = argparse.Namespace(workspace=str(ws))
    monkeypatch.setattr(sqlite_errors, "read_only_folder", lambda folder: Path(folder) == ws / "adapters")
    assert cli_main._os_error_line(refused, args) == (
        f"{ws / 'adapters'}: Permission denied; the workspace folder is read-only to this user; copy the workspace "
        "to a writable folder")
    outside = PermissionError(13, "Permission denied", str(tmp_path / "elsewhere.zip"))
    assert cli_main._os_error_line(outside, args) == f"{tmp_path / 'elsewhere.zip'}: Permission denied"
    monkeypatch.setattr(sqlite_errors, "read_only_folder", lambda folder: False)  # refused for another reason
    assert cli_main._os_error_line(refused, args) == f"{ws / 'adapters'}: Permission denied"


def test_a_refused_write_the_store_wraps_says_its_folder_is_read_only(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """report, embed and backfill said only 'cannot finish the report run (Permission denied)'."""
    from embridge.core.store import files, sqlite_errors

    reports = tmp_path / "ws" / "reports"
    reports.mkdir(parents=True)
    refused = PermissionError(13, "Permission denied", str(reports))
    monkeypatch.setattr(sqlite_errors, "read_only_folder", lambda folder: Path(folder) == reports)
    assert str(files.disk_error(refused, reports, "finish the report run")) == (
        f"{reports}: cannot finish the report run (Permission denied); {reports} is read-only to this user")
    out = reports / "out.npy"  # bundle apply names the option before the path, and the folder is still found
    assert str(files.disk_error(PermissionError(13, "Permission denied", str(out)), out, "write the output",
                                option="--out")) == (
        f"--out {out}: cannot write the output (Permission denied); {reports} is read-only to this user")
    monkeypatch.setattr(sqlite_errors, "read_only_folder", lambda folder: False)
    assert str(files.disk_error(refused, reports, "finish the report run")) == (
        f"{reports}: cannot finish the report run (Permission denied)")
