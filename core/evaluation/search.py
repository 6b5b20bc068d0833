"""Gallery search with faiss: exact inner product up to a size, approximate beyond, and stated.

Conventions follow :mod:`embridge.core.retrieval`: rows are L2-normalised by the caller when cosine is
meant, and ``exclude[i]`` names a gallery row that query i must not retrieve (-1 for none; the
query itself when Q ⊂ G). The gallery may be a memmap (float16 or float32): it is added to the
index in float32 chunks, so memory stays near the index's own vector bytes. An exact search over a
float32 gallery already in memory searches that matrix in place (:class:`MatrixIndex`), with no copy. When the index is
approximate, recall@k of its results against exact search is measured on a seeded query sample
and returned with the parameters, so a report can say how it searched and how well.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from embridge.core.errors import InputError, VectorFileError
from embridge.core.evaluation.faiss_threads import load_faiss
from embridge.core.evaluation.ivf_build import add_presized
from embridge.core.evaluation.npy_rows import NpyRows
from embridge.core.evaluation.topk_merge import mask_excluded, tie_complete_search
from embridge.core.progress import ProgressFn, StopFn, check_stop, no_progress
from embridge.core.retrieval import exact_topk, rows_lost_to_exclusion

METHODS = ("auto", "exact", "ivf", "hnsw")


@dataclass(frozen=True)
class SearchConfig:
    """How to search. ``method="auto"`` is exact up to ``exact_max`` items, ``approximate`` beyond."""

    method: str = "auto"
    exact_max: int = 200_000
    approximate: str = "ivf"
    nlist: int | None = None  # None: 4·sqrt(N), capped so every list gets >= 39 training points
    nprobe: int = 32
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 128
    train_per_list: int = 50
    measure_recall: bool = True
    recall_sample: int | None = None  # None: recall_queries(N), 1,000 queries at 200k rows down to 200 at 1M
    recall_k: int | None = None  # None: the k of the search itself
    threads: int | None = None  # None: OMP_NUM_THREADS when set, else the CPUs this process may use
    query_block: int = 4096
    add_chunk: int = 65_536
    seed: int = 0
    engine: str = "local"  # "ray": exact search over gallery shards on a Ray cluster (embridge.core.scale)
    shards: int | None = None  # None: one shard per Ray CPU
    ray_address: str | None = None  # None: RAY_ADDRESS, else a local Ray started for the search


@dataclass(frozen=True)
class SearchInfo:
    """What a report states about its search: method, index parameters, measured recall."""

    method: str
    params: dict[str, Any]
    exact: bool
    recall_vs_exact: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GalleryIndex:
    """A built faiss index with what it is (the quantizer is kept alive alongside the IVF index)."""

    index: Any
    method: str
    params: dict[str, Any]
    dim: int
    ntotal: int
    quantizer: Any = None


class MatrixIndex:
    """Exact inner-product search straight over an in-memory float32 gallery.

    ``faiss.knn`` runs the routine ``IndexFlatIP.search`` runs (the tests compare both bit for bit),
    so an exact search over a gallery already in memory needs no second copy of it inside an index:
    for a 1M x 384 gallery that is 1.5 GB less at the peak and no copy to wait for.
    """

    def __init__(self, matrix: np.ndarray, faiss: Any) -> None:
        self.matrix, self._faiss = matrix, faiss

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) best first, as a faiss index returns them."""
        return self._faiss.knn(queries, self.matrix, k, metric=self._faiss.METRIC_INNER_PRODUCT)


def _searchable_in_place(gallery: Any) -> bool:
    """A plain in-memory float32 C-ordered matrix (not a file map) that exact search can use as it is."""
    return type(gallery) is np.ndarray and gallery.dtype == np.float32 and gallery.flags.c_contiguous


def _check_matrix(name: str, array: Any, dim: int | None = None) -> None:
    shape = getattr(array, "shape", None)
    if shape is None or len(shape) != 2:
        raise InputError(name, f"expected a 2-D array of vectors, got shape {shape}")
    if shape[0] == 0:
        raise InputError(name, "holds no vectors")
    if dim is not None and shape[1] != dim:
        raise InputError(name, f"vectors have {shape[1]} dims, the gallery has {dim}")


def _float32_rows(name: str, array: Any, start: int, stop: int) -> np.ndarray:
    """Rows [start, stop) as contiguous float32, refusing NaN/inf with the first bad row named."""
    rows = np.ascontiguousarray(array[start:stop], dtype=np.float32)
    _check_finite(name, rows, start)
    return rows


def _check_finite(name: str, rows: np.ndarray, start: int) -> None:
    finite = np.isfinite(rows).all(axis=1)
    if not finite.all():
        bad = start + int(np.flatnonzero(~finite)[0])
        raise VectorFileError(name, f"row {bad} holds non-finite values")


def choose_method(n_gallery: int, config: SearchConfig) -> str:
    """The index kind for a gallery of this size under ``config``."""
    if config.method not in METHODS:
        raise InputError("search method", f"unknown method {config.method!r}; choose from {METHODS}")
    if config.method != "auto":
        return config.method
    if n_gallery <= config.exact_max:
        return "exact"
    if config.approximate not in ("ivf", "hnsw"):
        raise InputError("search method", f"unknown approximate method {config.approximate!r}")
    return config.approximate


def default_nlist(n_gallery: int) -> int:
    """4·sqrt(N) lists, no more than N/39 so that k-means has enough points per list."""
    return max(1, min(int(round(4 * math.sqrt(n_gallery))), n_gallery // 39))


def build_index(
    gallery: Any,
    config: SearchConfig | None = None,
    source: str = "gallery",
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> GalleryIndex:
    """Build the index for ``gallery`` (array or memmap), adding it in float32 chunks.

    A whole-file memmap is read with plain file reads (see :mod:`embridge.core.evaluation.npy_rows`) and the
    exact index's storage is reserved before the adds, so the peak stays near the index's own
    vector bytes instead of twice them.
    """
    config = config or SearchConfig()
    on_progress = on_progress or no_progress
    _check_matrix(source, gallery)
    n, dim = int(gallery.shape[0]), int(gallery.shape[1])
    method = choose_method(n, config)
    with _plain_reads(gallery) as rows:
        return _build(rows, n, dim, method, config, source, on_progress, should_stop)


@contextmanager
def _plain_reads(gallery: Any) -> Iterator[Any]:
    """The gallery itself, or a plain-read view of the file behind it (closed afterwards)."""
    reader = NpyRows.of_memmap(gallery)
    try:
        yield gallery if reader is None else reader
    finally:
        if reader is not None:
            reader.close()


def _build(gallery: Any, n: int, dim: int, method: str, config: SearchConfig, source: str,
           on_progress: ProgressFn, should_stop: StopFn | None) -> GalleryIndex:
    faiss = load_faiss(config.threads)
    quantizer = None
    params: dict[str, Any] = {"gallery_size": n, "dim": dim, "metric": "inner_product"}
    if method == "exact" and _searchable_in_place(gallery):
        for start in range(0, n, config.add_chunk):  # the same checks (finite rows) an index build makes
            check_stop(should_stop)
            stop = min(start + config.add_chunk, n)
            _check_finite(source, gallery[start:stop], start)
            on_progress(stop, n, {"stage": "index"})
        return GalleryIndex(index=MatrixIndex(gallery, faiss), method=method, params=params, dim=dim, ntotal=n)
    if method == "exact":
        index = faiss.IndexFlatIP(dim)
        index.codes.resize(n * index.code_size)  # reserve: chunked adds then never regrow and copy it
        index.codes.resize(0)
    elif method == "ivf":
        nlist = min(config.nlist or default_nlist(n), n)
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = config.seed
        index.cp.spherical = True
        n_train = min(n, config.train_per_list * nlist)
        rng = np.random.default_rng(config.seed)
        rows = np.sort(rng.choice(n, size=n_train, replace=False))
        train = np.ascontiguousarray(np.asarray(gallery[rows]), dtype=np.float32)
        if not np.isfinite(train).all():
            raise VectorFileError(source, "holds non-finite values")
        index.train(train)
        del train
        index.nprobe = min(config.nprobe, nlist)
        params.update(nlist=nlist, nprobe=int(index.nprobe), train_size=n_train)
    elif method == "hnsw":
        index = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = config.ef_construction
        index.hnsw.efSearch = config.ef_search
        params.update(M=config.hnsw_m, ef_construction=config.ef_construction, ef_search=config.ef_search)
    else:  # pragma: no cover - choose_method guards this
        raise InputError("search method", method)
    if method == "ivf":  # every inverted list sized once: no spare capacity left in the index
        add_presized(index, faiss, n, config.add_chunk,
                     lambda start, stop: _float32_rows(source, gallery, start, stop), on_progress, should_stop)
    else:
        for start in range(0, n, config.add_chunk):
            check_stop(should_stop)
            stop = min(start + config.add_chunk, n)
            index.add(_float32_rows(source, gallery, start, stop))
            on_progress(stop, n, {"stage": "index"})
    return GalleryIndex(index=index, method=method, params=params, dim=dim, ntotal=n, quantizer=quantizer)


def _result_width(k: int, ntotal: int, exclude: np.ndarray | None) -> int:
    if k < 1:
        raise InputError("k", f"must be at least 1, got {k}")
    width = min(k, ntotal - rows_lost_to_exclusion(exclude))
    if width < 1:
        raise InputError("gallery", "is too small to retrieve anything once the query itself is excluded")
    return width


def _as_exclude(exclude: Any, n_queries: int) -> np.ndarray | None:
    if exclude is None:
        return None
    ex = np.asarray(exclude, dtype=np.int64)
    if ex.shape != (n_queries,):
        raise InputError("exclude", f"expected one gallery row per query ({n_queries}), got shape {ex.shape}")
    return ex


def search_index(
    gindex: GalleryIndex,
    queries: Any,
    k: int,
    exclude: Any = None,
    block: int = 4096,
    source: str = "queries",
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k gallery rows (int64, -1 where the index found too few) and scores (float32), best first."""
    on_progress = on_progress or no_progress
    _check_matrix(source, queries, gindex.dim)
    n_q = int(queries.shape[0])
    ex = _as_exclude(exclude, n_q)
    width = _result_width(k, gindex.ntotal, ex)
    ask = min(width + (1 if ex is not None else 0), gindex.ntotal)
    idx_out = np.empty((n_q, width), dtype=np.int64)
    score_out = np.empty((n_q, width), dtype=np.float32)
    for start in range(0, n_q, block):
        check_stop(should_stop)
        stop = min(start + block, n_q)
        rows = _float32_rows(source, queries, start, stop)
        idx, scores = tie_complete_search(gindex.index.search, rows, ask, gindex.ntotal)
        idx, scores = mask_excluded(idx, scores, None if ex is None else ex[start:stop])
        idx_out[start:stop] = idx[:, :width]
        score_out[start:stop] = scores[:, :width]
        on_progress(stop, n_q, {"stage": "search"})
    return idx_out, score_out


def overlap_recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over rows of |found ∩ truth| / |truth| (ids unique within a row, -1 = empty slot)."""
    both = np.sort(np.concatenate([found, truth], axis=1), axis=1)
    shared = ((both[:, 1:] == both[:, :-1]) & (both[:, 1:] >= 0)).sum(axis=1)
    sizes = np.maximum((truth >= 0).sum(axis=1), 1)
    return float(np.mean(shared / sizes))


# Exact query x gallery-row products a recall measurement may spend by default: 1,000 queries up to
# 200,000 rows, fewer beyond, so that checking an index costs a fixed fraction of building it.
RECALL_PRODUCTS = 200_000_000


def recall_queries(n_gallery: int) -> int:
    """Queries the default recall check uses on an ``n_gallery``-row gallery: 1,000, at least 200.

    The exact reference search costs queries x gallery rows. 200 queries at k = 100 still count 20,000
    neighbour slots, which pins recall down to about +-0.005 at the recalls seen here.
    """
    return int(min(1000, max(200, RECALL_PRODUCTS // max(n_gallery, 1))))


def measure_recall(
    gindex: GalleryIndex,
    queries: Any,
    gallery: Any,
    k: int,
    exclude: Any = None,
    sample: int = 1000,
    seed: int = 0,
) -> tuple[float, int]:
    """Recall@k of the index's results against exact search on a seeded query sample: (recall, n)."""
    n_q = int(queries.shape[0])
    ex = _as_exclude(exclude, n_q)
    rows = np.sort(np.random.default_rng(seed).choice(n_q, size=min(sample, n_q), replace=False))
    q = np.ascontiguousarray(np.asarray(queries[rows]), dtype=np.float32)
    ex_rows = ex[rows] if ex is not None else None
    found, _ = search_index(gindex, q, k, ex_rows)
    with _plain_reads(gallery) as reference:
        truth, _ = exact_topk(q, reference, found.shape[1], ex_rows)
    return overlap_recall(found, truth), int(rows.size)


def search(
    queries: Any,
    gallery: Any,
    k: int,
    exclude: Any = None,
    config: SearchConfig | None = None,
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> tuple[np.ndarray, np.ndarray, SearchInfo]:
    """Build the right index for the gallery, search all queries, and say how (and how well)."""
    config = config or SearchConfig()
    _check_matrix("gallery", gallery)
    _check_matrix("queries", queries, int(gallery.shape[1]))
    if config.engine != "local":
        from embridge.core.scale.sharded_search import engine_search

        return engine_search(queries, gallery, k, exclude, config, should_stop=should_stop)
    gindex = build_index(gallery, config, on_progress=on_progress, should_stop=should_stop)
    return search_built(gindex, queries, gallery, k, exclude, config, on_progress, should_stop)


def build_key(n_gallery: int, config: SearchConfig) -> tuple[Any, ...]:
    """What an index built for ``n_gallery`` rows under ``config`` depends on: two configs with the
    same key build the same index (recall-measurement settings, for one, do not matter)."""
    method = choose_method(n_gallery, config)
    if method == "exact":
        return (method,)
    if method == "ivf":
        return (method, config.nlist, config.nprobe, config.train_per_list, config.seed)
    return (method, config.hnsw_m, config.ef_construction, config.ef_search)


def search_built(
    gindex: GalleryIndex,
    queries: Any,
    gallery: Any,
    k: int,
    exclude: Any = None,
    config: SearchConfig | None = None,
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> tuple[np.ndarray, np.ndarray, SearchInfo]:
    """:func:`search` on an index already built for ``gallery`` (one build serving several query
    sets), with the recall of an approximate index measured as :func:`search` measures it."""
    config = config or SearchConfig()
    idx, scores = search_index(
        gindex, queries, k, exclude, config.query_block, on_progress=on_progress, should_stop=should_stop
    )
    params = dict(gindex.params)
    recall = None
    if gindex.method != "exact" and config.measure_recall:
        check_stop(should_stop)
        recall_k = min(config.recall_k or k, idx.shape[1])
        recall, n_sample = measure_recall(
            gindex, queries, gallery, recall_k, exclude,
            config.recall_sample or recall_queries(gindex.ntotal), config.seed
        )
        params.update(recall_k=recall_k, recall_sample=n_sample)
    return idx, scores, SearchInfo(gindex.method, params, gindex.method == "exact", recall)
