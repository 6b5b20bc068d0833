"""Row helpers: JSON columns in and out, timestamps, and the liveness of recorded processes."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Any

JSON_COLUMNS = {"metadata", "spec", "config", "metrics", "epochs", "summary", "manifest"}


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def encode(row: dict[str, Any]) -> dict[str, Any]:
    """Serialise JSON columns of a row about to be written."""
    return {k: (json.dumps(v, default=_jsonable) if k in JSON_COLUMNS and v is not None else v)
            for k, v in row.items()}


def decode(row: dict[str, Any]) -> dict[str, Any]:
    """Parse JSON columns of a row read from the database."""
    out = dict(row)
    for key in JSON_COLUMNS & out.keys():
        if isinstance(out[key], str):
            out[key] = json.loads(out[key])
    return out


def _jsonable(value: Any) -> Any:
    """Let numpy scalars and arrays, paths and tuples pass through json.dumps."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "__fspath__"):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def pid_alive(pid: int | None) -> bool:
    """Is a process with this id running on this machine?"""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
