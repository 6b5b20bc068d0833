"""Control of a training run: cancel, divergence, devices, missing labels, determinism, settings."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from train_fixtures import one_torch_thread, small_labelled_pairs  # noqa: F401 (autouse fixture)

from embridge.core.errors import DeviceError, InputError, TrainingError
from embridge.core.train import FitConfig, PairData, fit_adapter, upgrade_metric
from embridge.core.train.objectives import PairObjective, RetrievalObjective


@pytest.fixture(scope="module")
def data() -> PairData:
    return small_labelled_pairs(1)


def _val(result: Any, data: PairData) -> float:
    return upgrade_metric(result.adapter, data.old_val, data.new_val, data.labels_val)[0]


def test_cancel_mid_epoch_keeps_the_best_state(data: PairData) -> None:
    calls: list[tuple[int, int, dict[str, Any]]] = []
    # 600 pairs in batches of 64 = 10 steps per epoch; stop during the third epoch
    result = fit_adapter("bct", data, {"epochs": 20, "batch_size": 64, "device": "cpu", "hidden": 32},
                         on_progress=lambda d, t, i: calls.append((d, t, i)), should_stop=lambda: len(calls) >= 25)
    assert result.status == "cancelled" and "epoch 3" in result.reason
    assert len(calls) == 25 and calls[-1][0] == 25 and calls[-1][1] == 200
    assert [m["epoch"] for m in result.metrics] == [0.0, 1.0, 2.0]
    assert result.best_val_metric >= max(m["val_metric"] for m in result.metrics)
    assert _val(result, data) == pytest.approx(result.best_val_metric)
    info = calls[-1][2]
    assert set(info) >= {"epoch", "step", "loss", "val_metric", "best_val_metric", "val_metric_name"}
    assert all(type(v) in (int, float) for k, v in info.items() if k != "val_metric_name")  # plain numbers, no tensors
    assert info["val_metric_name"] == data.validation().metric_name  # names the metric the live plot draws


def test_cancel_before_the_first_step_returns_the_closed_form_start(data: PairData) -> None:
    result = fit_adapter("mlp", data, {"epochs": 3, "device": "cpu", "hidden": 16}, should_stop=lambda: True)
    assert result.status == "cancelled" and result.adapter is not None
    assert result.best_epoch == 0 and len(result.metrics) == 1
    affine_like = _val(result, data)
    assert affine_like == pytest.approx(result.best_val_metric) and affine_like > 0.5


def test_diverging_loss_fails_with_a_reason_and_keeps_the_last_good_state(data: PairData,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from embridge.core.train import objectives

    calls = {"n": 0}
    real = objectives.pair_loss

    def diverging(*args: Any, **kwargs: Any) -> torch.Tensor:  # finite for a few steps, then NaN
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] > 5 else loss

    monkeypatch.setattr(objectives, "pair_loss", diverging)
    result = fit_adapter("mlp", data, {"epochs": 3, "loss": "mse", "device": "cpu", "hidden": 16})
    assert result.status == "failed"
    assert "loss became" in result.reason and "lower learning rate" in result.reason
    weights = torch.cat([p.flatten() for p in result.adapter.state_dict().values()])
    assert torch.isfinite(weights).all()
    assert _val(result, data) == pytest.approx(result.best_val_metric)


def test_non_finite_input_is_rejected_before_training(data: PairData) -> None:
    bad = data.new_train.copy()
    bad[3, 2] = np.nan
    with pytest.raises(InputError, match="new_train: contains 1 NaN"):
        PairData(data.old_train, bad, data.old_val, data.new_val)


def test_out_of_memory_becomes_a_training_error(data: PairData, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(self: PairObjective, adapter: Any, batch: Any) -> torch.Tensor:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(PairObjective, "forward", explode)
    monkeypatch.setattr(RetrievalObjective, "forward", explode)
    with pytest.raises(TrainingError, match="out of memory .* batch_size 256"):
        fit_adapter("lowrank", data, {"epochs": 1, "device": "cpu"})
    with pytest.raises(TrainingError, match="out of memory .* batch_size 256"):
        fit_adapter("mlp", data, {"epochs": 1, "device": "cpu", "loss": "mse"})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
def test_absent_gpu_is_a_device_error(data: PairData) -> None:
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        fit_adapter("mlp", data, {"device": "cuda"})


@pytest.mark.parametrize("kind", ["bct", "bt2", "oca"])
def test_classifier_kinds_need_labels(data: PairData, kind: str) -> None:
    unlabelled = PairData(data.old_train, data.new_train, data.old_val, data.new_val)
    with pytest.raises(TrainingError, match="needs class labels"):
        fit_adapter(kind, unlabelled, {"device": "cpu"})
    one_class = PairData(data.old_train, data.new_train, data.old_val, data.new_val,
                         np.where(data.labels_train == 0, 0, -1), data.labels_val)
    with pytest.raises(TrainingError, match="at least two classes"):
        fit_adapter(kind, one_class, {"device": "cpu"})


@pytest.mark.parametrize("kind", ["mlp", "bt2"])
def test_same_seed_same_weights_on_cpu(data: PairData, kind: str) -> None:
    cfg = FitConfig(epochs=3, device="cpu", seed=7, options={"hidden": 16} if kind == "mlp" else {})
    a, b = fit_adapter(kind, data, cfg), fit_adapter(kind, data, cfg)
    c = fit_adapter(kind, data, FitConfig(epochs=3, device="cpu", seed=8, options=cfg.options))
    sa, sb = a.adapter.state_dict(), b.adapter.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.metrics == b.metrics
    # another seed shuffles and initialises differently: the training history differs
    assert [m.get("train_loss") for m in a.metrics] != [m.get("train_loss") for m in c.metrics]


def test_fitting_leaves_the_callers_rng_alone(data: PairData) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    fit_adapter("lowrank", data, {"epochs": 1, "device": "cpu"})
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize(
    ("kind", "config", "message"),
    [
        ("nope", {}, "unknown method 'nope'"),
        ("mlp", {"epochz": 3}, "unknown setting\\(s\\) epochz"),
        ("mlp", {"epochs": 0}, r"'epochs' must be an integer in \[1, 1000000000\]"),
        ("mlp", {"loss": "hinge"}, "'loss' must be one of mse, cosine, contrastive, retrieval"),
        ("lowrank", {"lr": -1.0}, r"'lr' must be a number in \(0, 1000\]"),
        ("fusion", {"base": "fct"}, "'base' must be one of"),
        ("auto", {"candidates": ["fct"]}, "'candidates' must be"),
    ],
)
def test_bad_settings_are_named(data: PairData, kind: str, config: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        fit_adapter(kind, data, config)


def test_misaligned_pairs_are_named() -> None:
    x = np.zeros((10, 4), np.float32)
    with pytest.raises(InputError, match="new_val: has 9 rows but its paired array has 10"):
        PairData(x, x, x, x[:9])
    with pytest.raises(InputError, match="old_val: has dim 3 but the training split has dim 4"):
        PairData(x, x, x[:, :3], x)
    with pytest.raises(InputError, match="labels_train: expected 10 labels"):
        PairData(x, x, x, x, labels_train=np.zeros(9, np.int64))
