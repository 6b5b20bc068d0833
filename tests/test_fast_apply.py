"""adapt_queries folds linear adapters into one numpy map that gives the torch module's vectors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embridge.core.adapters import AffineAdapter, MLPAdapter, ProcrustesAdapter, adapt_queries
from embridge.core.adapters.closed_form import procrustes, ridge_path
from embridge.core.adapters.fast_apply import apply_linear, linear_map
from embridge.core.synthetic import rotation_pair


@pytest.fixture(scope="module")
def pair():
    return rotation_pair(800, 32, 24, noise=0.05, seed=2, mean_norm=3.0)


def _adapters(pair) -> list:
    proc = ProcrustesAdapter.from_solution(procrustes(pair.new, pair.old)).eval()
    aff = AffineAdapter.from_solution(next(ridge_path(pair.new, pair.old, [1e-3]))[1], 1e-3).eval()
    return [proc, aff]


def test_folded_map_matches_the_torch_module(pair, tmp_path) -> None:
    queries = np.random.default_rng(5).normal(size=(5_000, 32)).astype(np.float32) + 1.0
    np.save(tmp_path / "q.npy", queries)
    for adapter in _adapters(pair):
        m = linear_map(adapter)
        assert m is not None and m.weight.dtype == np.float32 and m.weight.flags.c_contiguous
        with torch.inference_mode():
            expected = adapter(torch.as_tensor(queries)).numpy()
        got = apply_linear(m, queries, block=777)
        assert got.dtype == np.float32 and got.shape == (5_000, 24)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
        from_disk = adapt_queries(adapter, np.load(tmp_path / "q.npy", mmap_mode="r"))
        np.testing.assert_array_equal(from_disk, apply_linear(m, queries))


def test_other_kinds_take_the_torch_path(pair) -> None:
    mlp = MLPAdapter(32, 24, hidden=16).eval()
    assert linear_map(mlp) is None
    x = pair.new[:50]
    with torch.inference_mode():
        expected = mlp(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(adapt_queries(mlp, x), expected, rtol=1e-6, atol=1e-6)


def test_shapes_are_checked_and_empty_input_works(pair) -> None:
    m = linear_map(_adapters(pair)[0])
    assert m is not None
    with pytest.raises(ValueError, match="dim 32"):
        apply_linear(m, np.zeros((3, 31), np.float32))
    assert apply_linear(m, np.zeros((0, 32), np.float32)).shape == (0, 24)


def test_the_folded_map_follows_changes_to_the_adapter(pair) -> None:
    proc, aff = _adapters(pair)
    x = pair.new[:20]
    for adapter in (proc, aff):
        before = adapt_queries(adapter, x)
        assert linear_map(adapter) is linear_map(adapter)  # kept between calls
        with torch.no_grad():
            adapter.weight.mul_(2.0)  # an in-place write
        with torch.inference_mode():
            expected = adapter(torch.as_tensor(x)).numpy()
        np.testing.assert_allclose(adapt_queries(adapter, x), expected, rtol=1e-4, atol=1e-4)
        assert not np.allclose(adapt_queries(adapter, x), before, atol=1e-3)
    fresh = _adapters(pair)[1]
    aff.load_state_dict(fresh.state_dict())  # copies into the same tensors
    np.testing.assert_allclose(adapt_queries(aff, x), adapt_queries(fresh, x), rtol=1e-6, atol=1e-6)
