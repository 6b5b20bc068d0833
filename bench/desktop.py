"""Desktop responsiveness: launch to a visible window, and event-loop stalls under background jobs.

Every measurement is a fresh process with ``QT_QPA_PLATFORM=offscreen`` and a private settings
folder (see :mod:`bench.desktop_child`). Launch time runs what ``embridge.app.launch:main`` runs up to the main
window's first paint, timed from the moment the parent spawns the process (Python start-up and
imports included), median of several launches; its floor is an empty PySide6 window launched the
same way. Stalls are the longest gap of a 5 ms GUI-thread timer; their floor is the same timer with
nothing running, and for import stalls a plain thread importing the same modules. Start-up stalls
count from the timer's first tick, i.e. after the first event-loop turn has painted the window.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Row, Target, area_result, run_child

LAUNCH = Target("abs_max", 2.0, "< 2 s")
STALL = Target("abs_max", 50.0, "< 50 ms")


def _launch(mode: str, env: dict[str, str], workspace: str = "") -> dict[str, Any]:
    args = [mode, "--spawned", repr(time.time())]
    if workspace:
        args += ["--workspace", workspace]
    return run_child("bench.desktop_child", args, 120, env)


def launches(mode: str, env: dict[str, str], count: int, workspace: str = "") -> tuple[float | None, list[Any]]:
    runs = [_launch(mode, env, workspace) for _ in range(count)]
    values = [r["launch_s"] for r in runs if r.get("launch_s") is not None and r.get("visible")]
    errors = [r["error"] for r in runs if "error" in r]
    return (statistics.median(values) if values else None), values or errors


def run(tiny: bool, device: str) -> dict[str, Any]:
    started = time.time()
    rows: list[Row] = []
    count = 1 if tiny else 5
    with tempfile.TemporaryDirectory(prefix="embridge-bench-desktop-") as tmp:
        env = {"QT_QPA_PLATFORM": "offscreen", "EMBRIDGE_CONFIG_DIR": str(Path(tmp) / "config")}
        from embridge.core.store import Workspace

        ws_path = Path(tmp) / "ws"
        Workspace.create(ws_path).close()
        floor, floor_runs = launches("bare", env, count)
        for label, ws in (("no workspace", ""), ("empty workspace", str(ws_path))):
            median, runs = launches("launch", env, count, ws)
            rows.append(Row(f"launch to visible main window ({label})", "s", median, floor,
                            "empty PySide6 window, same launch", LAUNCH, "median of launches",
                            {"runs": runs, "floor_runs": floor_runs}))
        sizes = (["--train-pairs", "2000", "--gallery", "5000", "--queries", "500", "--dim", "64", "--epochs", "2"]
                 if tiny else ["--train-pairs", "20000", "--gallery", "100000", "--queries", "10000",
                               "--dim", "384", "--epochs", "3"])
        stall = run_child("bench.desktop_child", ["stall", *sizes], 900, env)
        imports = run_child("bench.desktop_child", ["import", "--modules", "torch,faiss"], 120, env)
    err = stall.get("error", "")
    idle = stall.get("idle_max_gap_ms")
    rows.append(Row("event-loop stall, training + report jobs (steady state)", "ms", stall.get("busy_max_gap_ms"),
                    idle, "idle timer, same process", STALL, err or "second round: modules already imported",
                    {k: stall.get(k) for k in ("busy_s", "busy_p99_gap_ms", "ticks", "outcomes")}))
    rows.append(Row("event-loop stall, first training + report jobs (cold)", "ms", stall.get("cold_max_gap_ms"),
                    idle, "idle timer, same process", STALL,
                    err or "first round: first use of torch and faiss in the workers (libraries already imported)",
                    {"cold_s": stall.get("cold_s")}))
    rows.append(Row("event-loop stall at start-up (background imports of torch, faiss, matplotlib, core)", "ms",
                    stall.get("startup_max_gap_ms"), imports.get("torch", {}).get("max_gap_ms"), "plain thread importing torch",
                    STALL, err or "device detection, then the warm-up job (app.preload), right after the window shows",
                    {"startup_s": stall.get("startup_s"), "plain_thread_imports": imports}))
    notes = ["QT_QPA_PLATFORM=offscreen; the window's first paint event marks 'visible'.",
             "Jobs run through app.context.AppContext.run_plain (app.workers.JobManager), so their progress "
             "reaches the jobs panel as in the app."]
    settings = {"launches": count, "stall_sizes": sizes, "timer_ms": 5}
    return area_result("desktop", rows, settings, notes, started, device)
