"""Running a bundle's adapter without torch: numpy for linear layers, onnxruntime for the rest.

Since format 2 every bundle carries ``adapter.safetensors``. For the linear kinds (procrustes,
affine, lowrank, and fusion over one of them) it holds the layer folded into one map,
``weight`` (in_dim x out_dim) and ``bias`` (out_dim), plus ``alpha`` for fusion, so the numpy
reference is::

    x = l2_normalize(x)            # when manifest["normalisation"]["input"] == "l2"
    y = x @ weight + bias
    fusion: y = alpha * l2_normalize(old) + (1 - alpha) * l2_normalize(y)

For the other kinds it holds the deployed module's tensors (for inspection) and the function
itself is ``adapter.onnx``, run with onnxruntime (input ``x``, and ``old`` for fusion; output
``y``). Both are checked against the torch outputs stored in ``probes/`` at export and at verify.

This module imports numpy, ``safetensors.numpy`` and (for ONNX bundles, on first use) onnxruntime:
never torch, so ``bundle apply`` and ``bundle verify`` run where torch is not installed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from embridge.core.bundle.archive import BundleSource
from embridge.core.bundle.manifest import ONNX_FILE, PORTABLE_FILE
from embridge.core.errors import BundleError, first_line
from embridge.core.extras import installed
from embridge.core.l2 import l2_normalize

RUNTIMES = ("auto", "numpy", "onnx", "torch")
# The torch-free outputs are compared with the stored torch outputs; float32 sums in another
# order (a folded matrix, other kernels) differ by about 1e-7 on unit vectors.
PORTABLE_RTOL, PORTABLE_ATOL = 1e-4, 1e-5
BLOCK_ROWS = 4096

Engine = Callable[[np.ndarray, "np.ndarray | None"], np.ndarray]


def portable_entry(manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest's ``portable`` section (format 2 and later), or None for older bundles."""
    entry = manifest.get("portable")
    return entry if isinstance(entry, dict) else None


def read_tensors(src: BundleSource) -> dict[str, np.ndarray]:
    from safetensors.numpy import load

    try:
        return load(src.read_bytes(PORTABLE_FILE))
    except BundleError:
        raise
    except Exception as exc:  # safetensors raises its own error types for a damaged header
        raise BundleError(f"{src.path}: {PORTABLE_FILE} is not a readable safetensors file "
                          f"({first_line(exc)})") from exc


def numpy_engine(tensors: dict[str, np.ndarray], manifest: dict[str, Any], where: object) -> Engine:
    """``y = x @ weight + bias`` (and the fusion mix) in float32 blocks."""
    adapter = manifest["adapter"]
    try:
        weight = np.ascontiguousarray(tensors["weight"], dtype=np.float32)
        bias = np.asarray(tensors["bias"], dtype=np.float32)
    except KeyError as exc:
        raise BundleError(f"{where}: {PORTABLE_FILE} lacks the tensor {exc} of a linear layer") from None
    if weight.shape != (int(adapter["in_dim"]), int(adapter["out_dim"])) or bias.shape != (weight.shape[1],):
        raise BundleError(f"{where}: {PORTABLE_FILE} holds weight {weight.shape} and bias {bias.shape}; the "
                          f"manifest says {adapter['in_dim']} -> {adapter['out_dim']}")
    alpha = float(np.asarray(tensors["alpha"]).reshape(-1)[0]) if "alpha" in tensors else None
    if len(adapter["inputs"]) > 1 and alpha is None:
        raise BundleError(f"{where}: {PORTABLE_FILE} lacks 'alpha' for a fusion bundle")

    def run(x: np.ndarray, old: np.ndarray | None = None) -> np.ndarray:
        out = np.empty((int(x.shape[0]), weight.shape[1]), dtype=np.float32)
        for start in range(0, int(x.shape[0]), BLOCK_ROWS):
            stop = min(start + BLOCK_ROWS, int(x.shape[0]))
            np.matmul(np.asarray(x[start:stop], dtype=np.float32), weight, out=out[start:stop])
            out[start:stop] += bias
        if alpha is None:
            return out
        if old is None:
            raise BundleError(f"{where}: this fusion bundle also needs the old model's query vectors")
        return (alpha * l2_normalize(old) + (1.0 - alpha) * l2_normalize(out)).astype(np.float32)

    return run


def onnx_engine(src: BundleSource) -> Engine:
    """An onnxruntime session of ``adapter.onnx`` (CPU), fed float32 rows in batches."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        other = ("or use --runtime torch" if installed("torch") else
                 "torch, which runs its TorchScript payload, is not installed either")
        raise BundleError(f"{src.path}: this bundle's torch-free runtime is ONNX, and onnxruntime is not "
                          f"installed (pip install onnxruntime); {other}") from exc
    options = ort.SessionOptions()
    options.log_severity_level = 3
    # idle worker threads sleep instead of spinning, so a store writer running beside the adapter
    # (a migration overlaps them) gets the cores the adapter is not using
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(src.read_bytes(ONNX_FILE), options, providers=["CPUExecutionProvider"])
    except BundleError:
        raise
    except Exception as exc:  # onnxruntime raises its own error types for a foreign file
        raise BundleError(f"{src.path}: {ONNX_FILE} is not a loadable ONNX model ({first_line(exc)})") from exc
    names = [i.name for i in session.get_inputs()]
    last = session.get_outputs()[0].shape[-1]
    width = last if isinstance(last, int) else 0  # a symbolic width gives an empty (0, 0) result

    def run(x: np.ndarray, old: np.ndarray | None = None) -> np.ndarray:
        """Blocks of ``BLOCK_ROWS`` rows, each output written straight into one float32 result."""
        n = int(x.shape[0])
        if len(names) > 1 and old is None:
            raise BundleError(f"{src.path}: this fusion bundle also needs the old model's query vectors")
        out: np.ndarray | None = None
        for start in range(0, n, BLOCK_ROWS):
            feed = {names[0]: np.ascontiguousarray(x[start:start + BLOCK_ROWS], dtype=np.float32)}
            if len(names) > 1:
                feed[names[1]] = np.ascontiguousarray(old[start:start + BLOCK_ROWS], dtype=np.float32)
            y = session.run(None, feed)[0]
            if out is None:
                out = np.empty((n, int(y.shape[1])), dtype=np.float32)
            out[start:start + len(y)] = y
        return out if out is not None else np.zeros((0, width), dtype=np.float32)

    return run


def portable_engine(src: BundleSource, manifest: dict[str, Any]) -> tuple[str, Engine]:
    """(runtime name, engine) of a format-2 bundle's torch-free adapter."""
    entry = portable_entry(manifest)
    if entry is None:
        raise BundleError(f"{src.path}: bundle format {manifest['format_version']} has no torch-free adapter "
                          "(re-export it with this Embridge, or use --runtime torch)")
    if entry.get("runtime") == "numpy":
        return "numpy", numpy_engine(read_tensors(src), manifest, src.path)
    if entry.get("runtime") == "onnx":
        return "onnx", onnx_engine(src)
    raise BundleError(f"{src.path}: manifest field 'portable.runtime' must be 'numpy' or 'onnx', "
                      f"got {str(entry.get('runtime'))[:40]!r}")


def compare(actual: np.ndarray, expected: np.ndarray) -> tuple[bool, float]:
    """(within the portable tolerance, max abs difference)."""
    if actual.shape != expected.shape:
        return False, float("inf")
    diff = float(np.max(np.abs(actual - expected))) if actual.size else 0.0
    return bool(np.allclose(actual, expected, rtol=PORTABLE_RTOL, atol=PORTABLE_ATOL)), diff
