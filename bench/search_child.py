"""One search measurement in its own process, so that its peak memory is its own.

``--impl core`` runs :func:`embridge.core.evaluation.search.build_index` + ``search_index`` (what ``search``
does, minus its recall sample). ``--impl faiss`` builds the same index
with raw faiss calls (same nlist, nprobe, training rows and k-means seed) and searches all queries
in one call. Both open the gallery and queries as memmaps of ``.npy`` files, as workspace vectors
are opened. Prints one JSON line: timings, VmHWM, the sampled peak of private (anonymous) memory.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from bench.common import AnonPeak, emit

SAME_INDEX: dict[str, float] = {}


def core_search(gallery: np.ndarray, queries: np.ndarray, k: int, method: str, nlist: int, nprobe: int,
                threads: int, rounds: int = 0) -> tuple[np.ndarray, float, float]:
    """Build + search with core; then ``rounds`` alternations of core ``search_index`` and a raw
    ``index.search`` on this same index (search-only timings free of build-to-build noise)."""
    from embridge.core.evaluation.search import SearchConfig, build_index, search_index

    config = SearchConfig(method=method, nlist=nlist or None, nprobe=nprobe, threads=threads,
                          measure_recall=False)
    t0 = time.perf_counter()
    gindex = build_index(gallery, config)
    t1 = time.perf_counter()
    idx, _ = search_index(gindex, queries, k, block=config.query_block)
    t2 = time.perf_counter()
    dense = np.ascontiguousarray(queries, dtype=np.float32)
    for _ in range(rounds):
        start = time.perf_counter()
        gindex.index.search(dense, k)
        mid = time.perf_counter()
        search_index(gindex, queries, k, block=config.query_block)
        end = time.perf_counter()
        SAME_INDEX["raw_s"] = min(SAME_INDEX.get("raw_s", mid - start), mid - start)
        SAME_INDEX["core_s"] = min(SAME_INDEX.get("core_s", end - mid), end - mid)
    return idx, t1 - t0, t2 - t1


def faiss_search(gallery: np.ndarray, queries: np.ndarray, k: int, method: str, nlist: int, nprobe: int,
                 threads: int, rounds: int = 0, train_per_list: int = 50,
                 seed: int = 0) -> tuple[np.ndarray, float, float]:
    import faiss  # already loaded after torch by main(), as the app does

    faiss.omp_set_num_threads(threads)
    n, dim = gallery.shape
    t0 = time.perf_counter()
    if method == "exact":
        index = faiss.IndexFlatIP(dim)
    else:
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.cp.spherical = True
        rows = np.sort(np.random.default_rng(seed).choice(n, size=min(n, train_per_list * nlist), replace=False))
        index.train(np.ascontiguousarray(gallery[rows]))
        index.nprobe = nprobe
    index.add(gallery)
    t1 = time.perf_counter()
    _, idx = index.search(np.ascontiguousarray(queries), k)
    return idx, t1 - t0, time.perf_counter() - t1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--impl", choices=("core", "faiss"), required=True)
    p.add_argument("--method", choices=("exact", "ivf"), required=True)
    p.add_argument("--gallery", required=True)
    p.add_argument("--queries", required=True)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--nlist", type=int, default=0)
    p.add_argument("--nprobe", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-queries", type=int, default=0)
    p.add_argument("--same-index-rounds", type=int, default=0, help="core: alternate core/raw searches after")
    p.add_argument("--ids-out", default="")
    a = p.parse_args()
    from embridge.core.evaluation.search import load_faiss

    load_faiss(a.threads)  # imports (torch, faiss) are a once-per-process cost, not search time
    gallery = np.load(a.gallery, mmap_mode="r", allow_pickle=False)
    queries = np.load(a.queries, mmap_mode="r", allow_pickle=False)
    if a.max_queries:
        queries = queries[: a.max_queries]
    run = core_search if a.impl == "core" else faiss_search
    with AnonPeak() as anon:
        idx, build_s, search_s = run(gallery, queries, a.k, a.method, a.nlist, a.nprobe, a.threads,
                                     a.same_index_rounds)
    if a.ids_out:
        np.save(a.ids_out, idx)
    out: dict[str, Any] = {"build_s": build_s, "search_s": search_s, "total_s": build_s + search_s,
                           "n_queries": int(queries.shape[0]), "anon_peak_bytes": anon.peak,
                           "same_index": SAME_INDEX}
    emit(out)


if __name__ == "__main__":
    main()
