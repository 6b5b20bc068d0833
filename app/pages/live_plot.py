"""The Train page's plot: its curves, live or recorded, are drawn to an image off the GUI thread.

Drawing a figure takes matplotlib a few hundred milliseconds of Python, more while a training loop
competes for the interpreter; done on the GUI thread at every progress report it froze the window,
and so did drawing a finished run's recorded curves when a method was chosen. Here the GUI thread
only hands over plain values (the rows, or a recipe closing over them) and shows the finished
image: a pool thread builds the live figure once, then updates its lines in place
(:func:`refresh_live_figure`), or builds a recorded run's figure from its recipe, and renders it
with the Agg backend, one render at a time, at most one per interval; a resize renders what is
shown again at the new size. ``flush`` still draws synchronously on a canvas, so tests and
screenshots see the figure at once.
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import QObject, Qt, QThreadPool, Signal, Slot
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QLabel, QSizePolicy

from embridge.app.pages.live_curves import live_figure, refresh_live_figure
from embridge.app.plots import FigureRecipe, PlotWidget

log = logging.getLogger("embridge.app")
Rows = list[dict[str, Any]]


class _Bridge(QObject):
    """Carries a finished render (generation, source, axes, RGBA bytes, width, height, pixel ratio) to the
    GUI thread."""

    done = Signal(object)


class _Holder:
    """The figure a pool thread keeps between renders; only one render runs at a time."""

    def __init__(self) -> None:
        self.figure: Any = None
        self.size: tuple[int, int] = (0, 0)


def _agg(figure: Any, width: int, height: int, ratio: float) -> Any:
    """``figure`` sized to ``width`` x ``height`` device pixels on an Agg canvas of its own."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    dpi = 100 * ratio
    figure.set_dpi(dpi)
    figure.set_size_inches(width / dpi, height / dpi)
    FigureCanvasAgg(figure)
    return figure


def render_rows(rows: Rows, width: int, height: int, ratio: float, holder: _Holder,
                metric_name: str | None = None) -> tuple[int, bytes]:
    """The curves of ``rows`` as (axes, RGBA bytes of ``width`` x ``height`` device pixels) (pool thread)."""
    figure = holder.figure
    if figure is None or holder.size != (width, height) or not refresh_live_figure(figure, rows, metric_name):
        figure = _agg(live_figure(rows, metric_name), width, height, ratio)
        holder.figure, holder.size = figure, (width, height)
    figure.canvas.draw()
    return len(figure.axes), bytes(figure.canvas.buffer_rgba())


def render_recipe(recipe: FigureRecipe, width: int, height: int, ratio: float) -> tuple[int, bytes]:
    """A recorded figure built by ``recipe`` as (axes, RGBA bytes), like :func:`render_rows` (pool thread)."""
    figure = _agg(recipe(), width, height, ratio)
    figure.canvas.draw()
    return len(figure.axes), bytes(figure.canvas.buffer_rgba())


class LivePlot(PlotWidget):
    """A :class:`PlotWidget` whose figures, live curves (``schedule_rows``) and recorded ones
    (``schedule``), are rendered in the background; ``image_source`` says which is on screen."""

    def __init__(self, empty_text: str, interval_ms: int) -> None:
        super().__init__(empty_text, debounce_ms=interval_ms)
        self.image = QLabel()
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.image.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.image.setVisible(False)
        self._layout.addWidget(self.image)
        self.image_source: str | None = None  # "live" or "recorded": what the image on screen shows
        self.image_axes = 0  # the axes of the figure on that image
        self._rows: Rows | None = None
        self._metric: str | None = None
        self._last: tuple[Rows | None, str | None, FigureRecipe | None] | None = None  # drawn again on a resize
        self._busy = False
        self._generation = 0
        self._holder = _Holder()
        self._bridge = _Bridge()
        self._bridge.done.connect(self._rendered)
        self._timer.timeout.disconnect()
        self._timer.timeout.connect(self._tick)

    def schedule_rows(self, rows: Rows, metric_name: str | None = None) -> None:
        """Show these epoch rows soon (a copy is taken: the caller may keep changing its own), the
        validation curve named by ``metric_name``."""
        self._pending, self._update = None, None
        self._rows = [dict(r) for r in rows]
        self._metric = metric_name
        self._wake()

    def schedule(self, recipe: FigureRecipe, update: Any = None) -> None:
        """Show ``recipe()`` soon, built and rendered off the GUI thread (``update`` is not used: the
        image is rendered whole)."""
        self._rows = None
        super().schedule(recipe, None)

    def flush(self) -> None:
        """Draw what is pending now, on the GUI thread (tests and screenshots)."""
        rows, self._rows, metric = self._rows, None, self._metric
        if rows is not None:
            super().schedule(lambda: live_figure(rows, metric), lambda figure: refresh_live_figure(figure, rows, metric))
        super().flush()

    def show_figure(self, figure: Any) -> None:
        super().show_figure(figure)
        self.image.setVisible(False)
        self.image_source, self._last = None, None

    def clear(self, text: str | None = None) -> None:
        self._rows, self._last, self.image_source, self.image_axes = None, None, None, 0
        self._generation += 1  # a render still running belongs to what was cleared
        self._holder = _Holder()
        self.image.clear()
        self.image.setVisible(False)
        super().clear(text)

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        if self._rows is not None:
            self._wake()

    def resizeEvent(self, event: Any) -> None:
        """The image on screen is rendered again at the new size (after the interval, like any render)."""
        super().resizeEvent(event)
        if self._last is not None and self.image.isVisible() and self._rows is None and self._pending is None:
            self._rows, self._metric, self._pending = self._last
            self._wake()

    def _wake(self) -> None:
        if not self._timer.isActive() and self.isVisible():
            self._timer.start()

    def _tick(self) -> None:
        if self._busy:  # one render at a time: try again after another interval
            self._timer.start()
            return
        rows, metric, recipe, holder = self._rows, self._metric, self._pending, self._holder
        self._rows, self._pending, self._update = None, None, None
        if rows is None and recipe is None:
            return
        self._last = (rows, metric, recipe)
        ratio = self.devicePixelRatioF()
        width, height = max(int(self.width() * ratio), 50), max(int(self.height() * ratio), 50)
        generation, bridge = self._generation, self._bridge
        source = "live" if rows is not None else "recorded"
        self._busy = True

        def render() -> None:
            try:
                axes, data = (render_rows(rows, width, height, ratio, holder, metric) if rows is not None
                              else render_recipe(recipe, width, height, ratio))  # type: ignore[arg-type]
            except Exception:  # a drawing bug must not kill the pool thread; the log has it
                log.exception("plot render failed")
                axes, data = 0, None
            try:
                bridge.done.emit((generation, source, axes, data, width, height, ratio))
            except RuntimeError:  # the application is gone (shut down while rendering): nothing to show
                pass

        QThreadPool.globalInstance().start(render)

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
        if self._rows is not None or self._pending is not None:
            self._wake()
