"""Dialogs for vector stores: import a stored gallery, and migrate a store through a bundle.

Both run their work as ordinary background jobs (progress here and in the jobs panel, Cancel, errors
in the error dialog) and call the same core functions as ``embridge import --from``, ``migrate``,
``rollback`` and ``check``; the dialogs only collect the fields.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from PySide6.QtWidgets import (
    QAbstractButton,
    QCheckBox,
    QComboBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from embridge.app.context import AppContext
from embridge.app.error_path import labelled
from embridge.app.pages.forms import PathField
from embridge.app.pages.why_disabled import enable
from embridge.app.workers import Job
from embridge.core.credentials import hidden
from embridge.core.errors import InputError
from embridge.core.jobs import JobOutcome
from embridge.core.progress import ProgressFn, StopFn
from embridge.core.store import Workspace
from embridge.core.store.items import GALLERY_SPLIT

BUSY = "Wait for the job this dialog runs to end (or cancel it)."

log = logging.getLogger("embridge.app")
URI_HINT = "e.g. qdrant:///data/qdrant?collection=docs, lancedb:///data/db?table=docs, parquet:///data/docs"
P = ParamSpec("P")
R = TypeVar("R")


def shown_label(text: str) -> str:
    """A form label as the user reads it: without the '&' that marks its shortcut ('&&' is a literal '&')."""
    return re.sub(r"&(&?)", r"\1", text)


class _JobDialog(QDialog):
    """A dialog with one running job at a time: progress bar, Cancel, and a result pane."""

    all_or_nothing = False  # the job keeps nothing when it is refused (its bar empties then)
    workspace_bound = False  # the job writes into the open workspace (its ending names it once another opened)

    def __init__(self, ctx: AppContext, title: str, parent: QWidget | None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setWindowTitle(title)
        self.job: Job | None = None
        self._resume_hint = ""
        self.form = QFormLayout()
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.stage = QLabel("")
        self.stage.setWordWrap(True)  # a failure's whole sentence, within the dialog's width
        self.cancel_button = QPushButton("&Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.result = QPlainTextEdit()
        self.result.setReadOnly(True)
        self.buttons = QHBoxLayout()
        layout = QVBoxLayout(self)
        layout.addLayout(self.form)
        layout.addLayout(self.buttons)
        row = QHBoxLayout()
        row.addWidget(self.progress, 1)
        row.addWidget(self.cancel_button)
        layout.addLayout(row)
        layout.addWidget(self.stage)
        layout.addWidget(self.result, 1)

    def field_labels(self, fields: dict[str, QWidget]) -> dict[str, str]:
        """Command-line option -> the label of this form's field for it, read from the form itself so
        the two cannot drift; a row without a label (a check box) is named by the field's own text."""
        out = {}
        for option, field in fields.items():
            caption = self.form.labelForField(field)
            text = caption.text() if isinstance(caption, QLabel) else ""
            if not text and isinstance(field, QAbstractButton):
                text = field.text()
            if text:
                out[option] = shown_label(text)
        return out

    def in_form_terms(self, fn: Callable[P, R], fields: dict[str, QWidget]) -> Callable[P, R]:
        """``fn`` whose refusals name this form's fields instead of the command line's options: core's
        messages are the command line's, and the dialog shows fields, not flags. Options without a
        field here keep their text. The labels are read now, in the GUI thread, not in the job."""
        labels = self.field_labels(fields)

        def job(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return fn(*args, **kwargs)
            except InputError as exc:
                raise labelled(exc, labels) from None

        return job

    def _progressed(self, done: int, total: int, info: dict[str, Any]) -> None:
        if self.job is None:  # a late update of a job that has ended
            return
        self.progress.setRange(0, max(int(total), 1))
        self.progress.setValue(min(int(done), max(int(total), 1)))
        self.stage.setText(f"{info.get('stage', '')}: {done} of {total}")

    def _job_buttons(self) -> list[QPushButton]:
        """The buttons that start a job (override): disabled while one runs."""
        return []

    def _can_start(self) -> bool:
        """One job at a time: a second start while one runs is ignored (its buttons are disabled)."""
        return self.job is None

    def _started(self, job: Job | None, resume_hint: str = "") -> None:
        """Show the new job alone: a busy bar until its first progress, no earlier status or result.
        ``resume_hint``: what resumes the job's work, said when it is cancelled (a failure names its cause,
        which is to be mended first)."""
        if job is None:  # refused before it started (e.g. no workspace open): nothing changes
            return
        self.job = job
        self._resume_hint = resume_hint
        self._job_root = str(self.ctx.ws.root) if self.workspace_bound and self.ctx.ws is not None else None
        self.progress.setRange(0, 0)
        self.progress.setValue(0)
        self.stage.setText(f"{job.title}…")
        self.result.clear()
        enable(self.cancel_button, None)
        for button in self._job_buttons():
            enable(button, BUSY)
        job.finished.connect(self._ended)

    def _ended(self, outcome: JobOutcome) -> None:
        self.job = None
        enable(self.cancel_button, "Nothing runs now.")
        for button in self._job_buttons():
            enable(button, None)
        root = getattr(self, "_job_root", None)
        if root is not None and (self.ctx.ws is None or str(self.ctx.ws.root) != root):  # another workspace shown
            self.progress.setRange(0, 1)
            self.progress.setValue(0)
            self.stage.setText(f"{outcome.status} in {root}, which is no longer open")
            return
        if outcome.status == "completed":
            self.progress.setRange(0, max(self.progress.maximum(), 1))
            self.progress.setValue(self.progress.maximum())
            last = self.stage.text()  # "migrating: 1000 of 1000" would read as still running
            self.stage.setText("completed" if last.endswith("…") or not last else f"completed ({last})")
            return
        if self.progress.maximum() == 0:  # still busy: show an empty bar, not a finished one
            self.progress.setRange(0, 1)
            self.progress.setValue(0)
        elif self.all_or_nothing and outcome.status == "failed":  # a refused import stored nothing (a cancelled
            # one keeps its batches for the next run: its bar stays where it got)
            self.progress.setValue(0)
        hint = f" ({self._resume_hint})" if self._resume_hint and outcome.status == "cancelled" else ""
        self.stage.setText(f"{outcome.status}: {outcome.error or ''}{hint}")

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()

    def clear_result(self) -> None:
        """Another workspace opened: an ended job's status and result told of the other one (a job still
        running keeps its bar: it goes on in the workspace it started in)."""
        if self.job is not None:
            return
        self.result.clear()
        self.stage.setText("")
        self.progress.setRange(0, 1)
        self.progress.setValue(0)

    def refuse(self, message: str) -> None:
        """A start refused before any job: its reason, and no earlier job's status or result left beside it
        (they would read as this attempt's)."""
        self.clear_result()
        self.ctx.reporter.report(self.windowTitle(), message)

    def show_result(self, text: str) -> None:
        self.result.setPlainText(text)
        log.info(text.splitlines()[0] if text else "")


class StoreImportDialog(_JobDialog):
    """Gallery page: "Import from a vector store..." (``embridge import --from``)."""

    all_or_nothing = True  # a refused import stores nothing
    workspace_bound = True

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(ctx, "Import from a vector store", parent)
        self.uri = QLineEdit()
        self.uri.setPlaceholderText(URI_HINT)
        self.model = QLineEdit()
        self.model.setPlaceholderText("name of the store's (old) model; default <collection>-vectors")
        self.label_field = QLineEdit()
        self.text_field = QLineEdit()
        self.split = QComboBox()
        self.split.setEditable(True)
        self.split.addItems(["gallery", "query", "train"])
        self.form.addRow("Store &URI", self.uri)
        self.form.addRow("&Model", self.model)
        self.form.addRow("&Label field", self.label_field)
        self.form.addRow("&Text field", self.text_field)
        self.form.addRow("&Split", self.split)
        self.fields: dict[str, QWidget] = {"--from": self.uri, "--model": self.model, "--label-field": self.label_field,
                                           "--text-field": self.text_field, "--split": self.split}
        self.import_button = QPushButton("&Import")
        self.import_button.clicked.connect(self.start_import)
        self.buttons.addWidget(self.import_button)
        self.buttons.addStretch(1)

    def _job_buttons(self) -> list[QPushButton]:
        return [self.import_button]

    def start_import(self) -> None:
        if not self._can_start():
            return
        uri = self.uri.text().strip()
        if not uri:
            self.refuse("Enter the store's URI first.")
            return
        model = self.model.text().strip() or None
        label, text = self.label_field.text().strip() or None, self.text_field.text().strip() or None
        split = self.split.currentText().strip() or GALLERY_SPLIT  # as the command line's default: the gallery

        def job(ws: Workspace, on_progress: ProgressFn, should_stop: StopFn) -> dict[str, Any]:
            from embridge.core.connectors.gallery_import import import_from_store

            return import_from_store(ws, uri, model, label, text, split, on_progress=on_progress,
                                     should_stop=should_stop).to_dict()

        def done(out: dict[str, Any]) -> None:
            self.show_result(f"Imported {out['count']} points from {out['store']} ({out['new_items']} new items); "
                             f"vectors of model {out['model']} (dim {out['dim']}) in vector set {out['vector_set']}."
                             + (f"\nNote: {out['note']}." if out.get("note") else ""))

        self._started(self.ctx.run(f"Import from {hidden(uri)}", self.in_form_terms(job, self.fields), done,
                                   on_progress=self._progressed),
                      "press Import again with the same fields to resume: the batches stored so far are kept")


class StoreMigrateDialog(_JobDialog):
    """Export page: "Migrate a store..." (``embridge migrate``, ``rollback`` and ``check``)."""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(ctx, "Migrate a store", parent)
        self.bundle = PathField("Bundle to migrate with", "Bundles (*.zip);;All files (*)", folder=True)
        self.source = QLineEdit()
        self.source.setPlaceholderText(f"collection to read (never changed), {URI_HINT}")
        self.target = QLineEdit()
        self.target.setPlaceholderText(f"new collection to write, {URI_HINT}")
        self.alias = QLineEdit()
        self.alias.setPlaceholderText("alias the application reads (for switch and rollback)")
        self.switch = QCheckBox("Move the alias to the new collection once verified")
        self.order = QComboBox()
        self.order.addItems(["random", "planner"])
        self.new_vectors = PathField("New-model vectors (.npz with ids and vectors)", "Vectors (*.npz);;All files (*)")
        self.backfill = QSpinBox()
        self.backfill.setRange(0, 2_000_000_000)
        self.backfill.setSpecialValueText("all given")
        self.batch = QSpinBox()
        self.batch.setRange(1, 1_000_000)
        self.batch.setValue(4096)
        self.form.addRow("&Bundle", self.bundle)
        self.form.addRow("&From", self.source)
        self.form.addRow("&To", self.target)
        self.form.addRow("&Alias", self.alias)
        self.form.addRow("", self.switch)
        self.form.addRow("New &vectors", self.new_vectors)
        self.form.addRow("Backfill &order", self.order)
        self.form.addRow("Backfill at &most", self.backfill)
        self.form.addRow("Batch si&ze", self.batch)
        self.fields: dict[str, QWidget] = {
            "--bundle": self.bundle, "--from": self.source, "--to": self.target, "--alias": self.alias,
            "--switch": self.switch, "--new-vectors": self.new_vectors, "--order": self.order,
            "--backfill": self.backfill, "--batch": self.batch}
        self.migrate_button = QPushButton("&Migrate")
        self.migrate_button.clicked.connect(self.start_migration)
        self.rollback_button = QPushButton("&Roll back to From")
        self.rollback_button.clicked.connect(self.start_rollback)
        self.check_button = QPushButton("C&heck To")
        self.check_button.clicked.connect(self.start_check)
        for button in (self.migrate_button, self.rollback_button, self.check_button):
            self.buttons.addWidget(button)
        self.buttons.addStretch(1)

    def _job_buttons(self) -> list[QPushButton]:
        return [self.migrate_button, self.rollback_button, self.check_button]

    def offer_bundle(self, path: str, manifest: dict[str, Any]) -> None:
        """Fill in the bundle selected on the Export page, or say why it cannot migrate a store (a layer that
        maps queries, not the stored gallery) rather than leave it to fail once a migration starts."""
        from embridge.core.connectors.transform import migration_refusal

        refusal = migration_refusal(manifest)
        if refusal is None:
            self.bundle.setText(path)
            self.stage.setText("")  # an earlier bundle's refusal no longer applies
        else:
            self.stage.setText(f"The selected bundle cannot migrate a store: {refusal}.")

    def _need(self, *fields: tuple[str, str]) -> bool:
        if not self._can_start():
            return False
        missing = [name for name, value in fields if not value]
        if missing:
            self.refuse(f"Fill in {', '.join(missing)} first.")
        return not missing

    def start_migration(self) -> None:
        bundle, source, target = self.bundle.text(), self.source.text().strip(), self.target.text().strip()
        if not self._need(("Bundle", bundle), ("From", source), ("To", target)):
            return
        switch = self.switch.isChecked()  # the Alias field serves rollback too: a migration reads it only to switch
        options = {"order": self.order.currentText(), "switch": switch,
                   "alias": (self.alias.text().strip() or None) if switch else None, "batch_size": self.batch.value(),
                   "new_vectors": self.new_vectors.text() or None,
                   "backfill": self.backfill.value() or None}

        def job(on_progress: ProgressFn, should_stop: StopFn) -> dict[str, Any]:
            from embridge.core.connectors.migration import migrate_store

            return migrate_store(bundle, source, target, on_progress=on_progress, should_stop=should_stop,
                                 **options).to_dict()

        unused = self.alias.text().strip() if not switch else ""  # typed for a switch that was not asked for

        def done(out: dict[str, Any]) -> None:  # the result's own text, as the command line prints it
            self.show_result(out["text"] + (f"\nThe alias '{unused}' was not moved: 'Move the alias to the new "
                                            "collection once verified' was not ticked." if unused else ""))

        self._started(self.ctx.run_plain(f"Migrate {hidden(source)}", self.in_form_terms(job, self.fields), done,
                                         on_progress=self._progressed),
                      "press Migrate again with the same fields to resume: the points written so far are kept")

    def start_rollback(self) -> None:
        source, alias = self.source.text().strip(), self.alias.text().strip()
        if not self._need(("From", source)):  # the alias may be in From's URI (?alias=NAME), as the CLI takes it
            return

        def job(on_progress: ProgressFn, should_stop: StopFn) -> dict[str, Any]:
            from embridge.core.connectors.migration import rollback_store

            return rollback_store(source, alias or None)

        def done(out: dict[str, Any]) -> None:  # the command line's own text
            self.show_result(out["text"])

        # rollback's --to is the collection served again: here, From
        fields = {"--to": self.source, "--alias": self.alias, "--switch": self.switch}  # advice names --switch
        self._started(self.ctx.run_plain(f"Roll back {alias or hidden(source)}", self.in_form_terms(job, fields), done))

    def start_check(self) -> None:
        target = self.target.text().strip()
        if not self._need(("To", target)):
            return

        def job(on_progress: ProgressFn, should_stop: StopFn) -> str:
            from embridge.core.connectors.check import check_store

            return check_store(target).text()

        self._started(self.ctx.run_plain(f"Check {hidden(target)}", self.in_form_terms(job, {"--uri": self.target}),
                                         self.show_result))
