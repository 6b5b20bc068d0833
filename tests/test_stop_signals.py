"""A stop signal that lands after a job's result is stored waits until the job's run is marked
completed, so the workspace never holds a result under a run that reads cancelled."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from embridge.core.errors import Cancelled
from embridge.core.jobs import recorded_run
from embridge.core.store import Workspace


def _workspace(path: Path) -> tuple[Workspace, list[int]]:
    ws = Workspace.create(path)
    ids = ws.add_items([{"key": f"k{i}", "split": "gallery"} for i in range(8)])
    ws.add_model("m", "old", {"name": "m", "kind": "vectors", "modality": "vector", "dim": 4,
                              "sha256": "0" * 64, "path": ""}, None)
    return ws, ids


def test_ctrl_c_after_the_result_commit_is_delivered_once_the_run_is_completed(tmp_path: Path) -> None:
    ws, ids = _workspace(tmp_path / "ws")
    try:
        with pytest.raises(KeyboardInterrupt):
            with recorded_run(ws, "embed", "m") as record:
                ws.add_vector_set("m", ids, np.eye(8, 4, dtype=np.float32) + 0.5)
                os.kill(os.getpid(), signal.SIGINT)  # the user's Ctrl-C, just after the result was stored
                time.sleep(0.2)  # where the interrupt used to land, before the run was marked
                record["metrics"] = {"count": 8}
        (run,) = ws.runs("embed")
        assert run["status"] == "completed" and len(ws.vector_sets("m")) == 1
    finally:
        ws.close()


def test_ctrl_c_before_the_result_commit_cancels_and_stores_nothing(tmp_path: Path) -> None:
    ws, ids = _workspace(tmp_path / "ws")
    try:
        with pytest.raises(KeyboardInterrupt):
            with recorded_run(ws, "embed", "m"):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.2)
                ws.add_vector_set("m", ids, np.eye(8, 4, dtype=np.float32) + 0.5)
        (run,) = ws.runs("embed")
        assert run["status"] == "cancelled" and ws.vector_sets("m") == []
        with pytest.raises(KeyboardInterrupt):  # outside a job nothing is held back
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)
    finally:
        ws.close()


@pytest.mark.parametrize("raised", [Cancelled("stopped by the user"), RuntimeError("boom")])
def test_a_run_that_ends_early_records_its_duration_to_the_millisecond(tmp_path: Path, raised: Exception) -> None:
    """A cancelled or failed run's duration was the difference of two whole-second timestamps."""
    ws, _ = _workspace(tmp_path / "ws")
    try:
        with pytest.raises(type(raised)):
            with recorded_run(ws, "embed", "m"):
                time.sleep(0.25)
                raise raised
        (run,) = ws.runs("embed")
        assert run["status"] in ("cancelled", "failed") and 0.25 <= run["duration_s"] < 5.0
        assert run["duration_s"] != round(run["duration_s"])
    finally:
        ws.close()
