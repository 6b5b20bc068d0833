"""Tiny text model folders built from random weights and a vocabulary written here (nothing downloaded)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch

WORDS = ("the cat sat on a mat dog ran in park bird sang tree query passage represent this for retrieval "
         "fox jumped over lazy river flows to sea old man boat fish").split()
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ":", ",", ".", *WORDS]
TEXTS = ["the cat sat on the mat", "a dog", "the old man and the sea", "bird sang in a tree",
         "the quick fox jumped over the lazy dog in the park", "river flows", "fish",
         "a boat on the river flows to the sea, the old man sang"]


def tiny_bert(folder: Path, seed: int = 0, hidden: int = 16, layers: int = 1) -> Path:
    """A BERT (one layer unless told) with a written WordPiece vocabulary, saved as a plain transformers folder."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    # the vocabulary as a mapping: transformers 5 ignores a vocab_file given to the fast tokenizer (every
    # word would be [UNK]); saved, the folder still carries vocab.txt as a real BERT folder does
    tokenizer = BertTokenizerFast(vocab={word: i for i, word in enumerate(VOCAB)})
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=64)
    torch.manual_seed(seed)
    BertModel(config).eval().save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    return folder


def tiny_sentence_transformer(folder: Path, prompts: dict[str, str] | None = None, seed: int = 1,
                              pooling: str = "mean", normalize: bool = True) -> Path:
    """A sentence-transformers folder around :func:`tiny_bert`, with its own prompts when given."""
    from sentence_transformers import SentenceTransformer

    from embridge.core.demo_text import st_modules

    models = st_modules()
    bert = tiny_bert(folder.parent / f"{folder.name}-bert", seed=seed)
    transformer = models.Transformer(str(bert))
    dim = getattr(transformer, "get_embedding_dimension", None) or transformer.get_word_embedding_dimension
    modules = [transformer, models.Pooling(dim(), pooling)]
    if normalize:
        modules.append(models.Normalize())
    SentenceTransformer(modules=modules, device="cpu", prompts=prompts).save(str(folder))
    return folder


class _LastHidden(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def tiny_onnx(folder: Path, seed: int = 2) -> Path:
    """:func:`tiny_bert` exported to ``model.onnx`` (token states out) beside its tokenizer files."""
    from transformers import AutoModel, AutoTokenizer

    source = tiny_bert(folder.parent / f"{folder.name}-torch", seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    AutoTokenizer.from_pretrained(str(source)).save_pretrained(str(folder))
    model = AutoModel.from_pretrained(str(source)).eval()
    ids = torch.tensor([[2, 8, 9, 3], [2, 8, 3, 0]])
    mask = (ids != 0).long()
    axes = {0: "batch", 1: "tokens"}
    with warnings.catch_warnings():  # the exporter's tracer notes about transformers' Python branches
        warnings.simplefilter("ignore")
        torch.onnx.export(_LastHidden(model), (ids, mask), str(folder / "model.onnx"), dynamo=False,
                          opset_version=17, input_names=["input_ids", "attention_mask"],
                          output_names=["last_hidden_state"],
                          dynamic_axes={"input_ids": axes, "attention_mask": axes, "last_hidden_state": axes})
    return folder


def tiny_gpt2(folder: Path, padding_side: str = "left", seed: int = 3) -> Path:
    """A one-layer GPT-2 (absolute positions, a decoder: last-token pooling) whose word-level tokenizer adds
    no special tokens and pads on ``padding_side``, as many decoder embedding models ship."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2Model, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {word: i for i, word in enumerate(["<unk>", "<|endoftext|>", *WORDS, ":", ",", "."])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", eos_token="<|endoftext|>",
                                        pad_token="<|endoftext|>", padding_side=padding_side, model_max_length=64)
    torch.manual_seed(seed)
    model = GPT2Model(GPT2Config(vocab_size=len(vocab), n_embd=16, n_layer=1, n_head=2, n_positions=64,
                                 eos_token_id=1, bos_token_id=1))
    model.config.architectures = ["GPT2ForCausalLM"]
    model.eval().save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    return folder


def reference_embeddings(folder: Path, texts: list[str], pooling: str = "mean") -> np.ndarray:
    """Direct transformers computation, one text at a time (no padding at all)."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModel.from_pretrained(str(folder)).eval()
    rows = []
    with torch.no_grad():
        for text in texts:
            enc = tokenizer(text, return_tensors="pt")
            hidden = model(**enc).last_hidden_state[0]
            rows.append(hidden[0] if pooling == "cls" else hidden[-1] if pooling == "last" else hidden.mean(0))
    return torch.stack(rows).numpy()


def write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data), encoding="utf-8")
