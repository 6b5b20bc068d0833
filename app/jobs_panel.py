"""The jobs panel: one row per job with a progress bar, elapsed time, ETA and a cancel button."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from embridge.app.workers import Job, JobManager
from embridge.core.formatting import early_stop_text, format_seconds
from embridge.core.jobs import JobOutcome


class JobRow(QFrame):
    """What the user sees of one job; the cancel button asks the job to stop cooperatively."""

    def __init__(self, job: Job, show_details: Callable[[Job], None]) -> None:
        super().__init__()
        self.job = job
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.title = QLabel(job.title)
        self.title.setWordWrap(True)
        self.title.setMinimumWidth(0)
        self.bar = QProgressBar()
        self.bar.setRange(0, 0)  # busy until the first progress report
        self.status = QLabel("starting…")
        self.status.setWordWrap(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip(f"Stop '{job.title}' at its next step")
        self.cancel_button.clicked.connect(self._cancel)
        self.details_button = QPushButton("Details…")
        self.details_button.setVisible(False)
        self.details_button.clicked.connect(lambda: show_details(job))
        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(self.cancel_button)
        top.addWidget(self.details_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        layout.addLayout(top)
        layout.addWidget(self.bar)
        layout.addWidget(self.status)
        job.progressed.connect(self._on_progress)
        job.finished.connect(self._on_finished)

    def _cancel(self) -> None:
        self.job.cancel()
        self.cancel_button.setEnabled(False)
        self.cancel_button.setText("Cancelling…")

    def _on_progress(self, done: int, total: int, info: dict) -> None:
        if total > 0:
            self.bar.setRange(0, total)
            self.bar.setValue(min(done, total))
        self.refresh_times()

    def refresh_times(self) -> None:
        if not self.job.running:
            return
        text = f"{format_seconds(self.job.elapsed_s())} elapsed"
        eta, note = self.job.eta_s(), early_stop_text(self.job.info)
        if eta is not None:
            text += f" · at most {format_seconds(eta)} left" if note else f" · about {format_seconds(eta)} left"
        if note:
            text += f" · {note}"
        rate = self.job.info.get("items_per_s")
        if isinstance(rate, int | float) and rate > 0:  # embedding jobs (local or on a cluster) report it
            text += f" · {rate:,.0f} items/s"
        stage = self.job.info.get("stage")
        if isinstance(stage, str):
            text = f"{stage} · {text}"
        self.status.setText(text)

    def _on_finished(self, outcome: JobOutcome) -> None:
        self.cancel_button.setVisible(False)
        took = format_seconds(outcome.duration_s)
        if outcome.status == "completed":
            self.bar.setRange(0, 1)
            self.bar.setValue(1)
            self.status.setText(f"completed in {took}")
        elif outcome.status == "cancelled":
            self.bar.setRange(0, max(self.job.total, 1))
            self.status.setText(f"cancelled after {took}")
        else:
            self.bar.setRange(0, max(self.job.total, 1))
            self.status.setText(f"failed after {took}: {outcome.error}")
            self.status.setWordWrap(True)
            self.details_button.setVisible(True)


class JobsPanel(QWidget):
    """Rows for the jobs of this session, newest first; finished rows stay until cleared."""

    def __init__(self, manager: JobManager, show_details: Callable[[Job], None]) -> None:
        super().__init__()
        self.manager = manager
        self._show_details = show_details
        self.rows: list[JobRow] = []
        self._rows_box = QVBoxLayout()
        self._rows_box.addStretch(1)
        holder = QWidget()
        holder.setLayout(self._rows_box)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(holder)
        self.clear_button = QPushButton("C&lear finished")
        self.clear_button.clicked.connect(self.clear_finished)
        self.empty_label = QLabel("No jobs yet.")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.empty_label)
        layout.addWidget(scroll, 1)
        layout.addWidget(self.clear_button)
        self._timer = QTimer(self)
        self._timer.setInterval(500)
        self._timer.timeout.connect(self._tick)
        manager.job_started.connect(self.add_job)

    def sizeHint(self) -> QSize:
        return QSize(240, 300)

    def add_job(self, job: Job) -> None:
        if not job.visible:
            return
        row = JobRow(job, self._show_details)
        self.rows.insert(0, row)
        self._rows_box.insertWidget(0, row)
        self.empty_label.setVisible(False)
        self._timer.start()

    def row_for(self, job: Job) -> JobRow | None:
        return next((r for r in self.rows if r.job is job), None)

    def _tick(self) -> None:
        running = [r for r in self.rows if r.job.running]
        for row in running:
            row.refresh_times()
        if not running:
            self._timer.stop()

    def clear_finished(self) -> None:
        for row in [r for r in self.rows if not r.job.running]:
            self.rows.remove(row)
            row.setParent(None)
            row.deleteLater()
        self.empty_label.setVisible(not self.rows)
