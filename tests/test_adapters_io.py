"""Every kind: config + state_dict round trip, safe save/load, TorchScript equal to eager."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from train_fixtures import one_torch_thread  # noqa: F401 (autouse fixture)

from embridge.core.adapters import (
    METHODS,
    Adapter,
    adapt_gallery,
    adapt_queries,
    build_adapter,
    export_torchscript,
    load_adapter,
    new_space_vectors,
    save_adapter,
    script_adapter,
)
from embridge.core.errors import CheckpointError
from embridge.core.synthetic import class_structured_pair
from embridge.core.train import PairData, allowed_settings, fit_adapter

KINDS = ["procrustes", "affine", "lowrank", "mlp", "bct", "bt2", "fct", "fusion"]


@pytest.fixture(scope="module")
def fitted() -> dict[str, Adapter]:
    """Real (briefly trained) adapters of every kind; fct also gets side information."""
    pair = class_structured_pair(240, 4, 12, 16, 2, seed=3)
    tr, va = pair.splits((0.7, 0.3), seed=0)
    data = PairData(tr.old, tr.new, va.old, va.new, tr.labels, va.labels)
    side = PairData(tr.old, tr.new, va.old, va.new, side_train=tr.new[:, :3], side_val=va.new[:, :3])
    settings = {"epochs": 1, "device": "cpu", "hidden": 16, "rank": 4, "extra_dims": 5}
    out = {}
    for kind in KINDS:
        cfg = {k: v for k, v in settings.items() if k in allowed_settings(kind)}
        result = fit_adapter(kind, side if kind == "fct" else data, cfg)
        assert result.status == "completed"
        out[kind] = result.adapter
    return out


def _inputs(adapter: Adapter) -> torch.Tensor:
    return torch.randn(7, adapter.in_dim, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("kind", KINDS)
def test_interface_attributes(fitted: dict[str, Adapter], kind: str) -> None:
    a = fitted[kind]
    assert a.kind == kind and a.direction == METHODS[kind].direction
    assert a(_inputs(a)).shape == (7, a.out_dim)
    rebuilt = build_adapter(kind, a.config())
    rebuilt.load_state_dict(a.state_dict())
    assert torch.equal(rebuilt(_inputs(a)), a(_inputs(a)))


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("kind", KINDS)
def test_torchscript_matches_eager(fitted: dict[str, Adapter], kind: str, tmp_path) -> None:
    a = fitted[kind]
    x = _inputs(a)
    with torch.no_grad():
        eager = a(x)
        assert torch.equal(script_adapter(a)(x), eager)
        path = export_torchscript(a, tmp_path / f"{kind}.ts")
        loaded = torch.jit.load(str(path))
        assert torch.equal(loaded(x), eager)
        if kind == "bt2":
            assert torch.equal(loaded.to_old(x), a.to_old(x)) and loaded.old_dims == a.old_dims
        if kind == "fusion":
            old_q = torch.randn(7, a.out_dim)
            assert torch.equal(loaded.fuse(old_q, x), a.fuse(old_q, x))
    assert [p.name for p in tmp_path.iterdir()] == [f"{kind}.ts"]  # no temp file left behind


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip(fitted: dict[str, Adapter], kind: str, tmp_path) -> None:
    a = fitted[kind]
    path = save_adapter(a, tmp_path / "sub" / "adapter.pt")
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == 1 and payload["kind"] == kind and payload["config"] == a.config()
    assert not any(".parametrizations." in k for k in payload["state_dict"])
    back = load_adapter(path)
    assert type(back) is type(a) and back.config() == a.config()
    with torch.no_grad():
        assert torch.equal(back(_inputs(a)), a(_inputs(a)))


def test_bt2_query_and_new_space_slices(fitted: dict[str, Adapter]) -> None:
    a = fitted["bt2"]
    new = np.random.default_rng(0).standard_normal((9, a.in_dim)).astype(np.float32)
    full = new_space_vectors(a, new)
    # BT²'s widening: the head's output is the new dim plus extra_dims learned dims
    assert full.shape == (9, a.old_dims + a.extra_dims) == (9, 16 + 5)
    assert np.allclose(adapt_queries(a, new), full[:, : a.old_dims], atol=1e-6)


def test_fusion_and_fct_helpers(fitted: dict[str, Adapter]) -> None:
    rng = np.random.default_rng(1)
    fusion, fct = fitted["fusion"], fitted["fct"]
    new = rng.standard_normal((5, 16)).astype(np.float32)
    old = rng.standard_normal((5, 12)).astype(np.float32)
    with pytest.raises(ValueError, match="old model's query vectors"):
        adapt_queries(fusion, new)
    fused = adapt_queries(fusion, new, old)
    alpha = float(fusion.alpha)
    mapped = adapt_queries(fusion.base, new)
    expect = alpha * old / np.linalg.norm(old, axis=1, keepdims=True) + (1 - alpha) * mapped / np.linalg.norm(
        mapped, axis=1, keepdims=True)
    assert np.allclose(fused, expect, atol=1e-5)
    assert adapt_queries(fct, new) is not None and np.array_equal(adapt_queries(fct, new), new)
    with pytest.raises(ValueError, match="side-information"):
        adapt_gallery(fct, old)
    assert adapt_gallery(fct, old, side=new[:, :3]).shape == (5, 16)
    assert np.array_equal(adapt_gallery(fitted["mlp"], old), old)


def test_missing_and_corrupt_files_raise_checkpoint_error(fitted: dict[str, Adapter], tmp_path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_adapter(tmp_path / "nope.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a torch file" * 10)
    with pytest.raises(CheckpointError, match="cannot read"):
        load_adapter(garbage)
    good = save_adapter(fitted["mlp"], tmp_path / "good.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="truncated.pt"):
        load_adapter(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not an Embridge adapter"):
        load_adapter(foreign)
    payload = torch.load(good, weights_only=True)
    payload["state_dict"].pop("skip.weight")
    torch.save(payload, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="cannot be rebuilt"):
        load_adapter(tmp_path / "partial.pt")


class _Evil:
    def __reduce__(self):  # would run code on an unsafe load
        return (print, ("executed",))


def test_pickled_objects_are_refused(tmp_path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": 1, "kind": "mlp", "config": _Evil(), "state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="cannot read"):
        load_adapter(path)
