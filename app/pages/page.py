"""What every page shares: a placeholder until a workspace is open, and refresh-when-visible.

Pages are thin: ``refresh`` reads state from the core (``ctx.ws``, ``embridge.core.overview``) and fills
widgets; actions start core functions through ``ctx.run``. Every page re-reads the workspace each
time it is shown (the command line may have changed it meanwhile), so ``refresh`` does cheap reads
only; a page that is hidden when the workspace changes only marks itself stale.
"""

from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFrame,
    QHeaderView,
    QLabel,
    QStackedLayout,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from embridge.app.context import AppContext
from embridge.core.errors import EmbridgeError, first_line
from embridge.core.store import Workspace


class Page(QWidget):
    """Base class: subclasses build widgets into ``self.body`` and implement ``refresh``."""

    title = "Page"
    needs_workspace = True
    # its refresh imports modules that load torch: shown while the start-up warm-up imports them, it
    # waits for the warm-up (a "loading" line) instead of freezing the window on the import lock (~1 s)
    needs_libraries = False

    def __init__(self, ctx: AppContext) -> None:
        super().__init__()
        self.ctx = ctx
        self._stale = True
        self._stack = QStackedLayout(self)
        self.placeholder = QLabel("Open or create a workspace first (File ▸ Open, Ctrl+O).")
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.body = QWidget()
        self.layout_ = QVBoxLayout(self.body)
        self.loading = QLabel("Loading the libraries this page needs…")
        self.loading.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._stack.addWidget(self.placeholder)
        self._stack.addWidget(self.body)
        self._stack.addWidget(self.loading)
        ctx.workspace_changed.connect(self._workspace_changed)
        ctx.libraries_loaded.connect(self._libraries_loaded)
        ctx.data_changed.connect(self.mark_stale)

    def _workspace_changed(self) -> None:
        """Forget everything shown for the previous workspace, then re-read the new one."""
        self.reset()
        self.mark_stale()

    def reset(self) -> None:
        """Clear what the page shows of the previous workspace (override; called on workspace change)."""

    def mark_stale(self) -> None:
        self._stale = True
        if self.isVisible():
            self.update_now()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.update_now()

    def _libraries_loaded(self) -> None:
        if self._stale and self.isVisible():
            self.update_now()

    def update_now(self) -> None:
        has_ws = self.ctx.ws is not None
        if self.needs_libraries and self.ctx.loading_libraries and (has_ws or not self.needs_workspace):
            self._stale = True  # refreshed when the warm-up ends (_libraries_loaded)
            self._stack.setCurrentWidget(self.loading)
            return
        self._stale = False
        self._stack.setCurrentWidget(self.body if has_ws or not self.needs_workspace else self.placeholder)
        if has_ws or not self.needs_workspace:
            try:
                self.refresh()
            except EmbridgeError as exc:  # a file of the workspace damaged or removed: said, not a traceback
                self.ctx.reporter.report(f"Cannot show the {self.title} page", first_line(exc))

    def refresh(self) -> None:
        """Re-read the state this page shows (override)."""


def make_table(headers: list[str], tips: dict[str, str] | None = None) -> QTableWidget:
    """A read-only, row-selecting table with stretching last column; ``tips`` explain headers."""
    table = QTableWidget(0, len(headers))
    table.setHorizontalHeaderLabels(headers)
    set_header_tips(table, tips or {})
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.verticalHeader().setVisible(False)
    table.setTabKeyNavigation(False)  # Tab leaves the table (arrows move within it), as in every other widget
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    table.horizontalHeader().setStretchLastSection(True)
    return table


def set_header_tips(table: QTableWidget, tips: dict[str, str]) -> None:
    """Tooltips on the headers named in ``tips`` (see :mod:`embridge.app.help_text`)."""
    from embridge.app.help_text import HEADER_HELP

    for col in range(table.columnCount()):
        item = table.horizontalHeaderItem(col)
        if item is not None:
            tip = tips.get(item.text()) or HEADER_HELP.get(item.text())
            if tip:
                item.setToolTip(tip)


def fill_table(table: QTableWidget, rows: list[list[object]]) -> None:
    """Replace the table's rows; None shows as an empty cell, floats as :func:`format_value` says.

    Columns sized to their contents are measured once, after the fill: with the mode on during it, every
    cell set re-measured its column, so a refill cost the square of the rows (300 runs: 8.8 s on the GUI
    thread, after every job)."""
    header = table.horizontalHeader()
    modes = [header.sectionResizeMode(c) for c in range(table.columnCount())]
    sorting = table.isSortingEnabled()
    table.setSortingEnabled(False)
    table.setUpdatesEnabled(False)
    header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
    try:
        table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                table.setItem(r, c, QTableWidgetItem(format_value(value)))
    finally:
        for c, mode in enumerate(modes):
            header.setSectionResizeMode(c, mode)
        table.setSortingEnabled(sorting)
        table.setUpdatesEnabled(True)


def format_value(value: object) -> str:
    """A table cell: measured numbers with three decimals, as ``embridge runs`` and ``report`` print them
    (0.780 there must not read 0.78 here), very large ones in short form."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}" if math.isfinite(value) and abs(value) < 1e6 else f"{value:.4g}"
    return str(value)


def completed_train_runs(ws: Workspace) -> list[dict[str, Any]]:
    """Completed training runs, newest first (what reports, plans and bundles are made from)."""
    return [r for r in reversed(ws.runs("train")) if r["status"] == "completed"]


def run_label(run: dict[str, Any]) -> str:
    """'run 14 · auto → lowrank · upgraded top-1 0.810 (120 test queries / 120 items)'; with graded
    judgments the upgraded nDCG@10, the number its criterion is decided on."""
    from embridge.core.evaluation.headline import upgraded_text
    from embridge.core.report.number_source import source_of_run
    from embridge.core.run_choice import run_choice

    text = upgraded_text(run.get("metrics") or {})
    extra = f" · {text} ({source_of_run(run).short()})" if text else ""
    return f"run {run['id']} · {run_choice(run).method_text()}{extra}"


def select_run(combo: QComboBox, runs: list[dict[str, Any]], run_id: int | None) -> None:
    """Select ``run_id`` in a run picker filled from ``runs`` (kept as is when it is not there)."""
    for n, run in enumerate(runs):
        if run["id"] == run_id:
            combo.setCurrentIndex(n)
            return


class ResultView(QTextBrowser):
    """The run's sentence as wrapped, read-only, scrollable text: long results scroll, never get cut."""

    def __init__(self, max_height: int | None = None) -> None:
        super().__init__()
        self.setReadOnly(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setMinimumHeight(60)
        if max_height is not None:  # a long text scrolls instead of pushing the rest of the page down
            self.setMaximumHeight(max_height)
        self.viewport().setAutoFillBackground(False)

    def text(self) -> str:
        return self.toPlainText()

    def setText(self, text: str) -> None:  # noqa: N802 - QLabel's name, so callers need not care
        self.setPlainText(text)
