"""The module a bundle deploys: one ``forward`` that does the adapter's job, scriptable.

Deployers should not need to know that a BT² head answers old-gallery queries through
``to_old`` or that fusion mixes two queries, so each adapter is wrapped in a small module whose
``forward`` is exactly what the upgraded system runs:

* backward kinds (procrustes, affine, lowrank, mlp, bct): ``forward(new) -> old-space query``;
* ``bt2``: ``forward(new) -> to_old(new)`` (the old-compatible part);
* ``fusion``: ``forward(new, old) -> fused query`` (needs both models' query vectors);
* ``fct`` (forward): ``forward(old [+ side]) -> new-space gallery vector``.

:func:`compose_adapters` chains two of them (v3 -> v2 then v2 -> v1) into one module.
"""

from __future__ import annotations

import torch
from torch import nn

from embridge.core.adapters import Adapter, plain_copy
from embridge.core.adapters.l2_torch import l2_normalize_torch
from embridge.core.errors import BundleError


class Step(nn.Module):
    """One adapter's deployed function (single input); ``in_dim``/``out_dim`` as plain ints."""

    def __init__(self, inner: nn.Module, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.inner = inner
        self.in_dim = int(in_dim)
        self.out_dim = int(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


class OldPart(Step):
    """BT²: the first ``old_dims`` outputs, the query that searches the old gallery."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner.to_old(x)


class FusedQuery(nn.Module):
    """Fusion: ``forward(new, old)`` gives α·norm(old) + (1 − α)·norm(h(new))."""

    def __init__(self, inner: nn.Module, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.inner = inner
        self.in_dim = int(in_dim)
        self.out_dim = int(out_dim)

    def forward(self, x: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
        return self.inner.fuse(old, x)


class Chain(nn.Module):
    """``second(first(x))``: e.g. a v3 -> v2 layer followed by a v2 -> v1 layer.

    With ``normalise_between`` the intermediate vectors are L2-normalised first, which is what a
    second layer trained on normalised vectors (the workspace convention) expects as input.
    """

    def __init__(self, first: nn.Module, second: nn.Module, normalise_between: bool = False) -> None:
        super().__init__()
        self.first = first
        self.second = second
        self.normalise_between = bool(normalise_between)
        self.in_dim = int(first.in_dim)
        self.out_dim = int(second.out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.first(x)
        if self.normalise_between:
            h = l2_normalize_torch(h, dim=-1)
        return self.second(h)


def inputs_of(adapter: Adapter) -> list[str]:
    """What the deployed ``forward`` takes, in order: 'new' and/or 'old' vectors."""
    if adapter.kind == "fusion":
        return ["new", "old"]
    return ["old"] if adapter.direction == "forward" else ["new"]


def serving_method(adapter: Adapter) -> dict[str, object]:
    """How the upgraded system serves queries with this layer, for the manifest (fusion's α, a cascade's K)."""
    if adapter.kind == "fusion":
        alpha = round(float(adapter.alpha), 6)
        return {"kind": "fusion", "alpha": alpha, "encoders": 2,
                "serving": f"search the old index with {alpha:g} x old query + {1 - alpha:g} x forward(new query) "
                           "(both L2-normalised); needs both encoders during the transition"
                           + ("; alpha = 1 is the old query alone: fusion adds nothing" if alpha >= 1 else "")
                           + ("; alpha = 0 is the mapped new query alone: the base layer's own bundle serves the "
                              "same with one encoder" if alpha <= 0 else "")}
    if adapter.kind == "cascade":
        k, new_vectors = int(adapter.k), bool(getattr(adapter, "new_vectors", True))
        rerank = ("by the new query against their new vectors where present, else forward(new query) against "
                  "their old vectors" if new_vectors else "by forward(new query) against their old vectors (as "
                  "measured: no new vector of the gallery is used)")
        return {"kind": "cascade", "k": k, "encoders": 2, "reranks_per_query": k, "new_vectors": new_vectors,
                "serving": f"the old index recalls the top {k} for the old query; re-rank those {k} {rerank}; "
                           "needs both encoders during the transition"}
    if adapter.kind == "bt2":
        old_dims, head_dim = int(adapter.old_dims), int(adapter.out_dim)
        return {"kind": "bt2", "encoders": 1, "head_dim": head_dim,
                "serving": f"new queries through the layer (the head's first {old_dims} dims, the old-compatible "
                           f"part) search the old index; the head/head ceiling is the whole head's {head_dim} dims "
                           "on queries and gallery alike, which a full backfill through the head reaches"}
    return {"kind": adapter.kind, "encoders": 1}


def deploy_module(adapter: Adapter | nn.Module) -> nn.Module:
    """The deployable wrapper of ``adapter`` (an independent CPU copy in eval mode)."""
    if isinstance(adapter, Step | Chain | FusedQuery):
        return adapter
    if not isinstance(adapter, Adapter):
        raise BundleError(f"cannot deploy a {type(adapter).__name__}: not an Embridge adapter")
    inner = plain_copy(adapter)
    if adapter.kind == "fusion":
        return FusedQuery(inner, adapter.in_dim, adapter.out_dim).eval()
    if adapter.kind == "bt2":
        return OldPart(inner, adapter.in_dim, int(adapter.old_dims)).eval()
    return Step(inner, adapter.in_dim, adapter.out_dim).eval()


def compose_adapters(first: Adapter | nn.Module, second: Adapter | nn.Module,
                     normalise_between: bool = False) -> Chain:
    """One module applying ``first`` then ``second``; dims and directions must line up."""
    for part in (first, second):
        if isinstance(part, FusedQuery) or getattr(part, "kind", None) == "fusion":
            raise BundleError("fusion layers need the old query too and cannot be chained")
    if isinstance(first, Adapter) and isinstance(second, Adapter):
        if first.direction == "forward" and second.direction != "forward" or \
                first.direction != "forward" and second.direction == "forward":
            raise BundleError(f"cannot chain a {first.direction} {first.kind} layer with a "
                              f"{second.direction} {second.kind} layer")
        if getattr(second, "side_dim", 0):
            raise BundleError("an fct layer that needs side information cannot be the second step of a chain")
    a, b = deploy_module(first), deploy_module(second)
    if int(a.out_dim) != int(b.in_dim):
        raise BundleError(f"cannot chain layers: the first gives {a.out_dim}-d vectors, the second "
                          f"expects {b.in_dim}-d")
    return Chain(a, b, normalise_between).eval()


def script(module: nn.Module) -> torch.jit.ScriptModule:
    """TorchScript of a deploy module (scripted, so ``torch.jit.load`` alone runs it)."""
    try:
        return torch.jit.script(module)
    except Exception as exc:  # TorchScript raises several error types
        raise BundleError(f"the adapter cannot be compiled to TorchScript ({type(exc).__name__}: {exc})") from exc

