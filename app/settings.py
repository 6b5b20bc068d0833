"""Where the app keeps its settings: a human-readable JSON file, plus QSettings for window geometry.

Both live in the user's config folder (``QStandardPaths.AppConfigLocation``), or in the folder
named by ``EMBRIDGE_CONFIG_DIR`` so that tests and portable installs never touch the real one.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, QStandardPaths

from embridge.core.errors import EmbridgeError
from embridge.core.store.files import atomic_write_text

ENV_CONFIG_DIR = "EMBRIDGE_CONFIG_DIR"
SETTINGS_FILE = "settings.json"
MAX_RECENT = 10
DEFAULTS: dict[str, Any] = {"recent_workspaces": [], "device": "auto", "batch_size": 256, "ray_address": ""}

log = logging.getLogger("embridge.app")


def config_dir() -> Path:
    """The folder for settings and logs (created on demand)."""
    override = os.environ.get(ENV_CONFIG_DIR)
    if override:
        path = Path(override)
    else:
        location = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppConfigLocation)
        path = Path(location or Path.home() / ".config" / "embridge")
    try:
        path.mkdir(parents=True, exist_ok=True)
        (path / "logs").mkdir(exist_ok=True)
        with tempfile.TemporaryFile(dir=path):  # made but not writable (a read-only home that already had it)
            pass
    except OSError as exc:  # a read-only or missing home (system users): this session's settings only
        return _session_config_dir(str(path), str(exc))
    return path


@functools.cache
def _session_config_dir(wanted: str, why: str) -> Path:
    """A private temporary folder for settings and logs when the usual one cannot be made (warned once)."""
    path = Path(tempfile.mkdtemp(prefix="embridge-config-"))
    log.warning("cannot use %s for settings (%s); this session keeps them in %s", wanted, why, path)
    return path


def log_dir() -> Path:
    path = config_dir() / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def window_settings() -> QSettings:
    """QSettings for window geometry only, stored as an INI file beside settings.json."""
    return QSettings(str(config_dir() / "window.ini"), QSettings.Format.IniFormat)


def _valid(key: str, value: Any) -> bool:
    """A stored preference the pages can use as it is (the file is the user's to edit)."""
    if key == "batch_size":
        return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 1 << 20
    if key == "recent_workspaces":
        return isinstance(value, list)
    if key == "device":
        return isinstance(value, str) and bool(value.strip())
    return isinstance(value, str)


class Settings:
    """Recent workspaces and preferences, read once and saved atomically on every change."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or config_dir() / SETTINGS_FILE
        self.values: dict[str, Any] = dict(DEFAULTS)
        self.values.update(self._read())

    def _read(self) -> dict[str, Any]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            log.warning("%s: unreadable settings file, using defaults (%s)", self.path, exc)
            return {}
        if not isinstance(data, dict):
            log.warning("%s: settings file does not hold a JSON object, using defaults", self.path)
            return {}
        for key in [k for k in DEFAULTS if k in data and not _valid(k, data[k])]:
            log.warning("%s: %s = %r is not a valid value, using the default %r", self.path, key, data[key],
                        DEFAULTS[key])
            del data[key]  # a hand-edited value must not keep the window from opening
        return data

    def save(self) -> None:
        """Write the settings; a file that cannot be written (made read-only since) costs only this change."""
        try:
            atomic_write_text(self.path, json.dumps(self.values, indent=2, sort_keys=True) + "\n")
        except (EmbridgeError, OSError) as exc:
            log.warning("settings not saved: %s", exc)

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, DEFAULTS.get(key, default))

    def set(self, key: str, value: Any) -> None:
        self.values[key] = value
        self.save()

    @property
    def recent_workspaces(self) -> list[str]:
        recent = self.values.get("recent_workspaces")
        return [str(p) for p in recent] if isinstance(recent, list) else []

    def add_recent(self, path: str | Path) -> None:
        """Put a workspace first in the recent list (resolved path, no duplicates)."""
        resolved = str(Path(path).resolve())
        recent = [p for p in self.recent_workspaces if p != resolved]
        self.set("recent_workspaces", [resolved, *recent][:MAX_RECENT])

    def remove_recent(self, path: str | Path) -> None:
        resolved = str(Path(path).resolve())
        self.set("recent_workspaces", [p for p in self.recent_workspaces if p != resolved])
