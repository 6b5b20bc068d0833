"""A command that needs an optional extra names it, and the packaged desktop build (which cannot pip-install)
says it leaves that extra out instead of telling the user to run pip."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from app_fixtures import no_threads_left, window
from pytestqt.qtbot import QtBot

from embridge.app.main_window import MainWindow
from embridge.core.cli.main import main
from embridge.core.extras import EXTRA_OF, extra_for, install_hint

__all__ = ["no_threads_left", "window"]
ROOT = Path(__file__).resolve().parent.parent


def test_the_hint_names_the_extra_and_the_packaged_build_says_it_is_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    assert install_hint("stores") == "install it with: pip install 'embridge[stores]'"
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert install_hint("text") == ("this packaged desktop build leaves the text extra out; use Embridge installed "
                                    "with pip install 'embridge[text]'")
    from embridge.core.demo_text import text_demo_problem

    monkeypatch.setattr("embridge.core.extras.installed", lambda module: module != "sentence_transformers")
    assert "packaged desktop build leaves the text extra out" in str(text_demo_problem())


def test_every_extra_named_is_one_pyproject_declares() -> None:
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    assert set(EXTRA_OF.values()) <= set(extras)
    assert any(req.startswith("pylance") for req in extras["stores"])  # lance:// datasets, named by the stores hint
    assert extra_for("pyarrow.parquet") == "stores" and extra_for("numpy") is None


def test_a_command_missing_a_store_package_names_its_extra(tmp_path: Path) -> None:
    """Without pyarrow, transform said 'install Embridge with its dependencies', which a plain install had done."""
    from store_fixtures import fct_upgrade

    bundle = fct_upgrade(tmp_path / "up")["bundle"]
    probe = ("import sys\nsys.modules['pyarrow'] = None\nfrom embridge.core.cli.main import main\n"
             f"sys.exit(main(['transform', '--bundle', {str(bundle)!r}, '--from', "
             f"'parquet://{tmp_path / 'src'}', '--to', 'parquet://{tmp_path / 'out'}']))\n")
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "src").mkdir()
    pq.write_table(pa.table({"id": [1, 2], "vector": [[0.1, 0.2], [0.3, 0.4]]}), tmp_path / "src" / "part.parquet")
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1] == ("embridge: error: this command needs the Python package 'pyarrow' "
                                                    "of the stores extra; install it with: pip install 'embridge[stores]'")
    assert not (tmp_path / "out").exists()


def test_the_gui_self_test_runs_without_qt(tmp_path: Path) -> None:
    """The self-test is the engine's headless pipeline, but embridge-gui refused it for want of Qt."""
    probe = ("import sys\nsys.modules['PySide6'] = None\nfrom embridge.app.gui_entry import main\n"
             f"sys.exit(main(['--self-test', '--self-test-out', {str(tmp_path / 'result.json')!r}]))\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "result.json").read_text(encoding="utf-8"))["ok"] is True


def test_the_text_demo_is_greyed_out_with_the_reason_where_it_cannot_be_built(
        qtbot: QtBot, window: MainWindow, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    monkeypatch.setattr("embridge.core.extras.installed", lambda module: module != "sentence_transformers")
    assert main(["demo", "--kind", "text", "--workspace", str(tmp_path / "ws")]) == 1
    refused = capsys.readouterr().err.strip().splitlines()[-1]
    from embridge.app.pages.workspace_page import WorkspacePage

    page = WorkspacePage(window.ctx)
    qtbot.addWidget(page)
    item = page.demo_kind.model().item(page.demo_kind.findData("text"))
    assert not item.isEnabled() and item.toolTip().lower() in refused.lower()
    assert page.demo_kind.model().item(page.demo_kind.findData("digits")).isEnabled()
    assert not (tmp_path / "ws").exists()


@pytest.mark.parametrize("detach", [False, True])
def test_a_ray_backfill_where_ray_is_left_out_records_no_run(demo_copy: Path, detach: bool) -> None:
    """In the packaged build (no Ray) a backfill recorded a failed run, and a detached one staged its items and
    started the program again as 'python -m', which the frozen executable took for the app's arguments."""
    argv = ["backfill", "-w", str(demo_copy), "--model", "new-cnn", "--engine", "ray"]
    argv += ["--detach", "--ray-address", "127.0.0.1:1"] if detach else []
    probe = ("import sys\nsys.modules['ray'] = None\nsys.frozen = True\nfrom embridge.core.cli.main import main\n"
             f"sys.exit(main({argv!r}))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == ["embridge: error: --engine ray needs Ray; this packaged desktop build "
                                                "leaves the ray extra out; use Embridge installed with pip install "
                                                "'embridge[ray]'"]
    from embridge.core.store import Workspace

    with Workspace.open(demo_copy) as ws:
        assert ws.runs("backfill") == []
    assert not (demo_copy / "scale-jobs").exists() or not any((demo_copy / "scale-jobs").iterdir())


def test_a_ray_that_is_installed_but_broken_is_named_so_before_a_run_is_recorded(demo_copy: Path,
                                                                                   tmp_path: Path) -> None:
    """A Ray that fails to import (a library mismatch) was told to be installed, after a failed run was recorded."""
    broken = tmp_path / "site" / "ray"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('simulated: grpc mismatch')\n")
    import os

    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    done = subprocess.run([sys.executable, "-m", "embridge.core.cli.main", "backfill", "-w", str(demo_copy),
                           "--model", "new-cnn", "--engine", "ray"], capture_output=True, text=True, timeout=300,
                          env=env)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == ["embridge: error: --engine ray: Ray is installed but cannot be "
                                                "imported (simulated: grpc mismatch)"]
    from embridge.core.store import Workspace

    with Workspace.open(demo_copy) as ws:
        assert ws.runs("backfill") == []
