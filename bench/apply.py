"""Adapter application: CPU cost per 384-d query, batched, for procrustes, affine and MLP.

Measured: ``embridge.core.adapters.adapt_queries``, which folds the linear kinds into one numpy map
(:mod:`embridge.core.adapters.fast_apply`) and runs every other kind's torch module. Floors, same run, same
queries: a raw ``x @ W`` float32 matmul (linear kinds; the bias add is left out, so the floor is
the least any linear map can cost) and the bare module call on one tensor under
``torch.inference_mode`` (MLP). Target: <= 5 µs per query for procrustes and affine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from bench.common import Row, Target, area_result, paired_times
from bench.data import pair_arrays
from embridge.core.adapters import adapt_queries
from embridge.core.adapters.fast_apply import linear_map
from embridge.core.train import PairData, fit_adapter

MICRO = Target("abs_max", 5.0, "<= 5 µs/query")


def fitted(kind: str, dim: int, seed: int, n_train: int = 5_000) -> torch.nn.Module:
    old, new = pair_arrays(n_train + 1_000, dim, dim, seed=seed)
    data = PairData(old[:n_train], new[:n_train], old[n_train:], new[n_train:])
    settings: dict[str, Any] = {"epochs": 1, "device": "cpu"} if kind == "mlp" else {}
    adapter = fit_adapter(kind, data, settings).adapter
    assert adapter is not None
    return adapter.eval()


def per_query(fn: Callable[[], Any], floor: Callable[[], Any], n: int, repeats: int) -> tuple[float, float]:
    m, f = paired_times(fn, floor, repeats)
    return min(m) / n * 1e6, min(f) / n * 1e6


def run(tiny: bool, device: str, seed: int = 0) -> dict[str, Any]:
    started = time.time()
    dim = 64 if tiny else 384
    n_train = 1_000 if tiny else 5_000
    n_q = 4_096 if tiny else 16_384
    repeats = 3 if tiny else 41
    queries = np.random.default_rng(seed + 7).standard_normal((n_q, dim)).astype(np.float32)
    rows: list[Row] = []
    for kind in ("procrustes", "affine", "mlp"):
        adapter = fitted(kind, dim, seed, n_train)
        if kind == "mlp":
            tensor = torch.from_numpy(queries)

            def bare(a: torch.nn.Module = adapter, t: torch.Tensor = tensor) -> Any:
                with torch.inference_mode():
                    return a(t)

            us, floor_us = per_query(lambda a=adapter: adapt_queries(a, queries), bare, n_q, repeats)
            rows.append(Row(f"mlp (hidden {adapter.hidden}), adapt_queries", "µs/query", us, floor_us,
                            "bare module call on one tensor", None, "reported, no target"))
            continue
        m = linear_map(adapter)
        assert m is not None
        weight = m.weight
        raw = lambda w=weight: queries @ w  # noqa: E731
        us, floor_us = per_query(lambda a=adapter: adapt_queries(a, queries), raw, n_q, repeats)
        with torch.inference_mode():
            module_out = adapter(torch.from_numpy(queries)).numpy()
        gap = float(np.abs(adapt_queries(adapter, queries) - module_out).max())
        rows.append(Row(f"{kind}, adapt_queries", "µs/query", us, floor_us, "raw x @ W (numpy)", MICRO,
                        "folded numpy map", {"max_abs_diff_vs_torch_module": gap}))
    notes = [f"{n_q:,} queries of {dim} dims per call, best of {repeats} calls, floor and measured alternated; "
             f"torch threads {torch.get_num_threads()}.",
             "A single query per call costs far more (Python and dispatch overhead per call): batch queries."]
    single = np.ascontiguousarray(queries[:1])
    affine = fitted("affine", dim, seed, n_train)
    lm = linear_map(affine)
    assert lm is not None
    one_us, one_floor = per_query(lambda: adapt_queries(affine, single), lambda: single @ lm.weight, 1, 200)
    rows.append(Row("affine, one query per call (adapt_queries)", "µs/query", one_us, one_floor, "raw x @ W, 1 row",
                    None, "latency of an unbatched call, for reference"))
    settings = {"dim": dim, "queries_per_call": n_q, "repeats": repeats}
    return area_result("apply", rows, settings, notes, started, "cpu")
