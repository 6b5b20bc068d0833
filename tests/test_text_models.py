"""Text model folders as users have them: sentence-transformers, plain transformers, ONNX.

Every model is built here from random weights with a vocabulary written by the test, and every
embedding is checked against a direct transformers / sentence-transformers / onnxruntime computation.
"""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from text_fixtures import (
    TEXTS,
    reference_embeddings,
    tiny_bert,
    tiny_gpt2,
    tiny_onnx,
    tiny_sentence_transformer,
    write_json,
)

from embridge.core.cli.main import main
from embridge.core.embed import embed_array, embed_items
from embridge.core.errors import CheckpointError
from embridge.core.importers import import_items
from embridge.core.models import TextOptions, describe_model, load_model
from embridge.core.progress import StderrProgress
from embridge.core.store import Workspace

PROMPTS = {"query": "query: ", "document": "passage: "}


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("text-models")
    return {"bert": tiny_bert(root / "bert"),
            "st": tiny_sentence_transformer(root / "st"),
            "st_prompts": tiny_sentence_transformer(root / "st-prompts", prompts=PROMPTS, seed=3),
            "onnx": tiny_onnx(root / "onnx")}


@pytest.mark.parametrize("pooling", ["mean", "cls", "last"])
def test_transformers_folder_matches_a_direct_forward_pass(folders: dict[str, Path], pooling: str) -> None:
    spec = describe_model(folders["bert"], text=TextOptions(pooling=pooling))
    assert (spec.kind, spec.modality, spec.dim, spec.pooling) == ("transformers", "text", 16, pooling)
    got = embed_array(spec, TEXTS, batch_size=3, device="cpu")
    np.testing.assert_allclose(got, reference_embeddings(folders["bert"], TEXTS, pooling), atol=1e-5)


def test_transformers_folder_pools_by_mean_unless_the_config_says_decoder(folders: dict[str, Path],
                                                                        tmp_path: Path) -> None:
    assert describe_model(folders["bert"]).pooling == "mean"
    decoder = shutil.copytree(folders["bert"], tmp_path / "decoder")
    config = json.loads((decoder / "config.json").read_text())
    write_json(decoder / "config.json", {**config, "is_decoder": True})
    assert describe_model(decoder).pooling == "last"


@pytest.mark.parametrize("config", [{"pooling_mode_max_tokens": True, "pooling_mode_mean_tokens": False},
                                    {"pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": True},
                                    {"pooling_mode": "weightedmean"}, {"pooling_mode": "max"}])
def test_a_pooling_config_asking_for_a_mode_not_computed_is_refused(folders: dict[str, Path], tmp_path: Path,
                                                                   config: dict) -> None:
    """It was read as mean pooling: other vectors than the model's own, without a word."""
    folder = shutil.copytree(folders["bert"], tmp_path / "pooled")
    (folder / "1_Pooling").mkdir()
    write_json(folder / "1_Pooling" / "config.json", {"word_embedding_dimension": 16, **config})
    with pytest.raises(CheckpointError, match=r"1_Pooling/config\.json: asks for .*which Embridge does not compute"):
        describe_model(folder)
    assert describe_model(folder, text=TextOptions(pooling="mean")).pooling == "mean"  # chosen knowingly
    write_json(folder / "1_Pooling" / "config.json", {"pooling_mode_cls_token": True, "pooling_mode_max_tokens": False})
    assert describe_model(folder).pooling == "cls"


def test_a_decoder_padded_on_the_left_gives_each_text_its_own_vector(tmp_path: Path) -> None:
    """A GPT-2 tokenizer padding on the left shifted a text's absolute positions by its batch's longest text:
    vectors differed by up to 3 between batch sizes 1 and 32. Padding now goes after the text."""
    folder = tiny_gpt2(tmp_path / "gpt2-left", padding_side="left")
    spec = describe_model(folder)
    assert spec.pooling == "last"
    together = embed_array(spec, TEXTS, batch_size=len(TEXTS), device="cpu")
    np.testing.assert_allclose(together, embed_array(spec, TEXTS, batch_size=1, device="cpu"), atol=1e-5)
    np.testing.assert_allclose(together, reference_embeddings(folder, TEXTS, "last"), atol=1e-5)


def test_an_onnx_graph_that_pools_the_last_position_keeps_its_tokenizers_left_padding(tmp_path: Path) -> None:
    """A decoder export whose graph returns the last position's state (positions from the mask), shipped with a
    left-padding tokenizer: padded on the right, every shorter text of a batch got a pad's state (2.8 apart)."""
    import warnings

    from transformers import AutoModel, AutoTokenizer

    source = tiny_gpt2(tmp_path / "gpt2", padding_side="left")
    model = AutoModel.from_pretrained(str(source)).eval()

    class LastPosition(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              position_ids=positions).last_hidden_state[:, -1, :]

    folder = tmp_path / "onnx-left"
    folder.mkdir()
    AutoTokenizer.from_pretrained(str(source)).save_pretrained(str(folder))
    axes = {0: "batch", 1: "tokens"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(LastPosition(), (torch.tensor([[1, 2, 3, 4], [1, 1, 2, 3]]),
                                           torch.tensor([[1, 1, 1, 1], [0, 1, 1, 1]])),
                          str(folder / "model.onnx"), dynamo=False, opset_version=17,
                          input_names=["input_ids", "attention_mask"], output_names=["sentence_embedding"],
                          dynamic_axes={"input_ids": axes, "attention_mask": axes, "sentence_embedding": {0: "batch"}})
    spec = describe_model(folder)
    together = embed_array(spec, TEXTS, batch_size=len(TEXTS), device="cpu")
    np.testing.assert_allclose(together, embed_array(spec, TEXTS, batch_size=1, device="cpu"), atol=1e-5)
    # the graph pools: no pooling is recorded, and one asked for is refused (it was recorded and ignored)
    assert spec.pooling is None
    with pytest.raises(CheckpointError, match=r"this ONNX export pools inside its graph \(its output "
                                              r"sentence_embedding\); pooling applies to exports of token states"):
        describe_model(folder, text=TextOptions(pooling="cls"))


def test_a_text_that_gives_no_tokens_is_refused_naming_it(tmp_path: Path) -> None:
    """A tokenizer without special tokens reads nothing in a text of spaces: there is no token to pool (a
    failed reshape alone, a pad's state beside longer texts)."""
    spec = describe_model(tiny_gpt2(tmp_path / "gpt2", padding_side="right"))
    for batch_size in (1, 8):
        with pytest.raises(CheckpointError, match=r"the text '   ' gives no tokens with this tokenizer \(1 such"):
            embed_array(spec, [*TEXTS[:3], "   "], batch_size=batch_size, device="cpu")


@pytest.mark.parametrize("name", ["bert", "onnx"])
def test_a_prompt_of_few_tokens_that_fills_the_cut_before_tokenizing_is_refused(folders: dict[str, Path],
                                                                              name: str) -> None:
    """One 5,000-character word is three tokens, but the cut before tokenizing (64 characters a token) then
    left nothing of any query: every query got one vector, refused only when embedding ended."""
    with pytest.raises(CheckpointError, match=r"the query prompt 'x{37}\.\.\.' alone is 5,000 characters \(spaces "
                                              r"left out\) and a text is cut at 4,096 before it is tokenized"):
        describe_model(folders[name], text=TextOptions(query_prompt="x" * 5000 + " "))


@pytest.mark.parametrize("name", ["bert", "st", "onnx"])
def test_a_prompt_that_fills_most_of_what_the_model_reads_is_refused(folders: dict[str, Path], name: str) -> None:
    """A 65-word document prompt on a 64-token model: every document was cut to its prompt and got one vector."""
    long = "represent this passage for retrieval " * 13
    with pytest.raises(CheckpointError, match=r"the document prompt 'represent this passage for retrieval \.\.\.' "
                                              r"alone is \d+ tokens and the model reads 64"):
        describe_model(folders[name], text=TextOptions(document_prompt=long))
    assert describe_model(folders[name], text=TextOptions(document_prompt="passage: ")).document_prompt == "passage: "


@pytest.mark.parametrize("name", ["bert", "st"])
def test_a_second_weights_file_beside_the_one_read_is_refused(folders: dict[str, Path], tmp_path: Path,
                                                              name: str) -> None:
    """A fine-tuned copy dropped beside model.safetensors was ignored: the vectors came from the other file."""
    folder = shutil.copytree(folders[name], tmp_path / f"{name}-two")
    weights = next(p for p in folder.rglob("model.safetensors"))
    shutil.copy(weights, weights.parent / "model-finetuned.safetensors")
    with pytest.raises(CheckpointError, match=r"model-finetuned\.safetensors: is a weights file transformers does "
                                              r"not read \(it reads model\.safetensors\)"):
        describe_model(folder)
    (weights.parent / "model-finetuned.safetensors").unlink()
    assert describe_model(folder).dim == 16


def test_sharded_weights_are_read_and_a_whole_file_beside_them_is_named(folders: dict[str, Path],
                                                                       tmp_path: Path) -> None:
    """transformers reads model.safetensors when there is one and ignores the index: the shards are named."""
    from transformers import AutoModel

    folder = tmp_path / "sharded"
    AutoModel.from_pretrained(str(folders["bert"])).save_pretrained(str(folder), max_shard_size="4KB")
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (folders["bert"] / name).is_file():
            shutil.copy(folders["bert"] / name, folder / name)
    shards = sorted(p.name for p in folder.glob("model-*.safetensors"))
    assert len(shards) > 1 and (folder / "model.safetensors.index.json").is_file()
    assert describe_model(folder).dim == 16
    shutil.copy(folders["bert"] / "model.safetensors", folder / "model.safetensors")
    with pytest.raises(CheckpointError, match=rf"{shards[0]}: is a weights file transformers does not read "
                                              r"\(it reads model\.safetensors\)"):
        describe_model(folder)


def test_an_onnx_config_claiming_more_positions_than_the_graph_has_is_refused(folders: dict[str, Path],
                                                                             tmp_path: Path) -> None:
    """config.json said 512 positions for a graph of 64: model add passed and embed failed on the first long
    text, naming the stored copy and no length. The graph now runs once at the configured limit."""
    folder = shutil.copytree(folders["onnx"], tmp_path / "onnx-512")
    write_json(folder / "config.json", {"model_type": "bert", "max_position_embeddings": 512})
    with pytest.raises(CheckpointError, match=r"onnx-512/config\.json: says the model reads 512 tokens, but "
                                              r"model\.onnx fails on a text of 512 tokens"):
        describe_model(folder)
    write_json(folder / "config.json", {"model_type": "bert", "max_position_embeddings": 64})
    assert describe_model(folder).dim == 16


@pytest.mark.parametrize("name", ["bert", "st", "onnx"])
def test_embeddings_do_not_depend_on_batch_size_or_order(folders: dict[str, Path], name: str) -> None:
    model = load_model(folders[name], "cpu")
    one_by_one = embed_array(model, TEXTS, batch_size=1, device="cpu")
    together = embed_array(model, TEXTS, batch_size=64, device="cpu")
    order = np.random.default_rng(0).permutation(len(TEXTS))
    shuffled = embed_array(model, [TEXTS[i] for i in order], batch_size=3, device="cpu")
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)
    np.testing.assert_allclose(shuffled, one_by_one[order], atol=1e-5)
    assert np.linalg.norm(one_by_one - one_by_one[::-1], axis=1).max() > 1e-3  # texts really differ


def test_sentence_transformers_folder_matches_its_own_encode(folders: dict[str, Path]) -> None:
    from sentence_transformers import SentenceTransformer

    spec = describe_model(folders["st"])
    assert (spec.kind, spec.dim, spec.query_prompt, spec.document_prompt) == ("sentence_transformers", 16, "", "")
    reference = SentenceTransformer(str(folders["st"]), device="cpu").encode(TEXTS, convert_to_numpy=True)
    got = embed_array(spec, TEXTS, batch_size=2, device="cpu")
    np.testing.assert_allclose(got, reference, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)  # its Normalize module ran


def test_onnx_folder_matches_onnxruntime_and_torch(folders: dict[str, Path]) -> None:
    import onnxruntime
    from transformers import AutoTokenizer

    spec = describe_model(folders["onnx"])
    assert (spec.kind, spec.dim, spec.pooling) == ("onnx", 16, "mean")
    got = embed_array(spec, TEXTS, batch_size=3, device="cpu")
    session = onnxruntime.InferenceSession(str(folders["onnx"] / "model.onnx"), providers=["CPUExecutionProvider"])
    tokenizer = AutoTokenizer.from_pretrained(str(folders["onnx"]))
    direct = []
    for text in TEXTS:
        ids = np.asarray([tokenizer(text)["input_ids"]], dtype=np.int64)
        (hidden,) = session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})
        direct.append(hidden[0].mean(axis=0))
    np.testing.assert_allclose(got, np.stack(direct), atol=1e-5)
    np.testing.assert_allclose(got, reference_embeddings(folders["onnx"].parent / "onnx-torch", TEXTS), atol=1e-4)


def _gallery_with_model(tmp_path: Path, texts: list[str], name: str, folder: Path,
                        capsys: pytest.CaptureFixture[str]) -> list[str]:
    """A workspace of ``texts`` as gallery items (keys d0, d1, ...) and the model ``folder`` added as ``name``;
    the ``--workspace`` arguments for further commands."""
    root = tmp_path / "ws"
    Workspace.create(root).close()
    file = tmp_path / "docs.jsonl"
    file.write_text("".join(json.dumps({"key": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    w = ["--workspace", str(root)]
    assert main(["import", *w, "--path", str(file), "--format", "jsonl", "--split", "gallery"]) == 0
    assert main(["model", "add", *w, "--name", name, "--path", str(folder)]) == 0
    capsys.readouterr()
    return w


def _text_workspace(root: Path) -> Workspace:
    ws = Workspace.create(root)
    for split, texts in (("gallery", TEXTS[:5]), ("query", TEXTS[5:])):
        file = root.parent / f"{root.name}-{split}.jsonl"
        file.write_text("".join(json.dumps({"key": f"{split}-{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
        import_items(ws, file, "jsonl", split=split)
    return ws


def test_prompts_are_the_models_own_and_applied_by_split(folders: dict[str, Path], tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    folder = folders["st_prompts"]
    spec = describe_model(folder, name="e5ish")
    assert (spec.query_prompt, spec.document_prompt) == ("query: ", "passage: ")
    ws = _text_workspace(tmp_path / "ws")
    ws.add_model("e5ish", "new", spec.to_dict(), folder)
    ids = ws.item_ids()
    embed_items(ws, "e5ish", ids, batch_size=2, device="cpu")
    vectors = ws.vectors_for("e5ish", ids)
    rows = {it["key"]: vectors[k] for k, it in enumerate(ws.items(ids=ids))}
    st = SentenceTransformer(str(folder), device="cpu")
    queries, docs = TEXTS[5:], TEXTS[:5]
    with_query = st.encode(queries, prompt="query: ")
    with_doc = st.encode(docs, prompt="passage: ")
    np.testing.assert_allclose(np.stack([rows[f"query-{i}"] for i in range(len(queries))]), with_query, atol=1e-5)
    np.testing.assert_allclose(np.stack([rows[f"gallery-{i}"] for i in range(len(docs))]), with_doc, atol=1e-5)
    bare = st.encode(queries, prompt="")
    assert np.abs(with_query - bare).max() > 1e-2  # the prompt changes the vectors
    ws.close()


def test_model_add_sets_prompts_and_pooling_from_the_command_line(folders: dict[str, Path], tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    ws_dir = tmp_path / "ws"
    _text_workspace(ws_dir).close()
    assert main(["model", "add", "-w", str(ws_dir), "--name", "plain", "--path", str(folders["st_prompts"]),
                 "--query-prompt", "", "--document-prompt", "Represent this for retrieval: ", "--json"]) == 0
    added = json.loads(capsys.readouterr().out)
    assert (added["query_prompt"], added["document_prompt"]) == ("", "Represent this for retrieval: ")
    assert main(["model", "add", "-w", str(ws_dir), "--name", "cls", "--path", str(folders["bert"]),
                 "--pooling", "cls", "--query-prompt", "query: "]) == 0
    assert 'query prompt "query: ", cls pooling' in capsys.readouterr().out
    with Workspace.open(ws_dir) as ws:
        assert ws.model("plain")["spec"]["document_prompt"] == "Represent this for retrieval: "
        assert ws.model("cls")["spec"]["pooling"] == "cls"
        embed_items(ws, "cls", ws.item_ids("query"), device="cpu")
        vectors = ws.vectors_for("cls", ws.item_ids("query"))
    prompted = reference_embeddings(folders["bert"], [f"query: {t}" for t in TEXTS[5:]], "cls")
    np.testing.assert_allclose(vectors, prompted, atol=1e-5)


@pytest.mark.parametrize(("option", "prompt", "named"), [("--query-prompt", "query:\x01 ", "control character U+0001"),
                                                        ("--document-prompt", "doc\x00", "control character U+0000")])
def test_a_prompt_holding_a_control_character_is_refused(folders: dict[str, Path], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str], option: str,
                                                         prompt: str, named: str) -> None:
    """A prompt goes before every text, where item texts may not hold such a character either."""
    ws_dir = tmp_path / "ws"
    _text_workspace(ws_dir).close()
    capsys.readouterr()
    assert main(["model", "add", "-w", str(ws_dir), "--name", "p", "--path", str(folders["st_prompts"]),
                 option, prompt]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{option}: {prompt[:40]!r} holds the {named}; a prompt is plain text" in err
    with Workspace.open(ws_dir) as ws:
        assert ws.models() == []


def test_prompts_travel_in_bundle_manifests(folders: dict[str, Path], tmp_path: Path) -> None:
    from embridge.core.bundle.contents import model_entry
    from embridge.core.bundle.readme import prompt_notes

    ws = _text_workspace(tmp_path / "ws")
    ws.add_model("e5ish", "new", describe_model(folders["st_prompts"]).to_dict(), folders["st_prompts"])
    entry = model_entry(ws, "e5ish")
    assert (entry["spec"]["query_prompt"], entry["spec"]["document_prompt"]) == ("query: ", "passage: ")
    notes = prompt_notes({"new": entry, "old": {"name": "old", "spec": {"query_prompt": ""}}})
    assert len(notes) == 1 and '`"query: " + text`' in notes[0] and '`"passage: " + text`' in notes[0]
    # a line break, a tab or a backtick in a prompt is written escaped, as a reader must type it
    (odd,) = prompt_notes({"new": {"name": "n", "spec": {"query_prompt": "Represent\tthis `q`\nfor: "}}})
    assert '`` "Represent\\tthis `q`\\nfor: " + text ``' in odd and "\n" not in odd
    # a pooling Embridge applies is named too: another library's default (mean) would mis-embed a cls model
    ws.add_model("bert", "old", describe_model(folders["bert"], text=TextOptions(pooling="cls")).to_dict(),
                 folders["bert"])
    (old,) = prompt_notes({"old": model_entry(ws, "bert")})
    assert old.startswith("The old model **bert** pools by cls: a text's vector is its first token's state;")
    ws.close()


def test_a_prompt_with_a_line_break_keeps_the_summary_on_one_line() -> None:
    from embridge.core.prompts import prompts_text

    assert prompts_text({"query_prompt": "line1\nline2\t", "pooling": "cls"}) == \
        'query prompt "line1\\nline2\\t", cls pooling'


def test_embedding_progress_reports_items_per_second_and_eta(folders: dict[str, Path], tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    ws = _text_workspace(tmp_path / "ws")
    ws.add_model("bert", "old", describe_model(folders["bert"]).to_dict(), folders["bert"])
    seen: list[tuple[int, int, dict]] = []
    embed_items(ws, "bert", ws.item_ids(), batch_size=2, device="cpu",
                on_progress=lambda done, total, info: seen.append((done, total, dict(info))))
    ws.close()
    batches = [s for s in seen if "items_per_s" in s[2]]
    assert len(batches) == 5 and batches[-1][0] == batches[-1][1] == len(TEXTS)  # queries 2+1, gallery 2+2+1
    assert all(info["items_per_s"] > 0 and info["eta_s"] >= 0 for _, _, info in batches)
    StderrProgress("embed bert", min_interval=0)(4, 8, {"items_per_s": 250.0, "eta_s": 75.0})
    assert "4/8 (50%) 250 items/s, ETA 1:15" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["bert", "onnx"])
def test_embed_says_how_many_texts_reached_the_token_limit(folders: dict[str, Path], tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str], name: str) -> None:
    """Truncation was silent: two documents of 100 words on a 64-token model are counted, the short ones not; a
    text of 1,000 words of 102 characters, cut before tokenizing (64 characters per token), kept 41 of them,
    fewer tokens than the 64 the model reads, and was not counted. Three 2,000-character words, the last cut inside, lose no token."""
    # 100+ words twice, and one text of exactly 64 tokens with [CLS] and [SEP]: it fills the limit, loses nothing
    texts = [*TEXTS[:3], " ".join(["the cat sat on the mat"] * 17), " ".join(["a dog ran"] * 34), "fish " * 62,
             " ".join(["y" * 102] * 1000), " ".join(["x" * 2000] * 3)]
    w = _gallery_with_model(tmp_path, texts, name, folders[name], capsys)
    assert main(["embed", *w, "--model", name, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["truncated"], out["token_limit"]) == (3, 64)
    assert main(["embed", *w, "--model", name]) == 0  # nothing embedded again: nothing to say about lengths
    assert "longer than the model reads" not in capsys.readouterr().out


def test_a_resumed_embed_says_its_text_counts_cover_the_rows_it_embedded(
        folders: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Resumed after the first chunk, the summary said '1 texts were longer than the model reads' for every item,
    where the interrupted run had cut others; the encoder of this run saw only the rows it embedded."""
    from embridge.core.embed_summary import embed_summary
    from embridge.core.errors import Cancelled

    texts = [" ".join(["the cat sat on the mat"] * 17), *TEXTS[:3], " ".join(["a dog ran"] * 34)]
    w = _gallery_with_model(tmp_path, texts, "bert", folders["bert"], capsys)
    done: list[int] = [0]
    with Workspace.open(w[1]) as ws:
        ids = ws.item_ids()
        with pytest.raises(Cancelled):  # stopped inside the second chunk: the first chunk's two items are stored
            embed_items(ws, "bert", ids, chunk_size=2, batch_size=1, device="cpu",
                        on_progress=lambda n, total, info: done.append(n), should_stop=lambda: done[-1] >= 3)
        info = embed_items(ws, "bert", ids, chunk_size=2, batch_size=1, device="cpu")
    assert (info["truncated"], info["texts_counted"]) == (1, 3)  # the first long text was the interrupted run's
    assert "; 1 texts of the 3 this run embedded (the interrupted run it resumed counted its own) were longer" in (
        embed_summary("bert", info))


def test_nothing_is_downloaded(folders: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    for name in ("bert", "st_prompts", "onnx"):
        assert describe_model(folders[name]).dim == 16


# -- folders that cannot be used -----------------------------------------------------------------

def _broken(folders: dict[str, Path], tmp_path: Path, source: str, change: str) -> Path:
    folder = shutil.copytree(folders[source], tmp_path / f"{source}-{change}")
    if change == "no-weights":
        (folder / "model.safetensors").unlink()
    elif change == "no-tokenizer":
        for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
            (folder / name).unlink(missing_ok=True)
    elif change == "auto-map":
        config = json.loads((folder / "config.json").read_text())
        write_json(folder / "config.json", {**config, "auto_map": {"AutoModel": "modeling_evil.EvilModel"}})
    elif change == "custom-module":
        modules = json.loads((folder / "modules.json").read_text())
        modules[1]["type"] = "evil_package.pooling.Pooling"
        write_json(folder / "modules.json", modules)
    elif change == "module-folder-gone":
        shutil.rmtree(folder / "1_Pooling")
    elif change == "no-onnx":
        (folder / "model.onnx").unlink()
    elif change == "no-onnx-beside-config":  # an export ships its model's config.json beside the tokenizer
        (folder / "model.onnx").unlink()
        write_json(folder / "config.json", {"model_type": "bert"})
    elif change == "empty-onnx-folder":
        (folder / "model.onnx").unlink()
        (folder / "onnx").mkdir()
    return folder


@pytest.mark.parametrize(("source", "change", "message"), [
    ("bert", "no-weights", r"bert-no-weights: no weights: neither model\.safetensors \(a transformers folder\) nor "
                           r"model\.onnx \(an ONNX export\) is there"),
    ("onnx", "no-onnx-beside-config", r"no-onnx-beside-config: no weights: neither model\.safetensors .* nor "
                                      r"model\.onnx"),
    ("onnx", "empty-onnx-folder", r"empty-onnx-folder: no model\.onnx \(looked for model\.onnx and onnx/model\.onnx\)"),
    ("bert", "no-tokenizer", r"bert-no-tokenizer: no tokenizer files"),
    ("bert", "auto-map", r"config\.json: the model asks for remote code \(auto_map\); Embridge never runs code"),
    ("st", "custom-module", r"modules\.json: names a non-standard module 'evil_package\.pooling\.Pooling'"),
    ("st", "module-folder-gone", r"modules\.json: module 'Pooling' is missing its folder '1_Pooling'"),
    ("st", "auto-map", r"config\.json: the model asks for remote code"),
    ("onnx", "no-tokenizer", r"onnx-no-tokenizer: no tokenizer files"),
])
def test_unusable_folders_give_one_clear_line(folders: dict[str, Path], tmp_path: Path, source: str, change: str,
                                             message: str, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _broken(folders, tmp_path, source, change)
    with pytest.raises(CheckpointError, match=message):
        describe_model(folder)
    ws_dir = tmp_path / "ws"
    Workspace.create(ws_dir).close()
    assert main(["model", "add", "-w", str(ws_dir), "--name", "m", "--path", str(folder)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("embridge: error: ")
    with Workspace.open(ws_dir) as ws:
        assert ws.models() == []


def test_onnx_kind_without_a_model_file_and_options_for_other_kinds(folders: dict[str, Path],
                                                                    tmp_path: Path) -> None:
    folder = _broken(folders, tmp_path, "onnx", "no-onnx")
    with pytest.raises(CheckpointError, match=r"no model\.onnx \(looked for model\.onnx and onnx/model\.onnx\)"):
        describe_model(folder, kind="onnx")
    with pytest.raises(CheckpointError, match="pools as its own modules say"):
        describe_model(folders["st"], text=TextOptions(pooling="cls"))
    with pytest.raises(CheckpointError, match="unknown pooling 'max'"):
        describe_model(folders["bert"], text=TextOptions(pooling="max"))
    module = torch.nn.Linear(4, 3)
    file = tmp_path / "lin.pt"
    torch.jit.save(torch.jit.script(module), str(file))
    with pytest.raises(CheckpointError, match="a query prompt applies to text models only, this is torchscript"):
        describe_model(file, input_shape=(4,), text=TextOptions(query_prompt="query: "))


def test_the_tiny_models_tokenize_their_words(tmp_path: Path) -> None:
    """The fixtures' vocabulary is the tokenizer's: its words are tokens, not [UNK]."""
    from text_fixtures import VOCAB, tiny_bert
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert(tmp_path / "bert")))
    assert len(tokenizer) == len(VOCAB)
    assert tokenizer("the cat sat")["input_ids"] == [VOCAB.index(t) for t in ("[CLS]", "the", "cat", "sat", "[SEP]")]


@pytest.mark.parametrize("name", ["bert", "onnx", "st", "st_prompts"])
def test_embed_says_how_many_texts_the_tokenizer_read_as_unknown_only(folders: dict[str, Path], tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str],
                                                                       name: str) -> None:
    """A tokenizer that knows none of a text's words (a mismatched or broken vocabulary) gave vectors of no
    meaning without a word: texts of words outside the vocabulary are counted, the others not."""
    texts = [*TEXTS[:3], "zebra quokka", "xylophone"]  # the last two: no word of the written vocabulary
    w = _gallery_with_model(tmp_path, texts, name, folders[name], capsys)
    assert main(["embed", *w, "--model", name, "--json"]) == 0
    out, err = capsys.readouterr()
    data = json.loads(out)  # a script sees the count, and a person the warning on stderr
    assert (data["unknown_only"], data["unknown_example"]) == (2, "zebra quokka"), data
    assert "the tokenizer knew no word of 2 texts (e.g. 'zebra quokka': unknown tokens only)" in err, err


def test_a_prompt_of_known_words_does_not_hide_texts_the_tokenizer_cannot_read(folders: dict[str, Path],
                                                                              tmp_path: Path,
                                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """The count ran on the prompted tokens: 'passage:' is in the vocabulary, so no text of a model with a
    prompt (e5, bge) was ever counted ("st_prompts" above is the sentence-transformers case)."""
    texts = [*TEXTS[:3], "zebra quokka", "xylophone"]
    w = _gallery_with_model(tmp_path, texts, "plain", folders["bert"], capsys)
    assert main(["model", "add", *w, "--name", "prompted", "--path", str(folders["bert"]), "--document-prompt",
                 "passage: "]) == 0
    capsys.readouterr()
    assert main(["embed", *w, "--model", "prompted", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["unknown_only"], data["unknown_example"]) == (2, "zebra quokka"), data


def test_a_sentence_transformers_text_that_gives_no_tokens_is_refused_at_any_batch_size(tmp_path: Path) -> None:
    """Beside other texts it got the pad's state as its vector; alone in its batch, 'unexpected RuntimeError'
    (exit 3). The transformers and ONNX paths already refused it."""
    from sentence_transformers import SentenceTransformer

    from embridge.core.demo_text import st_modules

    models = st_modules()
    transformer = models.Transformer(str(tiny_gpt2(tmp_path / "gpt2", padding_side="right")))
    folder = tmp_path / "st-gpt2"
    SentenceTransformer(modules=[transformer, models.Pooling(16, "lasttoken")], device="cpu").save(str(folder))
    spec = describe_model(folder)
    for batch_size in (1, 8):
        with pytest.raises(CheckpointError, match=r"the text '   ' gives no tokens with this tokenizer \(1 such"):
            embed_array(spec, [*TEXTS[:3], "   "], batch_size=batch_size, device="cpu")
    # a prompt gives tokens, but a pooling that leaves it out pools the text's own: none, an all-zero vector
    prompted = tmp_path / "st-gpt2-prompted"
    SentenceTransformer(modules=[transformer, models.Pooling(16, "mean", include_prompt=False)], device="cpu",
                        prompts={"query": "query: ", "document": "passage: "}).save(str(prompted))
    with pytest.raises(CheckpointError, match=r"the text '' gives no tokens with this tokenizer \(1 such"):
        embed_array(describe_model(prompted), [*TEXTS[:3], ""], batch_size=1, device="cpu", role="document")
