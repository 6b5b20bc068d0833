"""Row helpers: JSON columns in and out, validated item rows, timestamps, and process liveness."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from embridge.core.errors import ImportDataError
from embridge.core.json_values import dumps

TEXT_FIELDS = ("split", "source", "modality", "text", "path")
JSON_COLUMNS = {"metadata", "spec", "config", "metrics", "epochs", "summary", "manifest"}


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def encode(row: dict[str, Any]) -> dict[str, Any]:
    """Serialise JSON columns of a row about to be written (:func:`embridge.core.json_values.json_safe`'s form)."""
    return {k: (dumps(v) if k in JSON_COLUMNS and v is not None else _plain(v))
            for k, v in row.items()}


_BINDABLE = frozenset({str, int, float, bytes, type(None)})


def _plain(value: Any) -> Any:
    """A value SQLite can bind: numpy scalars as Python numbers, paths as strings."""
    if type(value) in _BINDABLE:  # the common case, without slow ABC checks
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def item_row(key: str, record: dict[str, Any], created: str, source: str) -> dict[str, Any]:
    """One encoded items row; a field SQLite cannot store is an ImportDataError naming the item."""
    row: dict[str, Any] = {"key": key, "created": created,
                           "label": None if record.get("label") is None else str(record["label"])}
    for field in TEXT_FIELDS:
        value = record.get(field)
        if value is None or type(value) is str:
            row[field] = value
            continue
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if value is not None and not isinstance(value, str):
            raise ImportDataError(source, f"item '{key}': field '{field}' must be text, "
                                  f"got {type(value).__name__}")
        row[field] = value
    metadata = record.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ImportDataError(source, f"item '{key}': metadata must be a mapping, got {type(metadata).__name__}")
    try:
        return encode({**row, "metadata": metadata})
    except (TypeError, ValueError) as exc:
        raise ImportDataError(source, f"item '{key}': metadata is not JSON-serialisable ({exc})") from exc


ITEM_COLUMNS = ("key", "label", *TEXT_FIELDS, "metadata", "created", "namespace")
_PLAIN_FIELDS = ("label", *TEXT_FIELDS)
_PLAIN_TYPES = frozenset({str, type(None)})


def item_values(key: str, record: dict[str, Any], created: str, source: str, namespace: str) -> tuple[Any, ...]:
    """One items row as a tuple in ``ITEM_COLUMNS`` order, validated as :func:`item_row` does.

    A record of plain text fields and no metadata (every row of a vectors import) is taken as it
    is: a million such rows bind in a second, where building and encoding dicts takes tens.
    """
    values = tuple(map(record.get, _PLAIN_FIELDS))
    if _PLAIN_TYPES.issuperset(map(type, values)) and not record.get("metadata"):
        return (key, *values, "{}", created, namespace)
    row = item_row(key, record, created, source)
    return (row["key"], row["label"], *(row[f] for f in TEXT_FIELDS), row["metadata"], row["created"], namespace)


def decode(row: dict[str, Any]) -> dict[str, Any]:
    """Parse JSON columns of a row read from the database."""
    out = dict(row)
    for key in JSON_COLUMNS & out.keys():
        if isinstance(out[key], str):
            out[key] = json.loads(out[key])
    return out


# a process that began this long after its run was recorded holds a reused id (after a reboot, or a
# machine running for weeks); the slack covers the wall clock being set after the process began
REUSED_AFTER_S = 600.0


def pid_alive(pid: int | None, started: str | None = None) -> bool:
    """Is the process with this id that started at ``started`` (its run's start) running on this machine?
    A process with the id that began well after it is another one (ids are reused), where /proc says so."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return not _began_after(pid, started)
    return not _exited(pid) and not _began_after(pid, started)


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the name (state first), or None without /proc (macOS, Windows)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2:].split()  # the name in parentheses may hold spaces or ')'


def _exited(pid: int) -> bool:
    """A zombie answers signal 0 until its parent reaps it, yet its run will never finish (Linux's /proc says)."""
    fields = _proc_stat(pid)
    return bool(fields) and fields[0] in ("Z", "X")


def _began_after(pid: int, started: str | None) -> bool:
    """Whether the process holding ``pid`` began more than REUSED_AFTER_S after ``started`` (ISO time)."""
    fields = _proc_stat(pid)
    if not started or not fields or len(fields) < 20:
        return False
    try:
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        began = boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, starttime: ticks since boot
        run_began = datetime.fromisoformat(started).timestamp()
    except (OSError, ValueError, StopIteration):
        return False
    return began > run_began + REUSED_AFTER_S


def relative_item_path(record: dict[str, Any], roots: tuple[Path, ...]) -> dict[str, Any]:
    """A file inside the workspace (the demo's images) is stored relative to it: found after a move or copy."""
    path = Path(record["path"])
    for root in roots:
        if path.is_absolute() and path.is_relative_to(root):
            return {**record, "path": path.relative_to(root).as_posix()}
    return record


def read_item(row: dict[str, Any], root: Path) -> dict[str, Any]:
    """A decoded row, its recorded path made absolute (a relative one lies inside the workspace ``root``)."""
    item = decode(row)
    if item.get("path") and not Path(item["path"]).is_absolute():
        item["path"] = str(root / item["path"])
    return item
