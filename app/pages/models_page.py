"""Models page: add checkpoints (file dialog or drag and drop), show each spec, warn about mismatches."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
)

from embridge.app import dialogs
from embridge.app.context import AppContext
from embridge.app.error_path import labelled
from embridge.app.pages.forms import PathField, set_combo_items
from embridge.app.pages.page import Page, fill_table, make_table
from embridge.app.pages.why_disabled import enable
from embridge.app.workers import Job
from embridge.core.errors import InputError
from embridge.core.jobs import JobOutcome
from embridge.core.progress import ProgressFn, StopFn
from embridge.core.prompts import TextOptions, prompts_text
from embridge.core.store import Workspace

log = logging.getLogger("embridge.app")
CHECKPOINT_FILTER = "Models (*.pt *.pt2 *.ts *.torchscript *.pth *.bin *.npz);;All files (*)"
COLUMNS = ["Name", "Role", "Kind", "Modality", "Dim", "Input shape", "Parameters", "sha256", "Prompts"]
MODEL_DEFAULT = "model's own"
MODELS_MODULE = "embridge.core.models"  # loads torch


def model_details(model: dict[str, Any]) -> str:
    """Readable details of a stored model: where its file lives (copy or reference), its spec."""
    spec = dict(model.get("spec") or {})
    spec.pop("path", None)  # the path it was read from at add time; shown below with its state
    source = model.get("source_path")
    state = "" if not source else "still there" if Path(source).exists() else "no longer exists"
    if model.get("kind") == "vectors" and not model.get("file"):
        # the workspace keeps no copy of a vectors file: it is read where it lies
        where = [f"vectors file: {source or 'unknown'} (referenced, not copied{'; ' + state if state else ''})"]
    else:
        where = [f"stored copy: {model.get('path') or 'none'}",
                 f"added from: {source or 'unknown'}{f' ({state})' if state else ''}"]
    lines = [f"name: {model['name']}", f"role: {model['role']}", f"kind: {model.get('kind')}",
             f"modality: {model.get('modality')}", f"dimensions: {model.get('dim')}",
             f"parameters: {model.get('params')}", f"sha256: {model.get('sha256')}",
             *where, f"added: {model.get('created')}", "",
             "spec:", json.dumps(spec, indent=2, sort_keys=True)]
    return "\n".join(lines)


def suggest_role(models: list[dict[str, Any]]) -> str:
    roles = {m["role"] for m in models}
    return "old" if "old" not in roles else "new" if "new" not in roles else "other"


# the command line's options of `model add`, as the Add form names its fields
ADD_FIELDS = {"--path": "Checkpoint", "--name": "Name", "--role": "Role", "--kind": "Kind", "--arch": "Architecture",
              "--arch-config": "Architecture", "--input-shape": "Input shape", "--query-prompt": "Query prompt",
              "--document-prompt": "Document prompt", "--pooling": "Pooling"}

class ModelsPage(Page):
    title = "Models"

    def __init__(self, ctx: AppContext) -> None:
        self._loading = False  # embridge.core.models is being imported in the background
        self.job: Job | None = None  # the model being added or changed; one at a time
        self._queued: list[tuple[Any, ...]] = []  # files dropped while one is added
        super().__init__(ctx)
        self.setAcceptDrops(True)
        add_box = QGroupBox("&Add a model (or drop a checkpoint file on this page)")
        form = QFormLayout(add_box)
        self.path = PathField("Choose a model checkpoint", CHECKPOINT_FILTER, folder=True)
        self.path.edit.textChanged.connect(self._suggest_name)
        self.name = QLineEdit()
        self.role = QComboBox()
        self.role.addItems(["old", "new", "other"])
        self.kind = QComboBox()
        self.kind.addItem("auto")
        self.arch = QLineEdit()
        self.arch.setPlaceholderText("built-in architecture, for a bare state_dict")
        self.input_shape = QLineEdit()
        self.input_shape.setPlaceholderText("e.g. 1,28,28 when the checkpoint does not say")
        self.query_prompt = QLineEdit()
        self.query_prompt.setPlaceholderText("text models: prepended to queries (empty: the model's own prompt)")
        self.document_prompt = QLineEdit()
        self.document_prompt.setPlaceholderText("text models: prepended to gallery items (empty: the model's own)")
        self.pooling = QComboBox()
        self.pooling.addItems([MODEL_DEFAULT, "mean", "cls", "last"])
        self.add_button = QPushButton("A&dd model")
        self.add_button.clicked.connect(self.add_from_form)
        for label, widget in (("&Checkpoint", self.path), ("&Name", self.name), ("&Role", self.role),
                              ("&Kind", self.kind), ("Architecture", self.arch), ("Input shape", self.input_shape),
                              ("&Query prompt", self.query_prompt), ("Doc&ument prompt", self.document_prompt),
                              ("&Pooling", self.pooling)):
            form.addRow(label, widget)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.add_button)
        form.addRow(buttons)
        self.layout_.addWidget(add_box)

        self.warnings = QLabel()
        self.warnings.setWordWrap(True)
        self.warnings.setStyleSheet("QLabel { color: #a15c00; }")
        self.layout_.addWidget(self.warnings)

        manage = QHBoxLayout()
        self.rename_button = QPushButton("R&ename…")
        self.rename_button.clicked.connect(self.rename_selected)
        self.set_role = QComboBox()
        self.set_role.addItems(["old", "new", "other"])
        self.set_role_button = QPushButton("Set r&ole")
        self.set_role_button.clicked.connect(lambda: self.change_role(self.selected_name(), self.set_role.currentText()))
        self.remove_button = QPushButton("Re&move")
        self.remove_button.setToolTip("Remove the selected model; refused while vector sets or adapters use it")
        self.remove_button.clicked.connect(self.remove_selected)
        manage.addWidget(QLabel("Selected model:"))
        for widget in (self.rename_button, self.set_role, self.set_role_button, self.remove_button):
            manage.addWidget(widget)
        manage.addStretch(1)
        self.layout_.addLayout(manage)

        split = QSplitter()
        self.table = make_table(COLUMNS)
        self.table.itemSelectionChanged.connect(self._show_spec)
        self.spec_view = QPlainTextEdit()
        self.spec_view.setReadOnly(True)
        split.addWidget(self.table)
        split.addWidget(self.spec_view)
        split.setSizes([600, 300])
        self.layout_.addWidget(split, 1)
        self._models: list[dict[str, Any]] = []

    # -- adding -----------------------------------------------------------------------------
    def _suggest_name(self, text: str) -> None:
        if text and not self.name.isModified():
            self.name.setText(Path(text).stem)

    def add_from_form(self) -> None:
        path = self.path.text()
        if not path:
            self.ctx.reporter.report("Add model", "Choose a checkpoint file first.")
            return
        from embridge.core.models.adding import (
            parse_input_shape,  # embridge.core.models loads torch: not at start-up
        )

        try:
            shape = parse_input_shape(self.input_shape.text())
        except InputError as exc:
            self.ctx.reporter.report("Add model", str(labelled(exc, ADD_FIELDS)))
            return
        kind = self.kind.currentText()
        pooling = self.pooling.currentText()
        text = TextOptions(self.query_prompt.text() or None, self.document_prompt.text() or None,
                           None if pooling == MODEL_DEFAULT else pooling)
        self.add_model(path, self.name.text().strip() or Path(path).stem, self.role.currentText(),
                       None if kind == "auto" else kind, self.arch.text().strip() or None, shape,
                       text if text != TextOptions() else None)

    def add_model(self, path: str | Path, name: str, role: str, kind: str | None = None,
                  arch: str | None = None, input_shape: tuple[int, ...] | None = None,
                  text: TextOptions | None = None) -> None:
        """Describe the checkpoint (loads and probes it) and register it, in the background; one
        model at a time (Add, Rename, Set role and Remove wait), a dropped file waits its turn."""
        if self.job is not None:
            self._queued.append((path, name, role, kind, arch, input_shape, text))
            return

        def job(ws: Workspace, on_progress: ProgressFn, should_stop: StopFn) -> dict[str, Any]:
            from embridge.core.models.adding import add_model

            try:
                row = add_model(ws, path, name, role, kind=kind, arch=arch, input_shape=input_shape, text=text,
                                on_progress=on_progress).row
            except InputError as exc:  # the form's fields, not the command line's options
                raise labelled(exc, ADD_FIELDS) from None
            return {"name": row["name"], "dim": row["dim"], "kind": row["kind"]}

        def added(info: dict[str, Any]) -> None:
            log.info("added model %s (%s, dim %s)", info["name"], info["kind"], info["dim"])
            self.path.setText("")
            self.name.clear()
            self.query_prompt.clear()
            self.document_prompt.clear()

        self.job = self.ctx.run(f"Add model {name}", job, added, milestone="stage")
        if self.job is not None:
            self._set_busy(True)
            self.job.finished.connect(self._ended)

    def _ended(self, outcome: JobOutcome) -> None:
        """An add or a change has ended: start the next dropped file (none after a cancel), else free the
        buttons."""
        self.job = None
        if outcome.status == "cancelled":
            self._queued.clear()
        if self._queued:
            self.add_model(*self._queued.pop(0))
        if self.job is None:
            self._set_busy(False)

    def _set_busy(self, busy: bool) -> None:
        enable(self.add_button, "A model is being added or changed; wait for it to end." if busy else None)
        self._show_spec()

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls() and self.ctx.ws is not None:
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        for url in event.mimeData().urls():
            if url.isLocalFile():
                self.add_dropped(url.toLocalFile())
        event.acceptProposedAction()

    def add_dropped(self, path: str) -> None:
        """A dropped file is added at once, with its stem as name and the next missing role."""
        taken = {m["name"] for m in self._models}
        name, n = Path(path).stem, 2
        while name in taken:
            name, n = f"{Path(path).stem}-{n}", n + 1
        self.add_model(path, name, suggest_role(self._models))

    # -- state ------------------------------------------------------------------------------
    def refresh(self) -> None:
        from embridge.core.overview import workspace_overview

        assert self.ctx.ws is not None
        selected = self.selected_name()  # the model, not the row: a model removed above it shifts the rows
        self._models = workspace_overview(self.ctx.ws)["models"]
        fill_table(self.table, [[m["name"], m["role"], m["kind"], m["modality"], m["dim"],
                                 "x".join(str(s) for s in m["input_shape"] or []) or None, m["params"],
                                 str(m["sha256"])[:12], prompts_text(m) or None] for m in self._models])
        self.role.setCurrentText(suggest_role(self._models))
        if MODELS_MODULE in sys.modules:
            self._show_model_rules()
        else:
            self._load_model_rules()
        names = [m["name"] for m in self._models]
        if selected in names:
            self.table.selectRow(names.index(selected))
        elif self._models and self.table.currentRow() < 0:
            self.table.selectRow(0)
        self._show_spec()

    def _show_model_rules(self) -> None:
        """The model kinds and pair warnings of ``embridge.core.models`` (imported by now)."""
        if self.kind.count() == 1:
            from embridge.core.model_kinds import KINDS

            set_combo_items(self.kind, ["auto", *KINDS])
        from embridge.core.models.manage import pair_warnings

        self.warnings.setText("\n".join(f"⚠ {w}" for w in pair_warnings(self._models)))

    def _load_model_rules(self) -> None:
        """``embridge.core.models`` imports torch (a second or more): import it in the background
        once, then show the kinds and warnings; the table shows at once meanwhile."""
        if self._loading:
            return
        self._loading = True

        def load(on_progress: ProgressFn, should_stop: StopFn) -> dict[str, str]:
            from embridge.app.preload import preload

            return preload("torch", MODELS_MODULE)

        def loaded(_outcome: dict[str, str]) -> None:
            self._loading = False
            if self.ctx.ws is not None and MODELS_MODULE in sys.modules:
                self._show_model_rules()

        def ended(outcome: Any) -> None:  # a failed load may be tried again the next time the page refreshes
            if outcome.status != "completed":
                self._loading = False

        self.ctx.run_plain("Load model support", load, loaded, on_end=ended, visible=False)

    def _show_spec(self) -> None:
        row = self.table.currentRow()
        has = self.ctx.ws is not None and 0 <= row < len(self._models)
        for widget in (self.rename_button, self.set_role_button, self.remove_button):
            enable(widget, None if has and self.job is None else
                   "Select a model in the list first." if not has else "Wait for the model being added or changed.")
        if not has:
            self.spec_view.setPlainText("Select a model to see its details.")
            return
        assert self.ctx.ws is not None
        full = self.ctx.ws.model(self._models[row]["name"])
        self.set_role.setCurrentText(full["role"])
        self.spec_view.setPlainText(model_details(full))

    # -- managing ---------------------------------------------------------------------------
    def selected_name(self) -> str | None:
        row = self.table.currentRow()
        return self._models[row]["name"] if 0 <= row < len(self._models) else None

    def _change(self, title: str, action: Any) -> None:
        """Run a model change in the background: one small transaction, but it may wait for another
        process's write (an import) for seconds. One change or add at a time; errors go to the dialog."""
        if self.ctx.ws is None or self.job is not None:
            return

        def job(ws: Workspace, on_progress: ProgressFn, should_stop: StopFn) -> None:
            action(ws)

        self.job = self.ctx.run(title, job, visible=False)
        if self.job is not None:
            self._set_busy(True)
            self.job.finished.connect(self._ended)

    def remove_selected(self) -> None:
        name = self.selected_name()
        if name and dialogs.confirm(self, "Remove model", f"Remove model '{name}' and its stored checkpoint copy?"):
            self.remove(name)

    def remove(self, name: str) -> None:
        from embridge.core.models.manage import remove_model

        self._change(f"Remove model {name}", lambda ws: remove_model(ws, name))

    def rename_selected(self) -> None:
        name = self.selected_name()
        new_name = dialogs.ask_text(self, "Rename model", f"New name for '{name}':", name or "") if name else None
        if name and new_name:
            self.rename(name, new_name)

    def rename(self, name: str, new_name: str) -> None:
        from embridge.core.models.manage import rename_model

        def renamed(ws: Workspace) -> Any:
            try:
                return rename_model(ws, name, new_name)
            except InputError as exc:
                raise labelled(exc, {"--to": "New name", "--name": "Model"}) from None

        self._change(f"Rename model {name}", renamed)

    def change_role(self, name: str | None, role: str) -> None:
        from embridge.core.models.manage import set_model_role

        if name:
            self._change(f"Set the role of {name}", lambda ws: set_model_role(ws, name, role))
