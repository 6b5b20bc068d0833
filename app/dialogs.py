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


def ask_text(parent: QWidget | None, title: str, label: str, text: str = "") -> str | None:
    from PySide6.QtWidgets import QInputDialog

    value, ok = QInputDialog.getText(parent, title, label, text=text)
    return value.strip() if ok and value.strip() else None


def open_path(path: str) -> bool:
    """Show a file or folder with the desktop's file manager or default application."""
    from PySide6.QtCore import QUrl
    from PySide6.QtGui import QDesktopServices

    return QDesktopServices.openUrl(QUrl.fromLocalFile(path))


def show_path(parent: QWidget | None, title: str, path: str, opened: bool) -> QWidget:
    """A non-modal note with the file's path and a copy button (shown whether or not a browser
    or file manager opened it: without one, opening does nothing visible)."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QLineEdit, QPushButton, QVBoxLayout

    dialog = QDialog(parent)
    dialog.setWindowTitle(title)
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    layout = QVBoxLayout(dialog)
    layout.addWidget(QLabel("Opened in the default application. The file is at:" if opened else
                            "No application could open it on this machine (is a web browser installed?). "
                            "The file is at:"))
    field = QLineEdit(path)
    field.setReadOnly(True)
    field.setMinimumWidth(480)
    layout.addWidget(field)
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
    copy = QPushButton("&Copy path")
    copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(path))
    buttons.addButton(copy, QDialogButtonBox.ButtonRole.ActionRole)
    buttons.rejected.connect(dialog.close)
    layout.addWidget(buttons)
    dialog.copy_button, dialog.path_field, dialog.opened = copy, field, opened  # type: ignore[attr-defined]
    dialog.show()
    return dialog
