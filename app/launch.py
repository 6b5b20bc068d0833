"""``embridge-gui``: start the desktop app, optionally opening a workspace.

Only Qt, the light parts of the core and the few modules whose set-up holds the GIL (see
:func:`embridge.app.preload.import_gil_holders`) are imported before the window shows; torch, faiss
and matplotlib load later, in the background or when a page needs them.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
from collections.abc import Sequence

from PySide6.QtCore import QCoreApplication, Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication

from embridge.app.app_icon import app_icon
from embridge.app.context import AppContext
from embridge.app.error_path import ErrorReporter, setup_file_logging
from embridge.app.main_window import MainWindow
from embridge.app.preload import import_gil_holders
from embridge.app.settings import Settings, log_dir
from embridge.app.workers import JobManager
from embridge.core.mpl_config import use_writable_matplotlib_config

APP_NAME = "Embridge"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="embridge-gui", description="Embridge desktop app")
    parser.add_argument("--workspace", "-w", metavar="DIR", help="open this workspace on start")
    parser.add_argument("--self-test", action="store_true",
                        help="run the demo pipeline headlessly (no window) and exit 0 when it works")
    parser.add_argument("--self-test-out", metavar="FILE",
                        help="with --self-test: also write its JSON line to FILE (windowed builds have no console)")
    return parser.parse_args(argv)  # a misspelt option is an error (exit 2), not a window without it


def application() -> QApplication:
    """The QApplication, created once with the names QStandardPaths and QSettings use."""
    existing = QApplication.instance()
    if isinstance(existing, QApplication):
        return existing
    QGuiApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
    QCoreApplication.setOrganizationName(APP_NAME)
    QCoreApplication.setApplicationName(APP_NAME)
    app = QApplication(sys.argv[:1])
    app.setWindowIcon(app_icon())
    return app


def build_main_window(workspace: str | None = None) -> MainWindow:
    """Settings, log file, error reporter, job manager and the window, wired together."""
    import_gil_holders()  # now, not while the window is on screen: a background import would freeze it
    settings = Settings()
    reporter = ErrorReporter(setup_file_logging(log_dir()))
    ctx = AppContext(settings, JobManager(), reporter)
    window = MainWindow(ctx)
    reporter.parent_widget = window
    if workspace:
        ctx.open_workspace(workspace)
    return window


def main(argv: Sequence[str] | None = None) -> int:
    multiprocessing.freeze_support()
    use_writable_matplotlib_config()  # a read-only home: no matplotlib warning on every start
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.self_test:
        from embridge.core.selftest import self_test_main

        return self_test_main(argv)
    app = application()
    window = build_main_window(args.workspace)
    window.ctx.reporter.install()
    window.show()
    window.start()
    try:
        return app.exec()
    finally:
        window.ctx.reporter.uninstall()


if __name__ == "__main__":
    raise SystemExit(main())
