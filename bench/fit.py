"""Closed-form fits (procrustes, affine) against the raw least-squares cost measured in the same run.

Floors, all in float64 (the precision the fits use) over 16k-row blocks so that 1M x 768 fits in
memory (blocking does not change the arithmetic):

* procrustes (default ``whiten: auto``: the plain rotation and one whitened fit per shrinkage of
  the grid, 6 candidates, compared on validation): cast + Xᵀ Y + Xᵀ X + Yᵀ Y + the two d x d
  eigendecompositions + one d x d SVD **per candidate**;
* affine: cast + Xᵀ X + Xᵀ Y + one normal-equations solve (G + λI)⁻¹ C **per λ of the grid**
  (8 values by default): the grid is counted, so per-λ cost is the floor's solve;
* ``fit_adapter`` end to end also validates each candidate (6 for procrustes, 8 for affine), so its
  floor adds that many raw validation products (n_val x d by d x n_val, float32, two distinct
  matrices as in the search itself).

Everything runs in a child process with one BLAS thread and is timed in CPU seconds (see NOTE).
A float32 ``Xᵀ Y`` + SVD is recorded beside the float64 floor for reference. Peak extra memory of
each call comes from tracemalloc (numpy reports its buffers to it).
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    Row,
    Target,
    area_result,
    emit,
    run_child,
    timed,
    write_json,
)
from bench.data import pair_arrays
from embridge.core.adapters.closed_form import procrustes_candidates, ridge_path
from embridge.core.adapters.registry import METHODS
from embridge.core.train import PairData, fit_adapter

TARGET = Target("ratio_max", 1.5, "<= 1.5x floor")
NOTE = ("Times are CPU seconds of a single-threaded process (one BLAS thread): the work each call does, "
        "which other jobs on a shared machine do not inflate the way they inflate wall time; wall "
        "seconds are in the details. Floors and measured calls alternate in rounds; the best round counts.")
BLOCK = 16_384
FULL_SIZES = [(100_000, 384), (100_000, 768), (1_000_000, 384), (1_000_000, 768)]
TINY_SIZES = [(3_000, 64)]
FLOOR_NAMES = {"procrustes": "float64 GEMMs + 2 eigh + 1 SVD per candidate", "affine": "float64 GEMMs + 1 solve per λ"}


def floor_cross(x: np.ndarray, y: np.ndarray, gram: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Raw float64 Xᵀ Y (and Xᵀ X) over row blocks: the GEMMs every closed-form fit must do."""
    c = np.zeros((x.shape[1], y.shape[1]))
    g = np.zeros((x.shape[1], x.shape[1])) if gram else None
    for s in range(0, len(x), BLOCK):
        xb = x[s : s + BLOCK].astype(np.float64)
        c += xb.T @ y[s : s + BLOCK].astype(np.float64)
        if g is not None:
            g += xb.T @ xb
    return c, g


def floor_procrustes(x: np.ndarray, y: np.ndarray, candidates: int, whiten: bool) -> None:
    """Xᵀ Y (+ Xᵀ X, Yᵀ Y and their two eigendecompositions when whitening) + one SVD per candidate."""
    c, g = floor_cross(x, y, gram=whiten)
    if whiten:
        assert g is not None
        gy = np.zeros((y.shape[1], y.shape[1]))
        for s in range(0, len(y), BLOCK):
            yb = y[s : s + BLOCK].astype(np.float64)
            gy += yb.T @ yb
        np.linalg.eigh(g)
        np.linalg.eigh(gy)
    for _ in range(candidates):
        np.linalg.svd(c, full_matrices=False)


def floor_affine(x: np.ndarray, y: np.ndarray, grid: list[float]) -> None:
    c, g = floor_cross(x, y, gram=True)
    assert g is not None
    eye = np.eye(len(g)) * (np.trace(g) / len(g))
    for rel in grid:
        np.linalg.solve(g + rel * eye, c)


def floor_f32_procrustes(x: np.ndarray, y: np.ndarray) -> None:
    np.linalg.svd((x.T @ y).astype(np.float64), full_matrices=False)


def traced(fn: Callable[[], Any]) -> tuple[float, float, int]:
    """(CPU seconds, wall seconds, peak bytes numpy allocated during the call)."""
    gc.collect()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    cpu = time.process_time()
    wall, _ = timed(fn)
    return time.process_time() - cpu, wall, tracemalloc.get_traced_memory()[1] - base


def measure_size(n: int, d: int, n_val: int, repeats: int, seed: int) -> list[Row]:
    old, new = pair_arrays(n + n_val, d, d, seed=seed)
    old_tr, new_tr, old_val, new_val = old[:n], new[:n], old[n:], new[n:]
    grid = [float(r) for r in METHODS["affine"].defaults["ridge_grid"]]
    whiten = METHODS["procrustes"].defaults.get("whiten", False)
    shrinks = [float(v) for v in METHODS["procrustes"].defaults.get("shrink_grid", [])]
    n_cand = (0 if whiten is True else 1) + (0 if whiten is False else len(shrinks))
    size = f"N={n:,} d={d}"
    # the validation search scores adapted new vectors against old ones: a general product (q @ q.T
    # would let BLAS compute half of a symmetric result, a floor no real search can reach)
    q, g = new_val.astype(np.float32), old_val.astype(np.float32)
    # a fresh PairData per call: it caches the pairs' moments, which a second fit would otherwise reuse
    calls: dict[str, Callable[[], Any]] = {
        "floor procrustes": lambda: floor_procrustes(new_tr, old_tr, n_cand, whiten is not False),
        "floor affine": lambda: floor_affine(new_tr, old_tr, grid),
        "floor float32": lambda: floor_f32_procrustes(new_tr, old_tr),
        "floor validation": lambda: q @ g.T,
        "solve procrustes": lambda: procrustes_candidates(new_tr, old_tr, whiten, shrinks),
        "solve affine": lambda: list(ridge_path(new_tr, old_tr, grid)),
        "fit_adapter procrustes": lambda: fit_adapter("procrustes", PairData(old_tr, new_tr, old_val, new_val)),
        "fit_adapter affine": lambda: fit_adapter("affine", PairData(old_tr, new_tr, old_val, new_val)),
    }
    times: dict[str, float] = {}
    walls: dict[str, float] = {}
    peaks: dict[str, int] = {}
    for _ in range(repeats):  # rounds: floors and measured calls alternate
        for name, fn in calls.items():
            cpu, wall, peak = traced(fn)
            times[name] = min(times.get(name, cpu), cpu)
            walls[name] = min(walls.get(name, wall), wall)
            peaks[name] = max(peaks.get(name, 0), peak)
    data = {"n": n, "d": d, "floor_float32_cpu_s": times["floor float32"],
            "floor_peak_mb": peaks["floor procrustes"] / 1e6}

    def details(name: str, floor_name: str) -> dict[str, Any]:
        return {**data, "wall_s": walls[name], "floor_wall_s": walls[floor_name], "peak_extra_mb": peaks[name] / 1e6}

    floors = {"procrustes": times["floor procrustes"], "affine": times["floor affine"]}
    evals = {"procrustes": n_cand, "affine": len(grid)}
    rows: list[Row] = []
    for kind in ("procrustes", "affine"):
        rows.append(Row(f"{kind} solve, all candidates ({size})", "CPU s", times[f"solve {kind}"], floors[kind],
                        FLOOR_NAMES[kind], TARGET, "embridge.core.adapters.closed_form", details(f"solve {kind}", f"floor {kind}")))
    for kind in ("procrustes", "affine"):
        val_floor = evals[kind] * times["floor validation"]
        rows.append(Row(f"{kind} fit_adapter end to end ({size}, {n_val:,} validation pairs)", "CPU s",
                        times[f"fit_adapter {kind}"], floors[kind] + val_floor,
                        f"floor + {evals[kind]} raw validation product(s)", TARGET, "embridge.core.train.fit_adapter",
                        {**details(f"fit_adapter {kind}", f"floor {kind}"), "validation_floor_cpu_s": val_floor}))
    return rows


def measure_all(tiny: bool, repeats: int | None, seed: int, partial_path: str | None) -> dict[str, Any]:
    """All sizes, in this process (see ``run``, which calls it in a single-threaded child)."""
    started = time.time()
    sizes = TINY_SIZES if tiny else FULL_SIZES
    n_val = 500 if tiny else 5_000
    rows: list[Row] = []
    notes = [NOTE]
    settings = {"sizes": sizes, "validation_pairs": n_val, "block_rows": BLOCK, "blas_threads": 1,
                "repeats": repeats or "2 rounds at 100k x 384, 1 above"}
    tracemalloc.start()
    try:
        for n, d in sizes:
            reps = repeats or (2 if n * d <= 100_000 * 384 else 1)
            rows += measure_size(n, d, n_val, reps, seed)
            if partial_path:
                write_json(Path(partial_path), {**area_result("fit", rows, settings, [*notes, f"partial: up to N={n:,} d={d}"],
                                                              started, "cpu"), "tiny": tiny})
    finally:
        tracemalloc.stop()
    return area_result("fit", rows, settings, notes, started, "cpu")


def run(tiny: bool, device: str, partial_path: str | None = None) -> dict[str, Any]:
    """Measure in a child process with one BLAS thread, timing CPU seconds (see NOTE)."""
    args = ["--tiny"] if tiny else []
    if partial_path:
        args += ["--partial", partial_path]
    env = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    result = run_child("bench.fit", args, 7_200, env)
    if "error" in result:
        raise RuntimeError(f"fit benchmark child failed: {result['error']}")
    result.pop("vm_hwm_bytes", None)
    return result


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--partial", default=None)
    a = p.parse_args()
    emit(measure_all(a.tiny, None, 0, a.partial))


if __name__ == "__main__":
    main()
