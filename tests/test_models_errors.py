"""Every bad checkpoint is a CheckpointError naming the file and the problem, and nothing runs."""

from __future__ import annotations

import os
import pathlib
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from odd_models import scripted_model

from embridge.core.errors import CheckpointError
from embridge.core.models import build_model, describe_model, save_checkpoint

MLP_CONFIG = {"input_dim": 8, "out_dim": 4}


class _TouchOnLoad:
    """Unpickling this would create ``marker``: proof of arbitrary code execution if it appears."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


class _SystemOnLoad:
    """Unpickling this would call ``os.system`` (a harmless ``true``); the test never unpickles it."""

    def __reduce__(self) -> tuple:
        return (os.system, ("true",))


def _script(module: torch.nn.Module, path: Path) -> Path:
    torch.jit.save(torch.jit.script(module), str(path))
    return path


def _state_checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "good.pt"
    save_checkpoint(path, build_model("mlp", MLP_CONFIG)[0], "mlp", MLP_CONFIG)
    return path


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"absent\.pt: file not found"):
        describe_model(tmp_path / "absent.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.pt: file is empty"):
        describe_model(tmp_path / "empty.pt")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")  # a loop of links, and a link to nothing: not "not found"
    with pytest.raises(CheckpointError, match=r"loop: is a link that cannot be followed \(Too many levels"):
        describe_model(tmp_path / "loop")
    (tmp_path / "dangling.pt").symlink_to(tmp_path / "absent.pt")
    with pytest.raises(CheckpointError, match=r"dangling\.pt: is a link that cannot be followed \(No such file"):
        describe_model(tmp_path / "dangling.pt")


def test_random_bytes_are_reported_as_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "noise.pt"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match=r"noise\.pt: not a readable PyTorch checkpoint"):
        describe_model(path)


@pytest.mark.parametrize("suffix", [".pt", ".ts", ".pt2"])
def test_truncated_files_of_each_kind(tmp_path: Path, suffix: str) -> None:
    source = _state_checkpoint(tmp_path)
    if suffix == ".ts":
        source = _script(build_model("mlp", MLP_CONFIG)[0], tmp_path / "full.ts")
    if suffix == ".pt2":
        program = torch.export.export(build_model("mlp", MLP_CONFIG)[0].eval(), (torch.zeros(2, 8),))
        source = tmp_path / "full.pt2"
        torch.export.save(program, str(source))
    data = source.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(CheckpointError, match=rf"cut\{suffix}: .*(truncated|unreadable)"):
        describe_model(cut)


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump", "torch.save legacy"])
def test_pickles_that_need_code_are_refused_and_do_not_run(tmp_path: Path, writer: str) -> None:
    """The legacy (not zip) format is several pickles: its code sat after the first, and it read as corrupt."""
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    payload = {"state_dict": _TouchOnLoad(marker)}
    if writer == "torch.save legacy":  # a global of a module torch blocks: its words differ ("unsupported GLOBAL")
        torch.save({"state_dict": _SystemOnLoad()}, path, _use_new_zipfile_serialization=False)
        with pytest.raises(CheckpointError, match=r"evil\.pt: refused: the file needs arbitrary code to load"):
            describe_model(path)
        assert not marker.exists()
        return
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as fh:
            pickle.dump(payload, fh, protocol=4)
    # the file would run code under a plain unpickler: the marker proves the test's premise
    if writer == "pickle.dump":
        pickle.loads(path.read_bytes())
    else:  # torch.save writes a zip whose data.pkl is a plain pickle here (no tensors inside)
        with zipfile.ZipFile(path) as archive:
            pickle.loads(archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl"))))
    assert marker.exists()
    os.remove(marker)
    with pytest.raises(CheckpointError, match=r"evil\.pt: refused: the file needs arbitrary code to load"):
        describe_model(path)
    assert not marker.exists()


def test_a_torch_export_program_whose_pickles_need_code_is_refused_and_does_not_run(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """torch.export.load read a program's sample inputs safely and, when that failed, again unsafely: a
    tampered archive ran its code during 'model add' (and a screen of torch's logging traceback followed)."""
    import io

    program = torch.export.export(build_model("mlp", MLP_CONFIG)[0].eval(), (torch.zeros(2, 8),),
                                  dynamic_shapes=({0: torch.export.Dim("batch")},))
    good = tmp_path / "good.pt2"
    torch.export.save(program, str(good))
    describe_model(good)  # the untampered program loads
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.pt2"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(evil, "w") as out:
        names = src.namelist()
        assert any(n.endswith("sample_inputs/model.pt") for n in names)
        for name in names:
            data = src.read(name)
            if name.endswith("sample_inputs/model.pt"):
                buffer = io.BytesIO()
                torch.save(_TouchOnLoad(marker), buffer)
                data = buffer.getvalue()
            out.writestr(name, data)
    capfd.readouterr()
    with pytest.raises(CheckpointError, match=r"evil\.pt2: not a loadable torch\.export program"):
        describe_model(evil)
    assert not marker.exists()
    assert "Logging error" not in capfd.readouterr().err
    assert "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ  # set for the load alone


def test_unknown_architecture_and_mismatched_weights(tmp_path: Path) -> None:
    weights = build_model("mlp", MLP_CONFIG)[0]
    path = tmp_path / "odd.pt"
    torch.save({"format": 1, "arch": "resnet9000", "arch_config": {}, "state_dict": weights.state_dict()}, path)
    with pytest.raises(CheckpointError, match=r"odd\.pt: unknown architecture 'resnet9000'; built-in ones: mlp"):
        describe_model(path)
    save_checkpoint(path, weights, "mlp", {"input_dim": 8, "out_dim": 6})
    with pytest.raises(CheckpointError, match=r"odd\.pt: weights do not fit architecture 'mlp'.*size mismatch"):
        describe_model(path)
    save_checkpoint(path, weights, "mlp", {"input_dim": 8})
    with pytest.raises(CheckpointError, match=r"odd\.pt: architecture 'mlp' needs config keys out_dim"):
        describe_model(path)


def test_wrong_input_shape_says_what_the_model_takes(tmp_path: Path) -> None:
    path = _script(build_model("mlp", MLP_CONFIG)[0], tmp_path / "mlp.ts")
    with pytest.raises(CheckpointError, match=r"mlp\.ts: the model rejects inputs of shape \(10,\).*"
                                              r"first layer takes 8 input features"):
        describe_model(path, input_shape=(10,))
    good = _state_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match=r"good\.pt: the model takes input shape \(8,\), not \(1, 28, 28\)"):
        describe_model(good, input_shape=(1, 28, 28))


@pytest.mark.parametrize(("mode", "message"), [
    ("3d", r"output has shape \(2, 1, 4\); an embedder must return a 2-D"),
    ("nan", r"output holds NaN or inf values \(2 of 2 rows\)"),
    ("inf", r"output holds NaN or inf values"),
    ("rows", r"returned 1 rows for a batch of 2"),
    ("zero", r"returns all-zero vectors for different random inputs"),
    ("constant", r"returns vectors of a single direction for different random inputs"),
    ("one_way", r"returns vectors of a single direction for different random inputs"),
    ("dropout", r"gives different vectors for the same input on two runs"),
    ("batch_mean", r"gives an item another vector beside other items in its batch"),  # --batch-size changed them
    ("batch_norm", r"gives an item another vector beside other items in its batch"),
    ("complex", r"returned complex values"),
    ("no_dims", r"returned vectors of dimension 0"),
    ("huge64", r"output holds values beyond the float32 range"),
])
def test_bad_outputs_are_caught_by_the_probe(tmp_path: Path, mode: str, message: str) -> None:
    torch.manual_seed(0)  # the layer's weights and dropout's draws: the same whatever ran before
    path = scripted_model(tmp_path / f"{mode}.ts", mode)
    with pytest.raises(CheckpointError, match=rf"{mode}\.ts: the model {message}"):
        describe_model(path)


def test_nan_weights_in_a_state_dict(tmp_path: Path) -> None:
    model = build_model("mlp", MLP_CONFIG)[0]
    with torch.no_grad():
        model.body[0].weight[0, 0] = float("nan")
    path = tmp_path / "nan.pt"
    save_checkpoint(path, model, "mlp", MLP_CONFIG)
    with pytest.raises(CheckpointError, match=r"nan\.pt: the model output holds NaN"):
        describe_model(path)


def test_vectors_files_are_validated(tmp_path: Path) -> None:
    path = tmp_path / "vecs.npz"
    np.savez(path, ids=np.array(["a", "b", "a"]), vectors=np.zeros((3, 2)))
    with pytest.raises(CheckpointError, match=r"vecs\.npz: duplicate ids"):
        describe_model(path)
    np.savez(path, ids=np.array(["a", "b"]), vectors=np.array([[0.0, np.nan], [1.0, 1.0]]))
    with pytest.raises(CheckpointError, match=r"vecs\.npz: row 0 holds NaN"):
        describe_model(path)
    np.savez(path, ids=np.array(["a", "b"], dtype=object), vectors=np.zeros((2, 2)))
    with pytest.raises(CheckpointError, match=r"vecs\.npz: ids must be text or integers, got dtype object"):
        describe_model(path)
    np.save(tmp_path / "vecs.npy", np.zeros((2, 2)))
    with pytest.raises(CheckpointError, match=r"vecs\.npy: an embeddings-only model is one \.npz file"):
        describe_model(tmp_path / "vecs.npy")


def test_kind_and_option_mistakes(tmp_path: Path) -> None:
    good = _state_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match=r"good\.pt: unknown model kind 'tflite'"):
        describe_model(good, kind="tflite")
    with pytest.raises(CheckpointError, match=r"good\.pt: not a loadable TorchScript file"):
        describe_model(good, kind="torchscript")
    scripted = _script(build_model("mlp", MLP_CONFIG)[0], tmp_path / "s.ts")
    with pytest.raises(CheckpointError, match=r"s\.ts: an architecture applies to state_dict checkpoints only"):
        describe_model(scripted, arch="mlp")
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(CheckpointError, match=r"folder: not a model folder Embridge reads: expected a sentence-transformers folder"):
        describe_model(folder)
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match=r"list\.pt: expected a dict of weights, found list"):
        describe_model(tmp_path / "list.pt")


def test_an_input_shape_too_large_for_one_item_is_refused_naming_the_option(tmp_path: Path) -> None:
    from embridge.core.errors import InputError

    path = scripted_model(tmp_path / "ok.ts")
    with pytest.raises(InputError, match=r"--input-shape: input shape 99999,99999,99999 is [0-9,]+ values per item"):
        describe_model(path, input_shape=(99999, 99999, 99999))


def test_a_bare_onnx_file_says_how_onnx_models_are_read(tmp_path: Path) -> None:
    """It was 'not a readable PyTorch checkpoint (corrupt or another format)'."""
    path = tmp_path / "img.onnx"
    path.write_bytes(b"\x08\x07")
    with pytest.raises(CheckpointError, match=r"img\.onnx: an ONNX file alone is not a model Embridge reads: give "
                                              r"the folder holding model\.onnx"):
        describe_model(path)


def test_a_checkpoints_own_declarations_are_checked_naming_the_file(tmp_path: Path) -> None:
    """A malformed embridge.json or input_shape was an unexpected error (exit 3); a declared text modality on a
    model that takes arrays was added, then could embed nothing."""
    from embridge.core.models.adding import parse_input_shape
    from embridge.core.models.openers import DECLARATION_FILE

    module = torch.jit.script(build_model("mlp", MLP_CONFIG)[0].eval())
    cases = [('[1, 8]', "embridge.json must be a JSON object, not list"),
             ('{"input_shape": "1,8"}', "'input_shape' must be a list of positive whole numbers, got '1,8'"),
             ('{"input_shape": [8], "modality": "text"}', "declares the text modality, but a torchscript model")]
    for i, (declared, said) in enumerate(cases):
        path = tmp_path / f"m{i}.ts"
        torch.jit.save(module, str(path), _extra_files={DECLARATION_FILE: declared})
        with pytest.raises(CheckpointError, match=rf"m{i}\.ts: its {DECLARATION_FILE}|m{i}\.ts: declares") as caught:
            describe_model(path)
        assert said in str(caught.value)
    shaped = tmp_path / "shaped.pt"
    save_checkpoint(shaped, build_model("mlp", MLP_CONFIG)[0], "mlp", MLP_CONFIG)
    checkpoint = torch.load(shaped, weights_only=True)
    torch.save({**checkpoint, "input_shape": "abc"}, shaped)
    with pytest.raises(CheckpointError, match=r"shaped\.pt: its 'input_shape' must be a list of positive whole"):
        describe_model(shaped)
    with pytest.raises(Exception, match=r"expected integers like 1,28,28, got '1,,16'"):
        parse_input_shape("1,,16")  # a missing size, not (1, 16)
    assert parse_input_shape("(8,)") == (8,)
