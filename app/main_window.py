"""The main window: navigation, one page per workflow step, jobs and log docks, the status bar.

Nothing here imports torch, faiss or matplotlib: once the window is shown, background jobs detect
the compute device and then import what later jobs need (see :mod:`embridge.app.preload`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QByteArray, QSize, Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QMainWindow,
    QMenu,
    QMessageBox,
    QStackedWidget,
    QWidget,
)

from embridge.app import dialogs
from embridge.app.app_icon import app_icon
from embridge.app.context import AppContext
from embridge.app.jobs_panel import JobsPanel
from embridge.app.logview import LogView
from embridge.app.pages import PAGES, page_class
from embridge.app.ray_jobs import RayJobs
from embridge.app.settings import window_settings
from embridge.app.workers import Job
from embridge.core.errors import EmbridgeError, first_line

log = logging.getLogger("embridge.app")
WATCH_MS = 1500  # how often the workspace database is checked for changes made outside the app
MIN_SIZE = QSize(1024, 700)  # no page clips a form at this size (wide tables scroll); smaller would
JOBS_WIDTH = 270  # the jobs dock's width at start and its floor after a restore


class MainWindow(QMainWindow):
    def __init__(self, ctx: AppContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.setWindowTitle("Embridge")
        self.setWindowIcon(app_icon())
        self.nav = QListWidget()
        self.nav.setMaximumWidth(180)
        self.nav.setMinimumWidth(140)
        self.stack = QStackedWidget()
        self.pages: dict[str, QWidget] = {}
        for n, (key, title, target) in enumerate(PAGES, start=1):
            page = page_class(target)(ctx)
            self.pages[key] = page
            self.stack.addWidget(page)
            self.nav.addItem(f"{n}  {title}")
        self.nav.currentRowChanged.connect(self.stack.setCurrentIndex)
        central = QWidget()
        layout = QHBoxLayout(central)
        layout.addWidget(self.nav)
        layout.addWidget(self.stack, 1)
        self.setCentralWidget(central)

        self.jobs_panel = JobsPanel(ctx.jobs, self.show_job_error)
        self.jobs_dock = self._dock("Jobs", "jobs", self.jobs_panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self.log_view = LogView()
        self.log_dock = self._dock("Log", "log", self.log_view, Qt.DockWidgetArea.BottomDockWidgetArea)
        # a warning (a damaged vector set passed over, say) is not left in a hidden log
        self.log_view.handler.relay.warned.connect(self.log_dock.show, Qt.ConnectionType.QueuedConnection)

        self.workspace_label = QLabel("No workspace")
        self.device_label = QLabel(f"Device: {ctx.device_label}")
        self.statusBar().addWidget(self.workspace_label, 1)
        self.statusBar().addPermanentWidget(self.device_label)
        self.ray_jobs = RayJobs(ctx)
        # the command line (or another app) may change the open workspace: a low-rate look at the
        # database files' size and time marks the pages stale (see refresh_pages)
        self.watch = QTimer(self)
        self.watch.setObjectName("workspace watch")
        self.watch.setInterval(WATCH_MS)
        self.watch.timeout.connect(self._check_workspace)
        self._db_seen: tuple[object, ...] | None = None
        self._db_opened: tuple[int, int] | None = None  # the database file the open workspace read
        self._build_menus()
        ctx.workspace_changed.connect(self._on_workspace_changed)
        ctx.devices_changed.connect(lambda: self.device_label.setText(f"Device: {ctx.device_label}"))
        self.nav.setCurrentRow(0)
        self.setMinimumSize(MIN_SIZE)
        self.jobs_panel.setMinimumWidth(JOBS_WIDTH - 40)
        self.resize(1400, 900)
        self.resizeDocks([self.log_dock], [130], Qt.Orientation.Vertical)
        self.resizeDocks([self.jobs_dock], [JOBS_WIDTH], Qt.Orientation.Horizontal)
        self._restore_geometry()

    def _dock(self, title: str, name: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"{name}_dock")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _build_menus(self) -> None:
        workspace_page = self.pages["workspace"]
        file_menu = self.menuBar().addMenu("&File")
        self._action(file_menu, "&New workspace…", QKeySequence.StandardKey.New, workspace_page.new_workspace)
        self._action(file_menu, "&Open workspace…", QKeySequence.StandardKey.Open, workspace_page.open_workspace)
        self.recent_menu = file_menu.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        self._action(file_menu, "&Close workspace", "Ctrl+Shift+W", self.ctx.close_workspace)
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", QKeySequence.StandardKey.Quit, self.close)

        view_menu = self.menuBar().addMenu("&View")
        for n, (key, title, _target) in enumerate(PAGES, start=1):
            self._action(view_menu, f"&{n} {title}", f"Ctrl+{n}", lambda k=key: self.show_page(k))
        view_menu.addSeparator()
        self._action(view_menu, "&Refresh", QKeySequence.StandardKey.Refresh, self.refresh_pages)
        view_menu.addSeparator()
        view_menu.addAction(self.jobs_dock.toggleViewAction())
        view_menu.addAction(self.log_dock.toggleViewAction())
        self.jobs_dock.toggleViewAction().setShortcut("Ctrl+J")
        self.log_dock.toggleViewAction().setShortcut("Ctrl+L")

        jobs_menu = self.menuBar().addMenu("&Jobs")
        self._action(jobs_menu, "&Cancel all jobs", "Ctrl+Shift+X", self.ctx.jobs.cancel_all)
        self._action(jobs_menu, "C&lear finished jobs", None, self.jobs_panel.clear_finished)
        jobs_menu.addSeparator()
        self._action(jobs_menu, "Ray cluster &address…", None, self.edit_ray_address)
        self._action(jobs_menu, "&Backfill on the Ray cluster…", None, self.submit_ray_backfill)

        help_menu = self.menuBar().addMenu("&Help")
        self._action(help_menu, "&Guide: workflow and metrics", "F1", self.show_guide)
        self._action(help_menu, "&About Embridge", None, self._about)

    def _action(self, menu: QMenu, text: str, shortcut: QKeySequence.StandardKey | str | None,
                slot: Callable[[], object]) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(lambda _checked=False: slot())
        menu.addAction(action)
        return action

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        for path in self.ctx.settings.recent_workspaces:
            action = self.recent_menu.addAction(path)
            action.triggered.connect(lambda _checked=False, p=path: self.ctx.open_workspace(p))
        if not self.recent_menu.actions():
            self.recent_menu.addAction("(none)").setEnabled(False)

    def show_guide(self) -> QWidget:
        """A short, non-modal guide to the workflow and to what each number means."""
        from PySide6.QtWidgets import QDialog, QTextBrowser, QVBoxLayout

        from embridge.app.help_text import GUIDE_HTML

        dialog = QDialog(self)
        dialog.setWindowTitle("Embridge guide")
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        text = QTextBrowser()
        text.setHtml(GUIDE_HTML)
        layout = QVBoxLayout(dialog)
        layout.addWidget(text)
        dialog.resize(640, 560)
        dialog.show()
        self.guide = dialog
        return dialog

    def _about(self) -> None:
        from embridge.core import __version__

        log_path = self.ctx.reporter.log_path
        QMessageBox.about(self, "About Embridge",
                          f"<b>Embridge {__version__}</b><p>Plan and check embedding model upgrades.</p>"
                          f"<p>Settings: {self.ctx.settings.path}<br>Log: {log_path}</p>")

    # -- behaviour --------------------------------------------------------------------------
    def show_page(self, key: str) -> QWidget:
        index = [k for k, _t, _m in PAGES].index(key)
        self.nav.setCurrentRow(index)
        return self.pages[key]

    def start(self) -> None:
        """Work deferred until the window is visible: find the compute device, then warm up."""
        QTimer.singleShot(0, self.ctx.detect_devices)

    def edit_ray_address(self) -> None:
        """The cluster the app submits Ray jobs to (HOST:PORT of 'ray start --head', or ray://HOST:10001)."""
        from PySide6.QtWidgets import QInputDialog, QLineEdit

        from embridge.app.ray_jobs import check_address
        from embridge.core.errors import EmbridgeError

        text, ok = QInputDialog.getText(self, "Ray cluster address", "Address of the cluster jobs are submitted to "
                                        "(HOST:PORT or ray://HOST:10001; empty: none):",
                                        QLineEdit.EchoMode.Normal, self.ray_jobs.address)
        if ok:
            try:
                self.ray_jobs.set_address(check_address(text))
            except EmbridgeError as exc:
                self.ctx.reporter.report("Ray cluster address", str(exc))

    def submit_ray_backfill(self) -> None:
        """Pick the model and the items, then submit the backfill to the cluster (it runs there)."""
        from PySide6.QtWidgets import QInputDialog

        if self.ctx.ws is None:
            self.ctx.reporter.report("Backfill on Ray", "Open or create a workspace first.")
            return
        models = [m["name"] for m in self.ctx.ws.models() if m.get("kind") != "vectors"]
        model, ok = QInputDialog.getItem(self, "Backfill on Ray", "Embed the gallery with:", models, 0, False)
        if not ok or not model:
            return
        choices = ["every gallery item", "the planner's partial backfill"]
        which, ok = QInputDialog.getItem(self, "Backfill on Ray", "Items:", choices, 0, False)
        if ok:
            self.ray_jobs.submit_backfill(model, "planner" if which == choices[1] else "stored")

    def show_job_error(self, job: Job) -> None:
        outcome = job.outcome
        if outcome is not None:
            self.ctx.reporter.show_dialog(f"{job.title} failed", outcome.error or "unknown error", outcome.details)

    def refresh_pages(self) -> None:
        """Re-read the workspace: every page is marked stale and the visible one refreshes now."""
        for page in self.pages.values():
            mark = getattr(page, "mark_stale", None)
            if mark is not None:
                mark()

    def _db_state(self) -> tuple[object, ...] | None:
        """Size and modification time of the workspace database and its write-ahead log."""
        from embridge.core.paths import DB_NAME

        ws = self.ctx.ws
        if ws is None:
            return None
        state: list[object] = []
        for name in (DB_NAME, f"{DB_NAME}-wal"):
            try:
                info = (Path(ws.root) / name).stat()
                state.append((info.st_mtime_ns, info.st_size))
            except OSError:
                state.append(None)
        return tuple(state)

    def _check_workspace(self) -> None:
        """Refresh when the database changed; skipped while the app's own jobs write to it (their
        end refreshes the pages), and the change then seen on the next check."""
        if self.ctx.ws is None:
            self.watch.stop()
            return
        if any(not self.ray_jobs.is_watcher(j) for j in self.ctx.jobs.running()):  # a Ray watcher writes only
            return  # when its job ends (then refreshing), and may run for hours: it does not hold the pages back
        state = self._db_state()
        identity = self._db_identity()
        if identity is not None and self._db_opened is not None and identity != self._db_opened:
            root = Path(self.ctx.ws.root)  # deleted and made again: this handle still read the deleted file
            if self.ctx.open_workspace(root):
                self.ctx.reporter.report("Workspace reopened", f"{root}: the workspace there was replaced by another "
                                         "(deleted and made again), so it was opened afresh: its runs, models and "
                                         "ids are the new workspace's")
            return
        if state is not None and state[0] is None:  # its database is gone from where it was opened
            root = Path(self.ctx.ws.root)
            self.ctx.close_workspace()
            self.ctx.reporter.report("Workspace closed", f"{root}: the workspace is no longer there (moved, renamed "
                                     "or deleted), so it was closed; open it where it lies now")
            return
        if state != self._db_seen:
            self._db_seen = state
            try:  # overwritten or cut short by another program: closed, as opening it would be refused
                self.ctx.ws.check_database()
            except EmbridgeError as exc:
                self.ctx.close_workspace()
                self.ctx.reporter.report("Workspace closed", f"{first_line(exc)}; the workspace was closed")
                return
            self.refresh_pages()

    def _db_identity(self) -> tuple[int, int] | None:
        """The workspace database file's device and inode (None: no file there now)."""
        from embridge.core.paths import DB_NAME

        ws = self.ctx.ws
        try:
            info = (Path(ws.root) / DB_NAME).stat() if ws is not None else None
        except OSError:
            return None
        return None if info is None else (info.st_dev, info.st_ino)

    def _on_workspace_changed(self) -> None:
        ws = self.ctx.ws
        self._db_seen = self._db_state()
        self._db_opened = self._db_identity()
        if ws is None:
            self.watch.stop()
        else:
            self.watch.start()
        root = str(Path(ws.root).resolve()) if ws is not None else None
        self.workspace_label.setText(f"Workspace: {root}" if root else "No workspace")
        self.setWindowTitle(f"Embridge — {Path(root).name}" if root else "Embridge")

    def _restore_geometry(self) -> None:
        settings = window_settings()
        geometry, state = settings.value("geometry"), settings.value("state")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        if isinstance(state, QByteArray):
            self.restoreState(state)
        # a dock squeezed narrow in an earlier session (or a saved state from an older layout)
        # would clip the job cards; restore never brings back a width below the floor
        if self.jobs_dock.width() < JOBS_WIDTH - 40:
            self.resizeDocks([self.jobs_dock], [JOBS_WIDTH], Qt.Orientation.Horizontal)

    def closeEvent(self, event: QCloseEvent) -> None:
        # Ray jobs run on the cluster: closing only stops watching them (reattached on reopen)
        running = [j for j in self.ctx.jobs.running() if j.visible and not self.ray_jobs.is_watcher(j)]
        if running:
            names = ", ".join(j.title for j in running)
            if not dialogs.confirm(self, "Jobs are running",
                                   f"{len(running)} job(s) still running ({names}). Cancel them and quit?"):
                event.ignore()
                return
        self.watch.stop()
        self.ray_jobs.detach_all()
        if not self.ctx.jobs.shutdown(timeout_s=60.0):
            log.warning("some jobs did not stop within 60 s")
        settings = window_settings()
        settings.setValue("geometry", self.saveGeometry())
        settings.setValue("state", self.saveState())
        settings.sync()
        for dialog in self.findChildren(QDialog):  # a store dialog stayed on screen until Qt quit
            dialog.close()
        self.ctx.close_workspace(emit=False)
        self.log_view.detach()
        event.accept()
