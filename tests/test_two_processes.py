"""Two processes on one workspace through the real faces: the ``embridge`` command and the app.

Another process (``helpers/store_child.py hold``) holds a write transaction until the test
releases it. A second writer then either waits for it (the default busy timeout) and succeeds,
or, with a short ``EMBRIDGE_BUSY_TIMEOUT``, fails with one clear line (CLI) or an error dialog
(app). The database always passes ``PRAGMA integrity_check`` and holds exactly what committed.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from app_fixtures import close_error_dialogs, error_dialogs, no_threads_left, wait_for_jobs, window
from pytestqt.qtbot import QtBot

from embridge.app.main_window import MainWindow
from embridge.core.store import Workspace

__all__ = ["no_threads_left", "window"]
REPO = Path(__file__).resolve().parent.parent
CHILD = Path(__file__).parent / "helpers" / "store_child.py"
BUSY = "the workspace is busy (another process is writing); try again"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    with Workspace.create(tmp_path / "ws") as ws:
        ws.add_items([{"key": f"k{i}", "split": "gallery"} for i in range(10)])
    return tmp_path / "ws"


def _csv(path: Path, *keys: str) -> Path:
    path.write_text("key,text\n" + "".join(f"{k},text of {k}\n" for k in keys), encoding="utf-8")
    return path


@contextmanager
def holding(root: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen, Path]]:
    """Another process inside a write transaction (it inserted 'held-by-child'); yields its release file."""
    signal_file = tmp_path / "held.json"
    child = subprocess.Popen([sys.executable, str(CHILD), "hold", str(root), str(signal_file)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not signal_file.exists():
            assert child.poll() is None, child.stderr.read()
            assert time.monotonic() < deadline, "the holding process never started its transaction"
            time.sleep(0.005)
        yield child, signal_file.with_name(signal_file.name + ".release")
    finally:
        signal_file.with_name(signal_file.name + ".release").touch()
        child.wait(timeout=60)
        child.stdout.close()
        child.stderr.close()


def _cli(*args: str, busy_timeout: str | None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "EMBRIDGE_BUSY_TIMEOUT"}
    if busy_timeout is not None:
        env["EMBRIDGE_BUSY_TIMEOUT"] = busy_timeout
    return subprocess.Popen([sys.executable, "-m", "embridge.core.cli.main", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _keys(root: Path) -> set[str]:
    conn = sqlite3.connect(root / "embridge.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return {row[0] for row in conn.execute("select key from items")}
    finally:
        conn.close()


def test_cli_writer_with_a_short_timeout_gets_one_clear_line(root: Path, tmp_path: Path) -> None:
    items = _csv(tmp_path / "new.csv", "a", "b")
    with holding(root, tmp_path) as (holder, release):
        cli = _cli("import", "-w", str(root), "--path", str(items), busy_timeout="0.3")
        out, err = cli.communicate(timeout=120)
        assert cli.returncode == 1
        assert out == "" and err.splitlines() == [f"embridge: error: {root / 'embridge.db'}: {BUSY}"]
        assert holder.poll() is None  # the other writer was still inside its transaction
        release.touch()
        assert holder.wait(timeout=60) == 0
    assert _keys(root) == {f"k{i}" for i in range(10)} | {"held-by-child"}  # nothing of the refused import
    retry = _cli("import", "-w", str(root), "--path", str(items), busy_timeout="0.3")
    assert retry.wait(timeout=120) == 0, retry.stderr.read()
    retry.stdout.close()
    retry.stderr.close()
    assert {"a", "b", "held-by-child"} <= _keys(root)


def test_cli_writer_with_the_default_timeout_waits_then_succeeds(root: Path, tmp_path: Path) -> None:
    first = _cli("import", "-w", str(root), "--path", str(_csv(tmp_path / "first.csv", "x")), busy_timeout=None)
    started = time.monotonic()
    assert first.wait(timeout=120) == 0, first.stderr.read()
    unblocked = time.monotonic() - started  # how long an import takes here when nobody is writing
    first.stdout.close()
    first.stderr.close()
    with holding(root, tmp_path) as (holder, release):
        cli = _cli("import", "-w", str(root), "--path", str(_csv(tmp_path / "second.csv", "y")), busy_timeout=None)
        time.sleep(min(max(2 * unblocked, 1.0), 5.0))
        assert cli.poll() is None  # twice the unblocked time, and still going: it is waiting for the lock
        release.touch()
        out, err = cli.communicate(timeout=120)
        assert cli.returncode == 0, err
        assert "imported 1 items" in out
        assert holder.wait(timeout=60) == 0
    assert {"x", "y", "held-by-child"} <= _keys(root)


def test_app_and_cli_write_to_one_workspace_at_once(qtbot: QtBot, window: MainWindow, root: Path,
                                                    tmp_path: Path) -> None:
    assert window.ctx.open_workspace(root)
    gallery = window.show_page("gallery")
    cli_items = _csv(tmp_path / "cli.csv", *[f"cli-{i}" for i in range(200)])
    app_items = _csv(tmp_path / "app.csv", *[f"app-{i}" for i in range(200)])
    cli = _cli("import", "-w", str(root), "--path", str(cli_items), "--split", "query", busy_timeout=None)
    gallery.import_items(str(app_items), split="gallery")
    wait_for_jobs(qtbot, window)
    out, err = cli.communicate(timeout=120)
    assert cli.returncode == 0, err
    assert not error_dialogs()
    window.ctx.data_changed.emit()
    assert "gallery: 210" in gallery.counts_label.text() and "query: 200" in gallery.counts_label.text()
    window.ctx.close_workspace()
    keys = _keys(root)
    assert len(keys) == 410 and {"cli-199", "app-199"} <= keys


def test_app_writer_gets_an_error_dialog_while_another_process_writes(
        qtbot: QtBot, window: MainWindow, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBRIDGE_BUSY_TIMEOUT", "0.3")
    items = _csv(tmp_path / "app.csv", "app-1")
    assert window.ctx.open_workspace(root)
    gallery = window.show_page("gallery")
    with holding(root, tmp_path) as (holder, release):
        gallery.import_items(str(items))
        qtbot.waitUntil(lambda: bool(error_dialogs()), timeout=60_000)
        (dialog,) = error_dialogs()
        assert dialog.message == f"{root / 'embridge.db'}: {BUSY}"
        assert dialog.details is None  # a user-facing error, not a traceback
        close_error_dialogs()
        wait_for_jobs(qtbot, window)
        assert holder.poll() is None and window.isVisible()
        release.touch()
        assert holder.wait(timeout=60) == 0
    gallery.import_items(str(items))  # once the other writer is done, the same action works
    wait_for_jobs(qtbot, window)
    assert not error_dialogs()
    window.ctx.close_workspace()
    assert {"app-1", "held-by-child"} <= _keys(root)
