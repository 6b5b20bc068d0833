"""Per-epoch rows for the Train page's live plot, built from (throttled) progress reports."""

from __future__ import annotations

import math
from typing import Any


class LiveCurves:
    """The loss and validation metric per epoch as the training loop reports them.

    Each report during epoch e carries the row the core recorded for the last finished epoch
    (``last_epoch``, ``last_train_loss``, ``last_val_metric``, ``last_lr``), so finished
    epochs show exactly the numbers the run record will hold; only the epoch in progress shows a
    running mean of the step losses seen so far. ``auto`` fits several candidates in turn: a new
    candidate starts new rows.
    """

    def __init__(self) -> None:
        self.rows: dict[int, dict[str, Any]] = {}
        self._losses: dict[int, list[float]] = {}
        self._recorded: set[int] = set()
        self._candidate: Any = None
        self._info: dict[str, Any] = {}

    def add(self, info: dict[str, Any]) -> bool:
        """Take one progress report; True when it changed what the plot shows."""
        epoch = info.get("epoch")
        if not isinstance(epoch, int | float):
            return False
        if info.get("candidate") != self._candidate:
            self._candidate = info.get("candidate")
            self.rows.clear()
            self._losses.clear()
            self._recorded.clear()
        self._info = info
        epoch = int(epoch)
        last = info.get("last_epoch")
        if isinstance(last, int | float):
            done = int(last)
            row: dict[str, Any] = {"epoch": done}
            for key, name in (("last_train_loss", "loss"), ("last_val_metric", "val_metric"), ("last_lr", "lr")):
                if isinstance(info.get(key), int | float):
                    row[name] = float(info[key])
            self.rows[done] = row
            self._recorded.add(done)
        elif isinstance(info.get("val_metric"), int | float):  # a loop without recorded rows
            before = max(epoch - 1, 0)
            self.rows.setdefault(before, {"epoch": before})["val_metric"] = float(info["val_metric"])
        if isinstance(info.get("loss"), int | float) and epoch not in self._recorded:
            losses = self._losses.setdefault(epoch, [])
            losses.append(float(info["loss"]))
            self.rows.setdefault(epoch, {"epoch": epoch})["loss"] = sum(losses) / len(losses)
        return True

    @property
    def metric_name(self) -> str | None:
        """The validation metric the fit reports (``label_top1``, ``judged_ndcg@10``, ...), once it has."""
        name = self._info.get("val_metric_name")
        return name if isinstance(name, str) else None

    def table(self) -> list[dict[str, Any]]:
        """Rows in epoch order, as ``embridge.core.report.figures.training_curves`` takes them."""
        return [self.rows[e] for e in sorted(self.rows)]

    def status(self) -> str:
        """'Epoch 5 of at most 40; stops early after 3 more epochs without validation gain.'"""
        info = self._info
        epoch, patience, idle = info.get("epoch"), info.get("patience"), info.get("epochs_without_gain")
        if not isinstance(epoch, int | float) or not isinstance(patience, int) or not isinstance(idle, int):
            return ""
        who = f"{self._candidate}: " if self._candidate else ""
        best = info.get("best_val_metric")
        best_text = f"; best validation so far {best:.3f}" if isinstance(best, int | float) else ""
        from embridge.core.formatting import early_stop_text

        return f"{who}epoch {int(epoch)}{best_text}; {early_stop_text(info)} (the best epoch is kept)."


CurveShape = tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], bool]


def curve_shape(rows: list[dict[str, Any]]) -> CurveShape:
    """The series ``training_curves`` draws for ``rows`` and in which panels: (loss, lr, other, has loss)."""
    from embridge.core.report.figures import split_sweeps

    rows = split_sweeps(rows)[0]  # type: ignore[assignment]
    keys: list[str] = []
    for row in rows:
        keys += [k for k, v in row.items() if k != "epoch" and k not in keys and isinstance(v, int | float)]
    loss = tuple(k for k in keys if "loss" in k)
    has_loss = any(math.isfinite(_finite(row.get(k))) for row in rows for k in loss)
    return loss, tuple(k for k in keys if k == "lr"), tuple(k for k in keys if "loss" not in k and k != "lr"), has_loss


def live_figure(rows: list[dict[str, Any]], metric_name: str | None = None) -> Any:
    """The live plot's figure, built by the report's ``training_curves`` (its validation curve named by
    ``metric_name``, as the recorded run's figure is) and tagged with its shape."""
    from embridge.core.report.figures import training_curves

    figure = training_curves(rows, metric_name=metric_name)
    figure.live_shape = (curve_shape(rows), metric_name)
    return figure


def refresh_live_figure(figure: Any, rows: list[dict[str, Any]], metric_name: str | None = None) -> bool:
    """Put ``rows`` into the lines of a figure ``live_figure`` built with the same series; False when
    the series changed (a panel or a line appears, the metric is another), so the caller builds a new
    figure instead.

    Only line data and axis limits change: no new figure, axes, legends or titles are built.
    """
    from embridge.core.report.figures import split_sweeps

    shape = curve_shape(rows)
    if getattr(figure, "live_shape", None) != (shape, metric_name) or split_sweeps(rows)[1]:
        return False  # a finished fit's settings panel (drawn whole), or another metric's label
    loss, lr, other, has_loss = shape
    groups = [loss, other, *([lr] if lr else [])] if has_loss else [other]
    if len(figure.axes) != len(groups):
        return False
    xs = [row.get("epoch", i + 1) for i, row in enumerate(rows)]
    for ax, keys in zip(figure.axes, groups, strict=True):
        for line, key in zip(ax.get_lines(), keys, strict=False):
            line.set_data(xs, [_finite(row.get(key)) for row in rows])
        ax.relim()
        ax.autoscale_view()
    return True


def _finite(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else math.nan
