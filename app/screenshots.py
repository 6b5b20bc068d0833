"""Render every page of the app to PNG: ``python -m app.screenshots --workspace W --out DIR``.

Runs offscreen by default and with a throw-away settings folder, so the pictures show the given
workspace and nothing of the user's own settings. Files are named after the pages
(``workspace.png``, ``models.png``, ...).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path


def render_pages(window: object, out: Path) -> list[Path]:
    """Show each page in turn, draw its pending plots and save a grab of the whole window."""
    from PySide6.QtWidgets import QApplication

    from app.pages import PAGES
    from app.plots import PlotWidget

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for key, _title, _target in PAGES:
        page = window.show_page(key)
        QApplication.processEvents()
        if hasattr(page, "plan_from_form"):  # show a filled plan rather than an empty form
            page.plan_from_form()
            window.ctx.jobs.wait(300.0)
            QApplication.processEvents()
        for plot in page.findChildren(PlotWidget):
            plot.flush()
        QApplication.processEvents()
        path = out / f"{key}.png"
        if not window.grab().save(str(path)):
            raise OSError(f"{path}: could not write the screenshot")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.screenshots", description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", "-w", required=True, metavar="DIR")
    parser.add_argument("--out", default="docs/screenshots", metavar="DIR")
    parser.add_argument("--size", default="1400x900", help="window size, WIDTHxHEIGHT")
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    with tempfile.TemporaryDirectory() as config:
        os.environ.setdefault("EMBRIDGE_CONFIG_DIR", config)
        from app.main import application, build_main_window

        app = application()
        window = build_main_window(args.workspace)
        if window.ctx.ws is None:
            sys.stderr.write(f"screenshots: cannot open workspace {args.workspace}\n")
            return 1
        width, height = (int(v) for v in args.size.lower().split("x"))
        window.resize(width, height)
        window.show()
        window.ctx.detect_devices()
        window.ctx.jobs.wait(120.0)
        written = render_pages(window, Path(args.out))
        window.close()
        app.processEvents()
    for path in written:
        sys.stdout.write(f"{path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
