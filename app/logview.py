"""The log view: records of the ``embridge`` logger, from any thread, shown in the GUI thread."""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import QPlainTextEdit, QWidget


class _Relay(QObject):
    line = Signal(str)
    warned = Signal()  # a warning or an error was logged: the log should be in view


class QtLogHandler(logging.Handler):
    """Formats records and passes them through a queued signal (thread-safe)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.relay = _Relay()
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.relay.line.emit(self.format(record))
            if record.levelno >= logging.WARNING:
                self.relay.warned.emit()
        except RuntimeError:  # the view was destroyed while the app shuts down
            pass


class LogView(QPlainTextEdit):
    """A read-only, bounded text view attached to the ``embridge`` logger while it exists."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setReadOnly(True)
        self.setMaximumBlockCount(5000)
        self.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.handler = QtLogHandler()
        self.handler.relay.line.connect(self.appendPlainText, Qt.ConnectionType.QueuedConnection)
        handler = self.handler
        logging.getLogger("embridge").addHandler(handler)
        self.destroyed.connect(lambda *_: logging.getLogger("embridge").removeHandler(handler))

    def detach(self) -> None:
        logging.getLogger("embridge").removeHandler(self.handler)
