"""Every model kind round-trips: save with torch, describe, load, embed, compare to a direct forward."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from embridge.core.embed import embed_array
from embridge.core.errors import CheckpointError
from embridge.core.models import (
    ModelSpec,
    build_model,
    classifier_weights,
    describe_model,
    infer_kind,
    load_model,
    save_checkpoint,
    save_vectors_model,
)

MLP_CONFIG = {"input_dim": 8, "hidden": [16], "out_dim": 4, "num_classes": 3}
CNN_CONFIG = {"out_dim": 5, "height": 12, "width": 12, "channels": [4, 8]}


def _mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("mlp", MLP_CONFIG)[0].eval()


def _cnn() -> torch.nn.Module:
    torch.manual_seed(1)
    return build_model("small_cnn", CNN_CONFIG)[0].eval()


def _direct(module: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return module(x).numpy()


def test_state_dict_mlp_with_classifier_round_trips(tmp_path: Path) -> None:
    model, path = _mlp(), tmp_path / "old.pt"
    save_checkpoint(path, model, "mlp", MLP_CONFIG)
    spec = describe_model(path, name="old")
    assert (spec.kind, spec.modality, spec.input_shape, spec.dim) == ("state_dict", "vector", (8,), 4)
    assert spec.arch == "mlp" and spec.arch_config == MLP_CONFIG and spec.has_classifier
    assert spec.params == sum(p.numel() for p in model.parameters()) == 8 * 16 + 16 + 16 * 4 + 4 + 4 * 3 + 3
    assert spec.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    x = torch.randn(37, 8, generator=torch.Generator().manual_seed(2))
    got = embed_array(load_model(path, "cpu"), x, batch_size=10, device="cpu")
    assert got.dtype == np.float32 and got.shape == (37, 4)  # the embedding, not the 3 logits
    np.testing.assert_allclose(got, _direct(model, x), atol=1e-6)
    weights = classifier_weights(load_model(spec, "cpu"))
    np.testing.assert_array_equal(weights, model.classifier.weight.detach().numpy())
    assert classifier_weights(torch.load(path, weights_only=True)).shape == (3, 4)


def test_state_dict_cnn_without_classifier(tmp_path: Path) -> None:
    model, path = _cnn(), tmp_path / "cnn.pt"
    save_checkpoint(path, model, "small_cnn", CNN_CONFIG, modality="image")
    spec = describe_model(path)
    assert (spec.modality, spec.input_shape, spec.dim, spec.has_classifier) == ("image", (1, 12, 12), 5, False)
    assert classifier_weights(model) is None
    x = torch.rand(9, 1, 12, 12, generator=torch.Generator().manual_seed(3))
    np.testing.assert_allclose(embed_array(spec, x, batch_size=4, device="cpu"), _direct(model, x), atol=1e-6)


def test_bare_state_dict_needs_and_uses_arch_and_config(tmp_path: Path) -> None:
    model, path = _mlp(), tmp_path / "bare.pth"
    torch.save(model.state_dict(), path)
    with pytest.raises(CheckpointError, match=r"bare\.pth: a bare state_dict: name its architecture"):
        describe_model(path)
    spec = describe_model(path, arch="mlp", arch_config=MLP_CONFIG)
    assert spec.kind == "state_dict" and spec.dim == 4 and spec.has_classifier
    x = torch.randn(5, 8)
    # a spec alone (as stored in the workspace) is enough to rebuild the bare checkpoint
    rebuilt = load_model(ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict()))), "cpu")
    np.testing.assert_allclose(rebuilt.embed_batch(x), _direct(model, x), atol=1e-6)


def test_torchscript_infers_kind_and_vector_shape_from_first_layer(tmp_path: Path) -> None:
    model, path = _mlp(), tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(model), str(path))
    assert infer_kind(path) == "torchscript"
    spec = describe_model(path)
    assert (spec.kind, spec.input_shape, spec.dim, spec.has_classifier) == ("torchscript", (8,), 4, True)
    x = torch.randn(11, 8)
    np.testing.assert_allclose(embed_array(path, x, batch_size=3, device="cpu"), _direct(model, x), atol=1e-6)


class _FixedBatch(torch.nn.Module):
    """Traced with a batch of 2 baked into its reshape, as tracing records it."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x.reshape(2, 8))


def test_a_model_traced_for_one_batch_size_is_named_as_such(tmp_path: Path) -> None:
    """It passed the 2-row probe when added, then a 256-row batch was blamed on the input shape
    ("rejects inputs of shape (8,) ...; its first layer takes 8 input features")."""
    path = tmp_path / "traced.pt"
    torch.jit.save(torch.jit.trace(_FixedBatch().eval(), torch.randn(2, 8)), str(path))
    model = load_model(describe_model(path), "cpu", verify=True)
    assert model.embed_batch(np.random.default_rng(0).normal(size=(2, 8)).astype(np.float32)).shape == (2, 4)
    with pytest.raises(CheckpointError) as caught:
        model.embed_batch(np.random.default_rng(0).normal(size=(6, 8)).astype(np.float32))
    message = str(caught.value)
    assert "runs on a batch of 2 rows but fails on a batch of 6" in message and "--batch-size 2" in message
    assert "shape '[2, 8]' is invalid for input of size 48" in message, message  # the traced program's own words


class _RefusesLargeValues(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x > 100).any()):
            raise ValueError("a value beyond 100")
        return self.layer(x)


def test_a_model_failing_on_some_rows_content_is_not_blamed_on_the_batch_size(tmp_path: Path) -> None:
    path = tmp_path / "picky.pt"
    torch.jit.save(torch.jit.script(_RefusesLargeValues().eval()), str(path))
    model = load_model(describe_model(path), "cpu", verify=True)
    rows = np.ones((6, 8), dtype=np.float32)
    rows[5, 0] = 1e3  # in the last pair the model is tried on
    with pytest.raises(CheckpointError, match=r"the model rejects inputs of shape \(8,\) \(a batch \(6, 8\)\): "
                                              r".*a value beyond 100"):
        model.embed_batch(rows)


def test_torchscript_image_model_declares_or_is_given_its_shape(tmp_path: Path) -> None:
    model = _cnn()
    declared, plain = tmp_path / "cnn.ts", tmp_path / "plain.ts"
    torch.jit.save(torch.jit.script(model), str(declared),
                   _extra_files={"embridge.json": json.dumps({"input_shape": [1, 12, 12]})})
    torch.jit.save(torch.jit.script(model), str(plain))
    assert describe_model(declared).input_shape == (1, 12, 12)
    with pytest.raises(CheckpointError, match=r"plain\.ts: cannot tell the model's input shape.*1-channel"):
        describe_model(plain)
    spec = describe_model(plain, input_shape=(1, 12, 12))
    assert (spec.modality, spec.dim) == ("image", 5)
    x = torch.rand(6, 1, 12, 12)
    np.testing.assert_allclose(load_model(spec, "cpu").embed_batch(x), _direct(model, x), atol=1e-6)


@pytest.mark.parametrize("dynamic", [True, False])
def test_export_program_round_trips(tmp_path: Path, dynamic: bool) -> None:
    model, path = _cnn(), tmp_path / "cnn.pt2"
    shapes = {"x": {0: torch.export.Dim("batch", min=1, max=1024)}} if dynamic else None
    torch.export.save(torch.export.export(model, (torch.rand(2, 1, 12, 12),), dynamic_shapes=shapes), str(path))
    spec = describe_model(path)
    assert (spec.kind, spec.input_shape, spec.dim, spec.modality) == ("export", (1, 12, 12), 5, "image")
    assert spec.params == sum(p.numel() for p in model.parameters())
    # 7 rows in batches of 3: a program fixed to batch 2 gets padded, trimmed batches
    x = torch.rand(7, 1, 12, 12, generator=torch.Generator().manual_seed(4))
    np.testing.assert_allclose(embed_array(spec, x, batch_size=3, device="cpu"), _direct(model, x), atol=1e-5)


def test_vectors_model_looks_up_by_key(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    keys = [f"img/{i}.png" for i in range(20)]
    vectors = rng.normal(size=(20, 6)).astype(np.float32)
    path = save_vectors_model(tmp_path / "old_vectors.npz", keys, vectors)
    spec = describe_model(path)
    assert (spec.kind, spec.modality, spec.dim, spec.input_shape, spec.params) == ("vectors", "vector", 6, (), 0)
    got = embed_array(spec, ["img/5.png", "img/0.png", "img/19.png"], batch_size=2, device="cpu")
    np.testing.assert_array_equal(got, vectors[[5, 0, 19]])
    with pytest.raises(CheckpointError, match=r"old_vectors\.npz: 2 of 3 items have no vector.*nope"):
        load_model(spec, "cpu").lookup(["img/1.png", "nope", "nope2"])


def test_spec_dict_round_trip_is_json_safe(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    save_checkpoint(path, _mlp(), "mlp", MLP_CONFIG)
    spec = describe_model(path)
    data = json.loads(json.dumps(spec.to_dict()))
    assert data["params"] == spec.params and data["input_shape"] == [8]
    assert ModelSpec.from_dict({**data, "added_later": 1}) == spec


def test_loading_from_a_spec_is_lazy_and_can_verify_the_checksum(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    save_checkpoint(path, _mlp(), "mlp", MLP_CONFIG)
    spec = describe_model(path)
    path.unlink()
    lazy = load_model(spec, "cpu")  # nothing is read yet
    with pytest.raises(CheckpointError, match=r"m\.pt: file not found"):
        lazy.embed_batch(torch.zeros(1, 8))
    torch.manual_seed(5)
    save_checkpoint(path, build_model("mlp", MLP_CONFIG)[0], "mlp", MLP_CONFIG)  # other weights, same name
    with pytest.raises(CheckpointError, match=r"m\.pt: file changed since the model was added"):
        load_model(spec, "cpu", verify=True).embed_batch(torch.zeros(1, 8))


def _tiny_sentence_transformer(folder: Path) -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Pooling, WordEmbeddings
    from sentence_transformers.models.tokenizer import WhitespaceTokenizer

    vocab = ["the", "cat", "sat", "on", "mat", "a", "dog", "probe", "sentence"]
    weights = np.random.default_rng(0).normal(size=(len(vocab), 12)).astype(np.float32)
    words = WordEmbeddings(WhitespaceTokenizer(vocab), weights)
    SentenceTransformer(modules=[words, Pooling(12)], device="cpu").save(str(folder))


def test_sentence_transformers_folder_round_trips(tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    folder = tmp_path / "text-model"
    _tiny_sentence_transformer(folder)
    spec = describe_model(folder)
    assert (spec.kind, spec.modality, spec.dim) == ("sentence_transformers", "text", 12)
    texts = ["the cat sat on the mat", "a dog", "the dog sat"]
    reference = SentenceTransformer(str(folder), device="cpu").encode(texts, convert_to_numpy=True)
    np.testing.assert_allclose(embed_array(spec, texts, batch_size=2, device="cpu"), reference, atol=1e-6)


def test_sentence_transformers_folder_without_the_package_is_a_clear_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "text-model"
    folder.mkdir()
    (folder / "modules.json").write_text("[]")
    monkeypatch.setattr("embridge.core.models.text.sentence_transformers_available", lambda: False)
    with pytest.raises(CheckpointError, match=r"text-model: .*sentence-transformers package is not installed"):
        describe_model(folder)
