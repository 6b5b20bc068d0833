"""What every page shares: a placeholder until a workspace is open, and refresh-when-visible.

Pages are thin: ``refresh`` reads state from the core (``ctx.ws``, ``core.overview``) and fills
widgets; actions start core functions through ``ctx.run``. A page that is hidden when the
workspace changes only marks itself stale and refreshes the next time it is shown, which keeps
start-up and background jobs cheap.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QStackedLayout,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.context import AppContext
from core.store import Workspace


class Page(QWidget):
    """Base class: subclasses build widgets into ``self.body`` and implement ``refresh``."""

    title = "Page"
    needs_workspace = True

    def __init__(self, ctx: AppContext) -> None:
        super().__init__()
        self.ctx = ctx
        self._stale = True
        self._stack = QStackedLayout(self)
        self.placeholder = QLabel("Open or create a workspace first (File ▸ Open, Ctrl+O).")
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.body = QWidget()
        self.layout_ = QVBoxLayout(self.body)
        self._stack.addWidget(self.placeholder)
        self._stack.addWidget(self.body)
        ctx.workspace_changed.connect(self.mark_stale)
        ctx.data_changed.connect(self.mark_stale)

    def mark_stale(self) -> None:
        self._stale = True
        if self.isVisible():
            self.update_now()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self._stale:
            self.update_now()

    def update_now(self) -> None:
        self._stale = False
        has_ws = self.ctx.ws is not None
        self._stack.setCurrentWidget(self.body if has_ws or not self.needs_workspace else self.placeholder)
        if has_ws or not self.needs_workspace:
            self.refresh()

    def refresh(self) -> None:
        """Re-read the state this page shows (override)."""


def make_table(headers: list[str]) -> QTableWidget:
    """A read-only, row-selecting table with stretching last column."""
    table = QTableWidget(0, len(headers))
    table.setHorizontalHeaderLabels(headers)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.verticalHeader().setVisible(False)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    table.horizontalHeader().setStretchLastSection(True)
    return table


def fill_table(table: QTableWidget, rows: list[list[object]]) -> None:
    """Replace the table's rows; None shows as an empty cell, floats with 4 significant digits."""
    table.setRowCount(len(rows))
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            table.setItem(r, c, QTableWidgetItem(format_value(value)))


def format_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def completed_train_runs(ws: Workspace) -> list[dict[str, Any]]:
    """Completed training runs, newest first (what reports, plans and bundles are made from)."""
    return [r for r in reversed(ws.runs("train")) if r["status"] == "completed"]


def run_label(run: dict[str, Any]) -> str:
    top1 = (run.get("metrics") or {}).get("upgraded_top1")
    extra = f" · upgraded top-1 {top1:.3f}" if isinstance(top1, int | float) else ""
    return f"run {run['id']} · {run['method']}{extra}"
