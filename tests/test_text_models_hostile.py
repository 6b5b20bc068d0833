"""Text model folders that lie: weights that do not fill their config, tokenizers larger than the
model, ONNX exports with fixed, float or wrongly ranked inputs and outputs, outputs whose width
follows the token count, and configs that are not JSON objects.

Each is refused by ``embridge model add`` with one stderr line naming the file and the problem,
exit 1 and nothing stored; a model already stored that is found bad when an embedding loads it
fails with one line and exit 1, never exit 3. Folders are built here from random weights and a
written vocabulary (nothing is downloaded).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from helpers.workspace_files import table_dump
from text_fixtures import VOCAB, tiny_bert, tiny_sentence_transformer, write_json

from embridge.core.cli.main import main
from embridge.core.importers import import_items
from embridge.core.models import describe_model
from embridge.core.models.spec import checkpoint_sha256
from embridge.core.store import Workspace

TEXTS = ["the cat", "the old man and the sea", "a dog ran in the park", "fish", "bird sang in a tree"]


def _drop_tensors(folder: Path, fragment: str) -> None:
    from safetensors.numpy import load_file, save_file

    file = folder / "model.safetensors"
    kept = {k: v for k, v in load_file(str(file)).items() if fragment not in k}
    save_file(kept, str(file), metadata={"format": "pt"})


def _edit_config(folder: Path, **changes: object) -> None:
    config = json.loads((folder / "config.json").read_text())
    write_json(folder / "config.json", {**config, **changes})


def _onnx(folder: Path, tokenizer_from: Path, nodes: list, inputs: list, outputs: list,
          inits: tuple = ()) -> Path:
    """A hand-written ONNX graph over a 40 x 16 embedding table ``E``, beside a real tokenizer."""
    import onnx
    from onnx import helper, numpy_helper

    folder.mkdir(parents=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        shutil.copy(tokenizer_from / name, folder / name)
    table = np.random.default_rng(0).standard_normal((40, 16)).astype(np.float32)
    graph = helper.make_graph(nodes, folder.name, inputs, outputs,
                              [numpy_helper.from_array(table, "E"), *inits])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(folder / "model.onnx"))
    return folder


def _onnx_builders() -> dict[str, Callable[[Path, Path], Path]]:
    from onnx import TensorProto, helper, numpy_helper

    def ids(shape: tuple = ("b", "t"), kind: int = TensorProto.INT64) -> object:
        return helper.make_tensor_value_info("input_ids", kind, list(shape))

    def out(name: str, shape: tuple) -> object:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))

    def gather(target: str = "last_hidden_state") -> object:
        return helper.make_node("Gather", ["E", "input_ids"], [target])

    def gather_from(source: str) -> object:
        return helper.make_node("Gather", ["E", source], ["last_hidden_state"])

    return {
        "onnx_fixed_shape": lambda d, t: _onnx(d, t, [gather()], [ids((1, 8))], [out("last_hidden_state",
                                                                                      (1, 8, 16))]),
        "onnx_float_ids": lambda d, t: _onnx(
            d, t, [helper.make_node("Cast", ["input_ids"], ["ii"], to=TensorProto.INT64),
                   helper.make_node("Gather", ["E", "ii"], ["last_hidden_state"])],
            [ids(kind=TensorProto.FLOAT)], [out("last_hidden_state", ("b", "t", 16))]),
        "onnx_lhs_rank2": lambda d, t: _onnx(
            d, t, [helper.make_node("Cast", ["input_ids"], ["last_hidden_state"], to=TensorProto.FLOAT)],
            [ids()], [out("last_hidden_state", ("b", "t"))]),
        "onnx_pooled_rank3": lambda d, t: _onnx(d, t, [gather("sentence_embedding")], [ids()],
                                                [out("sentence_embedding", ("b", "t", 16))]),
        "onnx_dyn_pooled": lambda d, t: _onnx(
            d, t, [gather(), helper.make_node("Flatten", ["last_hidden_state"], ["sentence_embedding"], axis=1)],
            [ids()], [out("sentence_embedding", ("b", "d"))]),
        "onnx_dyn_hidden": lambda d, t: _onnx(
            d, t, [gather(), helper.make_node("Transpose", ["last_hidden_state"], ["T"], perm=[0, 2, 1]),
                   helper.make_node("MatMul", ["last_hidden_state", "T"], ["lhs"])],
            [ids()], [out("lhs", ("b", "t", "t2"))]),
        "onnx_int_output": lambda d, t: _onnx(
            d, t, [gather("h"), helper.make_node("Cast", ["h"], ["last_hidden_state"], to=TensorProto.INT64)],
            [ids()], [helper.make_tensor_value_info("last_hidden_state", TensorProto.INT64, ["b", "t", 16])]),
        "onnx_good": lambda d, t: _onnx(d, t, [gather()], [ids()], [out("last_hidden_state", ("b", "t", 16))]),
        # every id is shifted past the 40-row table: the graph fails on any text, not only on large ids
        "onnx_fails_on_any_token": lambda d, t: _onnx(
            d, t, [helper.make_node("Add", ["input_ids", "shift"], ["shifted"]), gather_from("shifted")],
            [ids()], [out("last_hidden_state", ("b", "t", 16))],
            (numpy_helper.from_array(np.array(1000, dtype=np.int64), "shift"),)),
    }


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hostile-text")
    bert = tiny_bert(root / "bert")
    st = tiny_sentence_transformer(root / "st")
    made = {"bert": bert, "st": st}

    def copy(name: str, base: Path) -> Path:
        made[name] = shutil.copytree(base, root / name)
        return made[name]

    _drop_tensors(copy("tf_missing_embeddings", bert), "word_embeddings")
    _drop_tensors(copy("st_missing_embeddings", st), "word_embeddings")
    _edit_config(copy("tf_layers_more", bert), num_hidden_layers=3)
    _edit_config(copy("tf_layers_fewer", tiny_bert(root / "bert2", layers=2)), num_hidden_layers=1)
    _edit_config(copy("tf_layers_zero", bert), num_hidden_layers=0)
    _edit_config(copy("tf_hidden_mismatch", bert), hidden_size=32, intermediate_size=64)
    _edit_config(copy("tf_vocab_small", bert), vocab_size=5)
    _edit_config(copy("tf_maxpos_tiny", bert), max_position_embeddings=4)
    _edit_config(copy("st_hidden_mismatch", st), hidden_size=32, intermediate_size=64)
    big = copy("tf_tokenizer_vocab_big", bert)
    words = (big / "vocab.txt").read_text().split("\n")
    (big / "vocab.txt").write_text("\n".join(words + [f"w{i}" for i in range(100)]))
    (big / "tokenizer.json").unlink()
    (copy("tf_config_list", bert) / "config.json").write_text("[1, 2]")
    _edit_config(copy("tf_config_text_size", bert), hidden_size="64")  # read by the tokenizer's loading first
    _edit_config(copy("tf_config_huge", bert), vocab_size=1_000_000, hidden_size=1_000_000)
    _edit_config(copy("tf_layers_huge", bert), num_hidden_layers=100_000)  # minutes and GBs to count
    _edit_config(copy("tf_intermediate_zero", bert), intermediate_size=0)  # torch's notice came first
    (copy("tf_tokenizer_json_bad", bert) / "tokenizer.json").write_text("{ bad")
    (copy("tf_tokenizer_json_empty", bert) / "tokenizer.json").write_text("{}")
    dense = copy("st_dense_activation", st)
    (dense / "3_Dense").mkdir()
    write_json(dense / "3_Dense" / "config.json", {"in_features": 16, "out_features": 16, "bias": True,
                                                   "activation_function": "os.system"})
    modules = json.loads((dense / "modules.json").read_text())
    write_json(dense / "modules.json", [*modules, {"idx": len(modules), "name": str(len(modules)),
                                                   "path": "3_Dense", "type": "sentence_transformers.models.Dense"}])
    linked = copy("st_linked_pooling", st)
    shutil.move(linked / "1_Pooling", root / "pooling_elsewhere")
    (linked / "1_Pooling").symlink_to(root / "pooling_elsewhere", target_is_directory=True)
    for name, build in _onnx_builders().items():
        made[name] = build(root / name, bert)
    return made


def _workspace(path: Path) -> Path:
    items = path.parent / f"{path.name}-items.jsonl"
    items.write_text("".join(json.dumps({"key": f"k{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS)))
    with Workspace.create(path) as ws:
        import_items(ws, items, split="gallery")
    return path


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "embridge.db"}


def _refused_at_add(tmp_path: Path, capfd: pytest.CaptureFixture[str], folder: Path,
                    own_process: bool = False) -> str:
    """Add ``folder``: exit 1, exactly one stderr line, no model row and no file written; the line.

    ``own_process`` runs the command in a fresh interpreter, so that whatever a library logs goes to
    the real stderr (a logging handler made earlier in this process keeps the stream it was made with).
    """
    ws_dir = _workspace(tmp_path / "ws")
    before = _files(ws_dir)
    args = ["model", "add", "-w", str(ws_dir), "--name", "m", "--path", str(folder)]
    if own_process:
        done = subprocess.run([sys.executable, "-m", "embridge.core.cli.main", *args], capture_output=True,
                              text=True, timeout=600, check=False)
        assert done.returncode == 1, done.stderr
        err = done.stderr
    else:
        capfd.readouterr()
        assert main(args) == 1
        err = capfd.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("embridge: error: ") and "unexpected" not in lines[0]
    assert _files(ws_dir) == before
    with Workspace.open(ws_dir) as ws:
        assert ws.models() == []
    return lines[0]


@pytest.mark.parametrize(("name", "named", "problem"), [
    ("tf_missing_embeddings", "tf_missing_embeddings/model.safetensors",
     "lacks 1 tensor that config.json needs (embeddings.word_embeddings.weight)"),
    ("st_missing_embeddings", "st_missing_embeddings/model.safetensors",
     "lacks 1 tensor that config.json needs (embeddings.word_embeddings.weight)"),
    ("tf_layers_more", "tf_layers_more/model.safetensors", "lacks 32 tensors that config.json needs "
     "(encoder.layer.1.attention.output.LayerNorm.bias, encoder.layer.1.attention.output.LayerNorm.weight, "
     "encoder.layer.1.attention.output.dense.bias and 29 more)"),
])
def test_weights_missing_tensors_are_refused_at_add(tmp_path: Path, capfd: pytest.CaptureFixture[str],
                                                    hostile: dict[str, Path], name: str, named: str,
                                                    problem: str) -> None:
    line = _refused_at_add(tmp_path, capfd, hostile[name], own_process=True)
    assert f"{named}: {problem}" in line


@pytest.mark.parametrize(("name", "mismatch"), [
    ("tf_hidden_mismatch", "tensor embeddings.LayerNorm.bias has shape [16] in the file but the config needs [32]"),
    ("tf_vocab_small", "tensor embeddings.word_embeddings.weight has shape [39, 16] in the file but the config "
                       "needs [5, 16]"),
    ("tf_maxpos_tiny", "tensor embeddings.position_embeddings.weight has shape [64, 16] in the file but the "
                       "config needs [4, 16]"),
    ("st_hidden_mismatch", "tensor embeddings.LayerNorm.bias has shape [16] in the file but the config needs [32]"),
])
def test_a_config_that_disagrees_with_its_weights_is_one_line(tmp_path: Path, capfd: pytest.CaptureFixture[str],
                                                              hostile: dict[str, Path], name: str,
                                                              mismatch: str) -> None:
    line = _refused_at_add(tmp_path, capfd, hostile[name], own_process=True)
    assert f"{name}/model.safetensors: does not match config.json: {mismatch}" in line
    assert "LOAD REPORT" not in line


@pytest.mark.parametrize("name", ["onnx_dyn_pooled", "onnx_dyn_hidden"])
def test_an_onnx_output_width_that_follows_the_token_count_is_refused(
        tmp_path: Path, capfd: pytest.CaptureFixture[str], hostile: dict[str, Path], name: str) -> None:
    line = _refused_at_add(tmp_path, capfd, hostile[name])
    assert f"{name}/model.onnx: the model's output width depends on its input" in line


def test_a_tokenizer_larger_than_the_embedding_table_is_refused(tmp_path: Path, capfd: pytest.CaptureFixture[str],
                                                                hostile: dict[str, Path]) -> None:
    line = _refused_at_add(tmp_path, capfd, hostile["tf_tokenizer_vocab_big"])
    assert "tf_tokenizer_vocab_big: the tokenizer has 140 tokens but the model's embedding table has 39 rows" in line


def test_an_onnx_graph_failing_on_any_text_is_named_not_its_tokenizer(
        tmp_path: Path, capfd: pytest.CaptureFixture[str], hostile: dict[str, Path]) -> None:
    """A graph that fails on every token was said to fail on the tokenizer's largest token id, and the
    tokenizer was blamed ("does not belong to this model"); it is the graph that fails."""
    line = _refused_at_add(tmp_path, capfd, hostile["onnx_fails_on_any_token"])
    assert "onnx_fails_on_any_token/model.onnx: the ONNX model fails on a batch of 1 texts (" in line
    assert "while running Gather node" in line
    assert "tokenizer" not in line


@pytest.mark.parametrize(("name", "named", "problem"), [
    ("onnx_fixed_shape", "model.onnx", "input input_ids has the fixed shape [1, 8]"),
    ("onnx_float_ids", "model.onnx", "input input_ids takes tensor(float)"),
    ("onnx_lhs_rank2", "model.onnx", "output last_hidden_state has rank 2"),
    ("onnx_pooled_rank3", "model.onnx", "output sentence_embedding has rank 3"),
    ("onnx_int_output", "model.onnx", "output last_hidden_state is tensor(int64); an embedding must be floating"),
    ("tf_config_list", "config.json", "expected a JSON object, got a JSON list"),
    ("tf_config_text_size", "config.json", "cannot be read as a model configuration"),
    # sentence-transformers ran Tanh in place of an activation it would not import, unsaid
    ("st_dense_activation", "3_Dense/config.json", "activation_function 'os.system' is not a torch activation"),
    # the folder was named, not the file the tokenizer could not read
    ("tf_tokenizer_json_bad", "tokenizer.json", "is not readable JSON (Expecting property name enclosed in double quotes"),
    ("tf_tokenizer_json_empty", "tokenizer.json", "lacks the field 'added_tokens' a tokenizer file has"),
])
def test_malformed_folders_are_one_line_not_a_bug(tmp_path: Path, capfd: pytest.CaptureFixture[str],
                                                  hostile: dict[str, Path], name: str, named: str,
                                                  problem: str) -> None:
    line = _refused_at_add(tmp_path, capfd, hostile[name])
    assert f"{name}/{named}: {problem}" in line


def _store_as_if_added_earlier(ws_dir: Path, folder: Path, like: Path) -> None:
    """Register ``folder`` with the spec of the sound folder ``like``, as a release without these checks did."""
    spec = describe_model(like).to_dict()
    spec.update(sha256=checkpoint_sha256(folder), path=str(folder.resolve()))
    with Workspace.open(ws_dir) as ws:
        ws.add_model("m", "other", spec, folder)


def test_a_config_asking_for_a_huge_model_is_refused_before_it_is_allocated(
        tmp_path: Path, capfd: pytest.CaptureFixture[str], hostile: dict[str, Path]) -> None:
    """10⁶ x 10⁶ would need 4 TB; counted on the meta device, it is refused in one line naming the weights."""
    line = _refused_at_add(tmp_path, capfd, hostile["tf_config_huge"], own_process=True)
    assert "tf_config_huge/model.safetensors: holds " in line
    assert "but config.json describes a model of " in line and "the config does not belong to these weights" in line


def test_a_config_with_fewer_layers_than_its_weights_is_refused_at_add(
        tmp_path: Path, capfd: pytest.CaptureFixture[str], hostile: dict[str, Path]) -> None:
    """A config.json of one layer beside the weights of two was accepted: the second layer's tensors were
    never read (taken for a task head) and every vector came from half the model. Zero layers embedded
    with the bare embedding table."""
    line = _refused_at_add(tmp_path, capfd, hostile["tf_layers_fewer"], own_process=True)
    assert ("tf_layers_fewer/model.safetensors: holds 16 tensors of layers config.json leaves out "
            "(encoder.layer.1.attention.output.LayerNorm.bias, ") in line
    (tmp_path / "zero").mkdir()
    line = _refused_at_add(tmp_path / "zero", capfd, hostile["tf_layers_zero"], own_process=True)
    assert "tf_layers_zero/config.json: num_hidden_layers is 0; an encoder has at least one layer" in line


def test_a_config_asking_for_a_hundred_thousand_layers_is_refused_before_they_are_built(
        tmp_path: Path, capfd: pytest.CaptureFixture[str], hostile: dict[str, Path]) -> None:
    """Counting its parameters built one module a layer on the meta device: 179 s and 5.5 GB for 10⁵."""
    line = _refused_at_add(tmp_path, capfd, hostile["tf_layers_huge"])
    assert "tf_layers_huge/config.json: num_hidden_layers is 100,000; the deepest models have a few hundred" in line


def test_a_layer_sized_zero_is_one_line_without_torchs_notice(tmp_path: Path, capfd: pytest.CaptureFixture[str],
                                                               hostile: dict[str, Path]) -> None:
    line = _refused_at_add(tmp_path, capfd, hostile["tf_intermediate_zero"], own_process=True)
    assert "tf_intermediate_zero/model.safetensors: does not match config.json" in line


def test_a_folder_linked_inside_a_model_folder_is_refused_naming_the_link(
        tmp_path: Path, capfd: pytest.CaptureFixture[str], hostile: dict[str, Path]) -> None:
    """The copy followed the link and the checksum did not, so every embed said the model had changed."""
    line = _refused_at_add(tmp_path, capfd, hostile["st_linked_pooling"])
    assert "st_linked_pooling/1_Pooling: is a symbolic link to the folder " in line
    assert "a model folder is copied whole into the workspace: copy that folder in instead" in line


@pytest.mark.parametrize(("name", "like", "problem"), [
    ("tf_missing_embeddings", "bert", "model.safetensors: lacks 1 tensor that config.json needs"),
    ("tf_tokenizer_vocab_big", "bert", "the tokenizer has 140 tokens but the model's embedding table has 39 rows"),
    ("onnx_dyn_pooled", "onnx_good", "output width"),
    ("onnx_dyn_hidden", "onnx_good", "the model's output width changes with its input"),
])
def test_a_stored_model_found_bad_at_embedding_is_one_line_and_exit_1(
        tmp_path: Path, capfd: pytest.CaptureFixture[str], hostile: dict[str, Path], name: str, like: str,
        problem: str) -> None:
    ws_dir = _workspace(tmp_path / "ws")
    _store_as_if_added_earlier(ws_dir, hostile[name], hostile[like])
    capfd.readouterr()
    assert main(["embed", "-w", str(ws_dir), "--model", "m", "--batch-size", "1"]) == 1
    errors = [line for line in capfd.readouterr().err.splitlines() if line.startswith("embridge:")]
    assert len(errors) == 1 and errors[0].startswith("embridge: error: ") and "unexpected" not in errors[0]
    assert problem in errors[0]
    with Workspace.open(ws_dir) as ws:
        assert [m["name"] for m in ws.models()] == ["m"]
        assert not list((ws_dir / "vectors").rglob("*.npy"))


def test_a_decoder_left_out_is_refused_only_where_the_decoder_would_be_read(tmp_path: Path) -> None:
    """An encoder-decoder config (T5 and kin) embeds with its encoder alone, as sentence-transformers
    runs it, so weights holding only the encoder are complete; the same gap elsewhere is refused."""
    from embridge.core.errors import CheckpointError
    from embridge.core.models.weight_checks import check_loading_info

    info = {"missing_keys": ["decoder.block.0.layer.0.SelfAttention.q.weight", "lm_head.weight",
                             "pooler.dense.weight"], "mismatched_keys": [], "error_msgs": []}
    check_loading_info(tmp_path, info, decoder_unused=True)
    with pytest.raises(CheckpointError, match=r"lacks 2 tensors that config.json needs \(decoder\.block"):
        check_loading_info(tmp_path, info)
    info["missing_keys"].append("encoder.block.0.layer.0.SelfAttention.q.weight")
    with pytest.raises(CheckpointError, match=r"lacks 1 tensor that config.json needs \(encoder\.block"):
        check_loading_info(tmp_path, info, decoder_unused=True)


def _edit_json(path: Path, **changes: object) -> None:
    write_json(path, {**json.loads(path.read_text()), **changes})


@pytest.fixture(scope="module")
def lengths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Folders whose sequence-length settings are hostile: too long for the position table, or not a
    positive whole number; and an ONNX export whose tokenizer outgrows its embedding table."""
    from text_fixtures import tiny_onnx

    root = tmp_path_factory.mktemp("lengths")
    bert, st = tiny_bert(root / "bert"), tiny_sentence_transformer(root / "st")
    made: dict[str, Path] = {}
    for value, tag in ((100_000, "huge"), (0, "zero"), (-1, "negative"), ("abc", "text"), (12.5, "fraction"),
                       (1, "one"), (2, "two")):
        made[f"st_{tag}"] = shutil.copytree(st, root / f"st_{tag}")
        _edit_json(made[f"st_{tag}"] / "sentence_bert_config.json", max_seq_length=value)
        made[f"tf_{tag}"] = shutil.copytree(bert, root / f"tf_{tag}")
        _edit_json(made[f"tf_{tag}"] / "tokenizer_config.json", model_max_length=value)
    made["onnx_positions"] = onnx = tiny_onnx(root / "onnx_positions")
    shutil.copy(root / "onnx_positions-torch" / "config.json", onnx / "config.json")  # 64 positions, as exports ship
    made["onnx_vocab_big"] = big = shutil.copytree(onnx, root / "onnx_vocab_big")
    tokenizer = json.loads((big / "tokenizer.json").read_text())
    vocab = tokenizer["model"]["vocab"]
    vocab.update({f"w{i}": len(vocab) + i for i in range(100)})  # ids past the model's 39-row table
    write_json(big / "tokenizer.json", tokenizer)
    return made


@pytest.mark.parametrize("name", ["st_huge", "onnx_positions"])
def test_a_length_setting_beyond_the_position_table_truncates_like_the_transformers_path(
        tmp_path: Path, capfd: pytest.CaptureFixture[str], lengths: dict[str, Path], name: str) -> None:
    """A 300-word text is cut to the model's 64 positions instead of failing with a shape error."""
    ws_dir = _workspace(tmp_path / "ws")
    long_text = tmp_path / "long.jsonl"
    long_text.write_text(json.dumps({"key": "long", "text": " ".join(["the old man and the sea"] * 60)}) + "\n")
    with Workspace.open(ws_dir) as ws:
        import_items(ws, long_text, split="gallery")
    assert main(["model", "add", "-w", str(ws_dir), "--name", "m", "--path", str(lengths[name])]) == 0
    capfd.readouterr()
    assert main(["embed", "-w", str(ws_dir), "--model", "m", "--batch-size", "2"]) == 0, capfd.readouterr().err
    with Workspace.open(ws_dir) as ws:
        vectors = ws.vectors_for("m", ws.item_ids())
    assert vectors.shape == (len(TEXTS) + 1, 16) and np.isfinite(vectors).all()
    assert "onnxruntime" not in capfd.readouterr().err


@pytest.mark.parametrize("tag", ["zero", "negative", "text", "fraction"])
@pytest.mark.parametrize(("kind", "file", "key"), [("st", "sentence_bert_config.json", "max_seq_length"),
                                                   ("tf", "tokenizer_config.json", "model_max_length")])
def test_a_length_setting_that_is_not_a_positive_whole_number_is_refused_at_add(
        tmp_path: Path, capfd: pytest.CaptureFixture[str], lengths: dict[str, Path], tag: str, kind: str,
        file: str, key: str) -> None:
    line = _refused_at_add(tmp_path, capfd, lengths[f"{kind}_{tag}"])
    assert f"{kind}_{tag}/{file}: {key} must be a whole number of at least 1, got " in line


@pytest.mark.parametrize(("tag", "value"), [("one", 1), ("two", 2)])
@pytest.mark.parametrize(("kind", "file", "key"), [("st", "sentence_bert_config.json", "max_seq_length"),
                                                   ("tf", "tokenizer_config.json", "model_max_length")])
def test_a_length_the_special_tokens_fill_is_refused_at_add(
        tmp_path: Path, capfd: pytest.CaptureFixture[str], lengths: dict[str, Path], tag: str, value: int,
        kind: str, file: str, key: str) -> None:
    """A length of 1 passed `model add` (a whole number of at least 1) and then `embed` failed on a long text
    with a shape error (the tokenizer cannot cut below its two special tokens) or stored untruncated
    vectors it said were cut to 1 token; at 2 every text got the same vector. Refused at add, naming it;
    the fresh process shows that the tokenizer's own warning does not reach stderr either."""
    line = _refused_at_add(tmp_path, capfd, lengths[f"{kind}_{tag}"], own_process=True)
    assert f"the model reads {value} tokens ({key} {value} in {file}) and its special tokens alone take 2: " in line
    assert "no token of any text would reach it; set a longer sequence length" in line


def test_an_onnx_tokenizer_larger_than_its_embedding_table_is_refused_at_add(
        tmp_path: Path, capfd: pytest.CaptureFixture[str], lengths: dict[str, Path]) -> None:
    line = _refused_at_add(tmp_path, capfd, lengths["onnx_vocab_big"], own_process=True)
    assert "onnx_vocab_big/model.onnx: fails on token id " in line
    assert "the tokenizer does not belong to this model" in line


ENORMOUS_CHILD = """
import resource, sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
import text_fixtures
from embridge.core.models import load_model
maker = getattr(text_fixtures, sys.argv[2])
model = load_model(maker(Path(sys.argv[1]) / "model"), "cpu")
start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
huge = model.embed_texts(["the cat sat on a mat " * 200_000], "document")  # 4.2 MB, one document
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start
head = model.embed_texts(["the cat sat on a mat " * 40], "document")  # already past the 64-token limit
print(grown // 1024, float(abs(huge - head).max()))
"""


@pytest.mark.parametrize("maker", ["tiny_bert", "tiny_sentence_transformer"])
def test_an_enormous_document_costs_what_the_model_reads(tmp_path: Path, maker: str) -> None:
    """One 4 MB document grew the process by about 740 MB (the tokenizer split all of it before truncating);
    it is cut before tokenizing, and embeds as its first tokens do."""
    out = subprocess.run([sys.executable, "-c", ENORMOUS_CHILD, str(tmp_path), maker, str(Path(__file__).parent)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    grown_mib, diff = out.stdout.split()
    assert int(grown_mib) < 150 and float(diff) < 1e-6, out.stdout


@pytest.mark.parametrize("maker", [tiny_bert, tiny_sentence_transformer])
def test_a_text_opening_with_pages_of_whitespace_keeps_its_words(tmp_path: Path, maker: Callable[..., Path]) -> None:
    """The cut counts what tokenizers keep: 33,000 spaces or blank lines before the words (more characters
    than 64 per token of a 64-token model) still embed as the words do, not as an empty text."""
    from embridge.core.models import load_model

    model = load_model(maker(tmp_path / "model"), "cpu")
    words = "the cat sat on a mat " * 40
    padded = model.embed_texts([" " * 33_000 + words, "\n" * 33_000 + words], "document")
    alone, empty = model.embed_texts([words, ""], "document")
    for row in padded:
        np.testing.assert_allclose(row, alone, atol=1e-6)
        assert np.abs(row - empty).max() > 1e-3


def _embedded_with_long_text(tmp_path: Path, capfd: pytest.CaptureFixture[str], folder: Path, long_text: str,
                             keys: list[str]) -> np.ndarray:
    """``folder`` added and run over the small workspace plus one item ``long`` holding ``long_text``: the
    stored vectors of ``keys``."""
    ws_dir = _workspace(tmp_path / "ws")
    extra = tmp_path / "long.jsonl"
    extra.write_text(json.dumps({"key": "long", "text": long_text}) + "\n")
    with Workspace.open(ws_dir) as ws:
        import_items(ws, extra, split="gallery")
    assert main(["model", "add", "-w", str(ws_dir), "--name", "m", "--path", str(folder)]) == 0
    capfd.readouterr()
    assert main(["embed", "-w", str(ws_dir), "--model", "m"]) == 0, capfd.readouterr().err
    with Workspace.open(ws_dir) as ws:
        return ws.vectors_for("m", ws.ids_for_keys(keys))


def tiny_roberta(folder: Path, pad_token_id: int = 1, positions: int = 18) -> Path:
    """A RoBERTa whose position table has ``positions`` rows, of which ``pad_token_id + 1`` are never a
    text's (real RoBERTa: 514 rows for 512 tokens), with a tokenizer that states no length limit."""
    import torch
    from transformers import BertTokenizerFast, RobertaConfig, RobertaModel

    folder.mkdir(parents=True)
    config = RobertaConfig(vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=32, max_position_embeddings=positions, pad_token_id=pad_token_id)
    torch.manual_seed(5)
    RobertaModel(config).eval().save_pretrained(str(folder), safe_serialization=True)
    BertTokenizerFast(vocab={word: i for i, word in enumerate(VOCAB)}).save_pretrained(str(folder))
    settings = folder / "tokenizer_config.json"
    write_json(settings, {k: v for k, v in json.loads(settings.read_text()).items() if k != "model_max_length"})
    return folder


@pytest.mark.parametrize("wrapped", [False, True])
def test_a_roberta_position_table_keeps_its_padding_offset(tmp_path: Path, capfd: pytest.CaptureFixture[str],
                                                           wrapped: bool) -> None:
    """RoBERTa counts positions from pad_token_id + 1: 18 rows take 16 tokens, not 18. A 17- or 18-token
    text indexed past the table (an unexpected IndexError, exit 3); it is cut to 16 tokens, as the
    model's own limit says, through transformers and sentence-transformers alike."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import AutoModel, AutoTokenizer

    roberta = tiny_roberta(tmp_path / "roberta")
    folder = roberta
    if wrapped:  # a sentence-transformers folder asking for far more than the table holds
        transformer = models.Transformer(str(roberta), max_seq_length=100_000)
        folder = tmp_path / "st"
        SentenceTransformer(modules=[transformer, models.Pooling(16, "mean")], device="cpu").save(str(folder))
    long_text = " ".join(["the old man and the sea"] * 5)  # 30 words, 32 tokens with [CLS] and [SEP]
    stored = _embedded_with_long_text(tmp_path, capfd, folder, long_text, ["long"])[0]
    tokenizer, model = AutoTokenizer.from_pretrained(str(roberta)), AutoModel.from_pretrained(str(roberta)).eval()
    batch = tokenizer([long_text], truncation=True, max_length=16, return_tensors="pt")
    assert batch["input_ids"].shape[1] == 16
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state[0]
    expected = hidden.mean(dim=0).numpy()
    np.testing.assert_allclose(stored / np.linalg.norm(stored), expected / np.linalg.norm(expected), atol=1e-5)


def test_sentence_transformers_own_notices_stay_off_stderr(tmp_path: Path) -> None:
    """A folder with a default prompt made sentence-transformers print "Default prompt name is set to ..."
    on every add and embed; the program's own stderr holds its progress and errors only."""
    from sentence_transformers import SentenceTransformer, models

    bert = tiny_bert(tmp_path / "bert")
    transformer = models.Transformer(str(bert))
    folder = tmp_path / "st"
    SentenceTransformer(modules=[transformer, models.Pooling(16, "mean")], device="cpu",
                        prompts={"query": "query: ", "document": ""}, default_prompt_name="query").save(str(folder))
    ws_dir = _workspace(tmp_path / "ws")
    done = subprocess.run([sys.executable, "-m", "embridge.core.cli.main", "model", "add", "-w", str(ws_dir),
                           "--name", "p", "--path", str(folder)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "prompt" not in done.stderr.lower(), done.stderr


def test_one_folder_with_other_prompts_is_another_model(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Prompts change a text model's vectors, so the same folder added with other prompts is another
    model (comparing prompt choices is an upgrade of its own); added again as it is, it is refused."""
    folder = tiny_sentence_transformer(tmp_path / "st", prompts={"query": "query: ", "document": ""})
    ws_dir = _workspace(tmp_path / "ws")
    add = ["model", "add", "-w", str(ws_dir), "--path", str(folder)]
    assert main([*add, "--name", "prompted"]) == 0
    assert main([*add, "--name", "plain", "--query-prompt", ""]) == 0
    capfd.readouterr()
    assert main([*add, "--name", "again"]) == 1
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already in the workspace as model 'prompted'" in err[0]
    with Workspace.open(ws_dir) as ws:
        specs = {m["name"]: m["spec"] for m in ws.models()}
    assert sorted(specs) == ["plain", "prompted"]
    assert (specs["prompted"]["query_prompt"], specs["plain"]["query_prompt"]) == ("query: ", "")


def test_a_renamed_models_first_name_takes_the_same_folder_with_other_prompts(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """The stored copy is named by the model's first name and sha256; after a rename, adding the folder again
    under that name with other prompts failed with 'Directory not empty' (the two copies' names collided)."""
    folder = tiny_sentence_transformer(tmp_path / "st", prompts={"query": "query: ", "document": ""})
    ws_dir = _workspace(tmp_path / "ws")
    assert main(["model", "add", "-w", str(ws_dir), "--path", str(folder), "--name", "bow"]) == 0
    assert main(["model", "rename", "-w", str(ws_dir), "--name", "bow", "--to", "first"]) == 0
    assert main(["model", "add", "-w", str(ws_dir), "--path", str(folder), "--name", "bow",
                 "--query-prompt", "x: "]) == 0, capfd.readouterr().err
    with Workspace.open(ws_dir) as ws:
        rows = {m["name"]: m for m in ws.models()}
        assert rows["bow"]["file"] != rows["first"]["file"]
        assert (rows["first"]["spec"]["query_prompt"], rows["bow"]["spec"]["query_prompt"]) == ("query: ", "x: ")
    for name in ("first", "bow"):
        assert main(["embed", "-w", str(ws_dir), "--model", name]) == 0


@pytest.mark.parametrize("device", ["/dev/null", "/dev/zero"])
def test_a_link_to_a_device_in_a_model_folder_is_refused_before_any_copy(
        tmp_path: Path, capfd: pytest.CaptureFixture[str], device: str) -> None:
    """The folder's hash passed over it and the copy read it: /dev/null was stored as an empty file (the
    model DAMAGED from the moment it was added), /dev/zero was copied until the disk was full."""
    folder = tiny_sentence_transformer(tmp_path / "st")
    (folder / "notes.txt").symlink_to(device)
    line = _refused_at_add(tmp_path, capfd, folder)
    assert f"st/notes.txt: is a symbolic link to {device}, which is a device, not a regular file" in line


def test_a_stored_copy_is_not_restored_from_a_folder_linking_a_device(tmp_path: Path,
                                                                       capfd: pytest.CaptureFixture[str]) -> None:
    """The folder's hash passes over a link to a device, so the original still matches the model's sha256;
    restoring the damaged copy from it would copy /dev/zero without end. Refused as an add refuses it."""
    folder = tiny_sentence_transformer(tmp_path / "st")
    ws_dir = _workspace(tmp_path / "ws")
    assert main(["model", "add", "-w", str(ws_dir), "--path", str(folder), "--name", "bow"]) == 0
    with Workspace.open(ws_dir) as ws:
        stored = Path(ws.model("bow")["path"])
    shutil.rmtree(stored)
    (folder / "notes.txt").symlink_to("/dev/zero")
    capfd.readouterr()
    assert main(["model", "add", "-w", str(ws_dir), "--path", str(folder), "--name", "bow"]) == 1
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "st/notes.txt: is a symbolic link to /dev/zero, which is a device" in err[0]
    assert not stored.exists() and not [p for p in stored.parent.iterdir() if p.name.startswith(".tmp")]


def test_an_onnx_export_without_config_finds_its_position_table(tmp_path: Path,
                                                                capfd: pytest.CaptureFixture[str]) -> None:
    """An export with no config.json beside it and a tokenizer that states no limit: a text longer than
    the model's 64 positions failed its whole batch at embed ("the ONNX model fails on a batch of ...");
    the longest input that runs is found when the model opens and longer texts are truncated to it."""
    from text_fixtures import reference_embeddings, tiny_onnx

    folder = tiny_onnx(tmp_path / "onnx")
    assert not (folder / "config.json").exists()
    long_text = " ".join(["the old man and the sea"] * 20)  # 120 words: past the 64-row position table
    stored = _embedded_with_long_text(tmp_path, capfd, folder, long_text, ["long", "k1"])
    truncated = " ".join(long_text.split()[:62])  # 62 words + [CLS] and [SEP]: the 64 positions
    expected = reference_embeddings(tmp_path / "onnx-torch", [truncated, TEXTS[1]])
    np.testing.assert_allclose(stored, expected, atol=1e-4)


def test_a_vocabulary_without_its_unknown_token_is_one_line_at_add(tmp_path: Path,
                                                                  capfd: pytest.CaptureFixture[str]) -> None:
    """The tokenizer raised its own exception on the probe text: exit 3, 'unexpected Exception'."""
    from transformers import BertTokenizerFast

    folder = tiny_bert(tmp_path / "no_unk")
    words = [w for w in VOCAB if w != "[UNK]"]
    BertTokenizerFast(vocab={w: i for i, w in enumerate(words)}, unk_token="[UNK]").save_pretrained(str(folder))
    (folder / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    line = _refused_at_add(tmp_path, capfd, folder)
    assert "no_unk: the model cannot embed a probe text: " in line and "[UNK]" in line


def test_a_folder_that_cannot_be_copied_for_lack_of_space_is_one_short_line(tmp_path: Path) -> None:
    """A folder checkpoint copied onto a full disk printed shutil's list of every failed file (1.4 kB of
    tuples); it is one line naming the copy, the checkpoint and the first reason."""
    import resource
    import signal

    folder = tiny_bert(tmp_path / "bert")
    (folder / "README.md").write_bytes(b"#" * 4_000_000)  # a model card larger than the files may grow
    Workspace.create(tmp_path / "ws").close()

    def cap() -> None:  # files may not grow past 2 MB: the kernel's EFBIG, as a full disk's ENOSPC
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2_000_000, 2_000_000))

    got = subprocess.run([sys.executable, "-m", "embridge.core.cli.main", "model", "add", "--workspace",
                          str(tmp_path / "ws"), "--name", "tm", "--path", str(folder), "--role", "new"],
                         preexec_fn=cap, capture_output=True, text=True, timeout=300)
    lines = [line for line in got.stderr.splitlines() if line.startswith("embridge:")]
    assert got.returncode == 1 and len(lines) == 1, got.stderr
    assert f"cannot copy the checkpoint {folder} (" in lines[0] and "File too large" in lines[0]
    assert "[(" not in lines[0] and len(lines[0]) < 600, lines[0]
    assert not list((tmp_path / "ws" / "models").iterdir())  # nothing left of the copy


def test_a_null_prompt_in_the_folder_is_no_prompt(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """``"query": null`` was read as the prompt "None", put before every query."""
    folder = tiny_sentence_transformer(tmp_path / "st", prompts={"query": "q: ", "document": "passage: "})
    config = folder / "config_sentence_transformers.json"
    data = json.loads(config.read_text())
    data["prompts"]["query"] = None
    config.write_text(json.dumps(data))
    spec = describe_model(str(folder))
    assert (spec.to_dict()["query_prompt"], spec.to_dict()["document_prompt"]) == ("", "passage: ")
    data["prompts"]["query"] = 5
    config.write_text(json.dumps(data))
    ws_dir = _workspace(tmp_path / "ws")
    capfd.readouterr()
    assert main(["model", "add", "-w", str(ws_dir), "--path", str(folder), "--name", "m"]) == 1
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "prompt 'query' is int, not text" in err[0]


@pytest.mark.parametrize("role, prompt, what", [("document", "passage: \x00", "control character U+0000"),
                                                ("query", "query: \ud800", "lone surrogate U+D800")])
def test_a_folder_prompt_is_checked_as_the_prompt_options_are(tmp_path: Path, capfd: pytest.CaptureFixture[str],
                                                             role: str, prompt: str, what: str) -> None:
    """--query-prompt refused a control character, but the folder's own prompt was taken with it (put before every
    text) and a lone surrogate failed the probe with a tokenizer's type error."""
    folder = tiny_sentence_transformer(tmp_path / "st", prompts={"query": "q: ", "document": "passage: "})
    config = folder / "config_sentence_transformers.json"
    data = json.loads(config.read_text())
    data["prompts"][role] = prompt
    config.write_text(json.dumps(data))
    ws_dir = _workspace(tmp_path / "ws")
    before = table_dump(ws_dir)
    capfd.readouterr()
    assert main(["model", "add", "-w", str(ws_dir), "--path", str(folder), "--name", "m"]) == 1
    err = capfd.readouterr().err.strip().splitlines()
    assert err == [f"embridge: error: {config}: prompt '{role}' {prompt!r} holds the {what}; a prompt is plain text"]
    assert table_dump(ws_dir) == before


def test_folders_read_otherwise_than_the_model_means_are_refused(tmp_path: Path,
                                                                 capfd: pytest.CaptureFixture[str]) -> None:
    """A mean pooling that leaves the prompt out was computed over the prompt too; a folder holding an ONNX
    export beside transformers weights was read as the export; each is one line now."""
    from text_fixtures import tiny_onnx

    ws_dir = _workspace(tmp_path / "ws")
    bert = tiny_bert(tmp_path / "bert")
    (bert / "1_Pooling").mkdir()
    write_json(bert / "1_Pooling" / "config.json", {"pooling_mode": "mean", "include_prompt": False})
    both = tiny_bert(tmp_path / "both")
    shutil.copy(tiny_onnx(tmp_path / "onnx") / "model.onnx", both / "model.onnx")
    export = tmp_path / "onnx"
    capfd.readouterr()
    cases = [([str(bert), "--query-prompt", "query: "], "leaves the prompt's tokens out (include_prompt false)"),
             ([str(both)], "holds both an ONNX export and transformers weights"),
             ([str(export), "--kind", "transformers"], "the folder holds an ONNX export: add it with --kind onnx")]
    for i, (args, said) in enumerate(cases):
        assert main(["model", "add", "-w", str(ws_dir), "--name", f"m{i}", "--path", *args]) == 1
        err = capfd.readouterr().err.strip().splitlines()
        assert len(err) == 1 and said in err[0], err
    assert main(["model", "add", "-w", str(ws_dir), "--name", "b", "--path", str(both), "--kind", "transformers"]) == 0


def _ids_only_onnx(folder: Path, source: Path) -> Path:
    """``source`` (a transformers folder) exported taking ``input_ids`` alone: it cannot see which tokens
    are padding, so a text padded in a batch gets another vector than alone."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    class IdsOnly(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            return self.model(input_ids=input_ids).last_hidden_state

    folder.mkdir(parents=True)
    AutoTokenizer.from_pretrained(str(source)).save_pretrained(str(folder))
    axes = {0: "batch", 1: "tokens"}
    torch.onnx.export(IdsOnly(AutoModel.from_pretrained(str(source)).eval()), (torch.tensor([[2, 8, 9, 3]]),),
                      str(folder / "model.onnx"), dynamo=False, opset_version=17, input_names=["input_ids"],
                      output_names=["last_hidden_state"],
                      dynamic_axes={"input_ids": axes, "last_hidden_state": axes})
    return folder


def test_a_text_model_whose_vectors_follow_the_batch_is_refused_at_add(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """An image model giving an item another vector beside other items was refused at add; a text model was
    added, and its stored vectors changed with --batch-size (3.8e-3 for an ONNX graph without the attention
    mask, which sees the padding of the shorter texts)."""
    source = tiny_bert(tmp_path / "bert")
    (tmp_path / "a").mkdir()
    line = _refused_at_add(tmp_path / "a", capfd, _ids_only_onnx(tmp_path / "ids_only", source))
    assert "ids_only" in line and "another vector beside other items in its batch" in line
    assert "attention mask" in line
    describe_model(source)  # the model itself is added as before
