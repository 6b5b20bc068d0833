"""Writing a bundle's torch-free adapter at export: ``adapter.safetensors`` and, if needed, ``adapter.onnx``.

Linear layers (procrustes, affine, lowrank, and fusion over one of them) are folded into one
``x @ W + b`` with :func:`embridge.core.adapters.fast_apply.fold_linear`, the fold the query fast path
uses; everything else is exported to ONNX from the same deploy module that becomes
``adapter.pt``. Either way the torch-free result is compared with the torch outputs on the probe
vectors before the bundle is published (tolerance :data:`embridge.core.bundle.portable.PORTABLE_RTOL` /
``PORTABLE_ATOL``), so a bundle never ships a runtime that disagrees with its layer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from embridge.core.adapters.fast_apply import fold_linear
from embridge.core.bundle import portable
from embridge.core.bundle.contents import Step
from embridge.core.bundle.manifest import PORTABLE_FILE
from embridge.core.errors import BundleError, first_line

ONNX_OPSET = 17
LINEAR_FORMULA = "y = x @ weight + bias"
FUSION_FORMULA = "y = alpha * l2_normalize(old) + (1 - alpha) * l2_normalize(x @ weight + bias)"


def linear_tensors(steps: list[Step]) -> dict[str, np.ndarray] | None:
    """weight, bias (and alpha for fusion) of a single linear layer; None when it is not linear."""
    if len(steps) != 1:
        return None
    adapter = steps[0].adapter
    alpha = None
    if adapter.kind == "fusion":
        alpha = float(adapter.alpha)
        adapter = adapter.base
    folded = fold_linear(adapter)
    if folded is None:
        return None
    out = {"weight": folded.weight, "bias": folded.bias}
    if alpha is not None:
        out["alpha"] = np.asarray([alpha], dtype=np.float32)
    return out


def write_portable(root: Path, steps: list[Step], module: nn.Module, adapter_entry: dict[str, Any],
                   normalisation: str, x: np.ndarray, old: np.ndarray | None,
                   expected: np.ndarray) -> dict[str, Any]:
    """Write the torch-free files into ``root``, check them on the probes; the manifest's ``portable``."""
    from safetensors.numpy import save

    tensors = linear_tensors(steps)
    runtime = "numpy" if tensors is not None else "onnx"
    meta = {"format": "embridge-portable-1", "runtime": runtime, "kind": adapter_entry["kind"],
            "input_normalisation": normalisation}
    if tensors is None:
        tensors = {name: t.detach().cpu().float().contiguous().numpy()
                   for name, t in module.state_dict().items() if t.is_floating_point()}
        _export_onnx(module, root / portable.ONNX_FILE, x, old)
    meta["tensors"] = json.dumps(sorted(tensors))
    (root / PORTABLE_FILE).write_bytes(save({k: np.ascontiguousarray(v) for k, v in tensors.items()}, meta))
    manifest_view = {"adapter": adapter_entry}
    if runtime == "numpy":
        engine = portable.numpy_engine(tensors, manifest_view, root)
    else:
        engine = portable.onnx_engine(_FolderSource(root))
    ok, diff = portable.compare(engine(x, old), expected)
    if not ok:
        raise BundleError(f"the {runtime} export of the adapter differs from torch on the probe vectors "
                          f"(max abs difference {diff:.3g}, tolerance rtol={portable.PORTABLE_RTOL}, "
                          f"atol={portable.PORTABLE_ATOL})")
    formula = {"numpy": FUSION_FORMULA if "alpha" in tensors else LINEAR_FORMULA,
               "onnx": "y = adapter.onnx(x" + (", old)" if old is not None else ")")}[runtime]
    return {"file": PORTABLE_FILE, "runtime": runtime, "onnx": portable.ONNX_FILE if runtime == "onnx" else None,
            "onnx_opset": ONNX_OPSET if runtime == "onnx" else None, "formula": formula,
            "input_normalisation": normalisation, "tensors": sorted(tensors),
            "export_check": {"count": int(len(x)), "max_abs_diff": diff, "rtol": portable.PORTABLE_RTOL,
                             "atol": portable.PORTABLE_ATOL, "against": "torch outputs in probes/outputs.npy"}}


def _export_onnx(module: nn.Module, path: Path, x: np.ndarray, old: np.ndarray | None) -> None:
    """``torch.onnx.export`` with the TorchScript-based exporter.

    The newer ``dynamo=True`` exporter needs the ``onnxscript`` package; the TorchScript one works
    with torch alone and handles every adapter kind, so its deprecation warning is silenced here.
    """
    import warnings

    example = (torch.from_numpy(np.ascontiguousarray(x[:2], dtype=np.float32)),)
    names = ["x"]
    if old is not None:
        example += (torch.from_numpy(np.ascontiguousarray(old[:2], dtype=np.float32)),)
        names.append("old")
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(module.eval(), example, str(path), input_names=names, output_names=["y"],
                              dynamic_axes={**{n: {0: "n"} for n in names}, "y": {0: "n"}},
                              opset_version=ONNX_OPSET, dynamo=False)
    except Exception as exc:  # the exporter raises many error types for unsupported operations
        raise BundleError(f"the adapter cannot be exported to ONNX ({type(exc).__name__}: {first_line(exc)})") from exc


class _FolderSource:
    """The few reads :func:`embridge.core.bundle.portable.onnx_engine` makes, from the staging folder."""

    def __init__(self, root: Path) -> None:
        self.path = root

    def read_bytes(self, name: str) -> bytes:
        return (self.path / name).read_bytes()
