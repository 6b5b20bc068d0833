"""bt2's orthogonal layer trains as Q₀ C(A): exactly orthogonal, the textbook Cayley map, and a wide
layer (low-rank A, a dense layer's cost a step) still improves on its closed-form start."""

from __future__ import annotations

import pytest
import torch
from train_fixtures import one_torch_thread  # noqa: F401 (autouse fixture)

from embridge.core.adapters.orthogonal import FULL_WIDTH, UpdatedRotation
from embridge.core.synthetic import class_structured_pair
from embridge.core.train import PairData, evaluate_heldout, fit_adapter


def _skew(rotation: UpdatedRotation) -> torch.Tensor:
    if rotation.full:
        lower = rotation.lower.tril(-1)
        return lower - lower.T
    u = rotation.u * rotation.step_scale  # a step of U turns a wide layer as much as a narrow one
    return u @ rotation.v.T - rotation.v @ u.T


@pytest.mark.parametrize(("outputs", "width"), [(10, 10), (6, 50), (40, 300), (300, 300)])
def test_the_trained_matrix_is_the_start_times_the_cayley_map_and_keeps_orthonormal_rows(outputs: int,
                                                                                         width: int) -> None:
    gen = torch.Generator().manual_seed(width)
    start = torch.linalg.qr(torch.randn(width, width, generator=gen, dtype=torch.float64))[0][:outputs]
    rotation = UpdatedRotation(start)
    assert rotation.full == (width <= FULL_WIDTH)
    assert torch.allclose(rotation.weight(), start, atol=1e-12)  # training starts at the start
    with torch.no_grad():
        for p in rotation.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64))
    eye = torch.eye(width, dtype=torch.float64)
    a = _skew(rotation)
    textbook = start @ torch.linalg.solve(eye - a / 2, eye + a / 2)
    got = rotation.weight()
    assert (got - textbook).abs().max().item() < 1e-10
    assert (got @ got.T - torch.eye(outputs, dtype=torch.float64)).abs().max().item() < 1e-10
    x = torch.randn(7, width, generator=gen, dtype=torch.float64)
    assert (rotation(x) - x @ textbook.T).abs().max().item() < 1e-10  # applied without forming the matrix


def test_a_wide_bt2_layer_improves_on_its_start_and_stays_orthogonal() -> None:
    # new 160-d widened to 192 inputs: above FULL_WIDTH, so the low-rank update trains it
    pair = class_structured_pair(1600, 24, 128, 160, 12, seed=1)
    tr, va, te = pair.splits((0.5, 0.25, 0.25), seed=1)
    data = PairData(tr.old, tr.new, va.old, va.new, tr.labels, va.labels)
    result = fit_adapter("bt2", data, {"epochs": 10, "device": "cpu", "seed": 0})
    assert result.adapter.in_dim + result.adapter.branch_dims > FULL_WIDTH
    start = result.metrics[0]["val_metric"]
    assert result.best_epoch >= 1 and result.best_val_metric > start + 0.01  # seed 1: 0.870 -> 0.8925
    weight = result.adapter.rotation.weight.detach().double()
    assert isinstance(result.adapter.rotation, torch.nn.Linear)  # a plain layer again once trained
    assert (weight @ weight.T - torch.eye(len(weight), dtype=torch.float64)).abs().max().item() < 1e-5
    ev = evaluate_heldout(result.adapter, te.old, te.new, te.labels)
    assert ev["upgraded_top1"] > ev["old_old_top1"] + 0.15  # seed 1: 0.695 -> 0.895
    assert ev["head_new_new_top1"] >= ev["new_new_top1"] - 0.02  # the new model's own geometry is kept
