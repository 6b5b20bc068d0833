"""Gallery page: import items (image folders, CSV/JSONL texts, vector files) and embed them."""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
)

from embridge.app.context import AppContext
from embridge.app.error_path import labelled, relabelled
from embridge.app.pages.forms import PathField, offer_devices, set_combo_items
from embridge.app.pages.page import Page, fill_table, make_table
from embridge.app.pages.why_disabled import enable
from embridge.app.workers import Job
from embridge.core.errors import InputError
from embridge.core.formatting import capitalised
from embridge.core.importers import FORMATS
from embridge.core.jobs import JobOutcome
from embridge.core.overview import damage_mark, gallery_text
from embridge.core.progress import ProgressFn, StopFn
from embridge.core.store import Workspace

log = logging.getLogger("embridge.app")
ALL_ITEMS = "(all items)"
SPLITS = ["", "gallery", "query", "train"]
ITEM_FILTER = "Items (*.csv *.tsv *.jsonl *.ndjson *.npz *.npy);;All files (*)"


IMPORT_FIELDS = {"--split": "Split", "--ids": "Id list (.npy)", "--format": "Format", "--model": "Vectors of model",
                 "--qrels": "Judgments (qrels)", "--path": "Path"}
IMPORT_ADVICE = {**IMPORT_FIELDS, "--model": "a model in 'Vectors of model'"}  # the result's advice, in a sentence


class GalleryPage(Page):
    title = "Gallery"

    def __init__(self, ctx: AppContext) -> None:
        super().__init__(ctx)
        self.store_dialog: Any = None  # made on first use
        self.job: Job | None = None  # the page's import or embed job; one at a time
        top = QHBoxLayout()
        top.addWidget(self._import_box(), 3)
        top.addWidget(self._embed_box(), 2)
        self.layout_.addLayout(top)
        self.counts_label = QLabel()
        self.counts_label.setWordWrap(True)
        self.counts_label.setToolTip("Items of the split 'query' are the queries; every other split forms the gallery.")
        self.layout_.addWidget(self.counts_label)
        self.layout_.addWidget(QLabel("Vector sets"))
        self.sets_table = make_table(["Set", "Model", "Name", "Items", "Dim", "Type", "File"])
        self.layout_.addWidget(self.sets_table, 1)

    def _import_box(self) -> QGroupBox:
        box = QGroupBox("Import items")
        form = QFormLayout(box)
        # beside the Embed box at the window's minimum size a path row is wider than its column:
        # it moves under its label instead of its buttons covering the line edit
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        self.import_path = PathField("Choose items to import", ITEM_FILTER, folder=True)
        self.import_format = QComboBox()
        self.import_format.addItems(["auto", *FORMATS])
        self.import_split = QComboBox()
        self.import_split.setEditable(True)
        self.import_split.addItems(SPLITS)
        self.import_model = QComboBox()
        self.import_ids = PathField("Id list for an .npy file (one key a line)", "Text (*.txt);;All files (*)")
        self.import_qrels = PathField("Relevance judgments (query key, item key, grade[, split] a line)",
                                      "Judgments (*.tsv *.csv *.txt);;All files (*)")
        self.import_qrels.setToolTip("Optional: relevance judgments stored with the imported items")
        self.import_button = QPushButton("&Import")
        self.import_button.clicked.connect(self.import_from_form)
        form.addRow("&Path", self.import_path)
        form.addRow("F&ormat", self.import_format)
        form.addRow("&Split", self.import_split)
        form.addRow("Vectors of model", self.import_model)
        form.addRow("Id list (.npy)", self.import_ids)
        form.addRow("Jud&gments (qrels)", self.import_qrels)
        self.beir_button = QPushButton("Import a &BEIR folder…")
        self.beir_button.setToolTip("corpus.jsonl (documents), queries.jsonl and qrels/{train,dev,test}.tsv: "
                                    "documents become gallery items, queries query items, qrels judgments")
        self.beir_button.clicked.connect(self.choose_beir_folder)
        buttons = QHBoxLayout()  # one row: the wrapped path rows take the height at the minimum size
        buttons.addWidget(self.import_button)
        buttons.addWidget(self.beir_button)
        buttons.addStretch(1)
        form.addRow(buttons)
        self.store_import_button = QPushButton("Import from a vector s&tore…")
        self.store_import_button.clicked.connect(self.open_store_import)
        form.addRow(self.store_import_button)
        self.import_result = QLabel("")  # what the last import stored (a vectors file's keys only: said so)
        self.import_result.setWordWrap(True)
        form.addRow(self.import_result)
        return box

    def open_store_import(self) -> None:
        """Show the vector-store import dialog (one per page, kept for its last result)."""
        from embridge.app.store_dialogs import StoreImportDialog

        if self.store_dialog is None:
            self.store_dialog = StoreImportDialog(self.ctx, self)
        self.store_dialog.show()
        self.store_dialog.raise_()

    def _embed_box(self) -> QGroupBox:
        box = QGroupBox("Embed items")
        form = QFormLayout(box)
        self.embed_model = QComboBox()
        self.embed_split = QComboBox()
        self.embed_sample = QSpinBox()
        self.embed_sample.setRange(0, 100_000_000)
        self.embed_sample.setSpecialValueText("all")
        self.embed_sample.setToolTip("Embed a sample of this many items (0 = all): judged test queries and "
                                     "their documents first, then a seeded random draw")
        self.embed_seed = QSpinBox()
        self.embed_seed.setRange(0, 2**31 - 1)
        self.embed_device = QComboBox()
        self.embed_batch = QSpinBox()
        self.embed_batch.setRange(1, 65536)
        self.embed_batch.setValue(int(self.ctx.settings.get("batch_size")))
        self.embed_button = QPushButton("&Embed")
        self.embed_button.clicked.connect(self.embed_from_form)
        form.addRow("&Model", self.embed_model)
        form.addRow("Items of split", self.embed_split)
        form.addRow("Sample si&ze", self.embed_sample)
        form.addRow("Seed", self.embed_seed)
        form.addRow("&Device", self.embed_device)
        form.addRow("Batch size", self.embed_batch)
        form.addRow(self.embed_button)
        self.embed_result = QLabel("")  # what the last embed stored (vectors-only models: what they lacked)
        self.embed_result.setWordWrap(True)
        form.addRow(self.embed_result)
        offer_devices(self.ctx, self.embed_device)
        return box

    # -- actions ----------------------------------------------------------------------------
    def _job_buttons(self) -> list[QPushButton]:
        return [self.import_button, self.beir_button, self.embed_button]

    def _can_start(self) -> bool:
        """Imports and embeddings change the same items: one at a time (a second start is ignored)."""
        return self.job is None

    def _started(self, job: Job | None) -> None:
        if job is None:
            return
        self.job = job
        for button in self._job_buttons():
            enable(button, f"Wait for '{job.title}' to end (or cancel it in Jobs).")
        job.finished.connect(self._ended)

    def _ended(self, _outcome: JobOutcome) -> None:
        self.job = None
        for button in self._job_buttons():
            enable(button, None)

    def import_from_form(self) -> None:
        path = self.import_path.text()
        if not path and self.import_qrels.text():  # judgments alone, as `import --qrels FILE [--split S]`
            self.import_judgments(self.import_qrels.text(), self.import_split.currentText().strip() or None)
            return
        if not path:
            self.ctx.reporter.report("Import items", "Choose a file or folder to import first, or judgments "
                                                     "(qrels) alone.")
            return
        fmt = self.import_format.currentText()
        self.import_items(path, None if fmt == "auto" else fmt, self.import_split.currentText().strip() or None,
                          self.import_model.currentText() or None, self.import_ids.text() or None,
                          self.import_qrels.text() or None)

    def import_items(self, path: str, fmt: str | None = None, split: str | None = None,
                     model: str | None = None, ids_path: str | None = None, qrels: str | None = None) -> None:
        """Import in the background (all-or-nothing in the core); ``qrels``: judgments stored with them."""
        if not self._can_start():
            return

        def job(ws: Workspace, on_progress: ProgressFn, should_stop: StopFn) -> dict[str, Any]:
            from embridge.core.importers import import_items

            on_progress(0, 1, {"stage": "reading"})
            try:
                return import_items(ws, path, fmt, split, model, ids_path, qrels=qrels, on_progress=on_progress,
                                    should_stop=should_stop)
            except InputError as exc:  # the form's fields, not the command line's options
                raise labelled(exc, IMPORT_FIELDS) from None

        def done(info: dict[str, Any]) -> None:
            from embridge.core.import_summary import items_import_text

            message = relabelled(items_import_text(info, model), IMPORT_ADVICE)
            log.info("%s", message)
            self.import_result.setText(capitalised(message))
            self.import_path.setText("")
            self.import_qrels.setText("")

        self.import_result.setText("")  # the last import's words, until this one's
        self._started(self.ctx.run(f"Import {path}", job, done))

    def import_judgments(self, qrels: str, split: str | None = None) -> None:
        """Store a qrels file's judgments alone in the background; ``split`` (train, dev or test) is the split
        of lines that name none, as `import --qrels FILE --split S` takes it."""
        if not self._can_start():
            return

        def job(ws: Workspace, on_progress: ProgressFn, should_stop: StopFn) -> dict[str, Any]:
            from embridge.core.qrels import import_qrels

            on_progress(0, 1, {"stage": "reading"})
            return import_qrels(ws, qrels, split=split).to_dict()

        def done(info: dict[str, Any]) -> None:
            from embridge.core.import_summary import qrels_text

            message = qrels_text(info)
            log.info("%s", message)
            self.import_result.setText(capitalised(message))
            self.import_qrels.setText("")

        self.import_result.setText("")
        self._started(self.ctx.run(f"Import judgments {qrels}", job, done))

    def choose_beir_folder(self) -> None:
        from embridge.app import dialogs

        folder = dialogs.choose_directory(self, "Choose a BEIR folder (corpus.jsonl, queries.jsonl, qrels/)")
        if folder:
            self.import_beir(folder)

    def import_beir(self, path: str) -> None:
        """Import a BEIR folder (documents, queries, judgments) in the background, all-or-nothing."""
        if not self._can_start():
            return

        def job(ws: Workspace, on_progress: ProgressFn, should_stop: StopFn) -> dict[str, Any]:
            from embridge.core.beir_import import import_beir

            summary = import_beir(ws, path, on_progress=on_progress, should_stop=should_stop)
            return {**summary.to_dict(), "text": summary.text()}

        def done(info: dict[str, Any]) -> None:
            log.info("BEIR folder %s: %s", info["path"], info["text"])
            self.import_result.setText(capitalised(info["text"]))

        self.import_result.setText("")
        self._started(self.ctx.run(f"Import BEIR {path}", job, done))

    def embed_from_form(self) -> None:
        model = self.embed_model.currentText()
        if not model:
            self.ctx.reporter.report("Embed items", "Add a model on the Models page first.")
            return
        split = self.embed_split.currentText()
        self.embed(model, None if split == ALL_ITEMS else split, self.embed_sample.value(), self.embed_seed.value(),
                   self.embed_device.currentText() or "auto", self.embed_batch.value())

    def embed(self, model: str, split: str | None = None, sample: int = 0, seed: int = 0,
              device: str = "auto", batch_size: int = 256) -> None:
        """Embed the chosen items with ``model`` in the background (resumable in the core)."""
        if not self._can_start():
            return

        def job(ws: Workspace, on_progress: ProgressFn, should_stop: StopFn) -> dict[str, Any]:
            from embridge.core.embed import embed_split

            return embed_split(ws, model, split, sample, seed, batch_size=batch_size, device=device,
                               on_progress=on_progress, should_stop=should_stop)

        def done(info: dict[str, Any]) -> None:
            from embridge.core.embed_summary import embed_summary

            message = embed_summary(model, info)
            log.info("%s", message)
            self.embed_result.setText(capitalised(message) + ".")

        self._started(self.ctx.run(f"Embed with {model}", job, done))

    # -- state ------------------------------------------------------------------------------
    def reset(self) -> None:
        self.embed_result.setText("")
        self.import_result.setText("")
        if self.store_dialog is not None:  # its last import went into the other workspace
            self.store_dialog.clear_result()
        self.import_split.setCurrentText("")  # a split typed for the last workspace would be created in this one

    def refresh(self) -> None:
        from embridge.core.overview import judgments_text, workspace_overview

        assert self.ctx.ws is not None
        info = workspace_overview(self.ctx.ws)
        names = [m["name"] for m in info["models"]]
        set_combo_items(self.embed_model, names)
        set_combo_items(self.import_model, ["", *[m["name"] for m in info["models"] if m["kind"] == "vectors"]])
        set_combo_items(self.embed_split, [ALL_ITEMS, *[s for s in info["items"] if s != "unassigned"]])
        counts = ", ".join(f"{split}: {n}" for split, n in info["items"].items()) or "none"
        # relevance comes from judgments where there are any (labels then play no part): said, not "0 labelled"
        relevance = (f"relevance {judgments_text(info['judgments'])}" if info.get("judgments")
                     else f"{info['labelled_items']} labelled")
        self.counts_label.setText(f"Items by split — {counts}; {relevance}. "
                                  f"Reports and plans search the {gallery_text(info['items'])}.")
        fill_table(self.sets_table, [[v["id"], v["model"], v["name"], v["count"], v["dim"], v["dtype"],
                                      (f"{damage_mark(v)}: " if damage_mark(v) else "") + v["path"]]
                                     for v in info["vector_sets"]])
