"""Workspace page: create, open and reopen workspaces; what the open one holds and what ran in it."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import (
    QComboBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
)

from embridge.app import dialogs
from embridge.app.context import AppContext
from embridge.app.pages.page import Page, fill_table, make_table
from embridge.app.pages.why_disabled import BUILDING_DEMO, VERIFYING, JobButton, enable
from embridge.core.overview import overview_text, workspace_overview
from embridge.core.progress import ProgressFn, StopFn

log = logging.getLogger("embridge.app")
DEMO_KINDS = (("Digits (images)", "digits"), ("Bible verses (text)", "text"))  # short: whole at the minimum size


class WorkspacePage(Page):
    title = "Workspace"
    needs_workspace = False

    def __init__(self, ctx: AppContext) -> None:
        super().__init__(ctx)
        buttons = QHBoxLayout()
        self.new_button = QPushButton("&New workspace…")
        self.open_button = QPushButton("&Open workspace…")
        self.demo_button = QPushButton("Build &demo workspace…")
        self.demo_button.setToolTip("Builds a small ready-to-train workspace from bundled data")
        self.demo_kind = QComboBox()
        for label, kind in DEMO_KINDS:
            self.demo_kind.addItem(label, kind)
        self._offer_text_demo()
        self.demo_kind.setToolTip("Digits: images of handwritten digits with class labels. Bible verses: verses "
                                  "found from another translation, with relevance judgments and two text encoders.")
        for button, slot in ((self.new_button, self.new_workspace), (self.open_button, self.open_workspace),
                             (self.demo_button, self.build_demo)):
            button.clicked.connect(slot)
            buttons.addWidget(button)
        buttons.addWidget(self.demo_kind)
        buttons.addStretch(1)
        self.demo_building = JobButton(self.demo_button, BUILDING_DEMO, lambda: None)  # one build at a time
        self.layout_.addLayout(buttons)

        recent_box = QGroupBox("&Recent workspaces")
        self.recent = QListWidget()
        self.recent.itemActivated.connect(lambda item: self.ctx.open_workspace(item.text()))
        self.forget_button = QPushButton("Re&move from list")
        self.forget_button.clicked.connect(self.forget_selected)
        self.recent.itemSelectionChanged.connect(self._offer_forget)
        recent_layout = QVBoxLayout(recent_box)
        recent_layout.addWidget(QLabel("Enter or double-click opens a workspace."))
        recent_layout.addWidget(self.recent)
        recent_layout.addWidget(self.forget_button)
        self.layout_.addWidget(recent_box, 1)

        current_box = QGroupBox("Open workspace")
        self.summary = QPlainTextEdit()
        self.summary.setReadOnly(True)
        self.runs = make_table(["Run", "Kind", "Method", "Status", "Started", "Seconds", "Error"])
        self.verify_button = QPushButton("Ver&ify stored files")
        self.verify_button.setToolTip("Hashes every stored vector file, model copy and trained layer afresh and "
                                      "checks the database (as 'embridge info --verify'); reads only")
        self.verify_button.clicked.connect(self.verify)
        self.verifying = JobButton(self.verify_button, VERIFYING,
                                   lambda: None if self.ctx.ws is not None else "Open a workspace first.")
        self._verified: tuple[str, str] | None = None  # (workspace root, the last check's text)
        current_layout = QVBoxLayout(current_box)
        current_layout.addWidget(self.verify_button)
        current_layout.addWidget(self.summary, 1)
        current_layout.addWidget(QLabel("Runs"))
        current_layout.addWidget(self.runs, 1)
        self.layout_.addWidget(current_box, 2)

    # -- actions ----------------------------------------------------------------------------
    def new_workspace(self) -> None:
        path = dialogs.choose_directory(self, "New workspace: choose an empty folder")
        if path:
            self.ctx.open_workspace(path, create=True)

    def open_workspace(self) -> None:
        path = dialogs.choose_directory(self, "Open workspace folder")
        if path:
            self.ctx.open_workspace(path)

    def _offer_text_demo(self) -> None:
        """The text demo greyed out, with the core's reason, where its encoders cannot load (no text extra)."""
        from embridge.core.demo_text import text_demo_problem

        problem = text_demo_problem()
        if problem is None:
            return
        item = self.demo_kind.model().item(self.demo_kind.findData("text"))  # type: ignore[attr-defined]
        item.setEnabled(False)
        item.setToolTip(problem[0].upper() + problem[1:])

    def build_demo(self) -> None:
        path = dialogs.choose_directory(self, "Demo workspace: choose an empty folder")
        if path:
            self.start_demo(path)

    def start_demo(self, path: str | Path, kind: str | None = None) -> None:
        """Build the demo workspace of ``kind`` (default: the chosen one) at ``path`` in the background, then open it."""
        chosen = kind or self.demo_kind.currentData()

        def job(on_progress: ProgressFn, should_stop: StopFn) -> str:
            if chosen == "text":
                from embridge.core.demo_text import build_text_demo as build_demo
            else:
                from embridge.core.demo import build_demo

            with build_demo(path, on_progress=on_progress, should_stop=should_stop) as ws:
                return str(ws.root)

        if self.demo_building.job is not None:
            return
        self.demo_building.started(self.ctx.run_plain("Build demo workspace", job,
                                                      lambda root: self.ctx.open_workspace(root), milestone="stage"))

    def verify(self) -> None:
        """Check every stored file in the background; the result goes under the summary and, when
        something is damaged, to the log (which is brought into view)."""
        from embridge.core.store.workspace_verify import verify_workspace

        def job(ws: Any, on_progress: ProgressFn, should_stop: StopFn) -> tuple[bool, str]:
            check = verify_workspace(ws, on_progress, should_stop)
            return check.ok, check.text()

        root = str(self.ctx.ws.root) if self.ctx.ws is not None else ""

        def done(result: tuple[bool, str]) -> None:
            ok, text = result
            stamp = time.strftime("%H:%M:%S")  # shown under the summary until another workspace opens
            self._verified = (root, f"Last check of the stored files, at {stamp}:\n{text}")
            self.refresh()
            if not ok:
                log.warning("%s", text)

        self.verifying.started(self.ctx.run("Verify stored files", job, done))

    def reset(self) -> None:
        self._verified = None  # a check told of the workspace as it was then: a reopened one shows none
        self.verifying.forget()  # a check of the last workspace still running leaves this one's button free

    def forget_selected(self) -> None:
        item = next(iter(self.recent.selectedItems()), None)
        if item is not None:
            self.ctx.settings.remove_recent(item.text())
            self.refresh()

    def _offer_forget(self) -> None:
        """'Remove from list' only where a listed workspace is selected (it did nothing otherwise)."""
        why = None if self.recent.selectedItems() else (
            "Select a workspace in the list first." if self.recent.count() else "No recent workspaces.")
        enable(self.forget_button, why)

    # -- state ------------------------------------------------------------------------------
    def refresh(self) -> None:
        self.recent.clear()
        for path in self.ctx.settings.recent_workspaces:
            item = QListWidgetItem(path)
            if not (Path(path) / "embridge.db").is_file():
                item.setToolTip("This folder no longer holds a workspace")
            self.recent.addItem(item)
        self._offer_forget()
        self.verifying.show()
        ws = self.ctx.ws
        if ws is None:
            self.summary.setPlainText("No workspace is open.")
            fill_table(self.runs, [])
            return
        verified = self._verified[1] if self._verified and self._verified[0] == str(ws.root) else ""
        self.summary.setPlainText(overview_text(workspace_overview(ws)) + ("\n\n" + verified if verified else ""))
        fill_table(self.runs, [[r["id"], r["kind"], r["method"], r["status"], r.get("started"),
                                r.get("duration_s"), r.get("error")] for r in reversed(ws.runs())])
