"""What each kind of compatibility layer is, what it needs, and how to rebuild one from its config.

``METHODS`` feeds the app's method chooser and ``embridge train --method``: the one-sentence
explanation, whether labels are required, the direction and the default hyper-parameters (the
keys a caller may override besides the common training settings).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from embridge.core.adapters.adapter import Adapter
from embridge.core.adapters.cascade import K_GRID, CascadeAdapter
from embridge.core.adapters.fusion import FusionAdapter
from embridge.core.adapters.heads import BT2Adapter
from embridge.core.adapters.linear import AffineAdapter, LowRankAdapter, ProcrustesAdapter
from embridge.core.adapters.mlp import BCTAdapter, FCTAdapter, MLPAdapter
from embridge.core.cascade_rerank import reranks_by_new_vectors


@dataclass(frozen=True)
class MethodInfo:
    """Description of one kind for choosers, validation of settings and reports."""

    kind: str
    title: str
    direction: str
    needs_labels: bool
    equal_dims: bool
    trainable: bool
    summary: str
    defaults: dict[str, Any] = field(default_factory=dict)


RIDGE_GRID = [1e-6, 1e-4, 1e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0]
SHRINK_GRID = [0.01, 0.03, 0.1, 0.3, 1.0]
# retrieval objective: negatives in batch, a sample of the old gallery per step, mined hard ones
RETRIEVAL_DEFAULTS: dict[str, Any] = {"loss": "retrieval", "bank_size": 1024, "hard_negatives": 8, "hard_every": 2,
                                      "lr": 3e-3}
ALPHA_GRID = [round(0.1 * i, 1) for i in range(11)]

METHODS: dict[str, MethodInfo] = {
    m.kind: m
    for m in [
        MethodInfo("procrustes", "Procrustes (rotation)", "backward", False, False, False,
                   "Rotates centred new query vectors onto the old space, optionally between whitened "
                   "spaces (VecMap) when validation prefers it; training-free, a strong baseline when the "
                   "two models differ by little more than a rotation.",
                   {"whiten": "auto", "shrink_grid": SHRINK_GRID}),
        MethodInfo("affine", "Affine (ridge)", "backward", False, False, False,
                   "Least-squares linear map with bias from new to old vectors, regularisation chosen "
                   "on validation; closed form, handles scaling and shearing that a rotation cannot.",
                   {"ridge_grid": RIDGE_GRID}),
        MethodInfo("lowrank", "Low-rank affine", "backward", False, False, True,
                   "A rank-r linear map (plus a diagonal when dims match) trained to retrieve each "
                   "item's old vector; fewer parameters than affine, robust with few pairs.",
                   {"rank": 64, "diagonal": True, **RETRIEVAL_DEFAULTS}),
        MethodInfo("mlp", "Residual MLP", "backward", False, False, True,
                   "An affine map plus a small GELU network for the non-linear remainder, trained to "
                   "retrieve each item's old vector; the most accurate pure query-side map.",
                   {"hidden": 512, **RETRIEVAL_DEFAULTS}),
        MethodInfo("bct", "BCT head", "backward", True, False, True,
                   "A head on new vectors trained to classify with a new classifier and with the old "
                   "classifier (influence loss), and pulled toward each item's own old vector "
                   "(align_weight), so its outputs are comparable to old vectors.",
                   {"hidden": 512, "influence_weight": 1.0, "align_weight": 1.0, "logit_scale": 16.0,
                    "softmax_classes": 1024, "batch_size": 64, "patience": 15}),
        MethodInfo("bt2", "BT² / OCA orthogonal head", "joint", True, False, True,
                   "BT² for frozen models: a small learned branch widens the new vector by k dims and an "
                   "orthogonal layer maps the widened vector; the first old-dim outputs align to the old "
                   "space for old-gallery search, the rest keep what only the new model knows.",
                   {"extra_dims": 32, "hidden": 64, "influence_weight": 1.0, "align_weight": 1.0,
                    "logit_scale": 16.0, "softmax_classes": 1024, "lr": 1e-2, "batch_size": 64,
                    "patience": 15}),
        MethodInfo("fct", "FCT gallery transform", "forward", False, False, True,
                   "Transforms the stored old gallery vectors into the new space (optionally with side "
                   "information), a cheap backfill without re-running the new model on every item.",
                   {"hidden": 512, "loss": "mse"}),
        MethodInfo("fusion", "Fusion (old + mapped new query)", "backward", False, False, False,
                   "Scores with a mix of the old query and the mapped new query, mixing weight chosen "
                   "on validation; needs both models at query time but never does worse than today.",
                   {"base": "mlp", "alpha_grid": ALPHA_GRID}),
        MethodInfo("cascade", "Cascade (old recall, new re-rank)", "backward", False, False, False,
                   "The old index recalls the top K for the old query and the new model re-ranks those K "
                   "with the new query (new vectors where the item has one, else through the layer); K "
                   "chosen on dev queries; needs both models at query time and K re-ranks per query.",
                   {"base": "affine", "k_grid": K_GRID, "rerank_new_vectors": True}),
    ]
}
ALIASES = {"oca": "bt2"}


def canonical_kind(kind: str) -> str:
    """The registry name of ``kind`` (``oca`` is BT²'s orthogonal head under another name)."""
    name = kind.strip().lower()
    return ALIASES.get(name, name)

ADAPTER_CLASSES: dict[str, type[Adapter]] = {
    "procrustes": ProcrustesAdapter,
    "affine": AffineAdapter,
    "lowrank": LowRankAdapter,
    "mlp": MLPAdapter,
    "bct": BCTAdapter,
    "bt2": BT2Adapter,
    "fct": FCTAdapter,
}


def build_adapter(kind: str, config: dict[str, Any]) -> Adapter:
    """An untrained adapter of ``kind`` with the shape recorded in ``config`` (see Adapter.config)."""
    kind = canonical_kind(kind)
    if kind == "fusion":
        base = config["base"]
        return FusionAdapter(build_adapter(base["kind"], base["config"]), config.get("alpha", 0.5))
    if kind == "cascade":
        base = config["base"]
        return CascadeAdapter(build_adapter(base["kind"], base["config"]), config.get("k", 20),
                              reranks_by_new_vectors(config))
    if kind not in ADAPTER_CLASSES:
        raise KeyError(f"unknown adapter kind {kind!r}")
    return ADAPTER_CLASSES[kind](**config)
