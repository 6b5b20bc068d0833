"""The numpy path :func:`core.adapters.adapt_queries` takes for the linear new->old layers
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

from core.adapters.base import Adapter

FAST_KINDS = ("procrustes", "affine")
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


def linear_map(adapter: Adapter) -> LinearMap | None:
    """The folded map of a procrustes or affine adapter; None for every other kind."""
    if adapter.kind == "procrustes":
        scale = float(_f64(adapter.scale))
        weight = scale * _f64(adapter.weight)
        bias = _f64(adapter.mean_out) - _f64(adapter.mean_in) @ weight
    elif adapter.kind == "affine":
        weight, bias = _f64(adapter.weight), _f64(adapter.bias)
    else:
        return None
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
