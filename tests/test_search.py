"""faiss search: exact results, self-exclusion, memmap float16 galleries, and stated approximate recall."""

from __future__ import annotations

import numpy as np
import pytest

from embridge.core.errors import InputError, VectorFileError
from embridge.core.evaluation.search import (
    MatrixIndex,
    SearchConfig,
    build_index,
    choose_method,
    default_nlist,
    search,
    search_index,
)
from embridge.core.retrieval import exact_topk, l2_normalize


def _uniform(n: int, dim: int, seed: int) -> np.ndarray:
    return l2_normalize(np.random.default_rng(seed).normal(size=(n, dim)))


def test_exact_search_matches_numpy_and_excludes_the_query() -> None:
    gallery = _uniform(3000, 24, 0)
    queries = gallery[:200]
    exclude = np.arange(200)
    exclude[::7] = -1  # some queries keep themselves
    idx, scores, info = search(queries, gallery, 10, exclude=exclude, config=SearchConfig(add_chunk=700))
    assert info.method == "exact" and info.exact and info.recall_vs_exact is None
    assert idx.dtype == np.int64 and scores.dtype == np.float32 and idx.shape == (200, 10)
    ref_idx, ref_scores = exact_topk(queries, gallery, 10, exclude=exclude)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)
    excluded = exclude >= 0
    assert not (idx[excluded] == exclude[excluded, None]).any()
    assert (idx[~excluded, 0] == np.flatnonzero(~excluded)).all()  # its own item ranks first


def test_small_gallery_returns_what_exists() -> None:
    gallery = _uniform(5, 8, 1)
    idx, _, _ = search(gallery, gallery, 10, exclude=np.arange(5))
    assert idx.shape == (5, 4)
    assert all(sorted(row) == sorted(set(range(5)) - {i}) for i, row in enumerate(idx.tolist()))
    with pytest.raises(InputError, match="too small"):
        search(gallery[:1], gallery[:1], 3, exclude=np.array([0]))


def test_memmap_float16_gallery(tmp_path) -> None:
    gallery = _uniform(4000, 32, 2).astype(np.float16)
    path = tmp_path / "gallery.npy"
    np.save(path, gallery)
    mm = np.load(path, mmap_mode="r")
    assert isinstance(mm, np.memmap) and mm.dtype == np.float16
    queries = _uniform(50, 32, 3)
    idx, _, info = search(queries, mm, 5, config=SearchConfig(add_chunk=512))
    ref, _ = exact_topk(queries, gallery.astype(np.float32), 5)
    np.testing.assert_array_equal(idx, ref)
    assert info.params["gallery_size"] == 4000


@pytest.mark.parametrize(
    ("config", "name"),
    [
        (SearchConfig(method="ivf", nprobe=8, recall_sample=5000), "ivf"),
        (SearchConfig(method="hnsw", hnsw_m=8, ef_search=10, ef_construction=20, recall_sample=5000), "hnsw"),
    ],
)
def test_approximate_recall_is_stated_correctly(config: SearchConfig, name: str) -> None:
    # uniform random vectors are the hard case for approximate search: recall is well below 1
    gallery = _uniform(12000, 32, 4)
    queries = np.concatenate([gallery[:150], _uniform(150, 32, 5)])
    exclude = np.concatenate([np.arange(150), np.full(150, -1)])
    idx, _, info = search(queries, gallery, 10, exclude=exclude, config=config)
    assert info.method == name and not info.exact
    assert info.params["recall_k"] == 10 and info.params["recall_sample"] == 300
    truth = exact_topk(queries, gallery, 10, exclude=exclude)[0]
    measured = np.mean([len(set(a) & set(t)) / 10 for a, t in zip(idx.tolist(), truth.tolist(), strict=True)])
    assert info.recall_vs_exact == pytest.approx(measured, abs=1e-12)
    assert 0.25 < info.recall_vs_exact < 0.7  # measured: about 0.4 for both
    assert not (idx[:150] == np.arange(150)[:, None]).any()
    if name == "ivf":
        assert info.params["nlist"] == default_nlist(12000) == 307 and info.params["nprobe"] == 8


def test_recall_on_a_sample_and_auto_choice() -> None:
    gallery = _uniform(6000, 16, 6)
    queries = _uniform(400, 16, 7)
    config = SearchConfig(exact_max=5000, nprobe=4, recall_sample=100, seed=3)
    assert choose_method(6000, config) == "ivf" and choose_method(5000, config) == "exact"
    idx, _, info = search(queries, gallery, 5, config=config)
    assert info.method == "ivf" and info.params["recall_sample"] == 100
    rows = np.sort(np.random.default_rng(3).choice(400, size=100, replace=False))
    truth = exact_topk(queries[rows], gallery, 5)[0]
    measured = np.mean(
        [len(set(a) & set(t)) / 5 for a, t in zip(idx[rows].tolist(), truth.tolist(), strict=True)]
    )
    assert info.recall_vs_exact == pytest.approx(measured, abs=1e-12)


def test_chunked_reference_and_index_reuse() -> None:
    gallery = _uniform(2500, 12, 8)
    queries = _uniform(30, 12, 9)
    ref = exact_topk(queries, gallery, 7)[0]
    np.testing.assert_array_equal(exact_topk(queries, gallery, 7, gallery_chunk=300)[0], ref)
    gindex = build_index(gallery)
    np.testing.assert_array_equal(search_index(gindex, queries, 7)[0], ref)


def test_bad_inputs_are_named() -> None:
    gallery = _uniform(100, 8, 10)
    with pytest.raises(InputError, match="queries"):
        search(_uniform(3, 9, 0), gallery, 2)
    with pytest.raises(InputError, match="exclude"):
        search(gallery[:3], gallery, 2, exclude=np.array([0, 1]))
    bad = gallery.copy()
    bad[42, 3] = np.nan
    with pytest.raises(VectorFileError, match="vectors.npy: row 42"):
        build_index(bad, source="vectors.npy")
    with pytest.raises(InputError, match="method"):
        search(gallery, gallery, 2, config=SearchConfig(method="lsh"))


def test_exact_search_over_an_in_memory_gallery_uses_it_in_place_and_matches_a_built_index(tmp_path) -> None:
    """A float32 gallery in memory is searched where it lies (no copy inside an index); a file-mapped
    gallery goes through a faiss index. Both give the same ids and the same float32 scores, ties and
    self-exclusion included, and a non-finite row is refused by both."""
    rng = np.random.default_rng(3)
    gallery = l2_normalize(rng.standard_normal((3000, 24)).astype(np.float32))
    gallery[1::5] = gallery[::5][: len(gallery[1::5])]  # exact duplicates: tie groups at every depth
    queries = gallery[rng.choice(len(gallery), 500, replace=False)].copy()
    exclude = rng.integers(-1, len(gallery), len(queries))
    np.save(tmp_path / "g.npy", gallery)
    mapped = np.load(tmp_path / "g.npy", mmap_mode="r")
    in_place = build_index(gallery)
    assert isinstance(in_place.index, MatrixIndex) and in_place.index.matrix is gallery
    assert not isinstance(build_index(mapped).index, MatrixIndex)
    for k in (1, 10, 37):
        a_idx, a_scores, _ = search(queries, gallery, k, exclude)
        b_idx, b_scores, _ = search(queries, mapped, k, exclude)
        np.testing.assert_array_equal(a_idx, b_idx)
        np.testing.assert_array_equal(a_scores, b_scores)
    bad = gallery.copy()
    bad[1234, 5] = np.nan
    with pytest.raises(VectorFileError, match="row 1234"):
        build_index(bad)


def test_the_default_recall_sample_shrinks_with_the_gallery(monkeypatch: pytest.MonkeyPatch) -> None:
    from embridge.core.evaluation import search as search_module

    assert [search_module.recall_queries(n) for n in (1_000, 200_000, 400_000, 1_000_000, 10**9)] == \
        [1000, 1000, 500, 200, 200]
    monkeypatch.setattr(search_module, "RECALL_PRODUCTS", 6000 * 300)
    gallery, queries = _uniform(6000, 16, 8), _uniform(700, 16, 9)
    _, _, info = search(queries, gallery, 5, config=SearchConfig(exact_max=5000, nprobe=4))
    assert info.method == "ivf" and info.params["recall_sample"] == 300
    assert 0.0 < info.recall_vs_exact <= 1.0


def test_ivf_index_with_presized_lists_equals_faiss_own_add(tmp_path) -> None:
    """The IVF build sizes each inverted list before adding: same lists, same results as ``add``."""
    import faiss

    gallery = _uniform(9000, 16, 8)
    path = tmp_path / "gallery.npy"
    np.save(path, gallery)
    config = SearchConfig(method="ivf", nprobe=6, add_chunk=1000, seed=2)
    built = build_index(np.load(path, mmap_mode="r"), config).index
    plain = faiss.IndexIVFFlat(faiss.IndexFlatIP(16), 16, built.nlist, faiss.METRIC_INNER_PRODUCT)
    plain.quantizer.add(built.quantizer.reconstruct_n(0, built.nlist))
    plain.is_trained = True
    plain.add(gallery)
    plain.nprobe = built.nprobe
    assert built.ntotal == plain.ntotal == 9000
    sizes = [built.invlists.list_size(i) for i in range(built.nlist)]
    assert sizes == [plain.invlists.list_size(i) for i in range(plain.nlist)] and sum(sizes) == 9000
    queries = _uniform(300, 16, 9)
    for got, want in zip(built.search(queries, 10), plain.search(queries, 10), strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("setting", ["pinned", "unset", "invalid"])
def test_faiss_threads_follow_omp_num_threads_when_set(setting: str) -> None:
    """A pinned OMP_NUM_THREADS is honoured; unset or unreadable, faiss uses the CPUs this process may use."""
    import os
    import subprocess
    import sys

    usable = len(os.sched_getaffinity(0))
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if setting == "pinned":
        env["OMP_NUM_THREADS"] = str(usable + 1)  # differs from the CPU count, so the source is visible
    elif setting == "invalid":
        env["OMP_NUM_THREADS"] = "lots"
    code = ("from embridge.core.evaluation.search import load_faiss; "
            "print(load_faiss().omp_get_max_threads())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert int(out.stdout.split()[-1]) == (usable + 1 if setting == "pinned" else usable)
