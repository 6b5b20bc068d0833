"""The corpus inputs the desktop app can meet end in an error dialog, never a crash.

For each case of ``badinputs.CORPUS`` marked with an app action, the test drives that action the
way the page's buttons do (add a model, import items, verify a bundle, open a workspace) and
expects one non-modal error dialog whose message names the file and the problem, without a
traceback (a user error, not a bug). The window stays up, and every file under the test's folder
is byte-identical once the workspace is closed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from app_fixtures import close_error_dialogs, error_dialogs, no_threads_left, wait_for_jobs, window
from badinputs import CORPUS, Case, Env, corpus_base, make_env, option, state
from badinputs_commands import COMMAND_CASES
from pytestqt.qtbot import QtBot

from embridge.app.main_window import MainWindow

__all__ = ["corpus_base", "no_threads_left", "window"]
APP_CASES = [case for case in [*CORPUS, *COMMAND_CASES] if case.app]


def test_every_app_action_meets_several_bad_inputs() -> None:
    actions = [case.app for case in APP_CASES]
    assert {a: actions.count(a) >= 3 for a in ("model", "import", "verify", "open")} == dict.fromkeys(
        ("model", "import", "verify", "open"), True)


def _act(win: MainWindow, case: Case, env: Env, bad: Path | str) -> str:
    """Start the page action for ``case``; returns the title its error dialog must have."""
    argv = case.argv(env, bad)
    if case.app == "open":
        win.ctx.open_workspace(option(tuple(argv), "-w"))
        return "Cannot open workspace"
    assert win.ctx.open_workspace(env.ws)
    if case.app == "model":
        win.show_page("models").add_model(str(bad), "x", "other")
        return "Add model x failed"
    if case.app == "import":
        path = option(tuple(argv), "--path")
        win.show_page("gallery").import_items(path, option(tuple(argv), "--format"), None,
                                              option(tuple(argv), "--model"), option(tuple(argv), "--ids"))
        return f"Import {path} failed"
    win.show_page("export").verify(str(bad))
    return f"Verify {Path(bad).name} failed"


@pytest.mark.parametrize("case", APP_CASES, ids=lambda c: c.name)
def test_bad_input_shows_an_error_dialog(case: Case, qtbot: QtBot, window: MainWindow, corpus_base: dict[str, Any],
                                         tmp_path: Path) -> None:
    env = make_env(corpus_base["ws"], corpus_base["bundle"], tmp_path)
    bad = case.build(env)
    before = state(tmp_path)
    title = _act(window, case, env, bad)
    qtbot.waitUntil(lambda: bool(error_dialogs()), timeout=60_000)
    wait_for_jobs(qtbot, window)
    (dialog,) = error_dialogs()
    assert dialog.windowTitle() == title
    assert str(bad) in dialog.message and re.search(case.expect, dialog.message), dialog.message
    assert dialog.details is None  # explained in one message, no traceback
    top = dialog.layout().itemAt(0).widget()
    assert top.text() == dialog.headline == " ".join(dialog.message.split())  # the one line, on top
    assert "Traceback" not in dialog.headline and "\n" not in top.text()
    assert window.isVisible()
    close_error_dialogs()
    window.ctx.close_workspace()
    assert state(tmp_path) == before


def test_a_bug_shows_its_one_line_on_top_and_the_traceback_below(qtbot: QtBot, window: MainWindow) -> None:
    window.ctx.reporter.report("Unexpected error", "KeyError: 101\n  (while unpickling)", "Traceback (most recent...)")
    qtbot.waitUntil(lambda: bool(error_dialogs()), timeout=10_000)
    (dialog,) = error_dialogs()
    assert dialog.layout().itemAt(0).widget().text() == "KeyError: 101 (while unpickling)"
    assert dialog.details_view.toPlainText().startswith("Traceback")
    close_error_dialogs()


def test_gallery_import_errors_name_the_forms_fields(qtbot: QtBot, window: MainWindow, demo_copy: Path,
                                                     tmp_path: Path) -> None:
    """The refusal named '--split' and '--ids FILE', options the window does not have."""
    notes = tmp_path / "notes.csv"
    notes.write_text("key,text\nn1,first note\n")
    assert window.ctx.open_workspace(demo_copy)
    gallery = window.show_page("gallery")
    gallery.import_items(str(notes), split="Query")  # the demo has a split 'query'
    qtbot.waitUntil(lambda: bool(error_dialogs()), timeout=60_000)
    wait_for_jobs(qtbot, window)
    (dialog,) = error_dialogs()
    assert "Split: the split name 'Query' differs from 'query' only in case" in dialog.message, dialog.message
    assert "--split" not in dialog.message
    close_error_dialogs()
