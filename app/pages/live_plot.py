"""The Train page's live plot: the curves are drawn to an image off the GUI thread.

Drawing a figure takes matplotlib a few hundred milliseconds of Python, more while a training loop
competes for the interpreter; done on the GUI thread at every progress report it froze the window.
Here the GUI thread only copies the rows (plain values) and shows the finished image: a pool
thread builds the figure once, then updates its lines in place (:func:`refresh_live_figure`) and
renders it with the Agg backend, one render at a time, at most one per interval. ``flush`` still
draws synchronously on a canvas, so tests and screenshots see the figure at once.
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import QObject, Qt, QThreadPool, Signal, Slot
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QLabel, QSizePolicy

from embridge.app.pages.live_curves import live_figure, refresh_live_figure
from embridge.app.plots import PlotWidget

log = logging.getLogger("embridge.app")
Rows = list[dict[str, Any]]


class _Bridge(QObject):
    """Carries a finished render (generation, RGBA bytes, width, height, pixel ratio) to the GUI thread."""

    done = Signal(object)


class _Holder:
    """The figure a pool thread keeps between renders; only one render runs at a time."""

    def __init__(self) -> None:
        self.figure: Any = None
        self.size: tuple[int, int] = (0, 0)


def render_rows(rows: Rows, width: int, height: int, ratio: float, holder: _Holder,
                metric_name: str | None = None) -> bytes:
    """The curves of ``rows`` as RGBA bytes of ``width`` x ``height`` device pixels (pool thread)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figure = holder.figure
    if figure is None or holder.size != (width, height) or not refresh_live_figure(figure, rows, metric_name):
        figure = live_figure(rows, metric_name)
        dpi = 100 * ratio
        figure.set_dpi(dpi)
        figure.set_size_inches(width / dpi, height / dpi)
        FigureCanvasAgg(figure)
        holder.figure, holder.size = figure, (width, height)
    figure.canvas.draw()
    return bytes(figure.canvas.buffer_rgba())


class LivePlot(PlotWidget):
    """A :class:`PlotWidget` whose live curves (``schedule_rows``) are rendered in the background."""

    def __init__(self, empty_text: str, interval_ms: int) -> None:
        super().__init__(empty_text, debounce_ms=interval_ms)
        self.image = QLabel()
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.image.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.image.setVisible(False)
        self._layout.addWidget(self.image)
        self._rows: Rows | None = None
        self._metric: str | None = None
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
        if not self._timer.isActive() and self.isVisible():
            self._timer.start()

    def schedule(self, recipe: Any, update: Any = None) -> None:
        self._rows = None
        super().schedule(recipe, update)

    def flush(self) -> None:
        """Draw what is pending now, on the GUI thread (tests and screenshots)."""
        rows, self._rows, metric = self._rows, None, self._metric
        if rows is not None:
            super().schedule(lambda: live_figure(rows, metric), lambda figure: refresh_live_figure(figure, rows, metric))
        super().flush()

    def show_figure(self, figure: Any) -> None:
        super().show_figure(figure)
        self.image.setVisible(False)

    def clear(self, text: str | None = None) -> None:
        self._rows = None
        self._generation += 1  # a render still running belongs to what was cleared
        self._holder = _Holder()
        self.image.clear()
        self.image.setVisible(False)
        super().clear(text)

    def _tick(self) -> None:
        if self._rows is None:
            super().flush()  # a recorded run's figure
            return
        if self._busy:  # one render at a time: try again after another interval
            self._timer.start()
            return
        rows, self._rows, metric = self._rows, None, self._metric
        ratio = self.devicePixelRatioF()
        width, height = max(int(self.width() * ratio), 50), max(int(self.height() * ratio), 50)
        generation, holder, bridge = self._generation, self._holder, self._bridge
        self._busy = True

        def render() -> None:
            try:
                data: bytes | None = render_rows(rows, width, height, ratio, holder, metric)
            except Exception:  # a drawing bug must not kill the pool thread; the log has it
                log.exception("live plot render failed")
                data = None
            try:
                bridge.done.emit((generation, data, width, height, ratio))
            except RuntimeError:  # the application is gone (shut down while rendering): nothing to show
                pass

        QThreadPool.globalInstance().start(render)

    @Slot(object)
    def _rendered(self, payload: tuple[int, bytes | None, int, int, float]) -> None:
        generation, data, width, height, ratio = payload
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
        self.draws += 1
        if self._rows is not None and not self._timer.isActive() and self.isVisible():
            self._timer.start()
