"""Widgets of the Reports page: the pass/fail metrics table and the flipped-query browser.

Both take plain data from the core's report (they compute nothing): the table shows the core's
comparison of each upgraded cell with old/old, the browser shows a query item with the top
results of today's system and of the upgraded one.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QBrush, QColor, QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from embridge.app.pages.page import format_value, set_header_tips
from embridge.core.report.number_source import gain_text
from embridge.core.report.wording import comparison_word

PASS_COLOUR, FAIL_COLOUR, EQUAL_COLOUR = QColor("#d8f0d8"), QColor("#f6d5d5"), QColor("#e8e8e8")
WORD_COLOURS = {"pass": PASS_COLOUR, "fail": FAIL_COLOUR, "equal": EQUAL_COLOUR}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif"}
THUMB = 64


# -- metrics table ------------------------------------------------------------------------------
def fill_metrics_table(table: QTableWidget, cells: dict[str, dict[str, Any]],
                       comparison: dict[str, dict[str, dict[str, Any]]]) -> None:
    """Rows are metrics; columns the cells, then per upgraded cell its pass/fail and gain retained.

    ``cells``: ``{cell: {metric: value}}``; ``comparison``: ``{cell: embridge.core.evaluation.compat.compare(...)}``.
    An upgraded cell's value is green where it beats old/old and red where it does not.
    """
    metrics = list(dict.fromkeys(m for values in cells.values() for m in values))
    cell_names = list(cells)
    sampled = any("old_old_sample" in row for rows in comparison.values() for row in rows.values())
    # where the gain is measured on a sample, the ceiling cell (new/new, head/head) searched only that sample
    headers = ["Metric", *[f"{c} (on the sample)" if sampled and c != "old/old" and c not in comparison else c
                           for c in cell_names]]
    for cell in comparison:  # where new/new searched a sample, the gain is measured there: its numbers shown
        headers += [f"{cell} vs old/old", *(["old/old on the sample", f"{cell} on the sample"] if sampled else []),
                    f"{cell} gain retained" + (" (on the sample)" if sampled else "")]
    table.clear()
    table.setColumnCount(len(headers))
    table.setHorizontalHeaderLabels(headers)
    sample_tip = ("measured on the evaluation sample new/new searched, with old/old and the upgraded system "
                  "on the same sample")
    set_header_tips(table, {h: ("searched only the evaluation sample (the gallery items every compared model "
                                "embedded); old/old and the upgraded columns search the whole gallery"
                                if h.endswith(" (on the sample)") and "gain retained" not in h
                                else "pass: beats old/old; equal: same value; fail: worse" if h.endswith("vs old/old")
                                else "share of the full-backfill gain kept" if h.endswith("gain retained")
                                else f"share of the full-backfill gain kept, {sample_tip}" if "gain retained" in h
                                else sample_tip if h.endswith("on the sample") else "")
                            for h in headers})
    table.setRowCount(len(metrics))
    for r, metric in enumerate(metrics):
        table.setItem(r, 0, QTableWidgetItem(metric))
        for c, cell in enumerate(cell_names, start=1):
            item = QTableWidgetItem(format_value(cells[cell].get(metric)))
            word = comparison_word(comparison.get(cell, {}).get(metric, {}))
            if word:
                item.setBackground(QBrush(WORD_COLOURS[word]))
            table.setItem(r, c, item)
        col = len(cell_names) + 1
        for rows in comparison.values():
            row = rows.get(metric, {})
            word = comparison_word(row)
            mark = QTableWidgetItem(word)
            if word:
                mark.setBackground(QBrush(WORD_COLOURS[word]))
            table.setItem(r, col, mark)
            if sampled:
                table.setItem(r, col + 1, QTableWidgetItem(format_value(row.get("old_old_sample"))))
                table.setItem(r, col + 2, QTableWidgetItem(format_value(row.get("upgraded_sample"))))
                col += 2
            value, note = row.get("gain_retained"), row.get("gain_retained_note")
            gain = gain_text(value, note) if value is not None or note else ""
            table.setItem(r, col + 1, QTableWidgetItem(gain))
            col += 2


# -- thumbnails -----------------------------------------------------------------------------------
def array_image(values: Any) -> QImage | None:
    """A grayscale or RGB image from an array: (H, W), (H, W, 3), (C, H, W) or a square-length vector."""
    arr = np.asarray(values, dtype=np.float32)
    if arr.ndim == 1 and arr.size and math.isqrt(arr.size) ** 2 == arr.size:
        side = math.isqrt(arr.size)
        arr = arr.reshape(side, side)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[2] not in (1, 3):
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3) or not np.isfinite(arr).all():
        return None
    low, high = float(arr.min()), float(arr.max())
    scaled = np.zeros_like(arr) if high <= low else (arr - low) / (high - low)
    pixels = np.ascontiguousarray((scaled * 255).round().astype(np.uint8))
    h, w = pixels.shape[:2]
    fmt = QImage.Format.Format_Grayscale8 if pixels.ndim == 2 else QImage.Format.Format_RGB888
    return QImage(pixels.data, w, h, pixels.strides[0], fmt).copy()  # copy: own the pixels


def item_image(item: dict[str, Any]) -> QImage | None:
    """The picture of an item: its image file, its ``.npy`` file, or raw values in its metadata."""
    path = item.get("path")
    if path:
        p = Path(path)
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file():
            image = QImage(str(p))
            return None if image.isNull() else image
        if p.suffix.lower() == ".npy" and p.is_file():
            try:
                return array_image(np.load(p, allow_pickle=False))
            except (OSError, ValueError):
                return None
    values = (item.get("metadata") or {}).get("array")
    return array_image(values) if values is not None else None


def thumbnail(item: dict[str, Any], size: int, ratio: float) -> QPixmap | None:
    """A crisp square thumbnail on high-DPI screens (rendered at ``size * ratio`` device pixels)."""
    image = item_image(item)
    if image is None:
        return None
    side = max(1, round(size * ratio))
    pixmap = QPixmap.fromImage(image.scaled(side, side, Qt.AspectRatioMode.KeepAspectRatio,
                                            Qt.TransformationMode.FastTransformation))
    pixmap.setDevicePixelRatio(ratio)
    return pixmap


def item_caption(item: dict[str, Any]) -> str:
    text = item.get("text")
    label = item.get("label")
    head = f"{item.get('key')}" + (f" · label {label}" if label is not None else "")
    return f"{head}\n{text[:200]}" if text else head


# -- flipped-query browser ----------------------------------------------------------------------
class FlipBrowser(QWidget):
    """Flipped queries on the left; the chosen query and both systems' top results on the right.

    ``set_flips`` takes entries ``{"kind": "negative"|"positive", "query": item, "old": [items],
    "upgraded": [items]}`` where items are workspace item rows.
    """

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[dict[str, Any]] = []
        self.kind = QComboBox()
        self.kind.addItems(["Negative flips", "Positive flips"])
        self.kind.setItemData(0, "Queries today's system gets right at top-1 and the upgraded one gets wrong",
                              Qt.ItemDataRole.ToolTipRole)
        self.kind.setItemData(1, "Queries today's system gets wrong at top-1 and the upgraded one gets right",
                              Qt.ItemDataRole.ToolTipRole)
        self.kind.currentIndexChanged.connect(self._fill_list)
        self.queries = QListWidget()
        self.queries.currentRowChanged.connect(self._show)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.kind)
        left_layout.addWidget(self.queries)

        self.query_view = QLabel()
        self.query_view.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.query_caption = QLabel()
        self.query_caption.setWordWrap(True)
        self.old_results = self._result_list()
        self.new_results = self._result_list()
        right = QWidget()
        grid = QGridLayout(right)
        grid.addWidget(QLabel("<b>Query</b>"), 0, 0)
        grid.addWidget(self.query_view, 1, 0)
        grid.addWidget(self.query_caption, 2, 0)
        grid.addWidget(QLabel("<b>Old/old results</b>"), 0, 1)
        grid.addWidget(self.old_results, 1, 1, 2, 1)
        grid.addWidget(QLabel("<b>Upgraded results</b>"), 0, 2)
        grid.addWidget(self.new_results, 1, 2, 2, 1)
        grid.setRowStretch(2, 1)
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(2, 1)
        self.query_caption.setAlignment(Qt.AlignmentFlag.AlignTop)
        split = QSplitter()
        split.addWidget(left)
        split.addWidget(right)
        split.setSizes([250, 750])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(split)

    def _result_list(self) -> QListWidget:
        results = QListWidget()
        results.setIconSize(QSize(THUMB, THUMB))
        results.setWordWrap(True)
        return results

    def set_flips(self, entries: list[dict[str, Any]]) -> None:
        self.entries = entries
        self._fill_list()

    def visible_entries(self) -> list[dict[str, Any]]:
        wanted = "negative" if self.kind.currentIndex() == 0 else "positive"
        return [e for e in self.entries if e["kind"] == wanted]

    def _fill_list(self) -> None:
        self.queries.clear()
        for entry in self.visible_entries():
            self.queries.addItem(item_caption(entry["query"]).splitlines()[0])
        if self.queries.count():
            self.queries.setCurrentRow(0)
        else:
            self._show(-1)

    def _show(self, row: int) -> None:
        entries = self.visible_entries()
        self.old_results.clear()
        self.new_results.clear()
        if not 0 <= row < len(entries):
            self.query_view.clear()
            self.query_caption.setText("No flipped queries of this kind." if not entries else "")
            return
        entry = entries[row]
        ratio = self.devicePixelRatioF()
        picture = thumbnail(entry["query"], THUMB * 2, ratio)
        if picture is not None:
            self.query_view.setPixmap(picture)
        else:
            self.query_view.clear()
        self.query_caption.setText(item_caption(entry["query"]))
        target = entry["query"].get("label")
        for view, items in ((self.old_results, entry["old"]), (self.new_results, entry["upgraded"])):
            for rank, item in enumerate(items, start=1):
                grade = item.get("grade")  # as the metrics count it; older reports: the label alone
                relevant = grade > 0 if grade is not None else target is not None and item.get("label") == target
                row_item = QListWidgetItem(f"{rank}. {'✓' if relevant else '✗'} {item_caption(item)}")
                picture = thumbnail(item, THUMB, ratio)
                if picture is not None:
                    row_item.setIcon(QIcon(picture))
                view.addItem(row_item)
