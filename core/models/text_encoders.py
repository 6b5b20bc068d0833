"""Text encoders over the three folder layouts, with one interface: ``embed_texts(texts, prompt, ...)``.

Each encoder sorts a list of texts by length before batching, so a batch holds texts of similar
length and little compute goes to padding; rows come back in the caller's order. Transformers and
ONNX folders are tokenized once per call (no padding) and sorted by token count; sentence-transformers
folders are sorted by characters, as that library does itself. A prompt is prepended to every
text (sentence-transformers receives it as ``prompt=`` so its pooling can leave prompt tokens out
when the folder says so).

Libraries are imported lazily, after :func:`hub_offline`, and always with ``local_files_only``;
``trust_remote_code`` is never set (the folder checks in :mod:`embridge.core.models.text_folders` refuse
configs that would need it before any library sees the folder).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embridge.core.errors import CheckpointError
from embridge.core.extras import install_hint, installed
from embridge.core.models.checkpoint_reader import first_line
from embridge.core.models.onnx_checks import check_run_output, input_types, pick_outputs
from embridge.core.models.text_batches import TOKEN_BUDGET, length_batches
from embridge.core.models.text_cuts import CHARS_PER_TOKEN, clipped, drops_words, prompted
from embridge.core.models.text_folders import (
    check_onnx_folder,
    check_transformers_folder,
    hub_offline,
    length_setting,
    quiet_transformers,
    read_json,
)
from embridge.core.models.weight_checks import (
    check_vocabulary,
    config_problem,
    embedding_rows,
    load_checked_model,
    quiet_loading,
    tokenizer_error,
)

BatchDone = Callable[[int], None]
MISSING = "this is {what} model but the {package} package is not installed; " + install_hint("text")


def _need(package: str, module: str, what: str, folder: Path) -> None:

    if not installed(module):
        raise CheckpointError(folder, MISSING.format(what=what, package=package))


def pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Sentence vectors from token states: masked mean, the first token, or the last real token."""
    if mode == "cls":
        return hidden[:, 0]
    if mode == "last":
        last = mask.shape[1] - 1 - mask.flip(1).argmax(dim=1)  # right or left padding alike
        return hidden[torch.arange(hidden.shape[0]), last]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


def scatter_rows(parts: list[tuple[np.ndarray, np.ndarray]], total: int, source: Path) -> np.ndarray:
    """Batches back in item order; a model whose output width changes between batches is refused."""
    for idx, block in parts:
        if block.ndim != 2 or block.shape[0] != len(idx):
            raise CheckpointError(source, f"the model returned shape {tuple(block.shape)}; an embedder must "
                                  "return one (batch x dim) matrix")
    widths = sorted({int(block.shape[1]) for _, block in parts})
    if len(widths) > 1:
        raise CheckpointError(source, f"the model's output width changes with its input ({widths[0]} and "
                              f"{widths[-1]} for batches of different token lengths); an embedder must "
                              "return one width")
    dim = widths[0]
    out = np.empty((total, dim), dtype=np.float32)
    for idx, block in parts:
        out[idx] = block
    return out


# encoders whose position ids start after the padding index (RoBERTa's scheme): position i of a text
# is padding_idx + 1 + i, so pad_token_id + 1 rows of the table are never a text's (514 rows: 512 tokens)
PADDING_OFFSET_TYPES = frozenset({"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "longformer", "mpnet",
                                  "data2vec-text", "ibert", "luke", "roberta-prelayernorm", "xmod", "markuplm"})


def usable_positions(model_type: Any, positions: Any, pad_token_id: Any) -> int | None:
    """The longest input a position table of ``positions`` rows takes: fewer than its rows for the
    RoBERTa family, whose positions are counted from ``pad_token_id + 1`` (1 when unset)."""
    if not isinstance(positions, int) or isinstance(positions, bool):
        return None
    if str(model_type or "").lower() not in PADDING_OFFSET_TYPES:
        return positions
    pad = pad_token_id if isinstance(pad_token_id, int) and not isinstance(pad_token_id, bool) and pad_token_id >= 0 \
        else 1
    return max(positions - (pad + 1), 1)


def config_positions(config: Any) -> int | None:
    """``usable_positions`` of a transformers config object or a config.json mapping."""
    get = config.get if isinstance(config, dict) else (lambda key: getattr(config, key, None))
    return usable_positions(get("model_type"), get("max_position_embeddings"), get("pad_token_id"))


def token_limit(*limits: Any) -> int:
    """The longest input every limit allows: the tokenizer's length and the model's position table
    (values of 10⁶ and more mean "unset", as transformers writes them; 512 when none is set)."""
    usable = [int(v) for v in limits if isinstance(v, int | float) and not isinstance(v, bool) and 1 <= v < 1_000_000]
    return min(usable) if usable else 512


def _onnx_positions(folder: Path) -> int | None:
    """The position table of an export, from the config.json shipped beside it (checked by ``length_setting``)."""
    rows = length_setting(folder, "config.json", "max_position_embeddings")
    if rows is None:
        return None
    config = read_json(folder / "config.json")
    return config_positions({**(config if isinstance(config, dict) else {}), "max_position_embeddings": rows})


def refuse_tokenless(source: Path, texts: Sequence[str], ids: Sequence[Sequence[int]]) -> None:
    """Refuse texts that give no token (with their prompt): nothing to pool, so a pad's state that depends on the
    batch, or a failed reshape when such a text is alone in its batch."""
    empty = [i for i, row in enumerate(ids) if len(row) == 0]
    if empty:
        raise CheckpointError(source, f"the text {texts[empty[0]][:60]!r} gives no tokens with this tokenizer "
                              f"({len(empty)} such texts); give those items text it reads, or a prompt")


def unknown_only_rows(tokenizer: Any, ids: Sequence[Sequence[int]]) -> list[int]:
    """Rows read as nothing but unknown (and special) tokens: a tokenizer that does not match the model
    (a vocabulary of a handful of tokens) gives every text nearly the same vector, without an error."""
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is None:  # byte-level tokenizers know every text
        return []
    known_not = {unk, *tokenizer.all_special_ids}
    return [i for i, row in enumerate(ids) if len(row) and unk in row and set(row) <= known_not]


class _TokenizedEncoder:
    """Shared tokenizing, length bucketing and pooling of the transformers and ONNX encoders."""

    pooling = "mean"
    max_length = 512
    truncated = 0  # texts (prompt included) that reached max_length tokens and were cut there, since opened
    unknown_only = 0  # texts of which the tokenizer knew no word: only unknown and special tokens, since opened
    unknown_example = ""

    def __init__(self, folder: Path) -> None:
        from transformers import AutoTokenizer

        quiet_transformers()
        self.source = folder
        try:
            with quiet_loading():
                self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True,
                                                               trust_remote_code=False)
        except Exception as exc:  # tokenizer loading raises many types
            config_problem(folder)  # the tokenizer reads config.json too: name that file when it is the cause
            raise tokenizer_error(folder, exc) from exc
        if self.tokenizer.pad_token is None and self.tokenizer.eos_token is not None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # padding goes after the text, whatever side the folder's tokenizer pads on: a model with absolute
        # positions and no position ids passed would read a left-padded text at shifted positions, so its
        # vector would depend on the longest text in its batch. (An ONNX graph that pools by itself keeps the
        # folder's side: it may read the last position as the text's last token.)
        self.folder_padding_side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "right"

    def prompt_tokens(self, prompt: str) -> tuple[int, int]:
        """(tokens the prompt alone takes, special tokens included; tokens the model reads)."""
        return len(self.tokenizer(prompt, verbose=False)["input_ids"]), int(self.max_length)

    def _count_truncated(self, texts: Sequence[str], prompt: str, ids: list[list[int]]) -> None:
        """Texts that lost tokens to the limit: of those that fill it, the ones with a token beyond it; and
        those whose words the character cut before tokenizing left out without their tokens filling it
        (words over ``CHARS_PER_TOKEN`` characters long on average), which lost tokens all the same."""
        whole = prompted(texts, prompt)
        limit = CHARS_PER_TOKEN * max(int(self.max_length), 1)
        full = [i for i, row in enumerate(ids) if len(row) >= self.max_length]
        if full:
            longer = self.tokenizer(clipped([whole[i] for i in full], self.max_length + 1),
                                    truncation=True, max_length=self.max_length + 1)["input_ids"]
            self.truncated += sum(len(row) > self.max_length for row in longer)
        self.truncated += sum(len(row) < self.max_length and len(whole[i]) > limit and drops_words(whole[i], limit)
                              for i, row in enumerate(ids))

    def _count_unknown_only(self, texts: Sequence[str], ids: list[list[int]]) -> None:
        blind = unknown_only_rows(self.tokenizer, ids)
        if blind and not self.unknown_only:
            self.unknown_example = texts[blind[0]][:60]
        self.unknown_only += len(blind)

    def _limit(self, positions: int | None) -> int:
        return token_limit(self.tokenizer.model_max_length, positions)

    def _hidden(self, batch: dict[str, Any]) -> tuple[torch.Tensor, bool]:
        """Token states (batch x tokens x dim) and False, or pooled rows and True."""
        raise NotImplementedError

    def embed_texts(self, texts: Sequence[str], prompt: str, batch_size: int,
                    on_batch: BatchDone | None = None) -> np.ndarray:
        encoded = self.tokenizer(clipped(prompted(texts, prompt), self.max_length), truncation=True,
                                 max_length=self.max_length)
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in encoded]
        self._count_truncated(texts, prompt, encoded["input_ids"])
        # the texts' own tokens: a prompt's known words would hide a text the tokenizer cannot read
        own = self.tokenizer(clipped(texts, self.max_length), truncation=True, max_length=self.max_length)[
            "input_ids"] if prompt else encoded["input_ids"]
        self._count_unknown_only(texts, own)
        refuse_tokenless(self.source, texts, encoded["input_ids"])
        parts = []
        for idx in length_batches([len(ids) for ids in encoded["input_ids"]], batch_size, TOKEN_BUDGET):
            batch = self.tokenizer.pad({k: [encoded[k][i] for i in idx] for k in keys}, return_tensors="pt")
            with torch.inference_mode():
                out, pooled = self._hidden(dict(batch))
                rows = out if pooled else pool(out, batch["attention_mask"], self.pooling)
            parts.append((idx, rows.float().cpu().numpy()))
            if on_batch is not None:
                on_batch(len(idx))
        return scatter_rows(parts, len(texts), self.source)


class TransformersEncoder(_TokenizedEncoder):
    """A plain Hugging Face transformers folder: safetensors weights, pooled as chosen."""

    def __init__(self, folder: Path, device: str, pooling: str) -> None:
        check_transformers_folder(folder)
        _need("transformers", "transformers", "a transformers", folder)
        hub_offline()
        super().__init__(folder)
        self.model = load_checked_model(folder)
        self.rows = embedding_rows(self.model)
        check_vocabulary(folder, self.tokenizer, self.rows)
        self.model.eval().to(device)
        self.device = torch.device(device)
        self.pooling = pooling
        self.max_length = self._limit(config_positions(self.model.config))
        import inspect

        accepted = inspect.signature(self.model.forward).parameters
        self._takes_types = "token_type_ids" in accepted and getattr(self.model.config, "type_vocab_size", 1) > 0

    def parameters(self) -> Any:
        return self.model.parameters()

    def _hidden(self, batch: dict[str, Any]) -> tuple[torch.Tensor, bool]:
        top = int(batch["input_ids"].max()) if batch["input_ids"].numel() else 0
        if self.rows is not None and top >= self.rows:
            raise CheckpointError(self.source, f"token id {top} is beyond the model's embedding table "
                                  f"({self.rows} rows); the tokenizer does not belong to this model")
        inputs = {k: v.to(self.device) for k, v in batch.items()}
        if not self._takes_types:
            inputs.pop("token_type_ids", None)
        return self.model(**inputs).last_hidden_state, False


class OnnxEncoder(_TokenizedEncoder):
    """An ONNX export run by onnxruntime on the CPU: token states pooled as chosen, or its pooled output."""

    def __init__(self, folder: Path, pooling: str) -> None:
        model_file = check_onnx_folder(folder)
        _need("onnxruntime", "onnxruntime", "an ONNX", folder)
        _need("transformers", "transformers", "an ONNX", folder)
        hub_offline()
        super().__init__(folder)
        import onnxruntime

        try:
            options = onnxruntime.SessionOptions()
            options.log_severity_level = 4  # fatal only: a failed run is reported once, as one line, by _hidden
            self.session = onnxruntime.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise CheckpointError(model_file, f"cannot load the ONNX model ({first_line(exc)})") from exc
        self.source = model_file
        self.types = input_types(model_file, self.session.get_inputs())
        self.inputs = list(self.types)
        self.pooled_output, self.token_output = pick_outputs(model_file, self.session.get_outputs())
        if self.pooled_output is not None:  # the graph pools: it was exported for the folder's padding side
            self.tokenizer.padding_side = self.folder_padding_side
        self.pooling = pooling
        # an export has no config object: its position table is read from the config.json shipped beside it
        positions = _onnx_positions(folder)
        self.max_length = self._limit(positions)
        self._check_vocabulary()
        if positions is None:
            self._find_length()
        elif not self._runs(self.max_length):  # a config.json claiming more positions than the graph has
            raise CheckpointError(folder / "config.json", f"says the model reads {self.max_length} tokens, but "
                                  f"{model_file.name} fails on a text of {self.max_length} tokens; correct "
                                  "max_position_embeddings (or remove config.json to have the limit probed)")

    def _runs(self, length: int) -> bool:
        """Whether the graph runs on one text of ``length`` tokens."""
        try:
            self._hidden(_one_text(self._plain_token(), length))
        except CheckpointError:
            return False
        return True

    def _plain_token(self) -> int:
        """A token id any model of the tokenizer's vocabulary has: its unknown token, else 0."""
        return self.tokenizer.unk_token_id if isinstance(self.tokenizer.unk_token_id, int) else 0

    def _find_length(self) -> None:
        """An export without a config.json states no position table: it is run once at the length the
        tokenizer allows, and when that fails, the longest length that runs (found by halving the gap)
        becomes the limit, so a long text is truncated instead of failing the whole batch."""
        if self._runs(self.max_length):
            return
        works, fails = 2, self.max_length  # two tokens ran in the vocabulary check
        while fails - works > 1:
            middle = (works + fails) // 2
            works, fails = (middle, fails) if self._runs(middle) else (works, middle)
        self.max_length = works

    def _check_vocabulary(self) -> None:
        """Run the tokenizer's largest token id once, so a tokenizer larger than the model's embedding
        table is refused when the model is opened, not on the first text that uses such a token. When the
        graph fails on a plain token too, the graph is named as failing, not the tokenizer."""
        from embridge.core.models.weight_checks import tokenizer_size

        top = tokenizer_size(self.tokenizer) - 1
        try:
            self._hidden(_one_text(top, 2))
        except CheckpointError as exc:
            if exc.__cause__ is None:  # the run worked but its output is wrong: that error says so itself
                raise
            self._hidden(_one_text(self._plain_token(), 2))  # a graph failing on any token fails here, as itself
            raise CheckpointError(self.source, f"fails on token id {top}, the largest its tokenizer gives "
                                  f"({first_line(exc.__cause__)}); the tokenizer does not belong to this "
                                  "model") from exc

    def parameters(self) -> Any:
        return iter(())

    def _hidden(self, batch: dict[str, Any]) -> tuple[torch.Tensor, bool]:
        feeds = {}
        for name in self.inputs:
            value = batch.get(name)
            if value is None:  # token types the tokenizer does not produce: all zeros
                value = torch.zeros_like(batch["input_ids"])
            feeds[name] = value.numpy().astype(self.types[name])
        wanted = self.pooled_output or self.token_output
        try:
            (out,) = self.session.run([wanted], feeds)
            arr = np.asarray(out, dtype=np.float32)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise CheckpointError(self.source, f"the ONNX model fails on a batch of {len(batch['input_ids'])} "
                                  f"texts ({first_line(exc)})") from exc
        pooled = self.pooled_output is not None
        arr = check_run_output(self.source, wanted, arr, len(batch["input_ids"]), pooled)
        return torch.from_numpy(arr), pooled


def _one_text(token: int, length: int) -> dict[str, torch.Tensor]:
    """A probe batch: one text of ``length`` times the same token."""
    ids = torch.full((1, length), token, dtype=torch.long)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}


def open_text_encoder(kind: str, folder: Path, device: str, pooling: str | None) -> Any:
    if kind == "sentence_transformers":
        from embridge.core.models.text import open_sentence_transformer

        return open_sentence_transformer(folder, device)
    if kind == "transformers":
        return TransformersEncoder(folder, device, pooling or "mean")
    return OnnxEncoder(folder, pooling or "mean")
