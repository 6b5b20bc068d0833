"""Shared pieces of the benchmarks: the machine's description, timing, result rows, child processes.

Timings alternate the measured code and its floor and keep the fastest of each (the least disturbed
by other work on a shared machine); the ratio of those minima is what a target checks. Peak memory
is measured in a child process per measurement (its own ``VmHWM``), never in the parent.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
NO_GPU = "no GPU available in this run"


@dataclass
class Target:
    """A goal for one row: ``ratio_max``/``ratio_min`` check measured/floor, ``abs_max``/``abs_min``
    check the measured value itself (in the row's unit)."""

    kind: str
    value: float
    text: str

    def check(self, measured: float | None, floor: float | None) -> bool | None:
        if measured is None:
            return None
        if self.kind.startswith("ratio"):
            if not floor:
                return None
            ratio = measured / floor
            return ratio <= self.value if self.kind == "ratio_max" else ratio >= self.value
        return measured <= self.value if self.kind == "abs_max" else measured >= self.value


@dataclass
class Row:
    """One line of a results table: what was measured, against which floor, and whether it passes."""

    name: str
    unit: str
    measured: float | None
    floor: float | None = None
    floor_name: str = ""
    target: Target | None = None
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        ratio = None
        if self.measured is not None and self.floor:
            ratio = self.measured / self.floor
        return {
            "name": self.name,
            "unit": self.unit,
            "measured": self.measured,
            "floor": self.floor,
            "floor_name": self.floor_name,
            "ratio": ratio,
            "target": None if self.target is None else asdict(self.target),
            "passed": None if self.target is None else self.target.check(self.measured, self.floor),
            "note": self.note,
            "details": self.details,
        }


def read_key_values(path: str, sep: str = ":") -> dict[str, str]:
    """``key: value`` lines of a /proc file (empty when it does not exist, e.g. off Linux)."""
    try:
        text = Path(path).read_text()
    except OSError:
        return {}
    out: dict[str, str] = {}
    for line in text.splitlines():
        if sep in line:
            key, value = line.split(sep, 1)
            out.setdefault(key.strip(), value.strip())
    return out


def usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """What a reader needs to judge the numbers: CPU, cores, memory, library versions, load, GPU."""
    import faiss
    import numpy
    import torch

    mem = read_key_values("/proc/meminfo").get("MemTotal")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu_model": read_key_values("/proc/cpuinfo").get("model name") or platform.processor() or "unknown",
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "memory_gb": round(int(mem.split()[0]) / 1024**2, 1) if mem else None,
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "faiss": getattr(faiss, "__version__", "unknown"),
        "gpu": gpu or NO_GPU,
        "requested_device": device,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def paired_times(measured: Callable[[], Any], floor: Callable[[], Any], repeats: int) -> tuple[list[float], list[float]]:
    """Run floor and measured alternately ``repeats`` times each; seconds of every run."""
    m_times: list[float] = []
    f_times: list[float] = []
    for _ in range(max(1, repeats)):
        f_times.append(timed(floor)[0])
        m_times.append(timed(measured)[0])
    return m_times, f_times


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def peak_rss_bytes() -> int:
    """This process's resident-set high-water mark (VmHWM; ru_maxrss where /proc is missing)."""
    value = read_key_values("/proc/self/status").get("VmHWM")
    if value:
        return int(value.split()[0]) * 1024
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


class AnonPeak:
    """Samples RssAnon (private memory, without file pages mapped from a memmap) in a thread."""

    def __init__(self, interval_s: float = 0.01) -> None:
        self.peak = 0
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        value = read_key_values("/proc/self/status").get("RssAnon")
        if value:
            self.peak = max(self.peak, int(value.split()[0]) * 1024)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def __enter__(self) -> AnonPeak:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def run_child(module: str, args: list[str], timeout_s: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``python -m module args`` and return the JSON object on its last stdout line."""
    cmd = [sys.executable, "-m", module, *args]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s,
                              env={**os.environ, **(env or {})}, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:.0f} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return {"error": f"exit code {proc.returncode}: " + " | ".join(tail)}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def emit(result: dict[str, Any]) -> None:
    """A child's answer: one JSON line on stdout, with its peak RSS."""
    print(json.dumps({**result, "vm_hwm_bytes": peak_rss_bytes()}), flush=True)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write atomically: a temporary file in the same folder, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def area_result(area: str, rows: list[Row] | list[Row | dict[str, Any]], settings: dict[str, Any],
                notes: list[str], started: float, device: str) -> dict[str, Any]:
    return {
        "area": area,
        "machine": machine_info(device),
        "settings": settings,
        "duration_s": time.time() - started,
        "rows": [r if isinstance(r, dict) else r.to_dict() for r in rows],
        "notes": notes,
    }
