"""Export page: build an upgrade bundle from a training run, verify bundles, show and open them."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
)

from embridge.app import dialogs
from embridge.app.context import AppContext
from embridge.app.error_path import labelled
from embridge.app.pages.forms import PathField, set_combo_items
from embridge.app.pages.page import (
    Page,
    ResultView,
    completed_train_runs,
    fill_table,
    make_table,
    run_label,
    select_run,
)
from embridge.app.pages.why_disabled import NO_RUNS, VERIFYING_BUNDLE, JobButton, enable
from embridge.core.bundle.measured import export_warnings
from embridge.core.data_state import with_stale_notes
from embridge.core.errors import InputError
from embridge.core.formatting import capitalised
from embridge.core.paths import check_output
from embridge.core.progress import ProgressFn, StopFn
from embridge.core.run_choice import run_choice
from embridge.core.store import Workspace

log = logging.getLogger("embridge.app")
BUILDING = "A bundle is being built; wait for it to end (see Jobs)."
GALLERY_CHOICES = {"default (yes for old→new layers)": None, "yes": True, "no": False}


class ExportPage(Page):
    title = "Export"

    def __init__(self, ctx: AppContext) -> None:
        super().__init__(ctx)
        self.store_dialog: Any = None  # made on first use
        self._runs: list[dict[str, Any]] = []
        self._bundles: list[dict[str, Any]] = []
        self._warnings: dict[int, list[str]] = {}  # run id -> the WARNING lines of its latest export here
        self._verified: dict[str, tuple[tuple[int, int] | None, str]] = {}  # path -> (its stamp then, the result)
        self._just_built: int | None = None  # the bundle an export of this page just wrote, selected at refresh
        box = QGroupBox("Build a bundle")
        form = QFormLayout(box)
        self.run_combo = QComboBox()
        self.run_combo.currentIndexChanged.connect(self._run_changed)
        self.out = PathField("Bundle destination (a folder, or a name ending in .zip)", "Zip (*.zip)",
                             folder=True, save=True)
        self.gallery = QComboBox()
        self.gallery.addItems(list(GALLERY_CHOICES))
        self.build_button = QPushButton("&Build bundle")
        self.build_button.clicked.connect(self.export_from_form)
        self.building = JobButton(self.build_button, BUILDING, lambda: None if self._runs else NO_RUNS)
        self.run_info = ResultView(max_height=110)
        self._suggested, self._folder = "", None
        self._focus_seen: int | None = None
        ctx.focus_run_changed.connect(self.mark_stale)
        form.addRow("&Run", self.run_combo)
        form.addRow("", self.run_info)
        form.addRow("&Destination", self.out)
        form.addRow("Transformed &gallery", self.gallery)
        form.addRow(self.build_button)
        self.layout_.addWidget(box)

        buttons = QHBoxLayout()
        self.verify_button = QPushButton("Ver&ify selected")
        self.verify_button.clicked.connect(lambda: self._with_selected(self.verify))
        self.verify_other = QPushButton("Verify a bundle fi&le…")
        self.verify_other.clicked.connect(self.verify_chosen)
        self.open_button = QPushButton("&Open selected")
        self.open_button.clicked.connect(lambda: self._with_selected(self.open_bundle))
        self.migrate_store_button = QPushButton("&Migrate a store…")
        self.migrate_store_button.clicked.connect(self.open_store_migration)
        self.verifying = JobButton(self.verify_button, VERIFYING_BUNDLE, lambda: None)  # one check at a time
        for button in (self.verify_button, self.verify_other, self.open_button, self.migrate_store_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        self.layout_.addLayout(buttons)

        split = QSplitter()
        self.table = make_table(["Bundle", "Path", "Adapter", "Report", "Created", "sha256"])
        self.table.itemSelectionChanged.connect(self._show_selected)
        self.details = QPlainTextEdit()
        self.details.setReadOnly(True)
        split.addWidget(self.table)
        split.addWidget(self.details)
        split.setSizes([600, 400])
        self.layout_.addWidget(split, 1)
        self._show_selected()

    # -- actions ----------------------------------------------------------------------------
    def _run_changed(self, index: int) -> None:
        if 0 <= index < len(self._runs):
            self._suggest_out(index)
            self._show_run(self._runs[index])

    def _suggest_out(self, index: int) -> None:
        """A free bundle name for the chosen run, in the folder last used (the workspace's parent
        folder at first: the core refuses outputs inside the workspace); a destination the user
        typed is never replaced."""
        if self.ctx.ws is None or not 0 <= index < len(self._runs):
            return
        if self.out.text() and self.out.text() != self._suggested:
            return
        run = self._runs[index]
        root = Path(self.ctx.ws.root).resolve()
        folder = self._folder or root.parent
        stem = f"run{run['id']}-{run_choice(run).kind or run['method']}-{root.name}"
        target, n = folder / f"{stem}.zip", 2
        while target.exists():
            target, n = folder / f"{stem}-{n}.zip", n + 1
        self._suggested = str(target)
        self.out.setText(self._suggested)

    def _offer_gallery(self, run: dict[str, Any]) -> None:
        """A transformed gallery only for a layer that maps old vectors forward (the export refuses it for
        the others): the choice greys, on its default, for a backward layer."""
        ws = self.ctx.ws
        layers = [a for a in ws.adapters() if a["run_id"] == run["id"]] if ws is not None else []
        backward = bool(layers) and layers[-1]["direction"] != "forward"
        if backward:
            self.gallery.setCurrentIndex(0)
        enable(self.gallery, f"Run {run['id']}'s layer maps new queries into the old space; only an old→new "
                             "(forward) layer transforms a gallery" if backward else None)

    def _show_run(self, run: dict[str, Any]) -> None:
        """What the chosen run is: the method fitted (and for auto, the candidates and why)."""
        from embridge.core.evaluation.headline import upgraded_text
        from embridge.core.report.number_source import source_of_run, with_source

        self._offer_gallery(run)
        choice = run_choice(run)
        metrics = run.get("metrics") or {}
        text = f"Run {run['id']}: {choice.method_text()}"
        upgraded = upgraded_text(metrics)  # the number its criterion is decided on
        if upgraded:
            text += " · " + with_source(upgraded, source_of_run(run))
        if run.get("stale"):  # its numbers describe data the workspace has outgrown (core.data_state)
            text += f"\n{capitalised(run['stale'])}"
        if choice.is_auto:
            text += f"\nCandidates ({choice.metric}): {choice.candidates_text()}\n{choice.reason}"
        text += "".join(f"\n{w}" for w in self._warnings.get(int(run["id"]), []))  # of its last export here
        self.run_info.setText(text)

    def export_from_form(self) -> None:
        index = self.run_combo.currentIndex()
        if not 0 <= index < len(self._runs) or not self.out.text():
            self.ctx.reporter.report("Build bundle", "Choose a completed training run and a destination first.")
            return
        out = self._destination()
        try:  # before asking to replace it: the workspace itself or a folder inside it is never replaced
            check_output(out, label="Destination", workspace=self.ctx.ws.root if self.ctx.ws else None)
        except InputError as exc:
            self.ctx.reporter.report("Build bundle", str(exc))
            return
        replace = Path(out).exists() or Path(out).is_symlink()
        if replace and not dialogs.confirm(self, "Replace bundle", f"{out} already exists. Replace it? Only an "
                                           "earlier bundle is replaced; anything else there is refused and kept."):
            return
        self.export(self._runs[index]["id"], out, GALLERY_CHOICES[self.gallery.currentText()], overwrite=replace)

    def _destination(self) -> str:
        """The Destination field as an absolute path: a bare name goes in the folder the suggested name is in
        (the app's working folder is wherever it was launched from), and the field shows where."""
        typed = Path(self.out.text()).expanduser()
        if typed.is_absolute() or self.ctx.ws is None:
            return str(typed)
        placed = str((self._folder or Path(self.ctx.ws.root).resolve().parent) / typed)
        self.out.setText(placed)
        return placed

    def export(self, run_id: int, out: str, gallery: bool | None = None, overwrite: bool = False) -> None:
        """Write and verify a bundle in the background (the core publishes it only when complete);
        one at a time: Build stays disabled until it ends."""
        if self.building.job is not None:
            return

        def job(ws: Workspace, on_progress: ProgressFn, should_stop: StopFn) -> dict[str, Any]:
            from embridge.core.bundle import export_bundle

            try:
                return export_bundle(ws, out, [run_id], gallery=gallery, overwrite=overwrite, on_progress=on_progress,
                                     should_stop=should_stop)
            except InputError as exc:  # the field's name, not the command line's option
                raise labelled(exc, {"--out": "Destination", "--gallery": "Transformed gallery"}) from None

        def done(info: dict[str, Any]) -> None:
            log.info("bundle %s written to %s (%d bytes)", info["bundle_id"], info["path"], info["bytes"])
            self._warnings[run_id] = export_warnings(info)  # shown with the run, as the command line prints them
            # keep the folder the user chose; the next refresh suggests a fresh name inside it
            self._folder = Path(info["path"]).resolve().parent
            self._suggested = self.out.text()
            self._just_built = int(info["bundle_id"])  # shown next, not the bundle selected before it

        self.building.started(self.ctx.run(f"Export bundle of run {run_id}", job, done))

    def verify(self, path: str) -> None:
        """Check every hash and re-run the probes, in the background; the result shows below (one check at
        a time: a second click would print the same result twice)."""
        if self.verifying.job is not None:
            self.ctx.reporter.report("Verify bundle", VERIFYING_BUNDLE)
            return

        def job(on_progress: ProgressFn, should_stop: StopFn) -> dict[str, Any]:
            from embridge.core.bundle import verify_bundle

            return verify_bundle(path, on_progress=on_progress, should_stop=should_stop)

        def done(result: dict[str, Any]) -> None:
            probes = result.get("probes") or {}
            text = (f"✔ {result['path']} verified: {result['files_checked']} files checked, "
                    f"{probes.get('count', 0)} probes reproduced (max abs difference {probes.get('max_abs_diff', 0):.2g})")
            log.info(text)
            self._verified[str(path)] = (_stamp(path), text)  # shown with the bundle until its files change
            self.details.setPlainText(text + "\n\n" + self.details.toPlainText())

        self.verifying.started(self.ctx.run_plain(f"Verify {Path(path).name}", job, done))

    def verify_chosen(self) -> None:
        path = dialogs.choose_file(self, "Verify a bundle", "Bundles (*.zip manifest.json);;All files (*)")
        if path:
            self.verify(str(Path(path).parent) if Path(path).name == "manifest.json" else path)

    def open_bundle(self, path: str) -> None:
        target = Path(path)
        dialogs.open_path(str(target if target.is_dir() else target.parent))

    def open_store_migration(self) -> None:
        """Show the store-migration dialog, with the selected bundle filled in."""
        from embridge.app.store_dialogs import StoreMigrateDialog

        if self.store_dialog is None:
            self.store_dialog = StoreMigrateDialog(self.ctx, self)
        row = self.table.currentRow()
        if 0 <= row < len(self._bundles) and not self.store_dialog.bundle.text():
            self.store_dialog.offer_bundle(str(self._bundles[row]["path"]), self._bundles[row].get("manifest") or {})
        self.store_dialog.show()
        self.store_dialog.raise_()

    def _with_selected(self, action: Any) -> None:
        row = self.table.currentRow()
        if not 0 <= row < len(self._bundles):
            self.ctx.reporter.report("Bundles", "Select a bundle in the table first.")
            return
        action(self._bundles[row]["path"])

    # -- state ------------------------------------------------------------------------------
    def reset(self) -> None:
        self._runs, self._bundles, self._suggested, self._folder, self._focus_seen = [], [], "", None, None
        self._verified, self._warnings = {}, {}
        self.building.forget()
        self.verifying.forget()
        self.run_combo.clear()
        self.out.setText("")
        self.run_info.setText("")
        self.table.setRowCount(0)
        self._show_selected()

    def refresh(self) -> None:
        assert self.ctx.ws is not None
        ws = self.ctx.ws
        self._runs = with_stale_notes(ws, completed_train_runs(ws))
        self.run_combo.blockSignals(True)
        set_combo_items(self.run_combo, [run_label(r) for r in self._runs])
        if self.ctx.focus_run != self._focus_seen:
            self._focus_seen = self.ctx.focus_run
            select_run(self.run_combo, self._runs, self.ctx.focus_run)
        self.run_combo.blockSignals(False)
        self.building.show()
        if self._runs:
            self._suggest_out(self.run_combo.currentIndex())
            self._show_run(self._runs[max(self.run_combo.currentIndex(), 0)])
        row = self.table.currentRow()  # the bundle, not the row: a newer one is listed above it
        selected = self._bundles[row]["id"] if 0 <= row < len(self._bundles) and self.table.selectedItems() else None
        selected, self._just_built = self._just_built or selected, None
        self._bundles = list(reversed(ws.bundles()))
        fill_table(self.table, [[b["id"], b["path"], b.get("adapter_id"), b.get("report_id"), b.get("created"),
                                 str(b.get("sha256"))[:12]] for b in self._bundles])
        ids = [b["id"] for b in self._bundles]
        if selected in ids:
            self.table.selectRow(ids.index(selected))
        elif self._bundles and self.table.currentRow() < 0:
            self.table.selectRow(0)
        self._show_selected()

    def _show_selected(self) -> None:
        row = self.table.currentRow()
        chosen = 0 <= row < len(self._bundles) and bool(self.table.selectedItems())
        for button in (self.verify_button, self.open_button):
            enable(button, None if chosen else "Select a bundle in the list first.")
        if not chosen:
            self.details.setPlainText("Select a bundle to see its manifest." if self._bundles else "No bundles yet.")
            return
        manifest = self._bundles[row].get("manifest") or {}
        try:
            from embridge.core.bundle import bundle_text

            text = bundle_text(manifest)
        except (KeyError, TypeError):  # a manifest of another format version: show it raw
            text = json.dumps(manifest, indent=2)
        path = str(self._bundles[row]["path"])
        stamp, verified = self._verified.get(path, (None, ""))
        shown = verified + "\n\n" if verified and stamp is not None and stamp == _stamp(path) else ""
        self.details.setPlainText(f"{shown}{path}\n{text}")


def _stamp(path: str) -> tuple[int, int] | None:
    """(latest modification time, total size) of a bundle's zip or of every file of its folder: a
    verification is shown again only for the very files it checked."""
    target = Path(path)
    try:
        files = [p for p in target.rglob("*") if p.is_file()] if target.is_dir() else [target]
        stats = [p.stat() for p in files]
    except OSError:
        return None
    if not stats:
        return None
    return max(st.st_mtime_ns for st in stats), sum(st.st_size for st in stats)
