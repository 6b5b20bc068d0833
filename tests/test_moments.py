"""Streamed closed-form fits: the same solutions as the direct fits, block by block, in float64."""

from __future__ import annotations

import numpy as np
import pytest

from core.adapters.closed_form import procrustes, ridge_path, whitened_procrustes
from core.adapters.moments import (
    pair_moments,
    procrustes_candidates_streamed,
    procrustes_from_moments,
    procrustes_streamed,
    ridge_path_from_moments,
    ridge_path_streamed,
)
from core.synthetic import affine_pair, class_structured_pair, rotation_pair

GRID = [1e-6, 1e-3, 1e-1, 1.0]


@pytest.mark.parametrize(("d_new", "d_old"), [(24, 24), (24, 16), (16, 24)])
def test_streamed_procrustes_equals_the_direct_fit(d_new: int, d_old: int) -> None:
    # a large shared mean: the case where uncentred or badly centred sums lose precision
    pair = rotation_pair(2_500, d_new, d_old, noise=0.05, seed=3, mean_norm=20.0)
    direct = procrustes(pair.new, pair.old)
    streamed = procrustes_streamed(pair.new, pair.old, block=333)  # blocks do not divide N
    np.testing.assert_allclose(streamed.weight, direct.weight, atol=1e-9)
    np.testing.assert_allclose(streamed.mean_in, direct.mean_in, atol=1e-12)
    np.testing.assert_allclose(streamed.mean_out, direct.mean_out, atol=1e-12)
    assert streamed.scale == pytest.approx(direct.scale, rel=1e-10)


def test_streamed_ridge_path_equals_the_direct_path() -> None:
    pair = affine_pair(3_000, 20, 12, noise=0.1, seed=1)
    direct = list(ridge_path(pair.new, pair.old, GRID))
    streamed = list(ridge_path_streamed(pair.new, pair.old, GRID, block=512))
    assert [r for r, _ in streamed] == GRID
    for (_, a), (_, b) in zip(direct, streamed, strict=True):
        np.testing.assert_allclose(b.weight, a.weight, atol=1e-9)
        np.testing.assert_allclose(b.bias, a.bias, atol=1e-9)
    # the smallest λ recovers the generating map
    np.testing.assert_allclose(streamed[0][1].weight, pair.truth["A"], atol=0.02)


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
        list(ridge_path_from_moments(pair_moments(x, x), GRID))


@pytest.mark.parametrize(("d_new", "d_old"), [(24, 24), (24, 16), (16, 24)])
def test_streamed_candidates_equal_plain_and_whitened_fits(d_new: int, d_old: int) -> None:
    pair = class_structured_pair(3_000, 20, d_old, d_new, 10, seed=4)
    grid = [0.01, 0.1, 1.0]
    got = procrustes_candidates_streamed(pair.new, pair.old, "auto", grid, block=700)
    want = [(0.0, procrustes(pair.new, pair.old))] + [(s, whitened_procrustes(pair.new, pair.old, s)) for s in grid]
    assert [s for s, _ in got] == [s for s, _ in want]
    for (_, a), (_, b) in zip(want, got, strict=True):
        np.testing.assert_allclose(b.weight, a.weight, atol=1e-10)
        assert b.scale == pytest.approx(a.scale, rel=1e-10)
    only_whitened = procrustes_candidates_streamed(pair.new, pair.old, True, grid)
    assert [s for s, _ in only_whitened] == grid
    assert [s for s, _ in procrustes_candidates_streamed(pair.new, pair.old, False, grid)] == [0.0]
