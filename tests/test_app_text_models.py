"""The Models page adds text model folders with prompts and shows the prompts each model embeds with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from app_fixtures import error_dialogs, no_threads_left, wait_for_jobs, window
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot
from text_fixtures import tiny_sentence_transformer

from embridge.app.main_window import MainWindow
from embridge.core.store import Workspace

__all__ = ["no_threads_left", "window"]
pytestmark = pytest.mark.usefixtures("no_threads_left")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("app-text")
    return tiny_sentence_transformer(root / "e5ish", prompts={"query": "query: ", "document": "passage: "})


def test_models_page_adds_a_text_folder_with_prompts_and_shows_them(qtbot: QtBot, window: MainWindow,
                                                                    folder: Path, tmp_path: Path) -> None:
    Workspace.create(tmp_path / "ws").close()
    window.ctx.open_workspace(tmp_path / "ws")
    models = window.show_page("models")
    models.path.setText(str(folder))
    models.role.setCurrentText("new")
    models.document_prompt.setText("Represent this document: ")  # overrides the folder's "passage: "
    qtbot.mouseClick(models.add_button, Qt.MouseButton.LeftButton)
    wait_for_jobs(qtbot, window)
    assert not error_dialogs()
    assert models.table.rowCount() == 1
    header = [models.table.horizontalHeaderItem(c).text() for c in range(models.table.columnCount())]
    prompts = models.table.item(0, header.index("Prompts")).text()
    assert prompts == 'query prompt "query: ", document prompt "Represent this document: "'
    details, _, spec_json = models.spec_view.toPlainText().partition("\nspec:\n")
    assert details.startswith("name: ") and "role: new" in details  # readable lines, then the spec
    spec = json.loads(spec_json)
    assert (spec["kind"], spec["query_prompt"], spec["document_prompt"]) == \
        ("sentence_transformers", "query: ", "Represent this document: ")
    assert models.document_prompt.text() == ""  # the form is ready for the next model


def test_demo_choice_builds_the_text_demo(qtbot: QtBot, window: MainWindow, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import embridge.core.demo_text
    from embridge.app import dialogs

    calls: list[Path] = []

    def fake_build(path: Path, seed: int = 0, on_progress: object = None, should_stop: object = None) -> Workspace:
        calls.append(Path(path))  # the real builder is exercised in test_text_demo.py
        return Workspace.create(path)

    monkeypatch.setattr(embridge.core.demo_text, "build_text_demo", fake_build)
    monkeypatch.setattr(dialogs, "choose_directory", lambda *a, **k: str(tmp_path / "text-demo"))
    page = window.show_page("workspace")
    page.demo_kind.setCurrentIndex(page.demo_kind.findData("text"))
    qtbot.mouseClick(page.demo_button, Qt.MouseButton.LeftButton)
    wait_for_jobs(qtbot, window)
    assert calls == [tmp_path / "text-demo"] and not error_dialogs()
    assert window.ctx.ws is not None and Path(window.ctx.ws.root) == tmp_path / "text-demo"
