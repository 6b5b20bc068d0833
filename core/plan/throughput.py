"""Measured costs on this machine: re-embedding with the new model and applying a layer, in items/s.

Re-embedding is timed on a few real gallery items, reading and preparing them included, after one
warm-up batch; applying a layer is timed on batches of unit vectors of its input size. An
embeddings-only model (kind ``vectors``) has no backbone here, so its re-embedding rate is unknown
(None) and the plan says so instead of inventing a number.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from embridge.core.adapters import adapt_gallery, adapt_queries
from embridge.core.adapters.adapter import Adapter
from embridge.core.errors import CheckpointError, InputError
from embridge.core.l2 import l2_normalize
from embridge.core.store import Workspace


@dataclass
class Throughput:
    """Items per second for each operation a plan costs, with how they were measured."""

    embed_items_per_s: float | None  # the new model re-embedding gallery items; None: not measurable here
    adapter_items_per_s: float  # the chosen layer on its input vectors
    device: str = "cpu"
    embed_sample: int = 0
    notes: list[str] = field(default_factory=list)
    extra: dict[str, float] = field(default_factory=dict)  # other layers' rates by name (e.g. "fct")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _timed(fn: Any, min_seconds: float, max_reps: int = 50) -> tuple[float, int]:
    """(seconds, repetitions) of calling ``fn`` at least once and until ``min_seconds`` have passed."""
    reps, start = 0, time.perf_counter()
    while True:
        fn()
        reps += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds or reps >= max_reps:
            return elapsed, reps


def adapter_rate(adapter: Adapter, batch: int = 4096, min_seconds: float = 0.1, seed: int = 0) -> float:
    """Vectors per second through ``adapter`` (both query vectors for fusion, side columns for fct)."""
    rng = np.random.default_rng(seed)

    def unit(dim: int) -> np.ndarray:
        x = rng.standard_normal((batch, dim)).astype(np.float32)
        return l2_normalize(x)

    if adapter.direction == "forward":
        side_dim = int(getattr(adapter, "side_dim", 0) or 0)
        base_dim = adapter.in_dim - side_dim
        old, side = unit(base_dim), (np.zeros((batch, side_dim), np.float32) if side_dim else None)
        fn: Any = lambda: adapt_gallery(adapter, old, side)  # noqa: E731
    else:
        new = unit(adapter.in_dim)
        old = unit(adapter.out_dim) if adapter.kind == "fusion" else None
        fn = lambda: adapt_queries(adapter, new, old)  # noqa: E731
    fn()  # warm-up
    seconds, reps = _timed(fn, min_seconds)
    return batch * reps / seconds


def embed_rate(ws: Workspace, model: str, sample: int = 64, device: str = "auto", min_seconds: float = 0.2,
               seed: int = 0) -> tuple[float | None, int, str, str]:
    """(items/s or None, items timed, device, note) for re-embedding gallery items with ``model``."""
    from embridge.core.device import resolve_device
    from embridge.core.models import load_model, make_inputs

    row = ws.model(model)
    spec = {**(row.get("spec") or {}), "path": row.get("path")}
    if spec.get("kind") == "vectors":
        return None, 0, "none", (f"'{model}' is an embeddings-only model: its vectors come precomputed, so there "
                                 "is no backbone to time here; re-embedding costs whatever producing the new "
                                 "vectors costs where they are made.")
    dev = resolve_device(device)
    gallery = ws.embeddable_gallery_ids()  # items imported as vectors alone hold nothing to embed
    if not gallery.size:
        return None, 0, "none", (f"no gallery item holds raw inputs (text, images) for '{model}' to embed, so "
                                 "re-embedding could not be timed here; its cost is whatever producing the new "
                                 "vectors costs where they are made.")
    ids = np.sort(np.random.default_rng(seed).choice(gallery, size=min(sample, gallery.size), replace=False))
    items = ws.items(ids=ids.tolist())
    started = time.perf_counter()
    loaded = load_model(spec, dev, verify=True)  # the stored checkpoint, refused once it changed, as embed does
    load_s = time.perf_counter() - started

    def run() -> None:
        loaded.embed_batch(make_inputs(items, loaded.spec), role="document")

    try:
        loaded.embed_batch(make_inputs(items[: min(8, len(items))], loaded.spec), role="document")  # warm-up
        seconds, reps = _timed(run, min_seconds, max_reps=20)
    except InputError as exc:  # items the model cannot take: a backfill would stop on them too
        if isinstance(exc, CheckpointError):  # the model itself (a changed checkpoint, say): refused as embed does
            raise
        return None, 0, "none", (f"re-embedding could not be timed: {len(items)} sampled gallery items include "
                                 f"some '{model}' cannot embed ({exc}); a backfill would stop on them too, so "
                                 "its time is not given")
    note = (f"Re-embedding measured on {len(items)} real gallery items on {dev} (reading and preparing the items "
            "included), extrapolated linearly to the full gallery; a backfill command also starts Python and torch "
            f"and loads the model first ({load_s:.1f} s here for the load), a fixed cost these times leave out.")
    return len(items) * reps / seconds, len(items), str(dev), note


def measure_throughput(ws: Workspace, adapter: Adapter, new_model: str, *, sample: int = 64,
                       device: str = "auto", extra: dict[str, Adapter] | None = None) -> Throughput:
    """Measure every rate a plan needs on this machine (see the module docstring)."""
    rate, n, dev, note = embed_rate(ws, new_model, sample, device)
    return Throughput(embed_items_per_s=rate, adapter_items_per_s=adapter_rate(adapter), device=dev,
                      embed_sample=n, notes=[note, "Layer throughput measured on CPU batches of 4096 vectors."],
                      extra={name: adapter_rate(a) for name, a in (extra or {}).items()})
