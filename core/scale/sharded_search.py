"""Exact search over gallery shards in parallel, merged into the single-index ranking.

Each shard is searched with its own exact faiss index for its best k (k+1 when a query may exclude
one of its rows); since the shards are disjoint, the best k of the union is the exact top-k of the
whole gallery, and :func:`embridge.core.evaluation.topk_merge.merge_topk` orders it exactly as the local
search does (score descending, ties by lower row). A gallery given as a whole ``.npy`` memmap is read
by each worker from the file, so no process holds more than its shard.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from embridge.core.errors import Cancelled, InputError
from embridge.core.evaluation.search import (
    SearchConfig,
    SearchInfo,
    _as_exclude,
    _check_matrix,
    _float32_rows,
    _result_width,
    load_faiss,
)
from embridge.core.evaluation.topk_merge import mask_excluded, merge_topk, tie_complete_search
from embridge.core.progress import StopFn, check_stop
from embridge.core.scale.engine import import_ray, ray_session

SHARD_RETRIES = 3


def shard_bounds(n: int, shards: int) -> list[tuple[int, int]]:
    """``shards`` contiguous row ranges of near-equal size covering [0, n)."""
    shards = max(1, min(shards, n))
    edges = np.linspace(0, n, shards + 1).round().astype(np.int64)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


def search_shard(queries: np.ndarray, gallery: str | np.ndarray, start: int, stop: int, k: int,
                 exclude: np.ndarray | None, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """This shard's best k rows per query as global row ids (-1 = none) and float32 scores.

    ``gallery`` is a ``.npy`` path the worker maps itself (so it reads only its rows) or the array.
    """
    faiss = load_faiss(threads)
    part = np.load(gallery, mmap_mode="r")[start:stop] if isinstance(gallery, str) else gallery[start:stop]
    rows = _float32_rows("gallery", part, 0, stop - start)
    index = faiss.IndexFlatIP(rows.shape[1])
    index.add(rows)
    want = min(k + (1 if exclude is not None else 0), stop - start)
    local_ex = None if exclude is None else np.where((exclude >= start) & (exclude < stop), exclude - start, -1)
    idx, scores = tie_complete_search(index.search, np.ascontiguousarray(queries, dtype=np.float32), want,
                                      stop - start)
    idx, scores = mask_excluded(idx, scores, local_ex)
    idx = np.where(idx >= 0, idx + start, -1)
    return idx, scores


def gallery_source(gallery: Any) -> str | np.ndarray:
    """The ``.npy`` path when ``gallery`` maps a whole file, else the array itself."""
    filename = getattr(gallery, "filename", None)
    if isinstance(gallery, np.memmap) and filename and str(filename).endswith(".npy"):
        whole = np.load(filename, mmap_mode="r")
        if whole.shape == gallery.shape and whole.dtype == gallery.dtype:
            return str(Path(filename))
    return np.asarray(gallery)


def sharded_search(queries: Any, gallery: Any, k: int, exclude: Any = None, shards: int | None = None,
                   ray_address: str | None = None,
                   should_stop: StopFn | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k over ``shards`` gallery shards searched as Ray tasks (retried when a worker dies)."""
    _check_matrix("gallery", gallery)
    _check_matrix("queries", queries, int(gallery.shape[1]))
    n = int(gallery.shape[0])
    q = np.ascontiguousarray(queries, dtype=np.float32)
    ex = _as_exclude(exclude, q.shape[0])
    width = _result_width(k, n, ex)
    ray = import_ray(ray_address)
    with ray_session(ray_address) as session:
        task = ray.remote(num_cpus=1, max_retries=SHARD_RETRIES, retry_exceptions=False)(search_shard)
        source = gallery_source(gallery)
        g_ref = source if isinstance(source, str) else ray.put(source)
        q_ref, ex_ref = ray.put(q), ray.put(ex)
        bounds = shard_bounds(n, shards or session.cpus)
        pending = [task.remote(q_ref, g_ref, a, b, width, ex_ref) for a, b in bounds]
        results = _gather(ray, pending, should_stop)
    return merge_topk([r[0] for r in results], [r[1] for r in results], width)


def _gather(ray: Any, pending: list[Any], should_stop: StopFn | None) -> list[Any]:
    """Results in submission order; a stop request cancels what is still running."""
    waiting = list(pending)
    try:
        while waiting:
            check_stop(should_stop)
            _, waiting = ray.wait(waiting, num_returns=1, timeout=0.5)
    except Cancelled:
        for ref in waiting:
            ray.cancel(ref, force=True)
        raise
    return ray.get(pending)


def engine_search(queries: Any, gallery: Any, k: int, exclude: Any, config: SearchConfig,
                  should_stop: StopFn | None = None) -> tuple[np.ndarray, np.ndarray, SearchInfo]:
    """:func:`embridge.core.evaluation.search.search` on the engine ``config.engine`` names (exact, sharded)."""
    if config.engine != "ray":
        raise InputError("--engine", f"unknown engine {config.engine!r}; choose from local, ray")
    if config.method not in ("auto", "exact"):
        raise InputError("--search", f"--engine ray searches shards exactly; {config.method!r} is not available "
                         "there (use --search exact or auto)")
    idx, scores = sharded_search(queries, gallery, k, exclude, config.shards, config.ray_address, should_stop)
    n, dim = int(gallery.shape[0]), int(gallery.shape[1])
    params = {"gallery_size": n, "dim": dim, "metric": "inner_product", "engine": "ray",
              "shards": len(shard_bounds(n, config.shards or 0)) if config.shards else "one per Ray CPU"}
    return idx, scores, SearchInfo("exact", params, True, None)
