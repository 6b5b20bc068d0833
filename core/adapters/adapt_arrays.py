"""Uniform use of any adapter on numpy arrays, so report and bundle code need no special cases.

For every kind, the upgraded system searches ``adapt_queries(...)`` against ``adapt_gallery(...)``:

* backward kinds (procrustes, affine, lowrank, mlp, bct): queries h(new), gallery = old vectors;
* ``bt2``: queries = first ``old_dims`` of the head (``to_old``), gallery = old vectors;
* ``fusion``: queries = α·old + (1 − α)·h(new) (old query vectors required), gallery = old vectors;
* ``fct`` (forward): queries = new vectors unchanged, gallery = h(old [, side]).

``new_space_vectors`` gives what a full backfill would index with the new model: the full head
output for ``bct``/``bt2``, the raw new vectors for every other kind.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from embridge.core.adapters.adapter import Adapter
from embridge.core.adapters.fast_apply import apply_linear, linear_map

HEAD_KINDS = ("bct", "bt2")


def _device_of(module: torch.nn.Module) -> torch.device:
    for t in list(module.parameters()) + list(module.buffers()):
        return t.device
    return torch.device("cpu")


def _batched(
    adapter: Adapter, fn: Callable[..., torch.Tensor], arrays: list[np.ndarray], batch_size: int
) -> np.ndarray:
    device = _device_of(adapter)
    n = arrays[0].shape[0]
    out: list[np.ndarray] = []
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            parts = [torch.as_tensor(np.asarray(a[start : start + batch_size], dtype=np.float32), device=device)
                     for a in arrays]
            out.append(fn(*parts).float().cpu().numpy())
    if not out:
        width = adapter.old_dims if adapter.kind == "bt2" else adapter.out_dim
        return np.zeros((0, width), dtype=np.float32)
    return np.concatenate(out).astype(np.float32, copy=False)


def _check_dim(adapter: Adapter, x: np.ndarray, dim: int, what: str) -> None:
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"{adapter.kind} adapter expects {what} of dim {dim}, got shape {tuple(x.shape)}")


def adapt_queries(
    adapter: Adapter, new: np.ndarray, old: np.ndarray | None = None, batch_size: int = 8192
) -> np.ndarray:
    """Query vectors of the upgraded system (see module doc); ``old`` is needed only by fusion.

    procrustes and affine take the folded numpy path of :mod:`embridge.core.adapters.fast_apply`.
    """
    if adapter.direction == "forward":
        return np.asarray(new, dtype=np.float32)
    _check_dim(adapter, new, adapter.in_dim, "new vectors")
    folded = linear_map(adapter)
    if folded is not None:
        return apply_linear(folded, new)
    if adapter.kind == "fusion":
        if old is None or len(old) != len(new):
            raise ValueError("fusion needs the old model's query vectors, one per new query vector")
        return _batched(adapter, adapter.fuse, [old, new], batch_size)
    if adapter.kind == "bt2":
        return _batched(adapter, adapter.to_old, [new], batch_size)
    return _batched(adapter, adapter, [new], batch_size)


def query_inputs(adapter: Adapter, new: str, old: str) -> list[str]:
    """The models whose vectors :func:`adapt_queries` reads for ``adapter``: the old model's only for
    fusion (gathering a gallery's old vectors for a layer that ignores them cost a second read)."""
    return [new, old] if adapter.kind == "fusion" and adapter.direction != "forward" else [new]


def adapt_gallery(
    adapter: Adapter, old: np.ndarray, side: np.ndarray | None = None, batch_size: int = 8192
) -> np.ndarray:
    """Gallery vectors of the upgraded system: old vectors, or h(old [, side]) for ``fct``."""
    if adapter.direction != "forward":
        return np.asarray(old, dtype=np.float32)
    side_dim = getattr(adapter, "side_dim", 0)
    if side_dim:
        if side is None or len(side) != len(old):
            raise ValueError(f"this fct adapter needs {side_dim} side-information columns per old vector")
        old = np.concatenate([np.asarray(old, np.float32), np.asarray(side, np.float32)], axis=1)
    _check_dim(adapter, old, adapter.in_dim, "old vectors (+ side information)")
    return _batched(adapter, adapter, [old], batch_size)


def new_space_vectors(adapter: Adapter, new: np.ndarray, batch_size: int = 8192) -> np.ndarray:
    """Vectors a full backfill indexes: head(new) for bct/bt2 (all dims), else the new vectors."""
    if adapter.kind not in HEAD_KINDS:
        return np.asarray(new, dtype=np.float32)
    _check_dim(adapter, new, adapter.in_dim, "new vectors")
    return _batched(adapter, adapter, [new], batch_size)
