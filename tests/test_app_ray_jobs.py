"""The app submits a backfill to a real Ray cluster, shows it in the jobs panel, survives closing
the window (the job keeps running), reattaches on reopen and records the result in the workspace."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from app_fixtures import error_dialogs, no_threads_left, window  # noqa: F401 - fixtures
from pytestqt.qtbot import QtBot
from ray_head_fixtures import ray_head  # noqa: F401 - a fixture

from embridge.app.main_window import MainWindow
from embridge.app.ray_jobs import check_address
from embridge.core.errors import InputError
from embridge.core.store import Workspace

NEW = "new-cnn"


@pytest.fixture
def ws_path(demo_workspace_path: Path, tmp_path: Path) -> Path:
    target = tmp_path / "ws"
    shutil.copytree(demo_workspace_path, target)
    return target


def test_address_setting_is_checked_and_kept(window: MainWindow) -> None:  # noqa: F811
    with pytest.raises(InputError, match="HOST:PORT"):
        check_address("not an address")
    for bad in ("host:abc", "ray://:10001", "localhost:99999999"):  # accepted before; Ray's parse failed later
        with pytest.raises(InputError, match=rf"Ray cluster address: '{re.escape(bad)}' is not HOST:PORT"):
            check_address(bad)
    window.ray_jobs.set_address(check_address(" 10.0.0.5:6379 "))
    assert window.ctx.settings.get("ray_address") == "10.0.0.5:6379"
    from embridge.app.settings import Settings

    assert Settings().get("ray_address") == "10.0.0.5:6379"  # saved, so a reopened app submits there too


def test_submit_without_an_address_says_so(qtbot: QtBot, window: MainWindow, ws_path: Path) -> None:  # noqa: F811
    window.ctx.open_workspace(ws_path)
    assert window.ray_jobs.submit_backfill(NEW) is None
    qtbot.waitUntil(lambda: any("Ray cluster address" in d.message for d in error_dialogs(window)))
    assert window.jobs_panel.rows == []


def _row_texts(win: MainWindow) -> list[str]:
    return [r.job.title for r in win.jobs_panel.rows]


def test_ray_job_survives_closing_the_window_and_is_recorded_after_reopening(
        qtbot: QtBot, window: MainWindow, ws_path: Path, ray_head: str) -> None:  # noqa: F811
    from embridge.app.launch import build_main_window

    window.ray_jobs.set_address(ray_head)
    window.ctx.open_workspace(ws_path)
    job = window.ray_jobs.submit_backfill(NEW, chunk=4)
    assert job is not None and _row_texts(window) == [f"Backfill {NEW} on Ray"]
    row = window.jobs_panel.row_for(job)
    # the row shows the cluster's progress once the job runs there
    qtbot.waitUntil(lambda: job.info.get("stage") == "on Ray: running" or not job.running, timeout=180_000)
    assert job.running, job.outcome
    assert row is not None and "on Ray: running" in row.status.text() and row.bar.maximum() == 997
    with Workspace.open(ws_path) as ws:
        runs = ws.runs("backfill")
        assert [r["status"] for r in runs] == ["running"]
        run_id = runs[0]["id"]

    window.close()  # no question asked: the job runs on the cluster, closing only stops watching it
    qtbot.waitUntil(lambda: not job.running, timeout=30_000)
    assert job.outcome is not None and job.outcome.status == "completed"
    assert job.outcome.result["state"] == "detached"
    with Workspace.open(ws_path) as ws:
        assert ws.run(run_id)["status"] == "running"  # still running on the cluster, not cancelled

    again = build_main_window(str(ws_path))
    qtbot.addWidget(again)
    again.show()
    try:
        assert _row_texts(again) == [f"Backfill {NEW} on Ray (run {run_id})"]
        watcher = again.jobs_panel.rows[0].job
        qtbot.waitUntil(lambda: not watcher.running, timeout=300_000)
        assert watcher.outcome is not None and watcher.outcome.status == "completed", watcher.outcome
        assert "completed" in again.jobs_panel.rows[0].status.text()
        with Workspace.open(ws_path) as ws:
            run = ws.run(run_id)
            assert run["status"] == "completed"
            ids, vectors = ws.open_vector_set(run["metrics"]["vector_set"])
            assert np.array_equal(np.asarray(ids), ws.gallery_ids())
            assert np.isfinite(np.asarray(vectors)).all() and np.asarray(vectors).shape == (997, 64)
    finally:
        again.close()


def test_cancel_in_the_jobs_panel_cancels_the_job_on_the_cluster(
        qtbot: QtBot, window: MainWindow, ws_path: Path, ray_head: str) -> None:  # noqa: F811
    window.ray_jobs.set_address(ray_head)
    window.ctx.open_workspace(ws_path)
    job = window.ray_jobs.submit_backfill(NEW, chunk=1)
    assert job is not None
    qtbot.waitUntil(lambda: job.info.get("stage") == "on Ray: running" or not job.running, timeout=180_000)
    assert job.running, job.outcome
    row = window.jobs_panel.row_for(job)
    assert row is not None
    row.cancel_button.click()
    qtbot.waitUntil(lambda: not job.running, timeout=120_000)
    assert job.outcome is not None and job.outcome.status == "cancelled", job.outcome
    assert "cancelled" in row.status.text()
    with Workspace.open(ws_path) as ws:
        (run,) = ws.runs("backfill")
        assert run["status"] == "cancelled"
        assert [s["name"] for s in ws.vector_sets(NEW)] == ["vectors"]  # nothing of it was recorded
