"""The moment-based closed-form fits equal the textbook fits on full centred float64 copies."""

from __future__ import annotations

import numpy as np
import pytest

from embridge.core.adapters.closed_form import (
    ProcrustesSolution,
    candidate_count,
    candidates_from_moments,
    pair_moments,
    procrustes,
    procrustes_candidates,
    procrustes_from_moments,
    ridge_from_moments,
    ridge_path,
    whitened_procrustes,
)
from embridge.core.synthetic import affine_pair, class_structured_pair, rotation_pair

GRID = [1e-6, 1e-3, 1e-1, 1.0]


def _centred(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    return x - x.mean(axis=0), x.mean(axis=0)


def _power(cov: np.ndarray, shrink: float, p: float) -> np.ndarray:
    evals, evecs = np.linalg.eigh(cov)
    evals = np.clip(evals, 0.0, None)
    return (evecs * np.maximum(evals + shrink * (evals.mean() or 1.0), 1e-12) ** p) @ evecs.T


def reference_procrustes(source: np.ndarray, target: np.ndarray) -> ProcrustesSolution:
    """Schönemann's solution on centred copies, scale from the mapped rows themselves."""
    s, ms = _centred(source)
    t, mt = _centred(target)
    u, sv, vt = np.linalg.svd(s.T @ t, full_matrices=False)
    w = u @ vt
    return ProcrustesSolution(w, float(sv.sum() / ((s @ w) ** 2).sum()), ms, mt)


def reference_whitened(source: np.ndarray, target: np.ndarray, shrink: float) -> np.ndarray:
    """VecMap: whiten both centred copies, rotate, de-whiten; returns the weight."""
    s, _ = _centred(source)
    t, _ = _centred(target)
    ws, ct = _power(s.T @ s / len(s), shrink, -0.5), t.T @ t / len(t)
    u, _, vt = np.linalg.svd((s @ ws).T @ (t @ _power(ct, shrink, -0.5)), full_matrices=False)
    return ws @ u @ vt @ _power(ct, shrink, 0.5)


def reference_ridge(source: np.ndarray, target: np.ndarray, rel: float) -> tuple[np.ndarray, np.ndarray]:
    s, ms = _centred(source)
    t, mt = _centred(target)
    gram = s.T @ s
    w = np.linalg.solve(gram + rel * np.trace(gram) / len(gram) * np.eye(len(gram)), s.T @ t)
    return w, mt - ms @ w


@pytest.mark.parametrize(("d_new", "d_old"), [(24, 24), (24, 16), (16, 24)])
def test_procrustes_equals_the_reference_fit(d_new: int, d_old: int) -> None:
    # a large shared mean: the case where uncentred or badly centred sums lose precision
    pair = rotation_pair(2_500, d_new, d_old, noise=0.05, seed=3, mean_norm=20.0)
    want = reference_procrustes(pair.new, pair.old)
    got = procrustes(pair.new, pair.old, block=333)  # blocks do not divide N
    np.testing.assert_allclose(got.weight, want.weight, atol=1e-9)
    np.testing.assert_allclose(got.mean_in, want.mean_in, atol=1e-12)
    np.testing.assert_allclose(got.mean_out, want.mean_out, atol=1e-12)
    assert got.scale == pytest.approx(want.scale, rel=1e-10)


def test_ridge_path_equals_the_reference_solve() -> None:
    pair = affine_pair(3_000, 20, 12, noise=0.1, seed=1)
    got = list(ridge_path(pair.new, pair.old, GRID, block=512))
    assert [r for r, _ in got] == GRID
    for rel, sol in got:
        weight, bias = reference_ridge(pair.new, pair.old, rel)
        np.testing.assert_allclose(sol.weight, weight, atol=1e-9)
        np.testing.assert_allclose(sol.bias, bias, atol=1e-9)
    # the smallest λ recovers the generating map
    np.testing.assert_allclose(got[0][1].weight, pair.truth["A"], atol=0.02)


def test_moments_read_memmaps_and_match_numpy(tmp_path) -> None:
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(1_001, 6)) + 50.0).astype(np.float32)
    y = rng.normal(size=(1_001, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    m = pair_moments(np.load(tmp_path / "x.npy", mmap_mode="r"), y, with_gram=True, block=100)
    xc, yc = x.astype(np.float64) - x.astype(np.float64).mean(0), y - y.astype(np.float64).mean(0)
    assert m.count == 1_001
    np.testing.assert_allclose(m.cross, xc.T @ yc, rtol=1e-9, atol=1e-8)
    np.testing.assert_allclose(m.gram, xc.T @ xc, rtol=1e-9, atol=1e-8)
    assert m.sq_norm_in == pytest.approx(float((xc**2).sum()), rel=1e-10)
    without = pair_moments(x, y, with_gram=False, block=100)
    assert without.gram is None and without.sq_norm_in == pytest.approx(m.sq_norm_in, rel=1e-10)


def test_bad_inputs_are_refused() -> None:
    x = np.zeros((10, 4), np.float32)
    with pytest.raises(ValueError, match="same non-zero number of rows"):
        pair_moments(x, np.zeros((9, 4), np.float32))
    with pytest.raises(ValueError, match="Gram matrix"):
        procrustes_from_moments(pair_moments(x + np.eye(10, 4, dtype=np.float32), np.ones((10, 2), np.float32)))
    with pytest.raises(ValueError, match="Gram matrix"):
        list(ridge_from_moments(pair_moments(x, x), GRID))
    with pytest.raises(ValueError, match="Gram matrices"):
        list(candidates_from_moments(pair_moments(x, x, with_gram=True), True, [0.1]))
    with pytest.raises(ValueError, match="shrinkage must be positive"):
        whitened_procrustes(x, x, 0.0)


@pytest.mark.parametrize(("d_new", "d_old"), [(24, 24), (24, 16), (16, 24)])
def test_candidates_equal_plain_and_whitened_reference_fits(d_new: int, d_old: int) -> None:
    pair = class_structured_pair(3_000, 20, d_old, d_new, 10, seed=4)
    grid = [0.01, 0.1, 1.0]
    got = procrustes_candidates(pair.new, pair.old, "auto", grid, block=700)
    assert [s for s, _ in got] == [0.0, *grid]
    np.testing.assert_allclose(got[0][1].weight, reference_procrustes(pair.new, pair.old).weight, atol=1e-10)
    for shrink, sol in got[1:]:
        np.testing.assert_allclose(sol.weight, reference_whitened(pair.new, pair.old, shrink), atol=1e-10)
        assert sol.scale == 1.0
    np.testing.assert_allclose(whitened_procrustes(pair.new, pair.old, 0.1).weight, got[2][1].weight, atol=1e-12)
    assert [s for s, _ in procrustes_candidates(pair.new, pair.old, True, grid)] == grid
    assert [s for s, _ in procrustes_candidates(pair.new, pair.old, False, grid)] == [0.0]
    m = pair_moments(pair.new, pair.old, with_gram=True, with_gram_out=True)
    for whiten in (True, False, "auto"):  # the count progress is given before any candidate is solved
        for shrinks in (grid, []):
            assert candidate_count(whiten, shrinks) == len(list(candidates_from_moments(m, whiten, shrinks)))


@pytest.mark.parametrize(("d_new", "d_old"), [(80, 90), (90, 70)])
def test_fewer_pairs_than_dimensions_factorise_the_rows_and_agree_where_the_pairs_reach(d_new: int,
                                                                                       d_old: int) -> None:
    """With 50 pairs in 70-90 dimensions the fits factorise the centred rows (thin SVDs), not d x d
    moments. Ridge is the textbook solve exactly; Procrustes and its whitenings agree with the textbook
    fits on every row the pairs span. The plain rotation stays semi-orthogonal (the directions no pair
    reaches are paired one to one, as a full SVD pairs them arbitrarily); the whitened fits map such a
    direction to zero."""
    pair = class_structured_pair(50, 20, d_old, d_new, 5, seed=6)
    assert pair_moments(pair.new, pair.old, with_gram=True, with_gram_out=True).thin
    for rel, sol in ridge_path(pair.new, pair.old, [1e-3, 1e-1, 1.0]):
        w, b = reference_ridge(pair.new, pair.old, rel)
        np.testing.assert_allclose(sol.weight, w, atol=1e-9 * np.abs(w).max())
        np.testing.assert_allclose(sol.bias, b, atol=1e-9 * np.abs(b).max())
    rows, _ = _centred(pair.new)
    unseen = np.linalg.svd(rows, full_matrices=True)[2][-1]  # orthogonal to every centred training row
    grid = [0.01, 0.1, 1.0]
    got = procrustes_candidates(pair.new, pair.old, "auto", grid)
    plain = reference_procrustes(pair.new, pair.old)
    np.testing.assert_allclose(rows @ got[0][1].weight, rows @ plain.weight, atol=1e-9)
    assert got[0][1].scale == pytest.approx(plain.scale, rel=1e-9)
    for shrink, sol in got[1:]:
        np.testing.assert_allclose(rows @ sol.weight, rows @ reference_whitened(pair.new, pair.old, shrink),
                                   atol=1e-9)
    w = got[0][1].weight
    gram = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
    np.testing.assert_allclose(gram, np.eye(len(gram)), atol=1e-9)
    for _, sol in got[1:]:
        assert np.abs(unseen @ sol.weight).max() < 1e-9


def test_bt2_keeps_its_procrustes_start_with_fewer_pairs_than_dimensions() -> None:
    """bt2 starts at the plain Procrustes map and trains through an orthogonal (Cayley) rotation, which
    re-orthogonalises whatever it is given: a start that is not semi-orthogonal would be scrambled."""
    import torch

    from embridge.core.adapters.heads import BT2Adapter

    pair = class_structured_pair(60, 20, 96, 96, 5, seed=7)
    sol = procrustes(pair.new, pair.old)
    head = BT2Adapter(96, 96 + 16, 96, 32)
    head.init_from_procrustes(sol, pair.new)
    head.prepare_training()
    x = torch.as_tensor(np.asarray(pair.new, dtype=np.float32))
    with torch.no_grad():
        start = head.to_old(x).double().numpy()
    fit = sol.scale * (np.asarray(pair.new, dtype=np.float64) - sol.mean_in) @ sol.weight + sol.mean_out
    np.testing.assert_allclose(start, fit, atol=1e-4 * np.abs(fit).max())
