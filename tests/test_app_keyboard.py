"""Keyboard use: each Alt+letter of a page does one thing, Tab reaches every control in reading order and
leaves tables.

Two widgets sharing a letter turned Alt+letter into a focus toggle (Alt+E on the Gallery page only focused
the model picker, never embedded); the Train page's settings, made anew per method, came after the log in
the tab order; and Tab moved from cell to cell inside every table, never out of it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from app_fixtures import no_threads_left, window
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractButton, QAbstractItemView, QGroupBox, QLabel, QTabWidget, QWidget
from pytestqt.qtbot import QtBot

from embridge.app.main_window import MainWindow

__all__ = ["no_threads_left", "window"]
pytestmark = pytest.mark.usefixtures("no_threads_left")

_MNEMONIC = re.compile(r"&([^&\s])")


def _letter(text: str) -> str | None:
    found = _MNEMONIC.search(text.replace("&&", ""))
    return found.group(1).lower() if found else None


def _mnemonics(win: MainWindow, page: QWidget) -> dict[str, list[str]]:
    """Alt+letter owners on ``page``: the menus, its buttons and tabs, and labels that give focus to a buddy
    (a label without one, or with rich text, takes no shortcut)."""
    owners: dict[str, list[str]] = {}

    def note(text: str, what: str) -> None:
        if (letter := _letter(text)) is not None:
            owners.setdefault(letter, []).append(f"{what} {text!r}")

    for action in win.menuBar().actions():
        note(action.text(), "menu")
    for button in page.findChildren(QAbstractButton):
        if button.isVisibleTo(page):
            note(button.text(), "button")
    for box in page.findChildren(QGroupBox):
        if box.isVisibleTo(page):
            note(box.title(), "group")
    for label in page.findChildren(QLabel):
        if label.isVisibleTo(page) and label.buddy() is not None and label.textFormat() != Qt.TextFormat.RichText:
            note(label.text(), "label")
    for tabs in page.findChildren(QTabWidget):
        for i in range(tabs.count()):
            note(tabs.tabText(i), "tab")
    return owners


def test_every_alt_letter_of_a_page_has_one_owner(qtbot: QtBot, window: MainWindow, demo_copy: Path) -> None:
    window.ctx.open_workspace(demo_copy)
    clashes = {}
    for key in window.pages:
        page = window.show_page(key)
        shared = {letter: who for letter, who in _mnemonics(window, page).items() if len(who) > 1}
        if shared:
            clashes[key] = shared
    assert not clashes


def _tab_walk(qtbot: QtBot, win: MainWindow, start: QWidget, steps: int = 80) -> list[QWidget]:
    start.setFocus()
    seen: list[QWidget] = []
    for _ in range(steps):
        focused = win.focusWidget()
        qtbot.keyClick(focused or win, Qt.Key.Key_Tab)
        now = win.focusWidget()
        if now is None or now is start:
            break
        seen.append(now)
    return seen


def test_tab_reaches_the_train_settings_before_train_and_leaves_tables(qtbot: QtBot, window: MainWindow,
                                                                      demo_copy: Path) -> None:
    window.ctx.open_workspace(demo_copy)
    window.activateWindow()
    train = window.show_page("train")
    qtbot.waitUntil(lambda: not window.ctx.loading_libraries, timeout=60_000)  # the page then shows its body
    qtbot.wait(50)
    editors = train.form.editors()
    assert editors
    walk = _tab_walk(qtbot, window, train.old_model)
    assert train.train_button in walk and all(e in walk for e in editors if e.isEnabled())
    assert max(walk.index(e) for e in editors if e.isEnabled()) < walk.index(train.train_button)
    assert walk.index(train.runs_table) < len(walk) - 1  # Tab went on past the table
    assert not any(t.tabKeyNavigation() for t in window.findChildren(QAbstractItemView))
