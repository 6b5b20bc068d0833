"""Plots: the live training plot matches the recorded epochs and never shows a blank frame; the
figures name their axes, keep the learning rate off the metric's axis and keep legends off the data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pytestqt.qtbot import QtBot

from embridge.app.pages.live_curves import LiveCurves
from embridge.app.pages.train_page import result_text
from embridge.app.plots import PlotWidget
from embridge.core.report import figures
from embridge.core.store import Workspace


@pytest.fixture(scope="module")
def mlp_run(demo_workspace_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An MLP run that stops early (patience 3), with every progress report it sent.

    Batches of 64 give several progress reports per epoch, so even a run that stops after the
    fewest epochs patience allows sends enough reports to redraw the live plot many times."""
    import shutil

    from embridge.core.train.runs import train_run

    path = tmp_path_factory.mktemp("mlp") / "ws"
    shutil.copytree(demo_workspace_path, path)
    reports: list[dict[str, Any]] = []
    with Workspace.open(path) as ws:
        summary = train_run(ws, "mlp", device="cpu", config={"epochs": 60, "patience": 3, "batch_size": 64,
                                                          "loss": "retrieval", "lr": 3e-3},
                            on_progress=lambda d, t, info: reports.append(dict(info)))
        run = ws.run(summary["run_id"])
    return {"summary": summary, "run": run, "reports": reports}


def test_live_rows_equal_the_recorded_epochs(mlp_run: dict[str, Any]) -> None:
    live = LiveCurves()
    for info in mlp_run["reports"]:
        live.add(info)
    recorded = {int(e["epoch"]): e for e in mlp_run["run"]["epochs"]}
    rows = {row["epoch"]: row for row in live.table()}
    finished = [e for e in recorded if e < max(recorded)]  # the last epoch ends after the last report
    assert len(finished) >= 2
    for epoch in finished:
        assert rows[epoch]["val_metric"] == recorded[epoch]["val_metric"]
        if "train_loss" in recorded[epoch]:
            assert rows[epoch]["loss"] == recorded[epoch]["train_loss"]
            assert rows[epoch]["lr"] == recorded[epoch]["lr"]


def test_early_stopping_is_announced(mlp_run: dict[str, Any]) -> None:
    summary = mlp_run["summary"]
    assert summary["epochs_run"] < 61  # it stopped before the 60th epoch
    live = LiveCurves()
    live.add(mlp_run["reports"][-1])
    assert "stops early after" in live.status() and "without validation gain" in live.status()
    text = result_text(summary)
    assert "Stopped early at epoch" in text and f"best epoch {summary['best_epoch']}" in text
    from embridge.core.formatting import early_stop_text

    assert early_stop_text(mlp_run["reports"][-1]).startswith("stops early after")
    # a horizon beyond the last epoch is not promised: the run ends there first
    late = {**mlp_run["reports"][-1], "epoch": 58, "epochs": 60, "patience": 10, "epochs_without_gain": 1}
    assert early_stop_text(late) == "ends with its last epoch (60) at the latest"
    assert early_stop_text({**late, "epoch": 51}).startswith("stops early after 9 more")  # 10 epochs left
    live.add(late)
    assert "ends with its last epoch (60) at the latest (the best epoch is kept)." in live.status()


def test_every_live_redraw_shows_a_drawn_figure(qtbot: QtBot, mlp_run: dict[str, Any]) -> None:
    plot = PlotWidget()
    qtbot.addWidget(plot)
    plot.resize(640, 360)
    plot.show()
    live = LiveCurves()
    sizes = []
    for info in mlp_run["reports"]:
        if live.add(info):
            rows = live.table()
            plot.schedule(lambda rows=rows: figures.training_curves(rows))
            plot.flush()
            pixels = np.asarray(plot.canvas.buffer_rgba())
            assert pixels.std() > 5, "a blank frame"  # drawn before it replaced the previous canvas
            sizes.append((plot.canvas.width(), plot.canvas.height()))
    assert len(sizes) > 8 and len(set(sizes[1:])) == 1


def test_training_figure_names_axes_and_keeps_lr_apart(mlp_run: dict[str, Any]) -> None:
    fig = figures.training_curves(mlp_run["run"]["epochs"], "epoch", mlp_run["run"]["metrics"]["val_metric_name"])
    loss, val, lr = fig.axes  # the learning rate's twin axis is added last
    assert loss.get_ylabel() == "training loss" and lr.get_ylabel() == "learning rate"
    assert val.get_ylabel() == "top-1 (same label)" and val.get_title().startswith("Validation")
    assert [ln.get_label() for ln in val.get_lines()] == ["top-1 (same label)"]
    assert all(float(t).is_integer() for t in val.get_xticks())
    closed = figures.training_curves([{"val_metric": 0.5}, {"val_metric": 0.7}], "candidate")
    assert len(closed.axes) == 1 and closed.axes[0].get_title() == "Validation"  # no empty loss axes


def test_recall_ticks_are_plain_k_and_legends_sit_outside_the_data() -> None:
    fig = figures.recall_curves({"old/old": {1: 0.2, 10: 0.5, 100: 0.9}, "new→old": {1: 0.3, 10: 0.6, 100: 1.0}})
    ax = fig.axes[0]
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "10", "100"]
    bars = figures.metric_bars({"old/old": {"top1": 0.9}, "new→old": {"top1": 0.95}, "new/new": {"top1": 1.0}})
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(bars)
    canvas.draw()
    renderer = canvas.get_renderer()
    (legend,) = bars.legends
    assert not legend.get_window_extent(renderer).overlaps(bars.axes[0].get_window_extent(renderer))


def _validation_labels(figure: Any) -> list[str]:
    return [ln.get_label() for ax in figure.axes if ax.get_title().startswith("Validation") for ln in ax.get_lines()]


def test_the_live_plot_names_the_metric_the_run_validates_on(mlp_run: dict[str, Any],
                                                            tmp_path: Path) -> None:
    """Graded judgments validate on nDCG@10: the live curve says so while it trains, as the recorded
    figure does afterwards; a labelled run's curve says top-1 (same label)."""
    from embridge.app.pages.live_curves import live_figure, refresh_live_figure
    from embridge.core.demo_text import build_text_demo
    from embridge.core.report.report_export import report_figures
    from embridge.core.train.runs import train_run

    reports: list[dict[str, Any]] = []
    with build_text_demo(tmp_path / "text") as ws:
        summary = train_run(ws, "mlp", device="cpu", config={"epochs": 3, "batch_size": 64},
                            on_progress=lambda d, t, info: reports.append(dict(info)))
        run = ws.run(summary["run_id"])
    assert run["metrics"]["val_metric_name"] == "judged_ndcg@10"
    for case, wanted in ((reports, "nDCG@10 (judged)"), (mlp_run["reports"], "top-1 (same label)")):
        live = LiveCurves()
        for info in case:
            live.add(info)
        figure = live_figure(live.table(), live.metric_name)
        assert _validation_labels(figure) == [wanted], live.metric_name
    recorded = report_figures({"run": {"epochs": run["epochs"],
                                       "heldout": {"val_metric_name": run["metrics"]["val_metric_name"]}}})
    assert _validation_labels(recorded["training"]) == ["nDCG@10 (judged)"]
    rows = live.table()
    assert refresh_live_figure(live_figure(rows, "label_top1"), rows, "label_top1")
    assert not refresh_live_figure(live_figure(rows, "label_top1"), rows, "judged_ndcg@10")  # relabelled whole


def test_an_image_plot_resized_while_its_page_was_hidden_is_drawn_again_at_its_size(qtbot: QtBot) -> None:
    """The Plan page's curves stayed cropped (or tiny) when the window was resized on another page: the
    resize reached the plot just before it showed, and nothing drew it again."""
    from matplotlib.figure import Figure
    from PySide6.QtWidgets import QStackedWidget, QWidget

    from embridge.app.image_plot import ImagePlot

    def recipe() -> Figure:
        figure = Figure()
        figure.add_subplot().plot([0, 1, 2], [1, 0, 1])
        return figure

    stack = QStackedWidget()
    qtbot.addWidget(stack)
    plot, other = ImagePlot(interval_ms=10), QWidget()
    stack.addWidget(plot)
    stack.addWidget(other)
    stack.resize(800, 500)
    stack.show()

    def drawn_at_its_size() -> bool:
        pixmap = plot.image.pixmap()
        return not pixmap.isNull() and pixmap.size() == plot.image.size() * plot.image.devicePixelRatioF()

    plot.schedule(recipe)
    qtbot.waitUntil(drawn_at_its_size, timeout=10_000)
    stack.setCurrentWidget(other)
    stack.resize(500, 300)  # the window shrinks while another page shows
    qtbot.wait(50)
    stack.setCurrentWidget(plot)
    qtbot.waitUntil(drawn_at_its_size, timeout=10_000)
    assert plot.image.pixmap().width() < 600


def test_a_short_plot_keeps_every_label_inside_its_image() -> None:
    """At the window's smallest size the Train page's curves get about 110 pixels: drawn at full size, titles
    ran into the axes and the y labels were cut at the image's edge ("top-1 (same lab")."""
    from embridge.app.image_plot import agg_figure

    rows = [{"epoch": e, "train_loss": 5.0 / e, "lr": 1e-3 / e, "val_metric": 0.7 + 0.01 * e} for e in range(1, 9)]
    rows += [{"sweep": "alpha", "value": a / 10, "val_metric": 0.8 + 0.01 * (a % 3)} for a in range(11)]
    figure = agg_figure(figures.training_curves(rows, metric_name="label_top1"), 595, 110, 1.0)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    texts = [t for ax in figure.axes for t in (ax.title, ax.xaxis.label, ax.yaxis.label) if t.get_text()]
    assert len(texts) >= 6
    for text in texts:
        box = text.get_window_extent(renderer)
        assert box.x0 >= -1 and box.y0 >= -1 and box.x1 <= 596 and box.y1 <= 111, (text.get_text(), box)


def test_a_bridge_runs_recorded_curves_say_they_are_its_base_layers() -> None:
    """The Train page drew auto's fusion epochs (its mlp base, validation 0.26) as 'Validation', beside a
    result of 0.656 for the fusion itself."""
    from embridge.app.pages.live_plot import recorded_curves

    epochs = [{"epoch": e, "train_loss": 1 / e, "val_metric": 0.2 + 0.01 * e} for e in range(1, 4)]
    for kind, named in (("fusion", True), ("mlp", False)):
        recipe = recorded_curves({"id": 1, "method": "auto", "epochs": epochs,
                                  "metrics": {"kind": kind, "val_metric_name": "ndcg@10"}})
        assert recipe is not None
        titles = [ax.get_title() for ax in recipe().axes if ax.get_title()]
        assert titles == (["Training loss (the fusion's base layer)", "Validation (the fusion's base layer)"] if named
                          else ["Training loss", "Validation"]), titles
