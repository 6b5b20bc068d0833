"""Loading and checking a bundle without Embridge's adapter code, with or without torch.

A bundle's adapter runs in one of three runtimes: ``torch`` (``adapter.pt``, TorchScript),
``numpy`` (linear kinds, ``adapter.safetensors``) or ``onnx`` (the other kinds, ``adapter.onnx``
with onnxruntime); see :mod:`embridge.core.bundle.portable`. ``auto`` picks the torch-free one when the
bundle has it (format 2). This module adds only what makes using it safe: every hash is verified
before anything is loaded, the adapter is re-run on the stored probe vectors and compared with the
stored (torch) outputs, and inputs are normalised the way the layer was trained
(``manifest["normalisation"]``). torch is imported only when the torch runtime is used.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embridge.core.bundle import portable
from embridge.core.bundle.archive import BundleLimits, BundleSource, open_bundle, read_npy
from embridge.core.bundle.manifest import ADAPTER_FILE, check_integrity
from embridge.core.errors import BundleError, VectorFileError, first_line
from embridge.core.extras import installed
from embridge.core.l2 import l2_normalize, prepare_input
from embridge.core.progress import ProgressFn, StopFn

PROBE_INPUTS, PROBE_OLD, PROBE_OUTPUTS = "probes/inputs.npy", "probes/old_inputs.npy", "probes/outputs.npy"
# Probe outputs are recomputed by the same TorchScript on the same CPU kernels; the slack covers
# other CPUs and thread counts (float32 sums in another order), far below any retrieval effect.
PROBE_RTOL, PROBE_ATOL = 1e-4, 1e-5


def run_module(module: Any, x: np.ndarray, old: np.ndarray | None = None, batch: int = 8192) -> np.ndarray:
    """Apply a deploy module (eager or scripted) to float32 rows, in batches."""
    import torch

    outs = []
    # TorchScript's optimising executor profiles the first calls (tens of ms) and pays off only over
    # many batches; a probe check or a small apply runs the graph as it is
    with torch.inference_mode(), torch.jit.optimized_execution(int(x.shape[0]) > batch):
        for start in range(0, int(x.shape[0]), batch):
            xt = _tensor(x[start:start + batch])
            y = module(xt) if old is None else module(xt, _tensor(old[start:start + batch]))
            outs.append(y.float().numpy())
    if not outs:
        return np.zeros((0, int(module.out_dim)), dtype=np.float32)
    return np.concatenate(outs).astype(np.float32, copy=False)


@dataclass
class LoadedBundle:
    """A verified bundle as a callable: ``bundle(vectors[, old])`` -> transformed float32 rows."""

    path: Path
    manifest: dict[str, Any]
    engine: portable.Engine
    probe_check: dict[str, Any] | None = None
    runtime: str = "torch"

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
        """The manifest's input policy (checked to be one of ``INPUT_NORMALISATIONS`` when it was read)."""
        return self.manifest["normalisation"]["input"] == "l2"

    def prepare(self, vectors: np.ndarray, what: str = "vectors") -> np.ndarray:
        """Float32 rows of the right width, L2-normalised when the layer was trained on such."""
        x = np.asarray(vectors, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise BundleError(f"{self.path}: {what} have shape {tuple(x.shape)}, the adapter expects "
                              f"(n, {self.in_dim})")
        return prepare_input(x, self.normalise_inputs, f"{self.path}: {what}")

    def __call__(self, vectors: np.ndarray, old: np.ndarray | None = None, normalise_output: bool = False,
                 batch: int = 8192, what: str = "vectors") -> np.ndarray:
        x = self.prepare(vectors, what)
        if self.needs_old:
            if old is None or len(old) != len(x):
                raise BundleError(f"{self.path}: this fusion bundle needs the old model's query vectors too, "
                                  "one per new query vector")
            old = np.asarray(old, dtype=np.float32)
        else:
            old = None
        y = self.engine(x, old)
        return l2_normalize(y, f"{self.path}: adapted vectors") if normalise_output else y


def load_module(src: BundleSource) -> Any:
    """The TorchScript ``adapter.pt`` (imports torch)."""
    problem = torch_problem()
    if problem is not None:
        raise BundleError(f"{src.path}: the torch runtime needs torch, and {problem} (a format-2 bundle runs "
                          "without it: --runtime numpy or onnx, which --runtime auto picks)")
    import torch

    try:
        return torch.jit.load(io.BytesIO(src.read_bytes(ADAPTER_FILE)), map_location="cpu").eval()
    except BundleError:
        raise
    except Exception as exc:  # torch raises RuntimeError and others for foreign files
        raise BundleError(f"{src.path}: {ADAPTER_FILE} is not a loadable TorchScript module ({exc})") from exc


def torch_engine(module: Any, batch: int = 8192) -> portable.Engine:
    return lambda x, old=None: run_module(module, x, old, batch)


NO_TORCH = "torch is not installed"


def torch_problem() -> str | None:
    """Why TorchScript cannot run here, or None: torch missing, or installed but failing to import (a
    missing CUDA library, a broken wheel), which the torch-free runtimes do not need."""
    if not installed("torch"):
        return NO_TORCH
    try:
        import torch  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - an import can fail in any way (OSError for a shared library)
        return f"torch is installed but does not import ({first_line(exc)})"
    return None


def torch_available() -> bool:
    return torch_problem() is None


def check_probes(src: BundleSource, manifest: dict[str, Any], engine: portable.Engine,
                 runtime: str = "torch") -> dict[str, Any]:
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
    file = {"torch": ADAPTER_FILE, "numpy": portable.PORTABLE_FILE, "onnx": portable.ONNX_FILE}[runtime]
    rtol, atol = (PROBE_RTOL, PROBE_ATOL) if runtime == "torch" else (portable.PORTABLE_RTOL, portable.PORTABLE_ATOL)
    # the probes go through the very call ``apply`` makes (the manifest's input normalisation, then
    # the engine), so a manifest that changes how inputs are prepared fails here, not only in use
    bundle = LoadedBundle(Path(src.path), manifest, engine, runtime=runtime)
    try:
        actual = np.asarray(bundle(inputs, old, what=PROBE_INPUTS), dtype=np.float32)
    except (BundleError, VectorFileError):
        raise
    except Exception as exc:  # the adapter's own code may raise anything (TorchScript: torch.jit.Error)
        raise BundleError(f"{src.path}: {file} fails on the probe vectors ({first_line(exc)})") from exc
    diff = float(np.max(np.abs(actual - expected))) if actual.size and actual.shape == expected.shape else 0.0
    if actual.shape != expected.shape or not np.allclose(actual, expected, rtol=rtol, atol=atol):
        raise BundleError(f"{src.path}: {file} no longer reproduces {PROBE_OUTPUTS} "
                          f"(max abs difference {diff:.3g}, tolerance rtol={rtol}, atol={atol}): the layer, the "
                          "probes or the manifest's normalisation.input changed after export")
    return {"count": int(len(inputs)), "max_abs_diff": diff, "rtol": rtol, "atol": atol, "runtime": runtime}


def choose_runtime(manifest: dict[str, Any], runtime: str = "auto") -> str:
    """The runtime ``runtime`` resolves to for this bundle: ``auto`` prefers the torch-free one."""
    if runtime not in portable.RUNTIMES:
        raise BundleError(f"--runtime must be one of {', '.join(portable.RUNTIMES)}, got {runtime!r}")
    entry = portable.portable_entry(manifest)
    if runtime == "auto":
        if entry is None or (entry["runtime"] == "onnx" and not installed("onnxruntime") and torch_available()):
            return "torch"  # format 1, or an ONNX bundle on a machine with torch but no onnxruntime
        return entry["runtime"]
    if runtime != "torch" and (entry is None or entry.get("runtime") != runtime):
        have = entry["runtime"] if entry else "none (bundle format 1)"
        raise BundleError(f"--runtime {runtime}: this bundle's torch-free runtime is {have}; use --runtime auto")
    return runtime


def _engine(src: BundleSource, manifest: dict[str, Any], runtime: str) -> portable.Engine:
    if runtime == "torch":
        return torch_engine(load_module(src))
    return portable.portable_engine(src, manifest)[1]


def verify_bundle(path: str | Path, limits: BundleLimits | None = None, on_progress: ProgressFn | None = None,
                  should_stop: StopFn | None = None, runtime: str = "auto") -> dict[str, Any]:
    """Check format, every sha256 and the probes; returns a summary, raises BundleError on failure.

    With ``auto`` the probes are re-run by every runtime the bundle has and this machine can run
    (the torch-free one, and TorchScript when torch is installed); otherwise by ``runtime`` alone.
    """
    loaded = load_bundle(path, limits, on_progress=on_progress, should_stop=should_stop, runtime=runtime)
    m = loaded.manifest
    checks = {loaded.runtime: loaded.probe_check}
    entry = portable.portable_entry(m)
    also_torch = runtime == "auto" and loaded.runtime != "torch"
    problem = torch_problem() if also_torch else None
    if (also_torch and problem is None) or loaded.runtime == "torch":
        from embridge.core.bundle.state_check import check_state_file

        with open_bundle(path, limits) as src:
            if also_torch:
                module = load_module(src)
                checks["torch"] = check_probes(src, m, torch_engine(module), "torch")
                if entry is not None and entry.get("runtime") == "onnx":
                    _check_tensors_are_the_modules(src, module)
            state = m["adapter"].get("state_file")
            if isinstance(state, str) and state in m["files"]:
                check_state_file(src, m, state)
    if runtime == "auto" and entry is not None and entry["runtime"] not in checks:  # an OK would vouch for it
        raise BundleError(f"{path}: {entry.get('onnx') or entry.get('file')} was not checked: onnxruntime cannot be "
                          "imported here (pip install onnxruntime); the TorchScript payload reproduces the probes "
                          "(--runtime torch checks it alone)")
    return {"path": str(Path(path)), "ok": True, "format_version": m["format_version"],
            "files_checked": len(m["files"]) + 2, "probes": loaded.probe_check, "runtime": loaded.runtime,
            "runtimes_checked": checks, "adapter": m["adapter"], "chain": m.get("chain", []),
            # torch installed but broken: its payload went unchecked, which an OK must not hide
            "torch_skipped": problem if problem and problem != NO_TORCH else None,
            "metrics": m.get("metrics", {})}


def _check_tensors_are_the_modules(src: BundleSource, module: Any) -> None:
    """An ONNX bundle's ``adapter.safetensors`` holds the layer's tensors for inspection; no runtime runs
    it, so it is compared with ``adapter.pt``'s (a file edited with every hash rewritten passed)."""
    tensors = portable.read_tensors(src)
    state = {name: t.detach().cpu().float().numpy() for name, t in module.state_dict().items()
             if t.is_floating_point()}
    if sorted(tensors) != sorted(state):
        raise BundleError(f"{src.path}: {portable.PORTABLE_FILE} holds tensors {sorted(tensors)}, {ADAPTER_FILE} "
                          f"{sorted(state)}: they are not the same layer's")
    for name, value in state.items():
        if not np.array_equal(tensors[name].ravel(), value.ravel()):  # a scalar may be stored as one value
            raise BundleError(f"{src.path}: {portable.PORTABLE_FILE}'s tensor '{name}' is not {ADAPTER_FILE}'s: the file "
                              "changed after export")


def load_bundle(path: str | Path, limits: BundleLimits | None = None, run_probes: bool = True,
                on_progress: ProgressFn | None = None, should_stop: StopFn | None = None,
                runtime: str = "auto") -> LoadedBundle:
    """Verify a bundle (hashes, format, probes) and return its adapter as a callable.

    This is the one entry point a worker needs: ``load_bundle(path)(vectors)`` gives the adapted
    rows with numpy alone for linear bundles and with onnxruntime alone for the others.
    """
    with open_bundle(path, limits) as src:
        manifest = check_integrity(src, on_progress, should_stop)
        chosen = choose_runtime(manifest, runtime)
        engine = _engine(src, manifest, chosen)
        probes = check_probes(src, manifest, engine, chosen) if run_probes else None
    return LoadedBundle(Path(path), manifest, engine, probes, chosen)


def _tensor(rows: np.ndarray) -> Any:
    """float32 rows as a tensor; a read-only input (a memory-mapped file) is copied first, as torch
    warns about (and may not) write through a tensor over memory it cannot write."""
    import torch

    block = np.ascontiguousarray(rows, dtype=np.float32)
    return torch.from_numpy(block if block.flags.writeable else block.copy())
