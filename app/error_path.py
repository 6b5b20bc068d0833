"""One error path for the whole app.

``sys.excepthook`` (bugs in slots and the main thread), ``threading.excepthook`` (bugs in Python
threads) and failed jobs all end in :meth:`ErrorReporter.report`: the error is logged to the log
file and shown in one non-modal dialog with a readable message and, for bugs, a copyable
traceback. The dialog never blocks, so the app (and a test) keeps running while it is open.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import traceback
from logging.handlers import RotatingFileHandler
from pathlib import Path
from types import TracebackType

from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from embridge.core.errors import InputError

LOG_FILE = "embridge.log"
_METAVAR = r"[A-Z][A-Z0-9_]*(?:\.[a-z0-9]+)?\b"  # what an option's usage names its value: NAME, N, FILE.npz
log = logging.getLogger("embridge.app")


def setup_file_logging(folder: Path) -> Path:
    """Log everything under the ``embridge`` logger to a rotating file in ``folder``."""
    path = folder / LOG_FILE
    root = logging.getLogger("embridge")
    root.setLevel(logging.INFO)
    if not any(isinstance(h, RotatingFileHandler) and Path(h.baseFilename) == path for h in root.handlers):
        handler = RotatingFileHandler(path, maxBytes=1_000_000, backupCount=3, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    return path


def headline(message: str) -> str:
    """The one line the command line prints for the same error (whitespace folded, nothing dropped)."""
    return " ".join(str(message).split()) or "unknown error"


class ErrorDialog(QDialog):
    """The error's one line on top, then (bugs only) the traceback with a copy button, and the log's path."""

    def __init__(self, title: str, message: str, details: str | None, log_path: Path | None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.message, self.details = message, details
        self.headline = headline(message)
        layout = QVBoxLayout(self)
        # the one line first and prominent (as the command line prints it); a traceback only on request
        self.message_label = QLabel(self.headline)
        self.message_label.setObjectName("headline")
        self.message_label.setWordWrap(True)
        self.message_label.setTextFormat(Qt.TextFormat.PlainText)
        self.message_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        font = self.message_label.font()
        font.setBold(True)
        self.message_label.setFont(font)
        layout.addWidget(self.message_label)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.details_view: QPlainTextEdit | None = None
        if details:
            self.details_view = QPlainTextEdit(details)
            self.details_view.setReadOnly(True)
            self.details_view.setMinimumSize(640, 240)
            self.details_view.setVisible(False)
            layout.addWidget(self.details_view)
            self.toggle_details = QPushButton("Show &details")
            self.toggle_details.clicked.connect(self._toggle_details)
            buttons.addButton(self.toggle_details, QDialogButtonBox.ButtonRole.ActionRole)
            copy = QPushButton("&Copy details")
            copy.clicked.connect(self.copy_details)
            buttons.addButton(copy, QDialogButtonBox.ButtonRole.ActionRole)
        if log_path is not None:
            where = QLabel(f"Logged to {log_path}")
            where.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            layout.addWidget(where)
        buttons.rejected.connect(self.close)
        layout.addWidget(buttons)

    def _toggle_details(self) -> None:
        assert self.details_view is not None
        shown = not self.details_view.isVisible()
        self.details_view.setVisible(shown)
        self.toggle_details.setText("Hide &details" if shown else "Show &details")
        self.adjustSize()

    def copy_details(self) -> None:
        QGuiApplication.clipboard().setText(f"{self.message}\n\n{self.details or ''}")


def show_error_dialog(title: str, message: str, details: str | None, log_path: Path | None,
                      parent: QWidget | None = None) -> ErrorDialog:
    """Open a non-modal error dialog and return it (tests find it among the top-level widgets)."""
    dialog = ErrorDialog(title, message, details, log_path, parent)
    dialog.show()
    dialog.raise_()
    return dialog


class ErrorReporter(QObject):
    """Collects errors from any thread and shows them, one dialog each, in the GUI thread."""

    _raised = Signal(str, str, object)

    def __init__(self, log_path: Path | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.log_path = log_path
        self.parent_widget = parent
        self._previous: tuple | None = None
        self.open_dialogs: list[ErrorDialog] = []  # a Python reference per open dialog (see show_dialog)
        self._raised.connect(self._show, Qt.ConnectionType.QueuedConnection)

    def install(self) -> None:
        """Route uncaught exceptions of the main thread and of Python threads here."""
        self._previous = (sys.excepthook, threading.excepthook)
        sys.excepthook = self._excepthook
        threading.excepthook = self._thread_excepthook

    def uninstall(self) -> None:
        if self._previous is not None:
            sys.excepthook, threading.excepthook = self._previous
            self._previous = None

    def report(self, title: str, message: str, details: str | None = None) -> None:
        """Log an error and show it; safe to call from any thread."""
        log.error("%s: %s%s", title, message, f"\n{details}" if details else "")
        self._raised.emit(title, message, details)

    def _excepthook(self, exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        details = "".join(traceback.format_exception(exc_type, exc, tb))
        self.report("Unexpected error", f"{exc_type.__name__}: {exc}", details)

    def _thread_excepthook(self, args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        details = "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback))
        where = args.thread.name if args.thread is not None else "a background thread"
        self.report("Unexpected error", f"{args.exc_type.__name__} in {where}: {args.exc_value}", details)

    @Slot(str, str, object)
    def _show(self, title: str, message: str, details: str | None) -> None:
        self.show_dialog(title, message, details)

    def show_dialog(self, title: str, message: str, details: str | None) -> ErrorDialog:
        """Show an error again without logging it (GUI thread); the dialog is kept alive while open."""
        parent = self.parent_widget if isinstance(self.parent_widget, QWidget) else None
        dialog = show_error_dialog(title, message, details, self.log_path, parent)
        self.open_dialogs.append(dialog)
        dialog.finished.connect(lambda _result, d=dialog: self.open_dialogs.remove(d))
        return dialog


def labelled(exc: InputError, labels: dict[str, str]) -> InputError:
    """The same refusal naming the window's field instead of the command-line option, since the window
    shows fields, not flags: with ``{"--out": "Destination"}``, "--out x.zip: is inside the workspace"
    reads "Destination x.zip: is inside the workspace", and "(--out)" or "--out FILE" in the problem
    reads "(Destination)". Options without a label keep their text; other errors are returned unchanged."""
    source, problem = exc.source or "", relabelled(exc.problem, labels)
    for option, label in labels.items():
        if source == option or source.startswith(option + " "):
            source = label + source[len(option):]
    if source == (exc.source or "") and problem == exc.problem:
        return exc
    return type(exc)(source or None, problem)


def relabelled(text: str, labels: dict[str, str]) -> str:
    """``text`` naming the window's fields instead of the command-line options it names (an option's
    metavariable goes with it): the core words its advice for the command line."""
    for option, label in labels.items():
        text = re.sub(rf"(?<![\w-]){re.escape(option)}(?![\w-])(?: {_METAVAR})?", lambda _m, t=label: t, text)
    return text
