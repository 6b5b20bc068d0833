"""Thin wrappers over the blocking standard dialogs.

Pages ask through these functions only, so a test replaces one (``monkeypatch.setattr``) and drives
the same code path as a user, without a modal dialog waiting for a click.
"""

from __future__ import annotations

from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget


def confirm(parent: QWidget | None, title: str, text: str) -> bool:
    answer = QMessageBox.question(parent, title, text, QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                  QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes


def choose_directory(parent: QWidget | None, title: str, start: str = "") -> str | None:
    path = QFileDialog.getExistingDirectory(parent, title, start)
    return path or None


def choose_file(parent: QWidget | None, title: str, filters: str = "All files (*)", start: str = "") -> str | None:
    path, _ = QFileDialog.getOpenFileName(parent, title, start, filters)
    return path or None


def choose_save_path(parent: QWidget | None, title: str, filters: str = "All files (*)",
                     start: str = "") -> str | None:
    path, _ = QFileDialog.getSaveFileName(parent, title, start, filters)
    return path or None


def open_path(path: str) -> bool:
    """Show a file or folder with the desktop's file manager or default application."""
    from PySide6.QtCore import QUrl
    from PySide6.QtGui import QDesktopServices

    return QDesktopServices.openUrl(QUrl.fromLocalFile(path))
