"""Plan page: the cost of each upgrade option, the recommendation, and the partial-backfill curves.

``embridge.core.plan.plan_upgrade`` does all the work (it builds the run's report first when there is none and
times this machine); the curves are the report's own backfill figure, as in the HTML report.
"""

from __future__ import annotations

import html
import logging
import sys
from collections.abc import Mapping
from typing import Any

from PySide6.QtCore import QSignalBlocker, Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QLabel,
    QPushButton,
    QSplitter,
)

from embridge.app.context import AppContext
from embridge.app.error_path import labelled
from embridge.app.image_plot import ImagePlot
from embridge.app.pages.forms import offer_devices, scrolled_text, set_combo_items
from embridge.app.pages.page import Page, completed_train_runs, fill_table, make_table, run_label, select_run
from embridge.app.pages.why_disabled import NO_RUNS, PLANNING, JobButton, enable
from embridge.core.data_state import report_stale_note
from embridge.core.errors import EmbridgeError, InputError, first_line
from embridge.core.evaluation.headline import metric_label
from embridge.core.formatting import capitalised, format_bytes, format_seconds, format_share
from embridge.core.jobs import JobOutcome
from embridge.core.plan.plan_record import Plan
from embridge.core.progress import ProgressFn, StopFn
from embridge.core.report.report_record import Report
from embridge.core.store import Workspace

log = logging.getLogger("embridge.app")
COLUMNS = ["Option", "Time", "Storage", "Items re-embedded", "Top-1", "nDCG@10", "Measured on", "Gain retained",
           "Passes", "Acceptable"]
NDCG = COLUMNS.index("nDCG@10")  # shown when the report has graded judgments, as `embridge plan` does
GAIN, PASSES = COLUMNS.index("Gain retained"), COLUMNS.index("Passes")
CHOSEN = QColor("#d8f0d8")
# what drawing a report figure imports (seconds the first time): loaded in the background
PLOT_MODULES = ("matplotlib.figure", "matplotlib.backends.backend_qtagg", "embridge.core.report.figures")


def option_row(option: dict[str, Any], metric: str = "top1") -> list[Any]:
    time_s = option.get("time_s")
    passes = option.get("passes_criterion")
    sample = (option.get("quality_sample") or {}).get(metric)  # where the gain was measured, when not its gallery
    on_sample = "" if sample is None or option.get("gain_retained") is None else \
        f" (on the evaluation sample, at {format_share(sample)})"
    return [option["title"], "unknown" if time_s is None else format_seconds(time_s),
            format_bytes(option["storage_bytes"]), option["items_embedded"],
            format_share((option.get("quality") or {}).get("top1")),
            format_share(option["quality"]["ndcg@10"]) if "ndcg@10" in (option.get("quality") or {}) else None,
            option.get("measured_gallery") or "",
            option.get("gain_retained_note") if option.get("gain_retained") is None and option.get("gain_retained_note")
            else format_share(option.get("gain_retained")) + on_sample,
            "" if passes is None else "yes" if passes else "no", "yes" if option.get("acceptable") else "no"]


class PlanPage(Page):
    title = "Plan"
    needs_libraries = True

    def __init__(self, ctx: AppContext) -> None:
        super().__init__(ctx)
        self.plan: Plan | None = None
        self._curves_for: int | None = None  # the report whose curves are drawn
        self._waiting: Report | None = None  # a report to draw once plotting is loaded
        self._loading = False
        self._runs: list[dict[str, Any]] = []
        self.run_combo = QComboBox()
        self.run_combo.currentIndexChanged.connect(self._run_chosen)
        self.fraction = QDoubleSpinBox()
        self.fraction.setRange(0.0, 1.0)
        self.fraction.setDecimals(3)  # two rounded 0.001 to 0.00, which reads as auto
        self.fraction.setSingleStep(0.05)
        self.fraction.setSpecialValueText("auto")
        self.fraction.setToolTip("Plan the partial backfill at this share of the gallery (auto: the smallest "
                                 "share that reaches the target)")
        from embridge.core.plan.option_choice import GAIN_THRESHOLD_HELP, TARGET_SHARE_HELP

        self.gain_threshold = self._share_box(0.9, capitalised(GAIN_THRESHOLD_HELP))
        self.target_share = self._share_box(0.95, capitalised(TARGET_SHARE_HELP), lowest=0.01)  # above 0, as the CLI
        self.device = QComboBox()
        self.plan_button = QPushButton("&Plan the upgrade")
        self.plan_button.clicked.connect(self.plan_from_form)
        self.planning = JobButton(self.plan_button, PLANNING, lambda: None if self._runs else NO_RUNS)
        grid = QGridLayout()
        for n, (label, widget) in enumerate((("&Run", self.run_combo), ("Fr&action", self.fraction),
                                             ("&Gain threshold", self.gain_threshold),
                                             ("&Target share", self.target_share), ("Dev&ice", self.device))):
            caption = QLabel(label)
            caption.setBuddy(widget)
            row, col = (0, 0) if n == 0 else (1 + (n - 1) // 2, 2 * ((n - 1) % 2))
            grid.addWidget(caption, row, col)
            grid.addWidget(widget, row, col + 1, 1, 3 if n == 0 else 1)
        grid.addWidget(self.plan_button, 0, 4)
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(3, 1)
        self.layout_.addLayout(grid)
        offer_devices(ctx, self.device)

        self.summary = QLabel("Make a plan to compare the options.")
        self.layout_.addWidget(scrolled_text(self.summary, 80, 170))
        split = QSplitter(Qt.Orientation.Vertical)
        split.setChildrenCollapsible(False)
        self.options = make_table(COLUMNS)
        self.options.setMinimumHeight(110)
        self.plot = ImagePlot("The partial-backfill curves of the run's report appear here.")
        self.plot.setMinimumHeight(140)  # at the window's minimum size the options table takes the rest
        split.addWidget(self.options)
        split.addWidget(self.plot)
        split.setSizes([330, 350])  # the options table: its seven rows readable at the window's minimum size
        self.layout_.addWidget(split, 1)
        ctx.focus_run_changed.connect(self.mark_stale)
        self._focus_seen: int | None = None

    @staticmethod
    def _share_box(value: float, tip: str, lowest: float = 0.0) -> QDoubleSpinBox:
        box = QDoubleSpinBox()
        box.setRange(lowest, 1.0)
        box.setSingleStep(0.05)
        box.setValue(value)
        box.setToolTip(tip)
        return box

    # -- actions ----------------------------------------------------------------------------
    def plan_from_form(self) -> None:
        index = self.run_combo.currentIndex()
        if not 0 <= index < len(self._runs):
            self.ctx.reporter.report("Plan", "Train a layer on the Train page first.")
            return
        fraction = self.fraction.value() or None
        self.make_plan(self._runs[index]["id"], fraction, self.device.currentText() or "auto",
                       self.gain_threshold.value(), self.target_share.value())

    def make_plan(self, run_id: int, fraction: float | None = None, device: str = "auto",
                  gain_threshold: float = 0.9, target_share: float = 0.95) -> None:
        """Plan in the background (building the run's report first when it has none)."""

        def job(ws: Workspace, on_progress: ProgressFn, should_stop: StopFn) -> dict[str, Any]:
            from embridge.core.plan import plan_upgrade

            try:
                plan = plan_upgrade(ws, run_id, fraction, device=device, gain_threshold=gain_threshold,
                                    target_share=target_share, on_progress=on_progress, should_stop=should_stop)
            except InputError as exc:  # the page's fields, not the command line's options
                raise labelled(exc, {"--fraction": "Fraction", "--device": "Device", "--run": "Run"}) from None
            return plan.to_json()  # plain values cross the thread boundary

        self.ctx.set_focus_run(run_id)
        self.planning.started(self.ctx.run(f"Plan the upgrade of run {run_id}", job, self.show_plan,
                                           milestone="stage"))

    def show_plan(self, data: Plan | Mapping[str, Any], move_box: bool = True) -> None:
        """Show a plan; ``move_box``: a plan just made brings the Run box back to its run (it may have moved
        while the plan ran), so the options are never shown under another run's name."""
        plan = data if isinstance(data, Plan) else Plan.from_json(data)
        self.plan = plan
        planned = next((i for i, r in enumerate(self._runs) if int(r["id"]) == plan.run_id), None)
        if planned is not None and planned != self.run_combo.currentIndex():  # the box moved while it planned
            if not move_box:
                self._show_unplanned()
                return
            with QSignalBlocker(self.run_combo):
                self.run_combo.setCurrentIndex(planned)
        fill_table(self.options, [option_row(o, plan.metric) for o in plan.options])
        self.options.setColumnHidden(NDCG, not any("ndcg@10" in (o.get("quality") or {}) for o in plan.options))
        for col, name in ((GAIN, "Gain retained"), (PASSES, "Passes")):  # on the number the plan weighs
            self.options.horizontalHeaderItem(col).setText(f"{name} ({metric_label(plan.metric)})")
        for row, option in enumerate(plan.options):
            if option["name"] == plan.recommendation:
                for col in range(self.options.columnCount()):
                    self.options.item(row, col).setBackground(QBrush(CHOSEN))
                self.options.scrollToItem(self.options.item(row, 0))  # in view however small the window
        chosen = plan.recommended["title"]
        def text(value: str) -> str:
            return html.escape(value, quote=False)

        notes = "".join(f"<li>{text(n)}</li>" for n in [*plan.notes, *plan.backfill_note_lines()])
        report = None
        if self.ctx.ws is not None and plan.report_id is not None:
            from embridge.core.report.number_source import source_of_report

            report = self._readable(int(plan.report_id))
        lines = plan.measured_on() or ([f"measured on {source_of_report(report).label()}"] if report else [])
        measured = (f"<p style='color:#555'>Quality numbers: report {plan.report_id}"
                    + "".join(f"<br>{text(line)}" for line in lines) + "</p>") if lines else ""
        stale = report_stale_note(self.ctx.ws, int(plan.report_id)) if report is not None else None
        warning = (f"<p style='color:#a15c00'><b>This plan weighs report {plan.report_id}, {text(stale)}. Plan again "
                   "to weigh the workspace as it is.</b></p>") if stale else ""
        self.summary.setText(f"<b>Recommendation: {text(chosen)}</b>{warning}<p>{text(plan.reason)}</p>"
                             + (f"<ul>{notes}</ul>" if notes else "") + measured)
        if report is not None:
            self._show_curves(report)

    def _show_curves(self, report: Report | None) -> None:
        """The report's partial-backfill figure, the one its HTML page shows (drawn once per
        report; matplotlib's Qt canvas is imported in the background the first time)."""
        if report is None:
            self._curves_for = self._waiting = None
            self.plot.clear("Build this run's report (or make a plan) to see its partial-backfill curves.")
            return
        if report.report_id is not None and report.report_id == self._curves_for:
            return
        if not all(name in sys.modules for name in PLOT_MODULES):
            self._waiting = report
            self.plot.clear("Drawing the partial-backfill curves…")
            self._load_plotting()
            return
        from embridge.core.report.report_export import report_figures

        self._curves_for, self._waiting = report.report_id, None
        if not (report.backfill or {}).get("policies"):  # as report_figures decides: no curves, no figure
            self.plot.clear("The report has no partial-backfill curves.")
        else:  # built and drawn on a pool thread, as every figure of a page (it took 220-285 ms here)
            self.plot.schedule(lambda: report_figures(report)["backfill"])

    def _load_plotting(self) -> None:
        if self._loading:
            return
        self._loading = True

        def load(on_progress: ProgressFn, should_stop: StopFn) -> dict[str, str]:
            from embridge.app.preload import preload

            return preload(*PLOT_MODULES)

        def loaded(_outcome: dict[str, str]) -> None:
            self._loading = False
            waiting, self._waiting = self._waiting, None
            if waiting is not None and self.ctx.ws is not None and all(n in sys.modules for n in PLOT_MODULES):
                self._show_curves(waiting)

        def ended(outcome: JobOutcome) -> None:
            if outcome.status != "completed":  # else a later report would wait on a load that never comes
                self._loading, self._waiting, self._curves_for = False, None, None
                self.plot.clear("The partial-backfill curves could not be drawn: plotting did not load.")

        self.ctx.run_plain("Load plotting", load, loaded, on_end=ended, visible=False)

    def _run_chosen(self, index: int) -> None:
        """Show the chosen run's latest report curves at once; the options need a plan."""
        if self.ctx.ws is None or not 0 <= index < len(self._runs):
            return
        run_id = int(self._runs[index]["id"])
        if self.plan is not None and self.plan.run_id == run_id:  # back to the planned run: its plan and curves
            if self.options.rowCount() == 0:  # another run's box had put the plan away
                self.show_plan(self.plan)
            elif self.plan.report_id is not None and self.plan.report_id != self._curves_for:  # else on screen
                if (report := self._readable(int(self.plan.report_id))) is not None:
                    self._show_curves(report)
            return
        self._show_unplanned()
        latest = [r["id"] for r in self.ctx.ws.reports() if r.get("run_id") == run_id and r.get("json_file")]
        if latest and latest[-1] == self._curves_for:
            return  # already drawn: showing the page again re-reads the list, not the report
        from embridge.core.report.build import latest_report_for_run

        shown = latest[-1] if latest else None
        try:
            self._show_curves(latest_report_for_run(self.ctx.ws, run_id))
        except EmbridgeError as exc:
            self._unreadable(shown, exc)

    def _readable(self, report_id: int) -> Report | None:
        """Report ``report_id``, or None with the page saying why it cannot be read (its file was removed or
        damaged): the options still show, as the Reports page shows the others."""
        from embridge.core.report.build import load_report

        try:
            return load_report(self.ctx.ws, report_id)
        except EmbridgeError as exc:
            self._unreadable(report_id, exc)
            return None

    def _unreadable(self, report_id: int | None, exc: EmbridgeError) -> None:
        log.warning("report %s cannot be read: %s", report_id, exc)
        self._curves_for = self._waiting = None
        self.plot.clear(f"Report {report_id} cannot be read: {first_line(exc)}")

    def _show_unplanned(self) -> None:
        """The chosen run has no plan on screen: the options of the run planned before are put away."""
        self.options.setRowCount(0)
        index = self.run_combo.currentIndex()
        chosen = f"run {self._runs[index]['id']}" if 0 <= index < len(self._runs) else "this run"
        before = f" (the plan of run {self.plan.run_id} shows again when it is chosen)" if self.plan else ""
        self.summary.setText(f"No plan of {chosen} yet: press Plan to compare its options{before}.")

    # -- state ------------------------------------------------------------------------------
    def reset(self) -> None:
        self.plan, self._runs, self._focus_seen = None, [], None
        self._curves_for = self._waiting = None
        self.run_combo.clear()
        self.options.setRowCount(0)
        self.summary.setText("Make a plan to compare the options.")
        self.plot.clear("The partial-backfill curves of the run's report appear here.")
        self.planning.forget()  # a job of the last workspace leaves this one free
        enable(self.plan_button, NO_RUNS)  # nothing to act on until a workspace with a run is open

    def refresh(self) -> None:
        assert self.ctx.ws is not None
        self._runs = completed_train_runs(self.ctx.ws)
        self.run_combo.blockSignals(True)
        set_combo_items(self.run_combo, [run_label(r) for r in self._runs])
        if self.ctx.focus_run != self._focus_seen:
            self._focus_seen = self.ctx.focus_run
            select_run(self.run_combo, self._runs, self.ctx.focus_run)
        self.run_combo.blockSignals(False)
        self.planning.show()
        self._run_chosen(self.run_combo.currentIndex())
        if self.plan is not None:  # re-read: its report may have been outgrown by the data since
            self.show_plan(self.plan, move_box=False)
