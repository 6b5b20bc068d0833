"""Reports page: build a compatibility report for a run; its metrics, figures and flipped queries.

Everything shown comes from the :class:`embridge.core.report.report_record.Report` of ``embridge.core.report.build`` (the
same one written to report.json): the metrics table colours the core's pass/fail comparison, the figures are those of
``embridge.core.report.report_export.report_figures`` (the HTML report's), and the browser lists the core's
flipped queries with the items looked up in the workspace.
"""

from __future__ import annotations

import html
import logging
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTabWidget,
)

from embridge.app import dialogs
from embridge.app.context import AppContext
from embridge.app.error_path import labelled
from embridge.app.image_plot import ImagePlot
from embridge.app.pages.forms import scrolled_text, set_combo_items
from embridge.app.pages.page import Page, completed_train_runs, make_table, run_label, select_run
from embridge.app.pages.report_widgets import FlipBrowser, fill_metrics_table
from embridge.app.pages.why_disabled import NO_RUNS, REPORTING, JobButton, enable
from embridge.core.errors import EmbridgeError, InputError, StoreError
from embridge.core.evaluation.headline import with_judged_rows
from embridge.core.formatting import capitalised
from embridge.core.progress import ProgressFn, StopFn
from embridge.core.report.chain_text import (
    chain_cells,
    criterion_lines,
    measured_lines,
    note_lines,
    scores_line,
)
from embridge.core.report.limits import MAX_BOOTSTRAP, MIN_BOOTSTRAP
from embridge.core.report.number_source import backfill_lines, served_lines, source_of_report
from embridge.core.report.report_record import Report
from embridge.core.report.wording import verdict_tone
from embridge.core.store import Workspace

log = logging.getLogger("embridge.app")
TONE_COLOURS = {"pass": "#1b7f3b", "fail": "#b00020", "caution": "#a15c00", "info": "#222"}
JUDGED = (("ndcg@10", "nDCG@10"), ("mrr@10", "MRR@10"))  # graded relevance judgments only
FIGURE_TITLES = {"cells": "Metrics", "recall": "Recall@k", "flips": "Flips", "per_label": "Per label",
                 "backfill": "Partial backfill", "training": "Training", "compatibility_matrix": "Matrix"}


def headline_text(report: Report) -> str:
    """The upgraded system's headline numbers with the report's gain-retained wording."""
    from embridge.core.evaluation.headline import decides_on_ndcg
    from embridge.core.formatting import format_share
    from embridge.core.report.number_source import flips_text, gain_text

    head = report.headline
    share = format_share  # every number as `embridge report` says it
    parts = [f"upgraded top-1 {share(head['upgraded_top1'])} (old/old {share(head['old_old_top1'])})"
             for _ in [0] if isinstance(head.get("upgraded_top1"), int | float)
             and isinstance(head.get("old_old_top1"), int | float)]
    for key, name in JUDGED:
        if isinstance(head.get(key), int | float):
            parts.append(f"{name} {share(head[key])} (old/old {share(head.get(f'old_old_{key}'))})")
    def where(metric: str) -> str:
        """The sample's own numbers a gain was measured from, where new/new searched a sample."""
        sample, upgraded = head.get(f"old_old_sample_{metric}"), head.get(f"upgraded_sample_{metric}")
        return ("" if not isinstance(sample, int | float) or not isinstance(upgraded, int | float) else
                f" (on the evaluation sample: old/old {share(sample)}, upgraded {share(upgraded)})")

    if "gain_retained" in head:  # top-1's, named so where judgments decide on nDCG@10
        label = "gain retained (top-1)" if decides_on_ndcg(head) else "gain retained"
        parts.append(f"{label}: {gain_text(head.get('gain_retained'), head.get('gain_retained_note'))}{where('top1')}")
    for key, name in JUDGED:
        if key in head and f"gain_retained_{key}" in head:
            parts.append(f"gain retained ({name}): "
                         f"{gain_text(head.get(f'gain_retained_{key}'), head.get(f'gain_retained_{key}_note'))}"
                         f"{where(key)}")
    if "negative_flip_rate" in head:  # the release gate's metric, as `embridge report` prints it
        parts.append(flips_text(head))
    if isinstance(head.get("arr"), int | float):  # measured where gain retained is: new/new's gallery
        on_sample = " (on the evaluation sample)" if head.get("old_old_sample_top1") is not None else ""
        parts.append(f"ARR@{head.get('arr_k')} {format_share(head['arr'])}{on_sample}")
    return "; ".join(parts)


def flip_entries(ws: Workspace, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Browser entries: the core's flipped-query records with the workspace items they name."""
    keys = list(dict.fromkeys(k for r in records for k in [r["query_key"], *r["old_top"], *r["upgraded_top"]]))
    items: dict[str, dict[str, Any]] = {}
    if keys:
        try:
            for item in ws.items(ids=ws.ids_for_keys(keys).tolist()):
                items[item["key"]] = item
        except StoreError:  # items removed since the report: show keys and labels only
            log.warning("some items of this report are no longer in the workspace")

    def listed(keys: list[str], labels: list[Any] | None, grades: list[int] | None) -> list[dict[str, Any]]:
        labels, grades = labels or [], grades or []
        return [{**(items.get(k) or {"key": k, "label": labels[i] if i < len(labels) else None}),
                 "grade": grades[i] if i < len(grades) else None}  # None: a report from before grades were listed
                for i, k in enumerate(keys)]

    return [{"kind": r["flip"], "query": items.get(r["query_key"]) or {"key": r["query_key"], "label": r.get("label")},
             "old": listed(r["old_top"], r.get("old_top_labels"), r.get("old_top_grades")),
             "upgraded": listed(r["upgraded_top"], r.get("upgraded_top_labels"), r.get("upgraded_top_grades"))}
            for r in records]


class ReportsPage(Page):
    title = "Reports"
    needs_libraries = True

    def __init__(self, ctx: AppContext) -> None:
        super().__init__(ctx)
        self.report: Report | None = None
        self._runs: list[dict[str, Any]] = []
        self._reports: list[dict[str, Any]] = []
        self._figures_for: int | None = None
        self._wanted: int | None = None  # a report just built, to show on the next refresh

        build = QHBoxLayout()
        self.run_combo = QComboBox()
        self.heldout = QCheckBox("Held-&out gallery")
        self.heldout.setToolTip("Leave the items the layer was fitted on out of the gallery")
        self.rollback = QCheckBox("Ro&llback cell")
        self.n_boot = QSpinBox()
        self.n_boot.setRange(MIN_BOOTSTRAP, MAX_BOOTSTRAP)
        self.n_boot.setValue(1000)
        self.n_boot.setToolTip("Bootstrap resamples for the confidence intervals")
        self.build_button = QPushButton("&Build report")
        self.build_button.clicked.connect(self.build_from_form)
        self.building = JobButton(self.build_button, REPORTING, lambda: None if self._runs else NO_RUNS)
        run_caption = QLabel("&Run:")
        run_caption.setBuddy(self.run_combo)
        build.addWidget(run_caption)
        build.addWidget(self.run_combo, 1)
        build.addWidget(self.build_button)
        self.layout_.addLayout(build)
        options = QHBoxLayout()
        options.addWidget(self.heldout)
        options.addWidget(self.rollback)
        options.addWidget(QLabel("Bootstrap resamples:"))
        options.addWidget(self.n_boot)
        options.addStretch(1)
        self.layout_.addLayout(options)

        pick = QHBoxLayout()
        self.report_combo = QComboBox()
        self.report_combo.currentIndexChanged.connect(self._report_chosen)
        self.html_button = QPushButton("Op&en HTML report")
        self.html_button.clicked.connect(self.open_html)
        report_caption = QLabel("Re&port:")
        report_caption.setBuddy(self.report_combo)
        pick.addWidget(report_caption)
        pick.addWidget(self.report_combo, 1)
        pick.addWidget(self.html_button)
        self.layout_.addLayout(pick)

        self.verdict = QLabel()
        self.verdict.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # the verdict (headline, pass or fail, protocol) and the tables share the height, the user may move
        # the line between them; the verdict starts with a third of it instead of three lines
        self.split = QSplitter(Qt.Orientation.Vertical)
        self.split.setChildrenCollapsible(False)
        self.split.addWidget(scrolled_text(self.verdict, 90))

        self.tabs = QTabWidget()
        self.metrics = make_table(["Metric"])
        self.figure_tabs = QTabWidget()
        self.plots: dict[str, ImagePlot] = {}
        self.flips = FlipBrowser()
        self.tabs.addTab(self.metrics, "&Metrics")
        self.tabs.addTab(self.figure_tabs, "F&igures")
        self.tabs.addTab(self.flips, "Flipped &queries")
        self.tabs.currentChanged.connect(self._tab_changed)
        self.tabs.setMinimumHeight(220)
        self.metrics.horizontalHeader().setStretchLastSection(False)  # each header whole; a scrollbar if wide
        self.split.addWidget(self.tabs)
        self.split.setStretchFactor(0, 1)
        self.split.setStretchFactor(1, 2)
        self.split.setSizes([1000, 2000])  # a weight: whatever height the page gets, a third and two thirds
        self.layout_.addWidget(self.split, 1)
        ctx.focus_run_changed.connect(self.mark_stale)
        self._focus_seen: int | None = None

    # -- actions ----------------------------------------------------------------------------
    def build_from_form(self) -> None:
        index = self.run_combo.currentIndex()
        if not 0 <= index < len(self._runs):
            self.ctx.reporter.report("Build report", "Train a layer on the Train page first.")
            return
        self.build(self._runs[index]["id"], self.heldout.isChecked(), self.rollback.isChecked(), self.n_boot.value())

    def build(self, run_id: int, heldout_gallery: bool = False, rollback: bool = False, n_boot: int = 1000) -> None:
        """Score every cell of the run's layer in the background; the new report is then shown."""

        def job(ws: Workspace, on_progress: ProgressFn, should_stop: StopFn) -> int:
            from embridge.core.report.build import ReportOptions, build_report

            options = ReportOptions(heldout_gallery=heldout_gallery, rollback=rollback, n_boot=n_boot)
            try:
                report = build_report(ws, run_id, options, on_progress=on_progress, should_stop=should_stop)
            except InputError as exc:  # the page's check boxes, not the command line's options
                raise labelled(exc, {"--heldout-gallery": "Held-out gallery", "--rollback": "Rollback cell"}) \
                    from None
            return int(report.report_id or 0)

        def done(report_id: int) -> None:
            log.info("report %d built for run %d", report_id, run_id)
            self._wanted = report_id
            self.ctx.set_focus_run(run_id)

        self.building.started(self.ctx.run(f"Report on run {run_id}", job, done, milestone="stage"))

    def open_html(self) -> None:
        """Open the HTML report in a browser, and always say where it is (with a copy button),
        since a machine without a browser opens nothing."""
        html_file = self.report.html_file if self.report is not None else None
        if html_file:
            opened = dialogs.open_path(html_file)
            self.path_dialog = dialogs.show_path(self, "HTML report", html_file, opened)

    # -- showing a report -------------------------------------------------------------------
    def reset(self) -> None:
        self._wanted, self._focus_seen, self._runs, self._reports = None, None, [], []
        self.run_combo.clear()
        self.report_combo.blockSignals(True)
        self.report_combo.clear()
        self.report_combo.blockSignals(False)
        self.show_report(None)
        self.building.forget()  # a job of the last workspace leaves this one free
        enable(self.build_button, NO_RUNS)  # nothing to act on until a workspace with a run is open

    def _report_chosen(self, index: int) -> None:
        if self.ctx.ws is None or not 0 <= index < len(self._reports):
            self.show_report(None)
            return
        from embridge.core.report.build import load_report

        report_id = int(self._reports[index]["id"])
        try:
            if self.report is None or self.report.report_id != report_id:  # a report never changes
                self.show_report(load_report(self.ctx.ws, report_id))
            else:  # but the workspace may have outgrown its numbers since
                self._show_verdict(self.report)
            run_id = self._reports[index].get("run_id")
            if run_id is not None:
                select_run(self.run_combo, self._runs, int(run_id))
        except EmbridgeError as exc:  # its file was removed or damaged: the page says which and why
            log.warning("report %s cannot be read: %s", report_id, exc)
            self.show_report(None)
            self.verdict.setText(html.escape(f"Report {report_id} cannot be read: {exc}"))

    def _no_report_text(self) -> str:
        """Why no report is shown: none at all, or none of the run in focus while others' are in the list."""
        if not self._runs:
            return "Train a layer on the Train page, then build its report here."
        index = self.run_combo.currentIndex()
        run = self._runs[index]["id"] if 0 <= index < len(self._runs) else None
        others = sum(1 for r in self._reports if r.get("run_id") != run)
        if run is None or not others:
            return "No report yet: build one for a training run."
        return (f"Run {run} has no report yet: build one for it, or choose one of the {others} "
                f"report{'s' if others != 1 else ''} of other runs in the Report list.")

    def show_report(self, report: Report | None) -> None:
        self.report = report
        self._figures_for = None
        for plot in self.plots.values():
            plot.clear()
        enable(self.html_button, None if report is not None and report.html_file else "Build or choose a report first.")
        if report is None:
            self.verdict.setText(self._no_report_text())
            self.metrics.clearContents()
            self.metrics.setRowCount(0)
            self.metrics.setColumnCount(1)
            self.metrics.setHorizontalHeaderLabels(["Metric"])
            self.flips.set_flips([])
            return
        upgraded = report.upgraded_cell
        self._show_verdict(report)
        comparison = {upgraded: with_judged_rows(report.comparison, report.headline)} \
            if upgraded and report.comparison else {}
        # a chain report's cells are its matrix's pairs ('v2/v1'), every metric it measured
        fill_metrics_table(self.metrics, chain_cells(report.chain) if report.chain else report.table(), comparison)
        self.flips.set_flips(flip_entries(self.ctx.ws, report.flipped_list()) if self.ctx.ws else [])
        if self.tabs.currentWidget() is self.figure_tabs:
            self.show_figures()

    def _show_verdict(self, report: Report) -> None:
        """Where the numbers were measured, the headline, the verdicts, and whether the workspace has
        changed since they were measured (then a report built now would differ)."""
        from embridge.core.data_state import report_stale_note

        lines = "".join(f"<p style='color:{TONE_COLOURS[verdict_tone(v)]}'>{html.escape(v)}</p>"
                        for v in report.verdicts)
        stale = report_stale_note(self.ctx.ws, int(report.report_id)) \
            if self.ctx.ws is not None and report.report_id is not None else None
        warning = (f"<p style='color:{TONE_COLOURS['caution']}'><b>{html.escape(capitalised(stale), quote=False)}"
                   "</b></p>") if stale else ""
        facts = " ".join(report.protocol)
        statement = report.search.get("statement", "")
        if report.chain:  # no upgraded cell or headline: the matrix's AC and AM, and each pair's criterion
            chain = report.chain
            said = "".join(f"<p>{html.escape(line)}</p>" for line in [*note_lines(chain), *criterion_lines(chain)])
            self.verdict.setText(
                "".join(f"<p><b>{html.escape(capitalised(line))}</b></p>" for line in measured_lines(chain))
                + warning + f"<p>Chain {html.escape(' → '.join(chain.get('versions') or []))} on "
                f"{html.escape(str(chain.get('metric')))}: {html.escape(scores_line(chain))}</p>{said}"
                f"<p style='color:#555'>{html.escape(facts)} {html.escape(statement)}</p>")
            return
        served = "".join(f"<p>{html.escape(capitalised(line))}</p>"
                         for line in [*served_lines(report.served), *backfill_lines(report)])
        self.verdict.setText(f"<p><b>Measured on: {html.escape(source_of_report(report).label())}</b></p>{warning}"
                             f"<p>{html.escape(headline_text(report))}</p>{lines}{served}"
                             f"<p style='color:#555'>{html.escape(facts)} {html.escape(statement)}</p>")

    def _tab_changed(self, _index: int) -> None:
        if self.tabs.currentWidget() is self.figure_tabs:
            self.show_figures()

    def show_figures(self) -> None:
        """The report's figures, built once per report on first view (matplotlib loads here)."""
        if self.report is None or self._figures_for == id(self.report):
            return
        from embridge.core.report.report_export import report_figure_recipes

        self._figures_for = id(self.report)
        for name, recipe in report_figure_recipes(self.report).items():
            if name not in self.plots:
                self.plots[name] = ImagePlot()
                self.figure_tabs.addTab(self.plots[name], FIGURE_TITLES.get(name, name))
            self.plots[name].schedule(recipe)  # built and drawn on a pool thread (~500 ms for all of them)

    # -- state ------------------------------------------------------------------------------
    def refresh(self) -> None:
        assert self.ctx.ws is not None
        ws = self.ctx.ws
        self._runs = completed_train_runs(ws)
        set_combo_items(self.run_combo, [run_label(r) for r in self._runs])
        self.building.show()
        focus = self.ctx.focus_run
        focus_moved = focus != self._focus_seen and focus is not None
        if focus != self._focus_seen:
            self._focus_seen = focus
            select_run(self.run_combo, self._runs, focus)
            if self._wanted is None:  # show the focused run's latest report
                self._wanted = next((r["id"] for r in reversed(ws.reports()) if r.get("run_id") == focus
                                     and r.get("json_file")), None)
        self._reports = [r for r in reversed(ws.reports()) if r.get("json_file")]
        labels = [f"report {r['id']}" + (f" · run {r['run_id']}" if r.get("run_id") is not None else "")
                  for r in self._reports]
        wanted = self._wanted
        self.report_combo.blockSignals(True)
        current = self.report_combo.currentText()
        self.report_combo.clear()
        self.report_combo.addItems(labels)
        target = next((n for n, r in enumerate(self._reports) if r["id"] == wanted), None)
        if target is None and focus_moved:
            target = -1  # the run now in focus has no report yet: show none rather than another run's
        elif target is None and current in labels:
            target = labels.index(current)
        elif target is None:  # the run picked has no report on show: its newest, never another run's
            run = self._runs[self.run_combo.currentIndex()]["id"] if 0 <= self.run_combo.currentIndex() < len(
                self._runs) else None
            target = next((n for n, r in enumerate(self._reports) if run is None or r.get("run_id") == run), -1)
        self._wanted = None
        self.report_combo.setCurrentIndex(target if labels else -1)
        self.report_combo.blockSignals(False)
        self._report_chosen(self.report_combo.currentIndex())
