"""A text model's prompts and pooling: the options chosen when it is added, and how they read in one line.

Kept free of torch and the model libraries so the app's pages can import it at start-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TextOptions:
    """How a text model is run: prompts per role (None: the folder's own) and pooling (None: the folder's)."""

    query_prompt: str | None = None
    document_prompt: str | None = None
    pooling: str | None = None


def prompts_text(spec: Mapping[str, Any] | None) -> str:
    """'query prompt "query: ", document prompt "passage: "' or '' for a model without prompts."""
    spec = spec or {}
    parts = [f'{role} prompt "{_short(str(spec[key]))}"'
             for role, key in (("query", "query_prompt"), ("document", "document_prompt")) if spec.get(key)]
    if spec.get("pooling"):
        parts.append(f"{spec['pooling']} pooling")
    return ", ".join(parts)


def _short(prompt: str, most: int = 80) -> str:
    """A prompt as a summary line shows it: whole up to ``most`` characters, else its start and its length;
    line breaks and tabs escaped, so the summary stays one line."""
    shown = prompt.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return shown if len(shown) <= most else f"{shown[:most - 3]}... ({len(prompt)} characters)"
