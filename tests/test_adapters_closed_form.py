"""Closed-form fits recover known maps; centring is what makes Procrustes work on anisotropic data."""

from __future__ import annotations

import numpy as np
import pytest

from embridge.core.adapters import ProcrustesAdapter, adapt_queries
from embridge.core.adapters.closed_form import procrustes, ridge_path
from embridge.core.synthetic import affine_pair, rotation_pair
from embridge.core.train import PairData, fit_adapter, pair_top1


@pytest.mark.parametrize(("d_new", "d_old"), [(24, 24), (32, 20), (16, 28)])
def test_procrustes_recovers_a_rotation_with_noise(d_new: int, d_old: int) -> None:
    pair = rotation_pair(2000, d_new, d_old, noise=0.05, seed=0)
    sol = procrustes(pair.new, pair.old)
    rel_err = np.linalg.norm(sol.weight - pair.truth["W"]) / np.linalg.norm(pair.truth["W"])
    assert rel_err < 0.12  # measured 0.004 (square, tall), 0.079 (new dim > old dim: noise leaks in)
    assert abs(sol.scale - 1.0) < 0.05
    gram = sol.weight.T @ sol.weight if d_new >= d_old else sol.weight @ sol.weight.T
    assert np.allclose(gram, np.eye(min(d_new, d_old)), atol=1e-8)  # semi-orthogonal


def test_procrustes_centres_before_rotating() -> None:
    """With a large shared mean, the centred fit still finds the rotation; an uncentred one does not."""
    pair = rotation_pair(2000, 24, 24, noise=0.02, seed=2, mean_norm=3.0)
    sol = procrustes(pair.new, pair.old)
    centred_err = np.linalg.norm(sol.weight - pair.truth["W"]) / np.linalg.norm(pair.truth["W"])
    u, _, vt = np.linalg.svd(pair.new.astype(np.float64).T @ pair.old, full_matrices=False)
    uncentred_err = np.linalg.norm(u @ vt - pair.truth["W"]) / np.linalg.norm(pair.truth["W"])
    assert centred_err < 0.02  # measured 0.0015
    assert uncentred_err > 0.2  # measured 0.41
    adapter = ProcrustesAdapter.from_solution(sol)
    assert np.allclose(adapter.mean_in.numpy(), pair.new.mean(axis=0), atol=1e-5)
    mapped = adapt_queries(adapter, pair.new)
    assert np.abs(mapped - pair.old).mean() < 0.01  # measured 0.003


def test_ridge_recovers_a_known_affine_map() -> None:
    pair = affine_pair(3000, 20, 12, noise=0.01, seed=4)
    _, sol = next(ridge_path(pair.new, pair.old, [1e-6]))
    assert np.abs(sol.weight - pair.truth["A"]).max() < 0.01  # measured 0.0006
    assert np.abs(sol.bias - pair.truth["c"]).max() < 0.01


def test_affine_fit_picks_lambda_on_validation_and_maps_held_out_pairs() -> None:
    pair = affine_pair(1500, 20, 12, noise=0.01, seed=4)
    tr, va, te = pair.splits((0.6, 0.2, 0.2), seed=0)
    result = fit_adapter("affine", PairData(tr.old, tr.new, va.old, va.new), {"device": "cpu"})
    assert result.status == "completed" and result.val_metric_name == "pair_top1"
    assert [m["ridge"] for m in result.metrics] == sorted(m["ridge"] for m in result.metrics)
    best = max(result.metrics, key=lambda m: (m["val_metric"], -m["val_mse"]))
    assert result.adapter.ridge == best["ridge"]
    # the chosen λ is a small one: heavy ridge shrinks the map (measured MSE grows ~100x at λ=1)
    assert best["ridge"] <= 1e-2
    assert pair_top1(adapt_queries(result.adapter, te.new), te.old) > 0.99


def test_an_affine_tie_is_said_to_go_to_the_lower_validation_mse() -> None:
    """The λ kept among equal validation scores was the lowest-MSE one, but the sentence named the earliest as
    the winner ("a tie goes to the earlier candidate")."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(12, 8))
    lt, lv = rng.integers(0, 4, 40), rng.integers(0, 4, 30)
    centres = rng.normal(size=(4, 12)) * 1.5
    nt, nv = centres[lt] + rng.normal(size=(40, 12)), centres[lv] + rng.normal(size=(30, 12))
    ot, ov = nt @ w + rng.normal(size=(40, 8)) * 2, nv @ w + rng.normal(size=(30, 8)) * 2
    data = PairData(ot.astype("f4"), nt.astype("f4"), ov.astype("f4"), nv.astype("f4"), lt, lv)
    result = fit_adapter("affine", data, {})
    scores = [m["val_metric"] for m in result.metrics]
    tied = [i for i, v in enumerate(scores) if v == max(scores)]
    kept = min(tied, key=lambda i: result.metrics[i]["val_mse"])
    assert len(tied) > 1 and kept != tied[0]  # the case: the earliest of the tied is not the lowest MSE
    assert result.choice["index"] == kept and result.adapter.ridge == result.metrics[kept]["ridge"]
    assert result.choice["reason"].startswith(f"λ {result.metrics[kept]['ridge']:g} won with validation")
    assert "a tie goes to the lower validation MSE" in result.choice["reason"]
