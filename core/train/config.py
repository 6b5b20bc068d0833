"""Training settings: common defaults, per-method defaults from the registry, and validation.

A caller passes a :class:`FitConfig` or a flat dict (the GUI's form, the CLI's flags); unknown keys
and bad values raise :class:`InputError` naming the setting, so a typo never trains silently with
defaults.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from embridge.core.adapters.registry import METHODS, canonical_kind
from embridge.core.errors import InputError

COMMON_DEFAULTS: dict[str, Any] = {
    "epochs": 40,
    "batch_size": 256,
    "lr": 1e-3,
    "weight_decay": 1e-4,
    "loss": "cosine",
    "temperature": 0.05,
    "patience": 8,
    "seed": 0,
    "device": "auto",
    "amp": True,
}
LOSSES = ("mse", "cosine", "contrastive", "retrieval")
AUTO_CANDIDATES = ("procrustes", "affine", "lowrank", "mlp", "bct", "bt2", "fusion", "cascade")
FUSION_BASES = ("procrustes", "affine", "lowrank", "mlp", "bct")
SOURCE = "training settings"
# widths that size weight matrices (hidden x dim, or (dim + extra_dims)^2 for BT²'s rotation): far
# above any useful layer, low enough that a typo cannot ask for terabytes halfway through a run (the
# other counts, such as softmax_classes, bank_size or k_grid, are capped by the data's own size)
SIZE_LIMITS = {"hidden": 16384, "rank": 16384, "extra_dims": 4096}


@dataclass
class FitConfig:
    """Typed form of the common settings; ``None`` keeps the method's default. ``options`` holds
    method-specific settings (see ``METHODS[kind].defaults``)."""

    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    loss: str | None = None
    temperature: float | None = None
    patience: int | None = None
    seed: int | None = None
    device: str | None = None
    amp: bool | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "options"}
        return {**{k: v for k, v in out.items() if v is not None}, **self.options}


def known_kinds() -> list[str]:
    return [*METHODS, "auto"]


def allowed_settings(kind: str) -> dict[str, Any]:
    """Defaults for ``kind``: the common settings overlaid with the method's own."""
    if kind == "auto":
        # each candidate keeps its own defaults (loss, lr...) unless the caller sets them
        specific = {k: v for k, v in _specific(AUTO_CANDIDATES).items() if k != "base"}
        return {**COMMON_DEFAULTS, **specific, "candidates": list(AUTO_CANDIDATES), "time_budget": None}
    out = {**COMMON_DEFAULTS, **METHODS[kind].defaults}
    if kind in ("fusion", "cascade"):
        out = {**COMMON_DEFAULTS, **_specific(FUSION_BASES), **METHODS[kind].defaults}
    return out


def _specific(kinds: tuple[str, ...]) -> dict[str, Any]:
    """Method-specific settings of several kinds (common ones such as loss or lr left out)."""
    merged: dict[str, Any] = {}
    for kind in kinds:
        merged.update({k: v for k, v in METHODS[kind].defaults.items() if k not in COMMON_DEFAULTS})
    return merged


def resolve_config(kind: str, config: FitConfig | dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """(canonical kind, full settings) after checking names and values."""
    name = canonical_kind(kind)
    if name not in known_kinds():
        raise InputError("method", f"unknown method '{kind}'; choose one of {', '.join(known_kinds())}")
    user = config.to_dict() if isinstance(config, FitConfig) else dict(config or {})
    defaults = allowed_settings(name)
    unknown = sorted(set(user) - set(defaults))
    if unknown:
        raise InputError(SOURCE, f"unknown setting(s) {', '.join(unknown)} for method '{name}'; "
                                 f"known: {', '.join(sorted(defaults))}")
    merged = {**defaults, **user}
    _check(merged, name)
    return name, merged


def _check(s: dict[str, Any], kind: str) -> None:
    def need(ok: bool, key: str, what: str) -> None:
        if not ok:
            raise InputError(SOURCE, f"'{key}' must be {what}, got {s[key]!r}")

    for key in ("epochs", "batch_size", "patience"):
        need(isinstance(s[key], int) and not isinstance(s[key], bool) and s[key] >= 1, key, "a positive integer")
    need(s["batch_size"] >= 2, "batch_size", "at least 2")
    for key in ("lr", "temperature"):
        need(isinstance(s[key], int | float) and math.isfinite(s[key]) and s[key] > 0, key, "a positive number")
    need(isinstance(s["weight_decay"], int | float) and math.isfinite(s["weight_decay"]) and s["weight_decay"] >= 0,
         "weight_decay", "zero or more")
    if "loss" in s:
        need(s["loss"] in LOSSES, "loss", f"one of {', '.join(LOSSES)}")
    for key in ("bank_size", "hard_negatives"):
        if key in s:
            need(isinstance(s[key], int) and not isinstance(s[key], bool) and s[key] >= 0, key, "zero or more")
    if "hard_every" in s:
        need(isinstance(s["hard_every"], int) and s["hard_every"] >= 1, "hard_every", "a positive integer")
    for key in ("rank", "hidden", "extra_dims", "softmax_classes"):
        if key in s:
            need(isinstance(s[key], int) and not isinstance(s[key], bool) and s[key] >= 1, key,
                 "a positive integer")
    for key, most in SIZE_LIMITS.items():
        if key in s:
            need(s[key] <= most, key, f"a positive integer of at most {most} (it sizes the layer's weights)")
    if "whiten" in s:
        need(isinstance(s["whiten"], bool) or s["whiten"] == "auto", "whiten", "'auto', true or false")
        need(all(isinstance(v, int | float) and v > 0 for v in s["shrink_grid"]) and bool(s["shrink_grid"]),
             "shrink_grid", "a non-empty list of positive numbers")
    if kind == "auto":
        bad = [c for c in s["candidates"] if canonical_kind(c) not in AUTO_CANDIDATES]
        need(bool(s["candidates"]) and not bad, "candidates", f"a non-empty list from {', '.join(AUTO_CANDIDATES)}")
        budget = s["time_budget"]
        need(budget is None or (isinstance(budget, int | float) and not isinstance(budget, bool)
                                and math.isfinite(budget) and budget > 0), "time_budget",
             "a positive number of seconds (or null for none)")
    if kind in ("fusion", "cascade"):
        need(s["base"] in FUSION_BASES, "base", f"one of {', '.join(FUSION_BASES)}")
    if "k_grid" in s:
        need(bool(s["k_grid"]) and all(isinstance(k, int) and not isinstance(k, bool) and k >= 1
                                       for k in s["k_grid"]), "k_grid", "a non-empty list of positive integers")
    if "alpha_grid" in s:
        need(all(0.0 <= a <= 1.0 for a in s["alpha_grid"]) and bool(s["alpha_grid"]), "alpha_grid",
             "a non-empty list of numbers in [0, 1]")
