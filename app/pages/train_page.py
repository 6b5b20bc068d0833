"""Train page: choose a method (with what it needs), set hyper-parameters, watch it train, cancel."""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import QSignalBlocker, Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from embridge.app.context import AppContext
from embridge.app.error_path import labelled
from embridge.app.pages.forms import SettingsForm, offer_devices, scrolled_text, set_combo_items
from embridge.app.pages.live_curves import LiveCurves
from embridge.app.pages.live_plot import LivePlot, recorded_curves
from embridge.app.pages.page import Page, ResultView, make_table
from embridge.app.pages.pair_description import PairDescriber
from embridge.app.pages.train_result import (
    RUN_COLUMNS,
    ended_text,
    fill_runs_table,
    method_text,
    recorded_text,
    result_text,
    run_row,
)
from embridge.app.pages.why_disabled import NO_TRAINING, TRAINING, enable
from embridge.app.workers import Job
from embridge.core.errors import InputError
from embridge.core.progress import ProgressFn, StopFn
from embridge.core.setting_help import setting_help
from embridge.core.store import Workspace

log = logging.getLogger("embridge.app")
HIDDEN_SETTINGS = ("device", "time_budget")  # chosen with the device and budget boxes, not in the form
AUTO_NOTE = ("Each candidate uses its own defaults; the values shown are the common ones. Only a setting "
             "you change here is passed, to every candidate that has it.")
LIVE_REDRAW_MS = 800  # at most one live-plot redraw per this many ms while training
__all__ = ["RUN_COLUMNS", "TrainPage", "result_text", "run_row"]
TRAIN_FIELDS = {"--old": "Old model", "--new": "New model", "--device": "Device", "--pairs": "Pairs",
                "--time-budget": "Time budget"}  # the form's fields for the options core's refusals name


class TrainPage(Page):
    title = "Train"
    needs_libraries = True

    def __init__(self, ctx: AppContext) -> None:
        super().__init__(ctx)
        self.job: Job | None = None
        self.live = LiveCurves()
        self._methods: dict[str, Any] = {}
        self._overview: dict[str, Any] = {}
        self._table_runs: list[dict[str, Any]] = []  # the runs table's runs, row by row (latest first)
        self._shown: tuple[int, str, str | None] | None = None  # (run id, status, stale note) the text describes
        self._claimed: int | None = None  # the run this page trained last: described until another is picked

        chooser = QGroupBox("&Method")
        self.methods = QListWidget()
        self.methods.currentRowChanged.connect(self._method_changed)
        self.explain = QLabel()
        chooser_layout = QHBoxLayout(chooser)
        self.methods.setMinimumWidth(210)
        chooser_layout.addWidget(self.methods, 2)
        chooser_layout.addWidget(scrolled_text(self.explain, 60), 3)

        setup = QGroupBox("&Settings")
        setup_layout = QVBoxLayout(setup)
        setup_layout.addWidget(self._settings_area(), 1)
        buttons = QHBoxLayout()  # a row of its own below the scrolling settings: never over a setting
        self.train_button = QPushButton("&Train")
        self.train_button.clicked.connect(self.train_from_form)
        self.cancel_button = QPushButton("&Cancel training")
        enable(self.cancel_button, NO_TRAINING)
        self.cancel_button.clicked.connect(self.cancel)
        buttons.addStretch(1)
        buttons.addWidget(self.train_button)
        buttons.addWidget(self.cancel_button)
        setup_layout.addLayout(buttons)
        self.form.keep_in_tab_order([self.pairs, self.time_budget], self.train_button)

        top = QSplitter()
        top.addWidget(chooser)
        top.addWidget(setup)
        top.setChildrenCollapsible(False)
        top.setSizes([560, 440])

        self.plot = LivePlot("The loss and validation metric appear here while a method trains.", LIVE_REDRAW_MS)
        self.plot.setMinimumHeight(100)
        self.result_label = ResultView()
        self.runs_table = make_table(RUN_COLUMNS)
        self.runs_table.setMinimumHeight(80)
        self.runs_table.itemSelectionChanged.connect(self._show_run)
        results = QSplitter(Qt.Orientation.Vertical)  # plot, result and runs never overlap: each gets a pane
        for widget in (self.plot, self.result_label, self.runs_table):
            results.addWidget(widget)
        results.setChildrenCollapsible(False)
        results.setSizes([240, 110, 110])
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(top)
        split.addWidget(results)
        split.setChildrenCollapsible(False)
        split.setSizes([420, 480])
        self.layout_.addWidget(split, 1)
        offer_devices(ctx, self.device)
        self.old_model.currentTextChanged.connect(self._models_changed)
        self.new_model.currentTextChanged.connect(self._models_changed)
        for combo in (self.old_model, self.new_model):  # a pick stays through refreshes while offered; described
            combo.activated.connect(lambda _i, c=combo: (c.setProperty("chosen", True), self.pair_describer.show()))

    def _settings_area(self) -> QScrollArea:
        """Models, device, pairs, the validation protocol and the method's settings, in one scroll area
        so that a small window scrolls them instead of clipping or overlapping rows."""
        inner = QWidget()
        layout = QVBoxLayout(inner)
        models = QFormLayout()
        models.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        self.old_model, self.new_model, self.device = QComboBox(), QComboBox(), QComboBox()
        models.addRow("&Old model", self.old_model)
        models.addRow("Ne&w model", self.new_model)
        models.addRow("Dev&ice", self.device)
        self.pairs = QComboBox()
        self.pairs.activated.connect(lambda _i: self.pairs.setProperty("chosen", True))
        self.pairs.setToolTip("Which item pairs the layer is fitted on: documents (gallery items), queries judged "
                              "in the train split, or both. The default follows the workspace: both when it has "
                              "train queries, else documents.")
        models.addRow("&Pairs", self.pairs)
        self.time_budget = QDoubleSpinBox()
        self.time_budget.setRange(0.0, 1e6)
        self.time_budget.setDecimals(0)
        self.time_budget.setSuffix(" s")
        self.time_budget.setSpecialValueText("no limit")  # 0: every candidate runs to its end
        self.time_budget.setToolTip(setting_help("time_budget"))
        self.time_budget_label = QLabel("Time &budget")
        self.time_budget_label.setBuddy(self.time_budget)
        models.addRow(self.time_budget_label, self.time_budget)
        layout.addLayout(models)
        self.protocol_label = QLabel()
        self.pair_describer = PairDescriber(self.ctx, self._pair_models, self.protocol_label, self.pairs)
        self.protocol_label.setWordWrap(True)
        validated = QLabel("Validated on:")
        validated.setBuddy(self.protocol_label)
        layout.addWidget(validated)
        layout.addWidget(self.protocol_label)  # the full width, wrapped: the whole sentence shows
        self.form_note = QLabel(AUTO_NOTE)
        self.form_note.setWordWrap(True)
        layout.addWidget(self.form_note)
        self.form = SettingsForm()
        layout.addWidget(self.form)
        layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setMinimumHeight(90)
        scroll.setWidget(inner)
        self.settings_scroll = scroll
        return scroll

    # -- method chooser ---------------------------------------------------------------------
    def _load_methods(self) -> None:
        from embridge.core.adapters.registry import METHODS

        self._methods = dict(METHODS)  # one entry a method ('oca', bt2's other name, is an alias, not an entry)
        for kind, title in [*((k, info.title) for k, info in METHODS.items()), ("auto", "Automatic choice")]:
            item = QListWidgetItem(title)
            item.setData(Qt.ItemDataRole.UserRole, kind)
            self.methods.addItem(item)
        self.methods.setCurrentRow(0)

    def current_method(self) -> str | None:
        item = self.methods.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else None

    def select_method(self, kind: str) -> None:
        for row in range(self.methods.count()):
            if self.methods.item(row).data(Qt.ItemDataRole.UserRole) == kind:
                self.methods.setCurrentRow(row)
                return
        raise KeyError(kind)

    def _method_changed(self, *_args: object) -> None:
        kind = self.current_method()
        if not kind:
            return
        from embridge.core.train.config import FUSION_BASES, LOSSES, allowed_settings

        info = self._methods.get(kind)
        defaults = {k: v for k, v in allowed_settings(kind).items() if k not in HIDDEN_SETTINGS}
        if info is not None and not info.trainable and kind != "fusion":  # closed form: no epochs, no optimiser
            defaults = {k: v for k, v in defaults.items() if k in info.defaults or k == "seed"}
        self.form.choices = {"loss": list(LOSSES), "base": list(FUSION_BASES)}
        self.form.set_defaults(defaults)
        self.time_budget.setVisible(kind == "auto")
        self.time_budget_label.setVisible(kind == "auto")
        self.form_note.setVisible(kind == "auto")
        self._explain(kind)

    def _explain(self, kind: str) -> None:
        problems = self.requirement_problems(kind)
        self.explain.setText(method_text(kind, self._methods.get(kind), problems))
        enable(self.train_button, "; ".join(problems) or (TRAINING if self.job is not None else None))

    def requirement_problems(self, kind: str) -> list[str]:
        """Why ``kind`` cannot run on the chosen old/new pair (the core's rule; empty when it can)."""
        from embridge.core.train.requirements import requirement_problems

        models = {m["name"]: m for m in self._overview.get("models", [])}
        old, new = models.get(self.old_model.currentText()), models.get(self.new_model.currentText())
        return requirement_problems(kind, old, new, int(self._overview.get("labelled_items") or 0),
                                    bool(self._overview.get("judgments")), self._overview.get("label_classes"))

    # -- training ---------------------------------------------------------------------------
    def train_from_form(self) -> None:
        """Train with the settings the user changed; untouched ones keep the core's defaults, so an
        untouched form makes the call ``embridge train --method M`` makes."""
        try:
            config = self.form.changed()
        except ValueError as exc:
            self.ctx.reporter.report("Train", str(exc))
            return
        seed = config.pop("seed", 0)  # as --seed: it also draws the splits, not only the fit
        if self.current_method() == "auto" and self.time_budget.value() > 0:
            config["time_budget"] = float(self.time_budget.value())
        pairs = self.pairs.currentText() if self.pairs.property("chosen") else None
        self.train(self.current_method() or "", self.old_model.currentText(), self.new_model.currentText(),
                   self.device.currentText() or "auto", config, pairs or None, seed=seed)

    def train(self, method: str, old: str, new: str, device: str = "auto",
              config: dict[str, Any] | None = None, pairs: str | None = None, seed: int = 0) -> Job | None:
        """Validate the settings now, then train in the background with a live plot."""
        from embridge.core.train.config import resolve_config

        try:
            resolve_config(method, {"seed": seed, **(config or {})})
        except InputError as exc:
            self.ctx.reporter.report("Train", str(exc))
            return None

        def job(ws: Workspace, on_progress: ProgressFn, should_stop: StopFn) -> dict[str, Any]:
            from embridge.core.train.runs import train_run

            try:
                return train_run(ws, method, old, new, device=device, config=config, seed=seed, pairs=pairs,
                                 on_progress=on_progress, should_stop=should_stop)
            except InputError as exc:  # named by this form's fields, not the command line's options
                raise labelled(exc, TRAIN_FIELDS) from None

        self.live = LiveCurves()
        self.plot.clear("Training started…")
        self.result_label.setText("")
        self.job = self.ctx.run(f"Train {method}", job, self._trained, on_progress=self._progress)
        if self.job is not None:
            self.job.finished.connect(self._job_ended)
            enable(self.train_button, TRAINING)
            enable(self.cancel_button, None)
        return self.job

    def _progress(self, done: int, total: int, info: dict[str, Any]) -> None:
        """Plain values from the worker; the plot redraws off the GUI thread, at most once per interval."""
        if self.sender() is not self.job:  # a training of the workspace open before: not this page's now
            return
        if self.live.add(info):
            self.plot.schedule_rows(self.live.table(), self.live.metric_name)
        note = self.live.status()
        if note:
            self.result_label.setText(note)

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            enable(self.cancel_button, "Cancelling: the training stops at the end of its epoch.")

    def _job_ended(self, outcome: Any) -> None:
        """A run that did not complete says so (the live epoch line would read as if it still ran)."""
        if self.sender() is not self.job:  # the workspace it trained in was closed meanwhile
            return
        if outcome.status != "completed":
            self.result_label.setText(ended_text(outcome.status, outcome.error, outcome.result))
            result = outcome.result if isinstance(outcome.result, dict) else {}
            self._claim_text(result.get("run_id"))
        self.job = None
        enable(self.cancel_button, NO_TRAINING)
        if outcome.status == "completed" and self.ctx.ws is not None:  # its recorded curves replace the live
            runs = self.ctx.ws.runs("train")  # points; its own run, not one the command line recorded meanwhile
            self._show_recorded(next((r for r in runs if r["id"] == self._claimed), runs[-1] if runs else None))
        self._models_changed()

    def _models_changed(self, *_args: object) -> None:
        if (kind := self.current_method()) is not None:
            self._explain(kind)

    def _trained(self, summary: dict[str, Any]) -> None:
        self.result_label.setText(result_text(summary))
        self._claim_text(summary.get("run_id"))
        self.ctx.set_focus_run(int(summary["run_id"]))

    def reset(self) -> None:
        """A new workspace: no curves, result or runs of the previous one stay on screen."""
        for combo in (self.pairs, self.old_model, self.new_model):  # the last workspace's picks
            combo.setProperty("chosen", False)
        self.pair_describer.reset()
        self.job = None  # a training still running trains the other workspace (the jobs panel shows it)
        enable(self.cancel_button, NO_TRAINING)
        self.live = LiveCurves()
        self._table_runs, self._shown, self._claimed = [], None, None  # before the table empties (its signal reads)
        with QSignalBlocker(self.runs_table):
            self.runs_table.setRowCount(0)
        self.plot.clear("The loss and validation metric appear here while a method trains.")
        self.result_label.setText("")
        self._overview = {}

    # -- state ------------------------------------------------------------------------------
    def refresh(self) -> None:
        from embridge.core.data_state import with_stale_notes
        from embridge.core.overview import workspace_overview

        assert self.ctx.ws is not None
        self._overview = workspace_overview(self.ctx.ws)
        names = [m["name"] for m in self._overview["models"]]
        for combo, role in ((self.old_model, "old"), (self.new_model, "new")):
            if combo.currentText() not in names:
                combo.setProperty("chosen", False)  # the model picked is gone: the role's model again
            set_combo_items(combo, names)
            by_role = [m["name"] for m in self._overview["models"] if m["role"] == role]
            if by_role and combo.currentText() not in by_role and not combo.property("chosen"):
                combo.setCurrentText(by_role[-1])
        if not self._methods:
            self._load_methods()
        self.pair_describer.show()
        runs = with_stale_notes(self.ctx.ws, self.ctx.ws.runs("train"))  # numbers the data has outgrown say so
        selected = self._selected_run()
        self._table_runs = list(reversed(runs))
        fill_runs_table(self.runs_table, self._table_runs, None if selected is None else selected["id"])
        self._show_run()
        self._models_changed()

    def _pair_models(self) -> tuple[str, str, str] | None:
        old, new = self.old_model.currentText(), self.new_model.currentText()
        if self.ctx.ws is None or not old or not new or old == new:
            return None
        return str(self.ctx.ws.root), old, new

    def _selected_run(self) -> dict[str, Any] | None:
        rows = self.runs_table.selectionModel().selectedRows()
        row = rows[0].row() if rows else -1
        return self._table_runs[row] if 0 <= row < len(self._table_runs) else None

    def _current_run(self) -> dict[str, Any] | None:
        """The run the page describes outside a live one: the selected run, else its own last, else the latest."""
        claimed = next((r for r in self._table_runs if r["id"] == self._claimed), None)
        return self._selected_run() or claimed or (self._table_runs or [None])[0]

    def _show_run_text(self) -> None:
        """Outside a live run, :meth:`_current_run`'s sentence from its stored record (as for one ``embridge train``
        made); a sentence already shown for that run (as this page ended it) stays until its status changes."""
        run = self._current_run()
        if self.job is not None or run is None:
            return
        key = (int(run["id"]), str(run["status"]), run.get("stale"))
        if key != self._shown:
            self.result_label.setText(recorded_text(run))
            self._shown = key

    def _claim_text(self, run_id: int | None) -> None:
        """The sentence just shown for a run this page trained describes that run (the latest when the
        job recorded none), so a refresh does not replace it with the stored record's."""
        with QSignalBlocker(self.runs_table):
            self.runs_table.clearSelection()
        runs = self.ctx.ws.runs("train") if self.ctx.ws is not None else []
        run = next((r for r in runs if r["id"] == run_id), runs[-1] if runs else None)
        self._shown = (int(run["id"]), str(run["status"]), None) if run is not None else None  # just run: current
        self._claimed = None if run is None else int(run["id"])

    def _show_run(self) -> None:
        """The selected run (else the latest): its sentence and its recorded curves, never another run's."""
        self._show_recorded(self._current_run())
        self._show_run_text()

    def _show_recorded(self, run: dict[str, Any] | None) -> None:
        """Outside a live run, plot ``run``'s recorded epochs as its report will (one without any says so)."""
        if self.job is not None or run is None:
            return
        recipe = recorded_curves(run)
        if recipe is None:
            self.plot.clear(f"Run {run['id']} ({run['method']}) recorded no training curves.")
        else:
            self.plot.schedule(recipe)
