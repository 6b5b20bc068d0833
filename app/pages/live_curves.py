"""Per-epoch rows for the Train page's live plot, built from (throttled) progress reports."""

from __future__ import annotations

from typing import Any


class LiveCurves:
    """The loss and validation metric per epoch as the training loop reports them.

    A report during epoch e carries a step loss and the validation metric measured after epoch
    e - 1 (epoch 0 is the untrained layer); each row keeps the mean of the losses reported during
    its epoch and its metric. ``auto`` fits several candidates in turn: a new candidate starts new
    rows. When the run ends the page shows the per-epoch numbers the core recorded instead.
    """

    def __init__(self) -> None:
        self.rows: dict[int, dict[str, Any]] = {}
        self._losses: dict[int, list[float]] = {}
        self._candidate: Any = None

    def add(self, info: dict[str, Any]) -> bool:
        """Take one progress report; True when it changed what the plot shows."""
        epoch = info.get("epoch")
        if not isinstance(epoch, int | float):
            return False
        if info.get("candidate") != self._candidate:
            self._candidate = info.get("candidate")
            self.rows.clear()
            self._losses.clear()
        epoch = int(epoch)
        if isinstance(info.get("val_metric"), int | float):
            before = max(epoch - 1, 0)
            self.rows.setdefault(before, {"epoch": before})["val_metric"] = float(info["val_metric"])
        if isinstance(info.get("loss"), int | float):
            losses = self._losses.setdefault(epoch, [])
            losses.append(float(info["loss"]))
            self.rows.setdefault(epoch, {"epoch": epoch})["loss"] = sum(losses) / len(losses)
        return True

    def table(self) -> list[dict[str, Any]]:
        """Rows in epoch order, as ``core.report.figures.training_curves`` takes them."""
        return [self.rows[e] for e in sorted(self.rows)]
