"""Small form widgets the pages share: a path field with browse buttons and a settings form."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QScrollArea,
    QSpinBox,
    QToolButton,
    QWidget,
)

from embridge.app import dialogs
from embridge.core.setting_help import setting_help

if TYPE_CHECKING:
    from embridge.app.context import AppContext


class PathField(QWidget):
    """A line edit with 'File…' and/or 'Folder…' buttons that ask through ``embridge.app.dialogs``.

    The buttons are tool buttons, sized to their text (a push button takes at least 80 px), so the
    line edit keeps its room in a narrow form."""

    def __init__(self, title: str, file_filter: str | None = "All files (*)", folder: bool = False,
                 save: bool = False) -> None:
        super().__init__()
        self.edit = QLineEdit()
        self.edit.setMinimumWidth(220)
        self.buttons: list[QToolButton] = []
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.edit, 1)
        if file_filter is not None:
            ask = dialogs.choose_save_path if save else dialogs.choose_file
            self._button("File…").clicked.connect(lambda: self._set(ask(self, title, file_filter)))
        if folder:
            self._button("Folder…").clicked.connect(lambda: self._set(dialogs.choose_directory(self, title)))
        for button in self.buttons:
            layout.addWidget(button)

    def _button(self, text: str) -> QToolButton:
        button = QToolButton()
        button.setText(text)
        button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.buttons.append(button)
        return button

    def _set(self, path: str | None) -> None:
        if path:
            self.edit.setText(path)

    def text(self) -> str:
        return self.edit.text().strip()

    def setText(self, text: str) -> None:
        self.edit.setText(text)


def set_combo_items(combo: QComboBox, values: list[str], keep: bool = True) -> None:
    """Replace a combo's entries, keeping the current choice when it is still offered."""
    current = combo.currentText()
    combo.blockSignals(True)
    combo.clear()
    combo.addItems(values)
    if keep and current in values:
        combo.setCurrentText(current)
    combo.blockSignals(False)


def offer_devices(ctx: AppContext, combo: QComboBox) -> None:
    """Fill ``combo`` with the compute devices now, and again whenever they are detected anew."""
    ctx.devices_changed.connect(lambda: set_combo_items(combo, ctx.devices))
    set_combo_items(combo, ctx.devices)


class SettingsForm(QWidget):
    """One editor per setting, chosen by the default's type; ``values()`` gives them back typed and
    ``changed()`` only those the user changed from the value shown, so an untouched form asks for
    nothing and the core's own defaults apply (as on the command line)."""

    def __init__(self, choices: dict[str, list[str]] | None = None) -> None:
        super().__init__()
        self.choices = choices or {}
        self.form = QFormLayout(self)
        self._getters: dict[str, Callable[[], Any]] = {}
        self._shown: dict[str, Any] = {}
        self._tab_between: tuple[list[QWidget], QWidget] | None = None

    def set_defaults(self, defaults: dict[str, Any]) -> None:
        while self.form.rowCount():
            self.form.removeRow(0)
        self._getters.clear()
        self._shown.clear()
        for key, value in defaults.items():
            editor, getter = self._editor(key, value)
            editor.setObjectName(f"setting_{key}")
            tip = setting_help(key)
            editor.setToolTip(tip)
            caption = QLabel(key.replace("_", " "))
            caption.setToolTip(tip)
            self.form.addRow(caption, editor)
            self._getters[key] = getter
            self._shown[key] = getter()  # as the editor shows it (rounded to its decimals)
        self._order_tabs()

    def editors(self) -> list[QWidget]:
        """The editors in the order shown."""
        return [w for row in range(self.form.rowCount())
                if (item := self.form.itemAt(row, QFormLayout.ItemRole.FieldRole)) and (w := item.widget())]

    def keep_in_tab_order(self, before: list[QWidget], after: QWidget) -> None:
        """Tab reads the editors between ``before`` and ``after``: editors made anew (per method) would
        otherwise come last in the window, after its docks and log."""
        self._tab_between = (before, after)
        self._order_tabs()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self._order_tabs()  # an order set before the form was in its window does not hold

    def _order_tabs(self) -> None:
        if self._tab_between is None:
            return
        chain = [*self._tab_between[0], *self.editors(), self._tab_between[1]]
        for first, then in zip(chain, chain[1:], strict=False):
            if first.window() is then.window():
                QWidget.setTabOrder(first, then)

    def _editor(self, key: str, value: Any) -> tuple[QWidget, Callable[[], Any]]:
        if key in self.choices:
            combo = QComboBox()
            combo.addItems(self.choices[key])
            combo.setCurrentText(str(value))
            return combo, combo.currentText
        if isinstance(value, bool):
            box = QCheckBox()
            box.setChecked(value)
            return box, box.isChecked
        if isinstance(value, int):
            spin = QSpinBox()
            spin.setRange(0, 1_000_000)
            spin.setValue(value)
            return spin, spin.value
        if isinstance(value, float):
            dspin = QDoubleSpinBox()
            dspin.setDecimals(6)
            dspin.setRange(0.0, 1e6)
            dspin.setSingleStep(value / 10 if value else 0.1)
            dspin.setValue(value)
            return dspin, dspin.value
        if isinstance(value, str):
            edit = QLineEdit(value)
            return edit, lambda: edit.text().strip()
        edit = QLineEdit(json.dumps(value))
        edit.setToolTip("JSON value")
        return edit, lambda: json.loads(edit.text())

    def values(self) -> dict[str, Any]:
        """The edited settings; a malformed JSON field raises ValueError naming the setting."""
        out = {}
        for key, get in self._getters.items():
            try:
                out[key] = get()
            except json.JSONDecodeError as exc:
                raise ValueError(f"setting '{key}': not valid JSON ({exc.msg})") from exc
        return out

    def changed(self) -> dict[str, Any]:
        """The settings whose value differs from the default the form showed (typed, as ``values()``)."""
        return {k: v for k, v in self.values().items() if v != self._shown.get(k)}

    def editor(self, key: str) -> QWidget | None:
        return self.findChild(QWidget, f"setting_{key}")


def scrolled_text(label: QLabel, min_height: int, max_height: int | None = None) -> QScrollArea:
    """``label`` as wrapped, top-aligned rich text in a frameless scroll area, so long text scrolls
    instead of being cut when the window is small."""
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.RichText)
    label.setAlignment(Qt.AlignmentFlag.AlignTop)
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    scroll.setWidget(label)
    scroll.setMinimumHeight(min_height)
    if max_height is not None:
        scroll.setMaximumHeight(max_height)
    return scroll
