"""Plot widgets: one ``FigureCanvasQTAgg`` showing a Figure made by ``embridge.core.report.figures``.

matplotlib is imported on the first figure, never when a page is built, so the window opens fast.
Redraws are throttled: ``schedule`` keeps only the latest figure recipe and draws it once per
interval, so a fast stream of training progress costs one redraw per interval at most. A recipe
may come with an ``update`` that refreshes the figure on screen in place (new line data, same
axes), which is far cheaper than building and laying out a new figure.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

FigureRecipe = Callable[[], Any]  # returns a matplotlib Figure
FigureUpdate = Callable[[Any], bool]  # refreshes a Figure in place; False when it cannot (build anew)


class PlotWidget(QWidget):
    """Shows one figure at a time; ``figure`` is the one on screen (None while empty)."""

    def __init__(self, empty_text: str = "Nothing to plot yet.", debounce_ms: int = 250) -> None:
        super().__init__()
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumHeight(120)
        self.placeholder = QLabel(empty_text)
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.canvas: QWidget | None = None
        self.figure: Any = None
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.addWidget(self.placeholder)
        self._pending: FigureRecipe | None = None
        self._update: FigureUpdate | None = None
        self.draws = 0  # figures drawn (built or updated): what a progress stream costs the GUI thread
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(debounce_ms)
        self._timer.timeout.connect(self.flush)

    def hideEvent(self, event: Any) -> None:
        """A hidden plot draws its pending figure when shown again, not in the background."""
        super().hideEvent(event)
        self._timer.stop()

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        if self._pending is not None and not self._timer.isActive():
            self._timer.start()

    def sizeHint(self) -> QSize:
        return QSize(640, 360)

    def show_figure(self, figure: Any) -> None:
        """Put ``figure`` on a fresh canvas (the previous canvas and figure are released).

        The new canvas takes the old one's size and is drawn at once, before it replaces the old
        one, so a stream of redraws never shows an empty or half-laid-out frame.
        """
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg

        canvas = FigureCanvasQTAgg(figure)
        canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        size = self.canvas.size() if self.canvas is not None else self.size()
        if size.width() > 0 and size.height() > 0:
            canvas.resize(size)
        canvas.draw()
        self.draws += 1
        self._drop_canvas()
        self.placeholder.setVisible(False)
        self._layout.addWidget(canvas)
        self.canvas, self.figure = canvas, figure

    def schedule(self, recipe: FigureRecipe, update: FigureUpdate | None = None) -> None:
        """Draw ``recipe()`` soon (or ``update`` the figure on screen when it can); later calls before
        the redraw replace earlier ones, so at most one draw happens per interval."""
        self._pending, self._update = recipe, update
        if not self._timer.isActive() and self.isVisible():
            self._timer.start()

    def flush(self) -> None:
        """Draw the pending recipe now (tests and screenshots call this to skip the wait)."""
        self._timer.stop()
        recipe, update, self._pending, self._update = self._pending, self._update, None, None
        if recipe is None:
            return
        if update is not None and self.figure is not None and self.canvas is not None and update(self.figure):
            self.canvas.draw()
            self.draws += 1
        else:
            self.show_figure(recipe())

    def clear(self, text: str | None = None) -> None:
        self._pending, self._update = None, None
        self._timer.stop()
        self._drop_canvas()
        if text is not None:
            self.placeholder.setText(text)
        self.placeholder.setVisible(True)

    def _drop_canvas(self) -> None:
        if self.canvas is not None:
            self._layout.removeWidget(self.canvas)
            self.canvas.setParent(None)
            self.canvas.deleteLater()
            self.canvas, self.figure = None, None
