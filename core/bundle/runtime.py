"""Loading and checking a bundle with torch and numpy only (no Embridge adapter code).

What a deployment runs is ``adapter.pt``, a TorchScript module; this module adds only what makes
using it safe: every hash is verified before the module is loaded, the module is re-run on the
stored probe vectors and compared with the stored outputs, and inputs are normalised the way the
layer was trained (``manifest["normalisation"]``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.bundle.archive import BundleLimits, BundleSource, open_bundle, read_npy
from core.bundle.manifest import ADAPTER_FILE, check_integrity
from core.errors import BundleError
from core.l2 import l2_normalize
from core.models.checkpoint import first_line
from core.progress import ProgressFn, StopFn

PROBE_INPUTS, PROBE_OLD, PROBE_OUTPUTS = "probes/inputs.npy", "probes/old_inputs.npy", "probes/outputs.npy"
# Probe outputs are recomputed by the same TorchScript on the same CPU kernels; the slack covers
# other CPUs and thread counts (float32 sums in another order), far below any retrieval effect.
PROBE_RTOL, PROBE_ATOL = 1e-4, 1e-5


def run_module(module: Any, x: np.ndarray, old: np.ndarray | None = None, batch: int = 8192) -> np.ndarray:
    """Apply a deploy module (eager or scripted) to float32 rows, in batches."""
    outs = []
    with torch.inference_mode():
        for start in range(0, int(x.shape[0]), batch):
            xt = torch.from_numpy(np.ascontiguousarray(x[start:start + batch], dtype=np.float32))
            if old is None:
                y = module(xt)
            else:
                y = module(xt, torch.from_numpy(np.ascontiguousarray(old[start:start + batch], dtype=np.float32)))
            outs.append(y.float().numpy())
    if not outs:
        return np.zeros((0, int(module.out_dim)), dtype=np.float32)
    return np.concatenate(outs).astype(np.float32, copy=False)


@dataclass
class LoadedBundle:
    """A verified bundle as a callable: ``bundle(vectors[, old])`` -> transformed float32 rows."""

    path: Path
    manifest: dict[str, Any]
    module: torch.jit.ScriptModule
    probe_check: dict[str, Any] | None = None

    @property
    def inputs(self) -> list[str]:
        return list(self.manifest["adapter"]["inputs"])

    @property
    def in_dim(self) -> int:
        return int(self.manifest["adapter"]["in_dim"])

    @property
    def out_dim(self) -> int:
        return int(self.manifest["adapter"]["out_dim"])

    @property
    def needs_old(self) -> bool:
        """Fusion bundles take the old model's query vectors as a second input."""
        return len(self.inputs) > 1

    @property
    def normalise_inputs(self) -> bool:
        return self.manifest.get("normalisation", {}).get("input") == "l2"

    def prepare(self, vectors: np.ndarray, what: str = "vectors") -> np.ndarray:
        """Float32 rows of the right width, L2-normalised when the layer was trained on such."""
        x = np.asarray(vectors, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise BundleError(f"{self.path}: {what} have shape {tuple(x.shape)}, the adapter expects "
                              f"(n, {self.in_dim})")
        return l2_normalize(x, f"{self.path}: {what}") if self.normalise_inputs else x

    def __call__(self, vectors: np.ndarray, old: np.ndarray | None = None, normalise_output: bool = False,
                 batch: int = 8192) -> np.ndarray:
        x = self.prepare(vectors)
        if self.needs_old:
            if old is None or len(old) != len(x):
                raise BundleError(f"{self.path}: this fusion bundle needs the old model's query vectors too, "
                                  "one per new query vector")
            old = np.asarray(old, dtype=np.float32)
        else:
            old = None
        y = run_module(self.module, x, old, batch)
        return l2_normalize(y, f"{self.path}: adapted vectors") if normalise_output else y


def load_module(src: BundleSource) -> torch.jit.ScriptModule:
    try:
        return torch.jit.load(io.BytesIO(src.read_bytes(ADAPTER_FILE)), map_location="cpu").eval()
    except BundleError:
        raise
    except Exception as exc:  # torch raises RuntimeError and others for foreign files
        raise BundleError(f"{src.path}: {ADAPTER_FILE} is not a loadable TorchScript module ({exc})") from exc


def check_probes(src: BundleSource, manifest: dict[str, Any], module: torch.jit.ScriptModule) -> dict[str, Any]:
    """Re-run the adapter on the stored probes; BundleError naming the file when they differ."""
    inputs = np.asarray(read_npy(src, PROBE_INPUTS))
    expected = np.asarray(read_npy(src, PROBE_OUTPUTS))
    old = np.asarray(read_npy(src, PROBE_OLD)) if src.has(PROBE_OLD) else None
    adapter = manifest["adapter"]
    if inputs.ndim != 2 or inputs.shape[1] != int(adapter["in_dim"]) or len(inputs) == 0:
        raise BundleError(f"{src.path}: {PROBE_INPUTS} has shape {inputs.shape}, expected (n, {adapter['in_dim']})")
    if expected.shape != (len(inputs), int(adapter["out_dim"])):
        raise BundleError(f"{src.path}: {PROBE_OUTPUTS} has shape {expected.shape}, expected "
                          f"({len(inputs)}, {adapter['out_dim']})")
    if len(adapter["inputs"]) > 1 and old is None:
        raise BundleError(f"{src.path}: {PROBE_OLD} is missing for a bundle that takes old query vectors")
    try:
        actual = run_module(module, inputs, old)
    except Exception as exc:  # the adapter's own code may raise anything (TorchScript: torch.jit.Error)
        raise BundleError(f"{src.path}: {ADAPTER_FILE} fails on the probe vectors ({first_line(exc)})") from exc
    diff = float(np.max(np.abs(actual - expected))) if actual.size else 0.0
    if actual.shape != expected.shape or not np.allclose(actual, expected, rtol=PROBE_RTOL, atol=PROBE_ATOL):
        raise BundleError(f"{src.path}: {ADAPTER_FILE} no longer reproduces {PROBE_OUTPUTS} "
                          f"(max abs difference {diff:.3g}, tolerance rtol={PROBE_RTOL}, atol={PROBE_ATOL})")
    return {"count": int(len(inputs)), "max_abs_diff": diff, "rtol": PROBE_RTOL, "atol": PROBE_ATOL}


def verify_bundle(path: str | Path, limits: BundleLimits | None = None, on_progress: ProgressFn | None = None,
                  should_stop: StopFn | None = None) -> dict[str, Any]:
    """Check format, every sha256 and the probes; returns a summary, raises BundleError on failure."""
    loaded = load_bundle(path, limits, on_progress=on_progress, should_stop=should_stop)
    m = loaded.manifest
    return {"path": str(Path(path)), "ok": True, "format_version": m["format_version"],
            "files_checked": len(m["files"]) + 2, "probes": loaded.probe_check,
            "adapter": m["adapter"], "chain": m.get("chain", []), "metrics": m.get("metrics", {})}


def load_bundle(path: str | Path, limits: BundleLimits | None = None, run_probes: bool = True,
                on_progress: ProgressFn | None = None, should_stop: StopFn | None = None) -> LoadedBundle:
    """Verify a bundle (hashes, format, probes) and return its adapter as a callable."""
    with open_bundle(path, limits) as src:
        manifest = check_integrity(src, on_progress, should_stop)
        module = load_module(src)
        probes = check_probes(src, manifest, module) if run_probes else None
    return LoadedBundle(Path(path), manifest, module, probes)
