"""The one L2 normalisation (numpy and torch): huge, tiny, half-precision and zero rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from embridge.core.adapters.l2_torch import l2_normalize_torch
from embridge.core.errors import VectorFileError
from embridge.core.l2 import l2_normalize


def _reference(x: np.ndarray) -> np.ndarray:
    """Float64 with exact scaling: the answer the float32 code must reproduce."""
    x = np.asarray(x, dtype=np.float64)
    scale = np.abs(x).max(axis=1, keepdims=True)
    y = np.divide(x, scale, out=np.zeros_like(x), where=scale > 0)
    norms = np.linalg.norm(y, axis=1, keepdims=True)
    return np.divide(y, norms, out=np.zeros_like(y), where=norms > 0)


def test_rows_of_1e37_to_1e38_keep_their_direction() -> None:
    rng = np.random.default_rng(0)
    base = rng.standard_normal((50, 64)).astype(np.float32)
    huge = (base / np.abs(base).max(axis=1, keepdims=True) * rng.uniform(1e37, 3.4e38, (50, 1))).astype(np.float32)
    assert np.isfinite(huge).all()
    np.testing.assert_allclose(l2_normalize(huge), l2_normalize(base), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(l2_normalize(huge), axis=1), 1.0, rtol=1e-6)


def test_float16_rows_whose_squares_overflow_float16() -> None:
    x = np.array([[300.0, 400.0], [60000.0, -60000.0], [1e-7, 0.0]], dtype=np.float16)
    out = l2_normalize(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, _reference(x), rtol=1e-6, atol=1e-7)


def test_denormal_rows_are_normalised_not_zeroed() -> None:
    x = np.array([[1e-45, 0.0, 0.0], [3e-42, 4e-42, 0.0], [1e-39, -1e-39, 1e-39]], dtype=np.float32)
    assert (x[:, 0] != 0).all() and np.isfinite(x).all()
    np.testing.assert_allclose(l2_normalize(x), _reference(x), rtol=1e-3, atol=1e-6)
    assert (np.linalg.norm(l2_normalize(x), axis=1) > 0.99).all()


def test_zero_rows_stay_zero_and_others_are_unaffected() -> None:
    x = np.array([[0.0, 0.0], [3.0, 4.0], [-0.0, 0.0]], dtype=np.float32)
    np.testing.assert_array_equal(l2_normalize(x), np.array([[0, 0], [0.6, 0.8], [0, 0]], dtype=np.float32))


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_rows_are_refused_naming_the_source(value: float) -> None:
    x = np.ones((4, 3), dtype=np.float32)
    x[2, 1] = value
    with pytest.raises(VectorFileError, match=r"^queries\.npy: row 2 holds NaN or inf values \(1 such rows\)"):
        l2_normalize(x, "queries.npy")


def test_the_input_is_never_changed_in_place() -> None:
    x = np.array([[3.0, 4.0]], dtype=np.float32)
    l2_normalize(x)
    assert x.tolist() == [[3.0, 4.0]]


finite32 = st.floats(allow_nan=False, allow_infinity=False, width=32)


@settings(max_examples=200, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 12)), elements=finite32))
def test_any_finite_float32_matrix_gives_unit_or_zero_rows_matching_float64(x: np.ndarray) -> None:
    out = l2_normalize(x)
    assert np.isfinite(out).all()
    norms = np.linalg.norm(out.astype(np.float64), axis=1)
    nonzero = np.abs(x).max(axis=1) > 0
    np.testing.assert_allclose(norms[nonzero], 1.0, rtol=1e-5)
    assert (norms[~nonzero] == 0).all()
    np.testing.assert_allclose(out, _reference(x), rtol=1e-4, atol=1e-6)


@settings(max_examples=100, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 5), st.integers(1, 10)), elements=finite32),
       st.integers(-100, 100))
def test_scaling_a_row_by_a_power_of_two_never_changes_the_result(x: np.ndarray, exponent: int) -> None:
    scaled = np.ldexp(x.astype(np.float64), exponent)
    keep = (np.abs(scaled).max(axis=1) < 3e38) & (np.abs(scaled).max(axis=1) > 1e-30)
    keep &= np.abs(x).max(axis=1) > 1e-30  # far from the denormal range, where scaling drops bits
    np.testing.assert_allclose(l2_normalize(scaled[keep].astype(np.float32)), l2_normalize(x[keep]),
                               rtol=1e-5, atol=1e-6)


@settings(max_examples=100, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 5), st.integers(1, 10)), elements=finite32))
def test_the_torch_twin_matches_numpy_eager_and_scripted(x: np.ndarray) -> None:
    expected = l2_normalize(x)
    np.testing.assert_allclose(l2_normalize_torch(torch.from_numpy(x)).numpy(), expected, rtol=1e-5, atol=1e-6)
    scripted = torch.jit.script(l2_normalize_torch)
    np.testing.assert_allclose(scripted(torch.from_numpy(x)).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_the_torch_twin_keeps_nan_visible_and_half_precision_working() -> None:
    assert torch.isnan(l2_normalize_torch(torch.tensor([[1.0, float("nan")]]))).all()
    half = l2_normalize_torch(torch.tensor([[300.0, 400.0]], dtype=torch.float16))
    np.testing.assert_allclose(half.float().numpy(), [[0.6, 0.8]], rtol=1e-3)
    grad_in = torch.tensor([[1e38, 1e38]], requires_grad=True)
    l2_normalize_torch(grad_in).sum().backward()
    assert torch.isfinite(grad_in.grad).all()


def test_a_fusion_layer_takes_old_query_vectors_of_1e38_like_their_scaled_down_selves() -> None:
    """Fusion normalises the raw old-model query inside the deployed module: in torch, not numpy."""
    from embridge.core.adapters.fusion import FusionAdapter
    from embridge.core.adapters.linear import AffineAdapter
    from embridge.core.bundle.deploy import deploy_module, script

    torch.manual_seed(0)
    fusion = FusionAdapter(AffineAdapter(8, 6), alpha=0.4).eval()
    new = torch.randn(5, 8)
    old = torch.randn(5, 6)
    huge = old / old.abs().amax(dim=1, keepdim=True) * 1e38
    with torch.no_grad():
        expected = fusion.fuse(old, new)
        np.testing.assert_allclose(fusion.fuse(huge, new).numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
        deployed = script(deploy_module(fusion))
        np.testing.assert_allclose(deployed(new, huge).numpy(), deployed(new, old).numpy(), rtol=1e-5, atol=1e-6)
        assert torch.isfinite(deployed(new, huge)).all()
