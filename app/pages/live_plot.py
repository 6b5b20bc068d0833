"""The Train page's plot: live curves while a method trains, a run's recorded curves after, both drawn
to an image off the GUI thread (:class:`~embridge.app.image_plot.ImagePlot`).

While training, the GUI thread only copies the epoch rows (plain values); a pool thread builds the
live figure once, then updates its lines in place (:func:`refresh_live_figure`) and renders it,
at most once per interval, so progress reports never draw on the GUI thread.
"""

from __future__ import annotations

from typing import Any

from embridge.app.image_plot import ImagePlot, Render, agg_figure
from embridge.app.pages.live_curves import live_figure, refresh_live_figure
from embridge.app.plots import FigureRecipe

Rows = list[dict[str, Any]]


class _Holder:
    """The figure a pool thread keeps between renders; only one render runs at a time."""

    def __init__(self) -> None:
        self.figure: Any = None
        self.size: tuple[int, int] = (0, 0)


def render_rows(rows: Rows, width: int, height: int, ratio: float, holder: _Holder,
                metric_name: str | None = None) -> tuple[int, bytes]:
    """The curves of ``rows`` as (axes, RGBA bytes of ``width`` x ``height`` device pixels) (pool thread)."""
    figure = holder.figure
    if figure is None or holder.size != (width, height) or not refresh_live_figure(figure, rows, metric_name):
        figure = agg_figure(live_figure(rows, metric_name), width, height, ratio)
        holder.figure, holder.size = figure, (width, height)
    figure.canvas.draw()
    return len(figure.axes), bytes(figure.canvas.buffer_rgba())


class LivePlot(ImagePlot):
    """An :class:`ImagePlot` that also takes live epoch rows (``schedule_rows``); ``image_source`` is
    "live" or "recorded"."""

    def __init__(self, empty_text: str, interval_ms: int) -> None:
        super().__init__(empty_text, interval_ms)
        self._rows: Rows | None = None
        self._metric: str | None = None
        self._holder = _Holder()

    def schedule_rows(self, rows: Rows, metric_name: str | None = None) -> None:
        """Show these epoch rows soon (a copy is taken: the caller may keep changing its own), the
        validation curve named by ``metric_name``."""
        self._pending, self._update = None, None
        self._rows = [dict(r) for r in rows]
        self._metric = metric_name
        self._wake()

    def schedule(self, recipe: FigureRecipe, update: Any = None) -> None:
        self._rows = None
        super().schedule(recipe, update)

    def flush(self) -> None:
        """Draw what is pending now, on the GUI thread (tests and screenshots)."""
        rows, self._rows, metric = self._rows, None, self._metric
        if rows is not None:
            super().schedule(lambda: live_figure(rows, metric))
            self._update = lambda figure: refresh_live_figure(figure, rows, metric)
        super().flush()

    def clear(self, text: str | None = None) -> None:
        self._rows = None
        self._holder = _Holder()
        super().clear(text)

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        if self._rows is not None:
            self._wake()

    def _pending_work(self) -> bool:
        return self._rows is not None or super()._pending_work()

    def _take(self) -> tuple[str, Any, Render] | None:
        if self._rows is None:
            return super()._take()
        rows, metric, holder = self._rows, self._metric, self._holder
        self._rows, self._pending, self._update = None, None, None
        return "live", (rows, metric), lambda w, h, r: render_rows(rows, w, h, r, holder, metric)

    def _requeue(self, last: Any) -> None:
        if isinstance(last, tuple):
            self._rows, self._metric = last
        else:
            super()._requeue(last)


def recorded_curves(run: dict[str, Any]) -> FigureRecipe | None:
    """The recipe of a training run's recorded curves, as its report draws them (None when it recorded none)."""
    from embridge.core.report.report_export import report_figure_recipes

    metrics = run.get("metrics") or {}
    heldout = {"val_metric_name": metrics.get("val_metric_name")}
    return report_figure_recipes({"run": {"epochs": run.get("epochs") or [], "heldout": heldout},
                                  "adapter": {"kind": metrics.get("kind")}}).get("training")
