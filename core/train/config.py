"""Training settings: common defaults, per-method defaults from the registry, and validation.

A caller passes a :class:`FitConfig` or a flat dict (the GUI's form, the CLI's flags); unknown keys
and bad values raise :class:`UsageError` (an InputError; exit status 2 on the command line) naming
the setting, so a typo never trains silently with defaults.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from embridge.core.adapters.registry import METHODS, canonical_kind
from embridge.core.errors import UsageError

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
SEED_MAX = 2**32 - 1  # numpy's and torch's seeds


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
        # auto's cascade re-ranks through the layer: with stored new vectors it would be scored as a
        # backfill beside layers that re-embed nothing (set rerank_new_vectors to measure it so anyway)
        return {**COMMON_DEFAULTS, **specific, "rerank_new_vectors": False, "candidates": list(AUTO_CANDIDATES),
                "time_budget": None}
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


# what only a training loop reads: a closed-form fit runs none
LOOP_SETTINGS = ("epochs", "lr", "batch_size", "loss", "weight_decay", "patience", "temperature", "amp")
PAIR_LOSS_SETTINGS = ("loss", "temperature")  # what only a pair objective reads: the heads train on classes


@dataclass(frozen=True)
class UnusedSettings:
    """Settings given that the fit never reads, and why."""

    names: list[str]
    why: str


def unused_settings(kind: str, given: dict[str, Any]) -> list[UnusedSettings]:
    """The settings in ``given`` that ``kind`` never reads, said rather than left unnoticed: the loop settings
    of a closed-form fit (procrustes, affine, or a fusion or cascade over one), the pair loss of a bct or bt2
    head, fct's retrieval loss (it has no bank), and a fusion's or cascade's settings of another base than
    its own (every base's are accepted, since the base is a setting too)."""
    name = canonical_kind(kind)
    out: list[UnusedSettings] = []
    fit = name
    if name in ("fusion", "cascade"):
        fit = canonical_kind(str(given.get("base", allowed_settings(name)["base"])))
        own = set(COMMON_DEFAULTS) | set(METHODS[name].defaults) | set(METHODS[fit].defaults)
        other = [k for k in given if k not in own]
        if other:
            out.append(UnusedSettings(other, f"settings of other bases than the {name}'s, {fit}"))
    whose = fit if fit == name else f"the {name}'s base, {fit},"
    if fit in METHODS and not METHODS[fit].trainable:
        loop = [k for k in LOOP_SETTINGS if k in given]
        if loop:
            out.append(UnusedSettings(loop, f"{whose} is a closed-form fit, with no training loop to give them to"))
    elif fit in ("bct", "bt2"):
        pair = [k for k in PAIR_LOSS_SETTINGS if k in given]
        if pair:
            out.append(UnusedSettings(pair, f"{whose} trains on its classification objective against the old "
                                            "model's class prototypes, not on a pair loss"))
    elif fit == "fct" and given.get("loss") == "retrieval":
        out.append(UnusedSettings(["loss"], f"{whose} maps old gallery vectors, with no old-gallery bank to draw "
                                            "the retrieval loss's negatives from: 'retrieval' trains as 'contrastive'"))
    return out


def resolve_config(kind: str, config: FitConfig | dict[str, Any] | None,
                   own_options: Mapping[str, str] | None = None,
                   method_option: str = "method") -> tuple[str, dict[str, Any]]:
    """(canonical kind, full settings) after checking names and values. ``own_options`` maps the settings a
    caller gives through options of their own (the command line's ``--epochs``) to them, so that an unknown
    name's list of known ones offers the option instead of a setting the caller would refuse;
    ``method_option`` names where the method was given (``--method``) in an unknown method's refusal."""
    name = canonical_kind(kind)
    if name not in known_kinds():
        raise UsageError(method_option, f"unknown method '{kind}'; choose one of {', '.join(known_kinds())}")
    user = config.to_dict() if isinstance(config, FitConfig) else dict(config or {})
    if isinstance(user.get("base"), str):  # a method name is read in any case, the base's as --method's
        user["base"] = canonical_kind(user["base"])
    defaults = allowed_settings(name)
    unknown = sorted(set(user) - set(defaults))
    if unknown:
        own = own_options or {}
        known = ", ".join(sorted(k for k in defaults if k not in own))
        options = sorted(own[k] for k in defaults if k in own)
        raise UsageError(SOURCE, f"unknown setting(s) {', '.join(unknown)} for method '{name}'; known: {known}"
                                 + (f" (and the options {', '.join(options)})" if options else ""))
    merged = {**defaults, **user}
    _check(merged, name)
    return name, merged


# ranges of numbers and grid entries (low, low_open, high, high_open); a number or grid whose
# name is not listed must be from 0 to NUMBER_MAX, a count (an integer default) from 1 to COUNT_MAX.
# The upper ends keep a typo (1e300) from overflowing float32 halfway through a run, where it would
# surface as a NaN loss blamed on the learning rate; lr's is the command line's --lr bound.
NUMBER_MAX, COUNT_MAX = 1e6, 10**9
RANGES: dict[str, tuple[float | None, bool, float | None, bool]] = {
    "lr": (0.0, True, 1e3, False),
    "weight_decay": (0.0, False, 1e3, False),
    "temperature": (1e-4, False, 1e4, False),
    "logit_scale": (0.0, True, 1e4, False),
    "ridge_grid": (0.0, True, NUMBER_MAX, False),
    "shrink_grid": (0.0, True, 1.0, False),
    "alpha_grid": (0.0, False, 1.0, False),
    "bank_size": (0.0, False, COUNT_MAX, False),
    "hard_negatives": (0.0, False, COUNT_MAX, False),
    "seed": (0.0, False, float(SEED_MAX), False),
}
# settings with their own rules (several text values, or a default of another kind)
SPECIAL = ("loss", "device", "base", "whiten", "candidates", "time_budget")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _range(key: str, count: bool) -> tuple[float | None, bool, float | None, bool]:
    if key in SIZE_LIMITS:  # checked against its own limit, with the reason (see _check)
        return 1.0, False, None, False
    return RANGES.get(key, (1.0, False, COUNT_MAX, False) if count else (0.0, False, NUMBER_MAX, False))


def _in_range(v: float, bounds: tuple[float | None, bool, float | None, bool]) -> bool:
    low, low_open, high, high_open = bounds
    return ((low is None or (v > low if low_open else v >= low))
            and (high is None or (v < high if high_open else v <= high)))


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def _range_text(bounds: tuple[float | None, bool, float | None, bool], count: bool, plural: bool = False) -> str:
    """'a positive integer', 'numbers in (0, 1]'... for the message naming a bad value."""
    low, low_open, high, high_open = bounds
    noun = ("integer" if count else "number") + ("s" if plural else "")
    if high is not None and low is not None:
        text = f"{noun} in {'(' if low_open else '['}{_num(low)}, {_num(high)}{')' if high_open else ']'}"
    elif low == 0 or (count and low == 1 and not low_open):
        if not (low_open or low == 1):
            return f"{noun} of zero or more" if plural else "zero or more"
        text = f"positive {noun}"
    else:
        text = f"{noun} {'above' if low_open else 'of at least'} {_num(low or 0)}"
    return text if plural else f"a{'n' if text[0] in 'aeiou' else ''} {text}"


def _check_by_kind(s: dict[str, Any], key: str, default: Any) -> str | None:
    """What ``s[key]`` must be, judged by the kind of its default; None when it is fine."""
    v = s[key]
    if isinstance(default, bool):
        return None if isinstance(v, bool) else "true or false"
    if isinstance(default, list):
        count = bool(default) and all(_is_int(x) for x in default)
        bounds = _range(key, count)
        ok = isinstance(v, list) and bool(v) and all(
            (_is_int(x) if count else _is_number(x)) and _in_range(x, bounds) for x in v)
        return None if ok else f"a non-empty list of {_range_text(bounds, count, plural=True)}"
    if _is_int(default) or isinstance(default, float):
        count = _is_int(default)
        bounds = _range(key, count)
        ok = (_is_int(v) if count else _is_number(v)) and _in_range(v, bounds)
        return None if ok else _range_text(bounds, count)
    if isinstance(default, str):
        return None if isinstance(v, str) else "text"
    return None


def _check(s: dict[str, Any], kind: str) -> None:
    """Every setting's type and range, so a bad value is refused before a run is recorded."""
    def need(ok: bool, key: str, what: str) -> None:
        if not ok:
            raise UsageError(SOURCE, f"'{key}' must be {what}, got {s[key]!r}")

    defaults = allowed_settings(kind)
    for key in s:
        if key not in SPECIAL:
            problem = _check_by_kind(s, key, defaults.get(key))
            need(problem is None, key, problem or "")
    need(s["batch_size"] >= 2, "batch_size", "at least 2")
    for key, most in SIZE_LIMITS.items():
        if key in s:
            need(s[key] <= most, key, f"a positive integer of at most {most} (it sizes the layer's weights)")
    if "loss" in s:
        need(s["loss"] in LOSSES, "loss", f"one of {', '.join(LOSSES)}")
    need(isinstance(s["device"], str), "device", "a device name such as auto, cpu or cuda")
    if "whiten" in s:
        need(isinstance(s["whiten"], bool) or s["whiten"] == "auto", "whiten", "'auto', true or false")
    if kind == "auto":
        names = s["candidates"]
        need(isinstance(names, list) and bool(names)
             and all(isinstance(c, str) and canonical_kind(c) in AUTO_CANDIDATES for c in names),
             "candidates", f"a non-empty list of method names from {', '.join(AUTO_CANDIDATES)}")
        budget = s["time_budget"]
        need(budget is None or (_is_number(budget) and budget > 0), "time_budget",
             "a positive number of seconds (or null for none)")
    if kind in ("fusion", "cascade"):
        need(s["base"] in FUSION_BASES, "base", f"one of {', '.join(FUSION_BASES)}")
