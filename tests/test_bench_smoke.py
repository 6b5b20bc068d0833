"""The benchmark suite runs end to end at toy sizes and writes complete results (no timing asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
AREAS = ("fit", "train", "search", "apply", "desktop", "stores", "text", "workflow", "scale")
ROW_KEYS = {"name", "unit", "measured", "floor", "floor_name", "ratio", "target", "passed", "note", "details"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "EMBRIDGE_CONFIG_DIR": str(out / "config")}
    proc = subprocess.run([sys.executable, "-m", "bench.run_all", "--tiny", "--out", str(out / "results"),
                           "--work-dir", str(out)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1800, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "results"


def _load(folder: Path, area: str) -> dict:
    return json.loads((folder / f"{area}.json").read_text())


@pytest.mark.slow
def test_every_area_writes_valid_results(tiny_run: Path) -> None:
    for area in AREAS:
        result = _load(tiny_run, area)
        assert result["area"] == area and result["tiny"] is True and "error" not in result
        machine = result["machine"]
        for key in ("cpu_model", "usable_cpus", "memory_gb", "numpy", "torch", "faiss", "gpu"):
            assert machine[key] not in (None, ""), (area, key)
        assert result["rows"], area
        for row in result["rows"]:
            assert set(row) == ROW_KEYS, (area, row["name"])
            if row["measured"] is not None and row["floor"]:
                assert row["ratio"] == pytest.approx(row["measured"] / row["floor"])
            if row["target"] is not None and row["measured"] is not None and row["floor"] is not None:
                assert isinstance(row["passed"], bool), (area, row["name"])


@pytest.mark.slow
def test_results_hold_real_measurements(tiny_run: Path) -> None:
    fit = {r["name"]: r for r in _load(tiny_run, "fit")["rows"]}
    solves = [r for name, r in fit.items() if "solve, all candidates" in name]
    assert len(solves) == 2 and all(r["measured"] > 0 and r["floor"] > 0 for r in solves)
    ends = [r for name, r in fit.items() if "fit_adapter end to end" in name]
    assert len(ends) == 2 and all(r["measured"] > 0 and r["floor"] > 0 for r in ends)

    train = _load(tiny_run, "train")["rows"]
    kinds = {r["name"].split(" ")[0] for r in train if r["measured"] is not None}
    assert kinds == {"lowrank", "mlp", "bct", "bt2", "fct"}
    gpu_rows = [r for r in train if "GPU" in r["name"] or "cuda" in r["name"]]
    assert gpu_rows, "a GPU row is always present: measured on a GPU, or saying why not"
    for r in gpu_rows:
        assert r["measured"] is not None or r["note"] == "no GPU available in this run"

    search = {r["name"]: r for r in _load(tiny_run, "search")["rows"]}
    agree = next(r for name, r in search.items() if name.startswith("exact ids, core vs raw faiss"))
    assert agree["measured"] >= 0.99  # the same exact index on the same vectors
    recalls = [r["measured"] for name, r in search.items() if name.startswith("IVF recall")]
    assert len(recalls) == 2 and all(0.5 < x <= 1.0 for x in recalls)
    assert all(r["measured"] > 0 for name, r in search.items() if "peak memory" in name)

    apply = {r["name"]: r for r in _load(tiny_run, "apply")["rows"]}
    linear = [r for name, r in apply.items() if name in ("procrustes, adapt_queries", "affine, adapt_queries")]
    assert len(linear) == 2 and all(r["details"]["max_abs_diff_vs_torch_module"] < 1e-3 for r in linear)

    desktop = _load(tiny_run, "desktop")["rows"]
    launch = [r for r in desktop if r["name"].startswith("launch")]
    assert launch and all(r["measured"] is not None and r["measured"] > 0 for r in launch)
    stalls = [r for r in desktop if "stall" in r["name"]]
    assert len(stalls) == 3 and all(r["measured"] is not None for r in stalls)

    rows = _load(tiny_run, "workflow")["rows"]
    candidates = [r for r in rows if r["name"].strip().startswith("auto candidate")]
    assert candidates and all(r["details"]["status"] for r in candidates)  # auto's time, candidate by candidate
    workflow = {r["name"]: r for r in rows if r not in candidates}
    alone = workflow.pop(next(n for n in workflow if n.startswith("report beside its headline searches alone")))
    report = next(r for name, r in workflow.items() if name.startswith("report (whole old gallery)") and r["unit"] == "s")
    assert alone["measured"] == report["measured"] and 0 < alone["floor"] < report["floor"]  # the full floor counts more
    assert any(part.startswith("least-confident order") for part in report["details"]["floor_parts"])
    auto = next(r for name, r in workflow.items() if name.startswith("train --method auto") and r["unit"] == "s")
    assert any(part.startswith("evaluation") for part in auto["details"]["floor_parts"])
    timed = [r for name, r in workflow.items() if r["unit"] == "s"]
    assert {name.split(",")[0] for name in workflow if workflow[name]["unit"] == "s"} == {
        "import the old gallery", "attach the new model's sample", "train --method auto",
        "report (whole old gallery)", "plan", "bundle export"}
    assert all(r["measured"] > 0 for r in timed)
    assert sum(r["floor"] is not None and r["floor"] > 0 for r in timed) == 5  # every step but plan has a floor
    assert all(r["measured"] > 0 for name, r in workflow.items() if "peak memory" in name)
    disk = [r for name, r in workflow.items() if name.startswith("workspace on disk")]
    assert len(disk) == 2 and all(r["measured"] > 0 and r["floor"] > 0 for r in disk)

    scale = {r["name"]: r for r in _load(tiny_run, "scale")["rows"]}
    for w in ("1 worker", "2 workers"):  # each worker count against the local engine on the same data
        assert scale[f"transform, Ray Data on {w}, steady state"]["ratio"] > 0
        assert scale[f"search, Ray on {w.replace('worker', 'shard worker')}"]["ratio"] > 0
    assert _load(tiny_run, "scale")["settings"]["projection"]["nodes"]["4x16"]["transform_minutes"] > 0


@pytest.mark.slow
def test_document_lists_machine_and_every_area(tiny_run: Path) -> None:
    text = (tiny_run / "performance.md").read_text()
    assert "## Machine" in text and "CPU:" in text and "torch" in text and "faiss" in text
    for title in ("Closed-form fits", "Training throughput", "Report search", "Adapter application",
                  "Desktop responsiveness", "Whole workflow"):
        assert f"## {title}" in text
    assert text.count("| Benchmark |") == len(AREAS)
