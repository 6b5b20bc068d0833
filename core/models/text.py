"""Sentence-transformers model folders, read locally and never downloaded.

The package is an optional extra (``pip install 'embridge[text]'``); without it, a text model
gives a clear error and everything else keeps working. Hub access is switched off before the
package is imported, ``trust_remote_code`` is never enabled, and a folder whose ``modules.json``
names a module outside sentence-transformers is refused before the package sees it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embridge.core.errors import CheckpointError
from embridge.core.extras import install_hint, installed
from embridge.core.models.checkpoint_reader import first_line
from embridge.core.models.text_batches import CHAR_BUDGET, char_lengths, length_batches
from embridge.core.models.text_cuts import clipped
from embridge.core.models.text_encoders import (
    BatchDone,
    refuse_tokenless,
    scatter_rows,
    unknown_only_rows,
)
from embridge.core.models.text_folders import (
    check_sentence_transformers_folder,
    hub_offline,
    quiet_transformers,
    transformer_module_folders,
)
from embridge.core.models.weight_checks import check_transformer_module, quiet_loading

MISSING_PACKAGE = ("this is a sentence-transformers model but the sentence-transformers package is not "
                   f"installed; {install_hint('text')}")


def sentence_transformers_available() -> bool:
    return installed("sentence_transformers")


class SentenceTransformerEncoder:
    """A local sentence-transformers folder (its own modules, pooling and normalisation)."""

    def __init__(self, model: Any, source: Path) -> None:
        self.model = model
        self.source = source
        self.unknown_only = 0  # texts its tokenizer read as unknown tokens only (as the other text encoders count)
        self.unknown_example = ""

    def _check_tokens(self, texts: Sequence[str], prompt: str) -> None:
        """Refuse texts that give no token (as the other text encoders do), and count those read as unknown
        tokens only: by their own tokens, as a prompt's known words would hide them."""
        tokenizer = getattr(self.model[0], "tokenizer", None) if len(self.model) else None
        if tokenizer is None or not callable(tokenizer):  # a word-embedding module: nothing to count
            return
        ids = tokenizer([prompt + t for t in texts], truncation=True, max_length=self.max_length)["input_ids"]
        own = tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"] if prompt else ids
        # a pooling that leaves the prompt out (include_prompt false) pools the text's own tokens alone
        refuse_tokenless(self.source, texts, own if prompt and not self._pools_prompt() else ids)
        if getattr(tokenizer, "unk_token_id", None) is None:  # a byte-level tokenizer knows every text
            return
        blind = unknown_only_rows(tokenizer, own)
        if blind and not self.unknown_only:
            self.unknown_example = texts[blind[0]][:60]
        self.unknown_only += len(blind)

    def _pools_prompt(self) -> bool:
        return all(getattr(module, "include_prompt", True) for module in self.model)

    @property
    def max_length(self) -> int:
        return int(getattr(self.model, "max_seq_length", None) or 512)

    def parameters(self) -> Any:
        return self.model.parameters()

    def prompt_tokens(self, prompt: str) -> tuple[int, int]:
        """(tokens the prompt alone takes, special tokens included; tokens the model reads)."""
        limit = self.max_length
        tokenizer = getattr(self.model[0], "tokenizer", None) if len(self.model) else None
        try:  # counted without truncation: the module's own tokenize cuts at the limit being checked
            if tokenizer is not None and callable(tokenizer):
                return len(tokenizer(prompt, verbose=False)["input_ids"]), limit
            tokenize = getattr(self.model, "preprocess", None) or self.model.tokenize  # the newer name first
            ids = tokenize([prompt])["input_ids"]
        except Exception:  # noqa: BLE001 - a module that cannot say: the prompt is not checked
            return 0, limit
        return int(ids.shape[-1]) if hasattr(ids, "shape") else len(ids[0]), limit

    def embed_texts(self, texts: Sequence[str], prompt: str, batch_size: int,
                    on_batch: BatchDone | None = None) -> np.ndarray:
        """Rows in input order; batches of similar length; ``prompt=""`` also overrides a default prompt."""
        texts = clipped(texts, self.max_length)
        self._check_tokens(texts, prompt)
        parts = []  # lengths in characters: tokenizing twice to count tokens costs more than it saves
        for idx in length_batches(char_lengths(texts, prompt, self.max_length), batch_size, CHAR_BUDGET):
            with torch.inference_mode():
                block = self.model.encode([texts[i] for i in idx], prompt=prompt, batch_size=len(idx),
                                          convert_to_numpy=True, show_progress_bar=False,
                                          normalize_embeddings=False)
            parts.append((idx, np.asarray(block, dtype=np.float32)))
            if on_batch is not None:
                on_batch(len(idx))
        return scatter_rows(parts, len(texts), self.source)


def open_sentence_transformer(path: str | Path, device: str) -> SentenceTransformerEncoder:
    """Load a local sentence-transformers folder in eval mode on ``device``."""
    p = Path(path)
    if not sentence_transformers_available():
        raise CheckpointError(p, MISSING_PACKAGE)
    check_sentence_transformers_folder(p)
    hub_offline()
    quiet_transformers()
    for module_folder in transformer_module_folders(p):  # weights and vocabulary, before the package loads them
        check_transformer_module(module_folder)
    from sentence_transformers import SentenceTransformer

    try:
        with quiet_loading():
            model = SentenceTransformer(str(p), device=device, local_files_only=True, trust_remote_code=False)
    except Exception as exc:  # the package raises many types (OSError, ValueError, HF errors)
        raise CheckpointError(p, f"cannot load the sentence-transformers model ({first_line(exc)})") from exc
    model.eval()
    cap_sequence_length(model)
    return SentenceTransformerEncoder(model, p)


def cap_sequence_length(model: Any) -> None:
    """Keep ``max_seq_length`` within the tokenizer's length and the position table of the first
    Transformer module: a longer setting (checked to be a whole number at add) would fail on the
    first long text with a shape error instead of truncating, as the transformers path does."""
    from embridge.core.models.text_encoders import config_positions, token_limit

    first = model[0] if len(model) else None
    config = getattr(getattr(first, "auto_model", None), "config", None)
    tokenizer = getattr(first, "tokenizer", None)
    if config is None or tokenizer is None:
        return
    cap = token_limit(getattr(tokenizer, "model_max_length", None), config_positions(config))
    current = model.max_seq_length
    if current is None or current > cap:
        model.max_seq_length = cap
