"""Optional sentence-transformers models (a local model folder), never downloaded at run time.

The package is an optional extra (``pip install 'embridge[text]'``); without it, a text model
gives a clear error and everything else keeps working. Hub access is switched off before the
package is imported, and ``trust_remote_code`` is never enabled.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import CheckpointError
from core.models.checkpoint import first_line

MISSING_PACKAGE = ("this is a sentence-transformers model but the sentence-transformers package is not "
                   "installed; install it with: pip install 'embridge[text]'")


def sentence_transformers_available() -> bool:
    return importlib.util.find_spec("sentence_transformers") is not None


def open_sentence_transformer(path: str | Path, device: str) -> Any:
    """Load a local sentence-transformers folder in eval mode on ``device``."""
    p = Path(path)
    if not sentence_transformers_available():
        raise CheckpointError(p, MISSING_PACKAGE)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    from sentence_transformers import SentenceTransformer

    accepted = inspect.signature(SentenceTransformer.__init__).parameters
    options: dict[str, Any] = {"device": device}
    if "local_files_only" in accepted:
        options["local_files_only"] = True
    if "trust_remote_code" in accepted:
        options["trust_remote_code"] = False
    try:
        model = SentenceTransformer(str(p), **options)
    except Exception as exc:  # the package raises many types (OSError, ValueError, HF errors)
        raise CheckpointError(p, f"cannot load the sentence-transformers model ({first_line(exc)})") from exc
    model.eval()
    return model


def encode_texts(model: Any, texts: Sequence[str]) -> np.ndarray:
    """Raw (unnormalised) embeddings of one batch of texts."""
    out = model.encode(list(texts), batch_size=max(1, len(texts)), convert_to_numpy=True,
                       show_progress_bar=False, normalize_embeddings=False)
    return np.asarray(out)
