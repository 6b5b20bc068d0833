"""Render every page of the app to PNG: ``python -m embridge.app.screenshots --workspace W --out DIR``.

Runs offscreen by default and with a throw-away settings folder, so the pictures show the given
workspace and nothing of the user's own settings. Files are named after the pages
(``workspace.png``, ``models.png``, ...); each ``--size`` after the first (``min`` is the window's
minimum size) goes to a subfolder named after it (``minimum/``). ``--prepare`` works on a copy of
the workspace and first trains an automatic-choice layer and builds its report, so the Train,
Reports, Plan and Export pages show what a user sees after those steps.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path


def render_pages(window: object, out: Path) -> list[Path]:
    """Show each page in turn, draw its pending plots and save a grab of the whole window."""
    from PySide6.QtWidgets import QApplication

    from embridge.app.image_plot import ImagePlot
    from embridge.app.pages import PAGES
    from embridge.app.plots import PlotWidget

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for key, _title, _target in PAGES:
        page = window.show_page(key)
        QApplication.processEvents()
        plan_button = getattr(page, "plan_button", None)
        if plan_button is not None and plan_button.isEnabled() and page.plan is None:
            page.plan_from_form()  # show a filled plan rather than an empty form
            window.ctx.jobs.wait(300.0)
            QApplication.processEvents()
        for plot in page.findChildren(PlotWidget):
            if isinstance(plot, ImagePlot) and plot.isVisible():
                plot.settle()  # as the app draws it, in the background at the plot's size
            else:
                plot.flush()
        QApplication.processEvents()
        path = out / f"{key}.png"
        if not window.grab().save(str(path)):
            raise OSError(f"{path}: could not write the screenshot")
        written.append(path)
    return written


def prepare(workspace: Path, epochs: int = 8) -> int:
    """Train an automatic-choice layer and build its report (in ``workspace``); the run's id."""
    from embridge.core.report.build import ReportOptions, build_report
    from embridge.core.store import Workspace
    from embridge.core.train.runs import train_run

    with Workspace.open(workspace) as ws:
        run = train_run(ws, "auto", config={"epochs": epochs})
        build_report(ws, run["run_id"], ReportOptions(n_boot=200))
    return int(run["run_id"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m embridge.app.screenshots", description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", "-w", required=True, metavar="DIR")
    parser.add_argument("--out", default="docs/screenshots", metavar="DIR")
    parser.add_argument("--size", action="append", help="window size, WIDTHxHEIGHT or 'min' (repeatable; "
                                                         "default 1400x900 and min)")
    parser.add_argument("--prepare", action="store_true",
                        help="on a copy of the workspace, train an auto layer and build its report first")
    args = parser.parse_args(argv)
    sizes = args.size or ["1400x900", "min"]
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    with tempfile.TemporaryDirectory() as scratch:
        os.environ.setdefault("EMBRIDGE_CONFIG_DIR", str(Path(scratch) / "config"))
        workspace, focus = Path(args.workspace), None
        if args.prepare:
            workspace = Path(scratch) / "ws"
            shutil.copytree(args.workspace, workspace)
            focus = prepare(workspace)
        written = shoot(str(workspace), Path(args.out), sizes, focus)
        if written is None:
            sys.stderr.write(f"screenshots: cannot open workspace {args.workspace}\n")
            return 1
    for path in written:
        sys.stdout.write(f"{path}\n")
    return 0


def shoot(workspace: str, out: Path, sizes: list[str], focus: int | None) -> list[Path] | None:
    """One window, grabbed at each size; closed and deleted afterwards (nothing is left open)."""
    from PySide6.QtCore import QCoreApplication, QEvent

    from embridge.app.launch import application, build_main_window

    app = application()
    window = build_main_window(workspace)
    try:
        if window.ctx.ws is None:
            return None
        window.ctx.set_focus_run(focus)
        window.show()
        window.ctx.detect_devices()
        window.ctx.jobs.wait(120.0)
        written: list[Path] = []
        for n, size in enumerate(sizes):
            if size == "min":
                minimum = window.minimumSize()
                width, height = minimum.width(), minimum.height()
            else:
                width, height = (int(v) for v in size.lower().split("x"))
            window.resize(width, height)
            app.processEvents()
            folder = out if n == 0 else out / ("minimum" if size == "min" else size)
            written += render_pages(window, folder)
        return written
    finally:
        window.close()
        window.deleteLater()
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        app.processEvents()


if __name__ == "__main__":
    raise SystemExit(main())
