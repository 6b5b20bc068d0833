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
from embridge.core.models.checkpoint_reader import first_line
from embridge.core.models.text_folders import (
    check_onnx_folder,
    check_transformers_folder,
    hub_offline,
    quiet_transformers,
)

BatchDone = Callable[[int], None]
MISSING = "this is a {what} model but the {package} package is not installed; install it with: " \
          "pip install 'embridge[text]'"


def _need(package: str, module: str, what: str, folder: Path) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise CheckpointError(folder, MISSING.format(what=what, package=package))


def prompted(texts: Sequence[str], prompt: str) -> list[str]:
    return [prompt + t for t in texts] if prompt else list(texts)


def length_order(lengths: Sequence[int]) -> np.ndarray:
    """Indices longest first (stable), so each batch pads to a similar length."""
    return np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")


def pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Sentence vectors from token states: masked mean, the first token, or the last real token."""
    if mode == "cls":
        return hidden[:, 0]
    if mode == "last":
        last = mask.shape[1] - 1 - mask.flip(1).argmax(dim=1)  # right or left padding alike
        return hidden[torch.arange(hidden.shape[0]), last]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


def scatter_rows(parts: list[tuple[np.ndarray, np.ndarray]], total: int) -> np.ndarray:
    dim = parts[0][1].shape[1]
    out = np.empty((total, dim), dtype=np.float32)
    for idx, block in parts:
        out[idx] = block
    return out


class _TokenizedEncoder:
    """Shared tokenizing, length bucketing and pooling of the transformers and ONNX encoders."""

    pooling = "mean"
    max_length = 512

    def __init__(self, folder: Path) -> None:
        from transformers import AutoTokenizer

        quiet_transformers()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True,
                                                           trust_remote_code=False)
        except Exception as exc:  # tokenizer loading raises many types
            raise CheckpointError(folder, f"cannot load the tokenizer ({first_line(exc)})") from exc
        if self.tokenizer.pad_token is None and self.tokenizer.eos_token is not None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    def _limit(self, positions: int | None) -> int:
        limits = [int(v) for v in (self.tokenizer.model_max_length, positions) if v and v < 1_000_000]
        return min(limits) if limits else 512

    def _hidden(self, batch: dict[str, Any]) -> tuple[torch.Tensor, bool]:
        """Token states (batch x tokens x dim) and False, or pooled rows and True."""
        raise NotImplementedError

    def embed_texts(self, texts: Sequence[str], prompt: str, batch_size: int,
                    on_batch: BatchDone | None = None) -> np.ndarray:
        encoded = self.tokenizer(prompted(texts, prompt), truncation=True, max_length=self.max_length)
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in encoded]
        order = length_order([len(ids) for ids in encoded["input_ids"]])
        parts = []
        for start in range(0, len(texts), batch_size):
            idx = order[start:start + batch_size]
            batch = self.tokenizer.pad({k: [encoded[k][i] for i in idx] for k in keys}, return_tensors="pt")
            with torch.inference_mode():
                out, pooled = self._hidden(dict(batch))
                rows = out if pooled else pool(out, batch["attention_mask"], self.pooling)
            parts.append((idx, rows.float().cpu().numpy()))
            if on_batch is not None:
                on_batch(len(idx))
        return scatter_rows(parts, len(texts))


class TransformersEncoder(_TokenizedEncoder):
    """A plain Hugging Face transformers folder: safetensors weights, pooled as chosen."""

    def __init__(self, folder: Path, device: str, pooling: str) -> None:
        check_transformers_folder(folder)
        _need("transformers", "transformers", "transformers", folder)
        hub_offline()
        super().__init__(folder)
        from transformers import AutoModel

        try:
            self.model = AutoModel.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False,
                                                   use_safetensors=True)
        except Exception as exc:  # transformers raises many types for broken folders
            raise CheckpointError(folder, f"cannot load the transformers model ({first_line(exc)})") from exc
        self.model.eval().to(device)
        self.device = torch.device(device)
        self.pooling = pooling
        self.max_length = self._limit(getattr(self.model.config, "max_position_embeddings", None))
        import inspect

        accepted = inspect.signature(self.model.forward).parameters
        self._takes_types = "token_type_ids" in accepted and getattr(self.model.config, "type_vocab_size", 1) > 0

    def parameters(self) -> Any:
        return self.model.parameters()

    def _hidden(self, batch: dict[str, Any]) -> tuple[torch.Tensor, bool]:
        inputs = {k: v.to(self.device) for k, v in batch.items()}
        if not self._takes_types:
            inputs.pop("token_type_ids", None)
        return self.model(**inputs).last_hidden_state, False


class OnnxEncoder(_TokenizedEncoder):
    """An ONNX export run by onnxruntime on the CPU: token states pooled as chosen, or its pooled output."""

    def __init__(self, folder: Path, pooling: str) -> None:
        model_file = check_onnx_folder(folder)
        _need("onnxruntime", "onnxruntime", "ONNX", folder)
        _need("transformers", "transformers", "ONNX", folder)
        hub_offline()
        super().__init__(folder)
        import onnxruntime

        try:
            self.session = onnxruntime.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise CheckpointError(model_file, f"cannot load the ONNX model ({first_line(exc)})") from exc
        self.inputs = [i.name for i in self.session.get_inputs()]
        unknown = [n for n in self.inputs if n not in ("input_ids", "attention_mask", "token_type_ids")]
        if "input_ids" not in self.inputs or unknown:
            raise CheckpointError(model_file, f"takes inputs {', '.join(self.inputs)}; Embridge feeds input_ids, "
                                  "attention_mask and token_type_ids")
        outputs = {o.name: o for o in self.session.get_outputs()}
        self.pooled_output = next((n for n in ("sentence_embedding", "pooler_output_sentence") if n in outputs), None)
        token_outputs = [n for n, o in outputs.items() if len(o.shape or ()) == 3]
        self.token_output = next((n for n in ("last_hidden_state", "token_embeddings") if n in outputs),
                                 token_outputs[0] if token_outputs else None)
        if self.pooled_output is None and self.token_output is None:
            raise CheckpointError(model_file, "has no token-state output (last_hidden_state) and no "
                                  "sentence_embedding output")
        self.pooling = pooling
        self.max_length = self._limit(None)

    def parameters(self) -> Any:
        return iter(())

    def _hidden(self, batch: dict[str, Any]) -> tuple[torch.Tensor, bool]:
        feeds = {}
        for name in self.inputs:
            value = batch.get(name)
            if value is None:  # token types the tokenizer does not produce: all zeros
                value = torch.zeros_like(batch["input_ids"])
            feeds[name] = value.numpy().astype(np.int64)
        wanted = self.pooled_output or self.token_output
        (out,) = self.session.run([wanted], feeds)
        return torch.from_numpy(np.asarray(out, dtype=np.float32)), self.pooled_output is not None


def open_text_encoder(kind: str, folder: Path, device: str, pooling: str | None) -> Any:
    if kind == "sentence_transformers":
        from embridge.core.models.text import open_sentence_transformer

        return open_sentence_transformer(folder, device)
    if kind == "transformers":
        return TransformersEncoder(folder, device, pooling or "mean")
    return OnnxEncoder(folder, pooling or "mean")
