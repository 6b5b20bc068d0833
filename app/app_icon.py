"""The application's icon, drawn as SVG in ``resources/icons`` (installed as ``embridge.resources.icons``,
and copied into the packaged build with the rest of ``resources``)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QIcon

ICON_FILE = Path(__file__).resolve().parent.parent / "resources" / "icons" / "embridge.svg"


def app_icon() -> QIcon:
    """The window and taskbar icon (empty when the file is missing: a window without one still works)."""
    return QIcon(str(ICON_FILE))
