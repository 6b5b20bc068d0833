"""Page widgets: pass/fail colouring, thumbnails, flipped queries, live training curves, settings form."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from app_fixtures import no_threads_left
from PIL import Image
from PySide6.QtWidgets import QTableWidget
from pytestqt.qtbot import QtBot

from embridge.app.pages.forms import SettingsForm
from embridge.app.pages.live_curves import LiveCurves
from embridge.app.pages.report_widgets import (
    FAIL_COLOUR,
    PASS_COLOUR,
    FlipBrowser,
    array_image,
    fill_metrics_table,
    item_image,
    thumbnail,
)
from embridge.core.evaluation.compat import compare

__all__ = ["no_threads_left"]
pytestmark = pytest.mark.usefixtures("no_threads_left")


def test_metrics_table_colours_upgraded_cells_by_the_core_criterion(qtbot: QtBot) -> None:
    cells = {"old/old": {"top1": 0.60, "mAP": 0.40}, "new/new": {"top1": 0.80, "mAP": 0.55},
             "new→old": {"top1": 0.70, "mAP": 0.35}}
    comparison = {"new→old": compare(cells["new→old"], cells["old/old"], cells["new/new"])}
    table = QTableWidget()
    qtbot.addWidget(table)
    fill_metrics_table(table, cells, comparison)
    headers = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    assert headers == ["Metric", "old/old", "new/new", "new→old", "new→old vs old/old", "new→old gain retained"]
    rows = {table.item(r, 0).text(): r for r in range(table.rowCount())}
    top1, m_ap = rows["top1"], rows["mAP"]
    assert table.item(top1, 4).text() == "pass" and table.item(m_ap, 4).text() == "fail"
    assert table.item(top1, 3).background().color() == PASS_COLOUR
    assert table.item(m_ap, 3).background().color() == FAIL_COLOUR
    assert table.item(top1, 5).text() == "50.0%"  # (0.70 - 0.60) / (0.80 - 0.60), from embridge.core.evaluation.compat
    assert table.item(top1, 1).background().style().name == "NoBrush"  # reference cells are not judged


def test_metrics_table_shows_the_sample_numbers_a_gain_measured_on_the_sample_comes_from(qtbot: QtBot) -> None:
    """new/new searched a sample: the gain (0.75 on the sample) sat beside whole-gallery numbers giving 0.5."""
    cells = {"old/old": {"top1": 0.60}, "new/new": {"top1": 0.80}, "new→old": {"top1": 0.70}}
    on_sample = ({"top1": 0.725}, {"top1": 0.50})  # (upgraded, old/old) on the sample
    comparison = {"new→old": compare(cells["new→old"], cells["old/old"], cells["new/new"], on_sample)}
    table = QTableWidget()
    qtbot.addWidget(table)
    fill_metrics_table(table, cells, comparison)
    headers = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    assert headers[1:4] == ["old/old", "new/new (on the sample)", "new→old"]  # new/new searched the sample
    assert headers[4:] == ["new→old vs old/old", "old/old on the sample", "new→old on the sample",
                           "new→old gain retained (on the sample)"]
    assert [table.item(0, c).text() for c in range(4, 8)] == ["pass", "0.500", "0.725", "75.0%"]  # (0.725-0.5)/(0.8-0.5)


def test_images_come_from_files_npy_or_metadata_values(qtbot: QtBot, tmp_path: Path) -> None:
    png = tmp_path / "digit.png"
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) * 4, mode="L").save(png)
    assert item_image({"path": str(png)}).size().toTuple() == (8, 8)
    sharp = thumbnail({"path": str(png)}, 32, 2.0)  # a 2x screen gets 64 device pixels for 32 logical ones
    assert (sharp.width(), sharp.devicePixelRatio(), sharp.deviceIndependentSize().width()) == (64, 2.0, 32)
    npy = tmp_path / "chw.npy"
    np.save(npy, np.random.default_rng(0).random((3, 5, 7)).astype(np.float32))
    assert item_image({"path": str(npy)}).size().toTuple() == (7, 5)
    flat = array_image(list(range(16)))
    assert flat is not None and flat.size().toTuple() == (4, 4)
    assert flat.pixelColor(0, 0).red() == 0 and flat.pixelColor(3, 3).red() == 255
    assert item_image({"metadata": {"array": [1.0, 2.0, 3.0]}}) is None  # not a picture
    assert item_image({"path": str(tmp_path / "gone.png")}) is None
    assert item_image({"text": "a query"}) is None


def test_flip_browser_shows_the_query_and_both_result_lists(qtbot: QtBot, tmp_path: Path) -> None:
    png = tmp_path / "q.png"
    Image.fromarray(np.full((8, 8), 200, dtype=np.uint8), mode="L").save(png)
    query = {"key": "3/q.png", "label": "3", "path": str(png)}
    right = {"key": "3/a.png", "label": "3", "path": str(png)}
    wrong = {"key": "5/b.png", "label": "5", "text": "five"}
    browser = FlipBrowser()
    qtbot.addWidget(browser)
    browser.set_flips([{"kind": "negative", "query": query, "old": [right, wrong], "upgraded": [wrong, right]},
                       {"kind": "positive", "query": wrong, "old": [right], "upgraded": [wrong]}])
    assert browser.queries.count() == 1 and browser.queries.item(0).text() == "3/q.png · label 3"
    assert not browser.query_view.pixmap().isNull()
    old_rows = [browser.old_results.item(i).text() for i in range(browser.old_results.count())]
    new_rows = [browser.new_results.item(i).text() for i in range(browser.new_results.count())]
    assert old_rows[0].startswith("1. ✓ 3/a.png") and new_rows[0].startswith("1. ✗ 5/b.png")
    assert not browser.old_results.item(0).icon().isNull()  # thumbnail of an image result
    assert browser.new_results.item(0).icon().isNull()  # a text item has none
    browser.kind.setCurrentIndex(1)
    assert browser.queries.count() == 1 and browser.query_caption.text() == "5/b.png · label 5\nfive"


def test_live_curves_put_each_validation_metric_on_the_epoch_it_measured() -> None:
    live = LiveCurves()
    live.add({"epoch": 1, "loss": 2.0, "val_metric": 0.5})  # 0.5: the untrained layer (epoch 0)
    live.add({"epoch": 1, "loss": 1.0, "val_metric": 0.5})
    live.add({"epoch": 2, "loss": 0.8, "val_metric": 0.6})  # 0.6: measured after epoch 1
    assert live.table() == [{"epoch": 0, "val_metric": 0.5}, {"epoch": 1, "loss": 1.5, "val_metric": 0.6},
                            {"epoch": 2, "loss": 0.8}]
    assert not live.add({"stage": "writing"})  # not a training report
    live.add({"epoch": 0, "val_metric": 0.7, "candidate": "affine"})  # auto: the next candidate starts anew
    assert live.table() == [{"epoch": 0, "val_metric": 0.7}]


def test_settings_form_gives_back_typed_values_the_core_accepts(qtbot: QtBot) -> None:
    from embridge.core.train.config import allowed_settings, resolve_config

    form = SettingsForm(choices={"loss": ["mse", "cosine", "contrastive"]})
    qtbot.addWidget(form)
    defaults = allowed_settings("fusion")
    form.set_defaults(defaults)
    assert form.values() == defaults  # ints, floats, bools, strings and JSON lists survive the editors
    form.editor("epochs").setValue(7)
    form.editor("alpha_grid").setText("[0.25, 0.75]")
    assert resolve_config("fusion", form.values())[1]["alpha_grid"] == [0.25, 0.75]
    form.editor("alpha_grid").setText("[0.25,")
    with pytest.raises(ValueError, match="setting 'alpha_grid': not valid JSON"):
        form.values()


def test_the_reports_summary_gives_each_gains_sample_numbers() -> None:
    """nDCG@10's gain measured on the sample came without the sample's numbers, which top-1's had."""
    from embridge.app.pages.reports_page import headline_text
    from embridge.core.report.report_record import as_report

    head = {"upgraded_top1": 0.61, "old_old_top1": 0.22, "ndcg@10": 0.681, "old_old_ndcg@10": 0.298,
            "gain_retained": 0.59, "old_old_sample_top1": 0.439, "upgraded_sample_top1": 0.805,
            "gain_retained_ndcg@10": 0.669, "old_old_sample_ndcg@10": 0.591, "upgraded_sample_ndcg@10": 0.836}
    text = headline_text(as_report({"headline": head}))
    assert "gain retained (top-1): 59.0% (on the evaluation sample: old/old 43.9%, upgraded 80.5%)" in text
    assert "gain retained (nDCG@10): 66.9% (on the evaluation sample: old/old 59.1%, upgraded 83.6%)" in text
    assert "flips" not in text  # a headline without them says nothing of them
    head |= {"negative_flip_rate": 0.055, "positive_flip_rate": 0.13, "arr": 0.965, "arr_k": 10}
    text = headline_text(as_report({"headline": head}))
    from embridge.core.report.number_source import flips_text

    assert "flips: negative 5.5%, positive 13.0%; ARR@10 96.5%" in text and flips_text(head) in text


class _CountingTable(QTableWidget):
    """A table that counts how often its header measures a column's contents."""

    measured = 0

    def sizeHintForColumn(self, column: int) -> int:  # noqa: N802 - Qt's name
        type(self).measured += 1
        return super().sizeHintForColumn(column)


def test_a_refill_measures_each_column_once_not_once_per_cell(qtbot: QtBot) -> None:
    """Columns sized to their contents were re-measured at every cell set: a page's refill cost the square
    of its rows on the GUI thread (the Workspace page with 400 runs froze the window for 15 s after each
    job). The count of measurements, not a time, is what a slower machine cannot change."""
    from PySide6.QtWidgets import QHeaderView

    from embridge.app.pages.page import fill_table

    table = _CountingTable(0, 7)
    qtbot.addWidget(table)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    table.show()
    rows = [[i, "train", "procrustes", "completed", "2026-12-06T17:34:58+00:00", 0.5, None] for i in range(200)]
    fill_table(table, rows)
    qtbot.wait(10)
    _CountingTable.measured = 0
    fill_table(table, rows)
    qtbot.wait(10)
    assert _CountingTable.measured <= 4 * table.columnCount(), _CountingTable.measured
    assert table.horizontalHeader().sectionResizeMode(0) == QHeaderView.ResizeMode.ResizeToContents
    assert table.item(199, 2).text() == "procrustes" and table.item(3, 5).text() == "0.500"
