"""A plot drawn to an image off the GUI thread: the GUI thread hands over a recipe, a pool thread runs it.

Building and drawing a matplotlib figure takes a few hundred milliseconds of Python; done on the
GUI thread it froze the window (the Train page's recorded curves, the Plan page's backfill curves).
Here the GUI thread only hands over a recipe closing over plain values; a pool thread builds the
figure and renders it with the Agg backend, one render at a time and at most one per interval, and
the GUI thread shows the finished RGBA bytes. A resize renders what is shown again at the new size.
``flush`` still draws synchronously on a canvas, so tests and screenshots see the figure at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Qt, QThreadPool, Signal, Slot
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QLabel, QSizePolicy

from embridge.app.plots import FigureRecipe, PlotWidget

log = logging.getLogger("embridge.app")
# one figure built and drawn at a time, whichever plot asks: matplotlib does not promise that two threads
# may draw at once, and the pages' plots (six on the Reports page) would otherwise share the pool freely
_RENDER_LOCK = threading.Lock()
Render = Callable[[int, int, float], tuple[int, bytes]]  # (width, height, pixel ratio) -> (axes, RGBA bytes)


class _Bridge(QObject):
    """Carries a finished render (generation, source, axes, RGBA bytes, width, height, pixel ratio) to the
    GUI thread."""

    done = Signal(object)


SHORT_PX = 260  # a plot less tall than this (logical pixels) draws its text and lines smaller


def agg_figure(figure: Any, width: int, height: int, ratio: float) -> Any:
    """``figure`` sized to ``width`` x ``height`` device pixels on an Agg canvas of its own. A short plot
    (the Train page's curves at the window's smallest size, about 110 pixels) is drawn at a lower dpi,
    down to 0.55 of it: at full size its titles, labels and legend overlapped and were cut."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    dpi = 100 * ratio * min(1.0, max(0.55, height / ratio / SHORT_PX))
    figure.set_dpi(dpi)
    figure.set_size_inches(width / dpi, height / dpi)
    FigureCanvasAgg(figure)
    return figure


def render_recipe(recipe: FigureRecipe, width: int, height: int, ratio: float) -> tuple[int, bytes]:
    """The figure ``recipe`` builds as (axes, RGBA bytes of ``width`` x ``height`` device pixels) (pool thread)."""
    figure = agg_figure(recipe(), width, height, ratio)
    figure.canvas.draw()
    return len(figure.axes), bytes(figure.canvas.buffer_rgba())


class ImagePlot(PlotWidget):
    """A :class:`PlotWidget` whose scheduled figures are built and rendered in the background;
    ``image_source`` says what the image on screen shows ("recorded" here, see :meth:`_take`)."""

    def __init__(self, empty_text: str = "Nothing to plot yet.", interval_ms: int = 250) -> None:
        super().__init__(empty_text, debounce_ms=interval_ms)
        self.image = QLabel()
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.image.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.image.setVisible(False)
        self._layout.addWidget(self.image)
        self.image_source: str | None = None  # what the image on screen shows
        self.image_axes = 0  # the axes of the figure on that image
        self._last: Any = None  # what is shown, scheduled again on a resize (see _requeue)
        self._busy = False
        self._generation = 0
        self._bridge = _Bridge()
        self._bridge.done.connect(self._rendered)
        self._timer.timeout.disconnect()
        self._timer.timeout.connect(self._tick)

    def schedule(self, recipe: FigureRecipe, update: Any = None) -> None:
        """Show ``recipe()`` soon, built and rendered off the GUI thread (``update`` is not used: the
        image is rendered whole)."""
        super().schedule(recipe, None)

    def show_figure(self, figure: Any) -> None:
        super().show_figure(figure)
        self.image.setVisible(False)
        self.image_source, self._last = None, None

    def clear(self, text: str | None = None) -> None:
        self._last, self.image_source, self.image_axes = None, None, 0
        self._generation += 1  # a render still running belongs to what was cleared
        self.image.clear()
        self.image.setVisible(False)
        super().clear(text)

    def resizeEvent(self, event: Any) -> None:
        """The image on screen is rendered again at the new size (after the interval, like any render). A
        page resized while another was showing gets its resize just before it shows, while nothing of it
        is visible yet: the render is queued all the same, and starts when the plot shows."""
        super().resizeEvent(event)
        if self._last is not None and not self.image.isHidden() and not self._pending_work():
            self._requeue(self._last)
            self._wake()

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        if self._pending_work():
            self._wake()

    # -- what a subclass may extend: the work pending, taken, and put back for a resize -----------
    def _pending_work(self) -> bool:
        return self._pending is not None

    def _take(self) -> tuple[str, Any, Render] | None:
        """(source, what to keep for a resize, the render) of the pending work, now taken; None for none."""
        recipe, self._pending, self._update = self._pending, None, None
        if recipe is None:
            return None
        return "recorded", recipe, lambda w, h, r: render_recipe(recipe, w, h, r)

    def _requeue(self, last: Any) -> None:
        self._pending = last

    def settle(self, timeout_s: float = 60.0) -> None:
        """Wait, delivering events, until what is pending was rendered in the background and is shown (the
        screenshots show what the app draws; ``flush`` draws on a canvas instead)."""
        import time

        from PySide6.QtCore import QCoreApplication

        deadline = time.monotonic() + timeout_s
        self._wake()
        while (self._busy or self._pending_work()) and time.monotonic() < deadline:
            QCoreApplication.processEvents()
            time.sleep(0.01)
        QCoreApplication.processEvents()

    # -- the machinery ------------------------------------------------------------------------
    def _wake(self) -> None:
        if not self._timer.isActive() and self.isVisible():
            self._timer.start()

    def _tick(self) -> None:
        if self._busy:  # one render at a time: try again after another interval
            self._timer.start()
            return
        taken = self._take()
        if taken is None:
            return
        source, self._last, render = taken
        ratio = self.devicePixelRatioF()
        width, height = max(int(self.width() * ratio), 50), max(int(self.height() * ratio), 50)
        generation, bridge = self._generation, self._bridge
        self._busy = True

        def job() -> None:
            try:
                with _RENDER_LOCK:
                    axes, data = render(width, height, ratio)
            except Exception:  # a drawing bug must not kill the pool thread; the log has it
                log.exception("plot render failed")
                axes, data = 0, None
            try:
                bridge.done.emit((generation, source, axes, data, width, height, ratio))
            except RuntimeError:  # the application is gone (shut down while rendering): nothing to show
                pass

        QThreadPool.globalInstance().start(job)

    @Slot(object)
    def _rendered(self, payload: tuple[int, str, int, bytes | None, int, int, float]) -> None:
        generation, source, axes, data, width, height, ratio = payload
        self._busy = False
        if generation != self._generation or data is None:
            return
        image = QImage(data, width, height, QImage.Format.Format_RGBA8888).copy()
        pixmap = QPixmap.fromImage(image)
        pixmap.setDevicePixelRatio(ratio)
        self._drop_canvas()
        self.placeholder.setVisible(False)
        self.image.setPixmap(pixmap)
        self.image.setVisible(True)
        self.image_source, self.image_axes = source, axes
        self.draws += 1
        if self._pending_work():
            self._wake()
