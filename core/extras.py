"""Which optional extra brings a package, and the one way a command says how to get it.

The engine installs lean; text models, store connectors and the Ray engine are extras. A command that
needs one names it. In the packaged desktop build nothing can be pip-installed, so there the sentence
says that build leaves the extra out and points at an install with pip instead.
"""

from __future__ import annotations

import sys

# top-level module -> the extra of pyproject.toml that installs it
EXTRA_OF = {
    "sentence_transformers": "text", "transformers": "text", "tokenizers": "text", "safetensors": "text",
    "pyarrow": "stores", "lance": "stores", "lancedb": "stores", "qdrant_client": "stores", "chromadb": "stores",
    "psycopg": "stores", "pgvector": "stores", "pgserver": "stores", "ray": "ray", "PySide6": "gui",
}


def installed(module: str) -> bool:
    """Whether ``module`` can be imported here, found without importing it (nor torch with it); a blocked
    module (None in ``sys.modules``) or a missing parent package is not."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def frozen() -> bool:
    """Whether this is the packaged (PyInstaller) desktop build."""
    return bool(getattr(sys, "frozen", False))


def install_hint(extra: str) -> str:
    """'install it with: pip install 'embridge[stores]'' (or, in the packaged build, that it is left out)."""
    command = f"pip install 'embridge[{extra}]'"
    if frozen():
        return f"this packaged desktop build leaves the {extra} extra out; use Embridge installed with {command}"
    return f"install it with: {command}"


def extra_for(module: str | None) -> str | None:
    """The extra that installs ``module`` (a dotted name is looked up by its top-level package)."""
    return EXTRA_OF.get((module or "").split(".")[0])
