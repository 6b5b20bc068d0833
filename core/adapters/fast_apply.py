"""The numpy path :func:`embridge.core.adapters.adapt_queries` takes for the linear new->old layers
(procrustes, affine).

Running the torch module per 8192-row batch (the path of every other kind),
Procrustes does four passes over each batch (subtract the input mean, matmul, scale, add the
output mean), every batch is copied into a tensor and back out, and the batches are concatenated
at the end. Folded into one ``y = x @ W + b`` (W, b computed once in float64, stored as float32),
the cost is one BLAS matmul per block written straight into the output array plus one in-place
bias add while the block is still in cache: close to the raw matmul.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from embridge.core.adapters.adapter import Adapter

BLOCK_ROWS = 4096


@dataclass(frozen=True)
class LinearMap:
    """y = x @ weight + bias in float32 (``weight`` in_dim x out_dim, C-contiguous)."""

    weight: np.ndarray
    bias: np.ndarray

    @property
    def in_dim(self) -> int:
        return int(self.weight.shape[0])

    @property
    def out_dim(self) -> int:
        return int(self.weight.shape[1])


def _f64(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy()


_TENSORS = {"procrustes": ("scale", "weight", "mean_in", "mean_out"), "affine": ("weight", "bias")}
# Linear too, but trained by gradient: folded for export (bundles), not on the query fast path.
_FOLDABLE = {**_TENSORS, "lowrank": ("a", "b", "bias", "diag")}
_CACHE_ATTR = "_folded_linear_map"


def linear_map(adapter: Adapter) -> LinearMap | None:
    """The folded map of a procrustes or affine adapter; None for every other kind.

    The map is kept on the adapter and rebuilt only when one of its tensors is replaced or changed
    in place (torch counts in-place writes in ``_version``), so one-query calls stay cheap.
    """
    names = _TENSORS.get(adapter.kind)
    if names is None:
        return None
    tensors = [getattr(adapter, n) for n in names]
    key = tuple((t.data_ptr(), t._version) for t in tensors)
    cached = adapter.__dict__.get(_CACHE_ATTR)
    if cached is not None and cached[0] == key:
        return cached[1]
    folded = fold_linear(adapter)
    adapter.__dict__[_CACHE_ATTR] = (key, folded)
    return folded


def fold_linear(adapter: Adapter) -> LinearMap | None:
    """``y = x @ W + b`` of any linear kind (procrustes, affine, lowrank), computed in float64.

    lowrank's ``W`` is ``A Bᵀ`` plus ``diag(d)`` when it has the diagonal term. None for
    non-linear kinds.
    """
    names = _FOLDABLE.get(adapter.kind)
    if names is None:
        return None
    values = {n: _f64(getattr(adapter, n)) for n in names}
    if adapter.kind == "procrustes":
        weight = float(values["scale"]) * values["weight"]
        bias = values["mean_out"] - values["mean_in"] @ weight
    elif adapter.kind == "lowrank":
        weight = values["a"] @ values["b"].T
        if getattr(adapter, "diagonal", False):
            weight = weight + np.diag(values["diag"])
        bias = values["bias"]
    else:
        weight, bias = values["weight"], values["bias"]
    return LinearMap(np.ascontiguousarray(weight, dtype=np.float32), bias.astype(np.float32))


def apply_linear(m: LinearMap, x: np.ndarray, block: int = BLOCK_ROWS) -> np.ndarray:
    """``x @ W + b`` block by block into one preallocated float32 array (x may be a memmap)."""
    if x.ndim != 2 or x.shape[1] != m.in_dim:
        raise ValueError(f"linear map expects vectors of dim {m.in_dim}, got shape {tuple(x.shape)}")
    n = int(x.shape[0])
    out = np.empty((n, m.out_dim), dtype=np.float32)
    for start in range(0, n, block):
        stop = min(start + block, n)
        rows = np.asarray(x[start:stop], dtype=np.float32)
        np.matmul(rows, m.weight, out=out[start:stop])
        out[start:stop] += m.bias
    return out
