"""How a text model's prompts and pooling read in one line (CLI output, the app's Models page, bundles)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def prompts_text(spec: Mapping[str, Any] | None) -> str:
    """'query prompt "query: ", document prompt "passage: "' or '' for a model without prompts."""
    spec = spec or {}
    parts = [f'{role} prompt "{spec[key]}"' for role, key in (("query", "query_prompt"), ("document", "document_prompt"))
             if spec.get(key)]
    if spec.get("pooling"):
        parts.append(f"{spec['pooling']} pooling")
    return ", ".join(parts)
