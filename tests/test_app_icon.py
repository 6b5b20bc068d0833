"""The window carries the application's icon, drawn from the SVG in resources/icons."""

from __future__ import annotations

from app_fixtures import no_threads_left, window

from embridge.app.app_icon import ICON_FILE
from embridge.app.main_window import MainWindow

__all__ = ["no_threads_left", "window"]


def test_the_window_shows_the_application_icon(window: MainWindow) -> None:
    assert ICON_FILE.is_file()
    image = window.windowIcon().pixmap(64, 64).toImage()
    assert not image.isNull() and image.width() == 64  # the SVG was read and drawn (Qt's svg plugin is there)
    corner, centre = image.pixelColor(0, 0), image.pixelColor(32, 32)
    assert corner.alpha() == 0 and centre.alpha() == 255  # a rounded tile: transparent corners, drawn middle
