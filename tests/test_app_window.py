"""Main window behaviour: start-up cost, keyboard navigation, settings and geometry, screenshots."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from app_fixtures import no_threads_left, window
from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence
from pytestqt.qtbot import QtBot

from embridge.app.main_window import MainWindow
from embridge.app.pages import PAGES
from embridge.app.settings import Settings

__all__ = ["no_threads_left", "window"]
pytestmark = pytest.mark.usefixtures("no_threads_left")


def test_building_the_window_imports_neither_torch_nor_faiss_nor_matplotlib(tmp_path: Path) -> None:
    code = ("import sys; from embridge.app.launch import application, build_main_window; application(); "
            "w = build_main_window(); w.show(); "
            "print(sorted(m for m in ('torch', 'faiss', 'matplotlib') if m in sys.modules))")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "EMBRIDGE_CONFIG_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_after_start_up_the_libraries_jobs_need_are_loaded_in_the_background(tmp_path: Path) -> None:
    code = textwrap.dedent("""
        import json, sys
        from PySide6.QtCore import QTimer
        import embridge.app.launch as m
        from embridge.app.context import WARM_UP
        app = m.application()
        w = m.build_main_window()
        w.show()
        seen = {}
        def loaded():
            seen.update(device=w.ctx.device_label, devices=w.ctx.devices,
                        modules=[n for n in WARM_UP if n in sys.modules])
            app.quit()
        w.ctx.libraries_loaded.connect(loaded)
        w.start()
        QTimer.singleShot(120_000, app.quit)
        app.exec()
        w.ctx.jobs.shutdown(30.0)
        print(json.dumps(seen))
    """)
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "EMBRIDGE_CONFIG_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=180)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    from embridge.app.context import WARM_UP

    assert seen["modules"] == list(WARM_UP)  # every warm-up module imported before the signal
    assert seen["devices"][:2] == ["auto", "cpu"] and seen["device"]
    log = (tmp_path / "logs" / "embridge.log").read_text(encoding="utf-8")
    assert "libraries loaded: torch already imported" in log  # device detection came first


def test_main_opens_the_workspace_given_and_exits_cleanly(tmp_path: Path) -> None:
    from embridge.core.store import Workspace

    Workspace.create(tmp_path / "ws").close()
    code = ("import sys; from PySide6.QtCore import QTimer; from PySide6.QtWidgets import QApplication; "
            "import embridge.app.launch as m; app = m.application(); "
            "QTimer.singleShot(500, lambda: [w.close() for w in QApplication.topLevelWidgets()]); "
            "sys.exit(m.main(['--workspace', sys.argv[1]]))")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "EMBRIDGE_CONFIG_DIR": str(tmp_path / "config")}
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "ws")], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    log = (tmp_path / "config" / "logs" / "embridge.log").read_text(encoding="utf-8")
    assert f"opened workspace {(tmp_path / 'ws').resolve()}" in log
    settings = json.loads((tmp_path / "config" / "settings.json").read_text(encoding="utf-8"))
    assert settings["recent_workspaces"] == [str((tmp_path / "ws").resolve())]


@pytest.mark.parametrize("blocked", ["home", "home/config/logs"])
def test_a_config_folder_that_cannot_be_made_does_not_stop_the_app(tmp_path: Path, blocked: str) -> None:
    """A read-only or missing home (system users), or a config folder that exists but cannot take its logs,
    kept the window from opening: it opens, with this session's settings in a temporary folder, and says so."""
    from embridge.core.store import Workspace

    Workspace.create(tmp_path / "ws").close()
    (tmp_path / blocked).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / blocked).write_text("a file where a folder was expected")
    code = ("import sys; from PySide6.QtCore import QTimer; from PySide6.QtWidgets import QApplication; "
            "import embridge.app.launch as m; import embridge.app.settings as s; app = m.application(); "
            "QTimer.singleShot(500, lambda: [w.close() for w in QApplication.topLevelWidgets()]); "
            "code = m.main(['--workspace', sys.argv[1]]); print(s.config_dir()); sys.exit(code)")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "EMBRIDGE_CONFIG_DIR": str(tmp_path / "home" / "config")}
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "ws")], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    used = Path(out.stdout.strip().splitlines()[-1])
    try:
        assert f"cannot use {tmp_path / 'home' / 'config'} for settings" in out.stderr
        log = (used / "logs" / "embridge.log").read_text(encoding="utf-8")
        assert f"opened workspace {(tmp_path / 'ws').resolve()}" in log
    finally:
        shutil.rmtree(used)


def test_a_misspelt_option_is_refused_before_any_window(capsys: pytest.CaptureFixture[str]) -> None:
    """``--workspce W`` opened a window without the workspace and said nothing."""
    from embridge.app.launch import parse_args

    with pytest.raises(SystemExit) as stop:
        parse_args(["--workspce", "W"])
    assert stop.value.code == 2 and "unrecognized arguments: --workspce W" in capsys.readouterr().err
    assert parse_args(["--self-test", "--self-test-out", "r.json"]).self_test_out == "r.json"


def test_every_page_has_a_ctrl_number_shortcut(qtbot: QtBot, window: MainWindow) -> None:
    window.activateWindow()
    qtbot.waitExposed(window)
    shortcuts = {a.shortcut().toString(): a for a in window.findChildren(type(window.menuBar().actions()[0]))}
    for n, (key, _title, _target) in enumerate(PAGES, start=1):
        action = shortcuts[QKeySequence(f"Ctrl+{n}").toString()]
        action.trigger()
        assert window.stack.currentWidget() is window.pages[key]
    qtbot.keyClick(window, Qt.Key.Key_3, Qt.KeyboardModifier.ControlModifier)
    assert window.stack.currentWidget() is window.pages["gallery"]


def test_pages_without_a_workspace_say_how_to_open_one(qtbot: QtBot, window: MainWindow) -> None:
    for key in ("models", "gallery", "train", "reports", "plan", "export"):
        page = window.show_page(key)
        assert page.placeholder.isVisible(), key
    assert window.show_page("workspace").body.isVisible()


def test_remove_from_list_is_offered_only_for_a_selected_workspace(qtbot: QtBot, window: MainWindow,
                                                                    tmp_path: Path) -> None:
    """The button stayed enabled with nothing listed or selected, and its click did nothing."""
    page = window.show_page("workspace")
    for name in ("a", "b"):
        window.ctx.settings.remove_recent(str((tmp_path / name).resolve()))
    page.refresh()
    listed = page.recent.count()
    assert not page.forget_button.isEnabled()
    for name in ("a", "b"):
        window.ctx.settings.add_recent(tmp_path / name)
    page.refresh()
    assert page.recent.count() == listed + 2 and not page.forget_button.isEnabled()
    assert page.forget_button.toolTip() == "Select a workspace in the list first."
    page.recent.item(0).setSelected(True)
    assert page.forget_button.isEnabled()
    gone = page.recent.item(0).text()
    page.forget_button.click()
    assert gone not in window.ctx.settings.recent_workspaces and page.recent.count() == listed + 1
    assert not page.forget_button.isEnabled()


def test_recent_workspaces_live_in_a_readable_json_file(tmp_path: Path) -> None:
    settings = Settings(tmp_path / "settings.json")
    for name in ("a", "b", "a"):
        settings.add_recent(tmp_path / name)
    data = json.loads((tmp_path / "settings.json").read_text(encoding="utf-8"))
    assert data["recent_workspaces"] == [str((tmp_path / "a").resolve()), str((tmp_path / "b").resolve())]
    (tmp_path / "settings.json").write_text("{not json", encoding="utf-8")
    assert Settings(tmp_path / "settings.json").recent_workspaces == []  # a broken file is not fatal


def test_settings_that_cannot_be_saved_cost_only_the_change(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """settings.json made unwritable after start (here: a folder took its name) raised out of the app."""
    settings = Settings(tmp_path / "settings.json")
    (tmp_path / "settings.json").mkdir()
    settings.add_recent(tmp_path)
    assert settings.recent_workspaces == [str(tmp_path.resolve())]
    assert "settings not saved" in caplog.text


@pytest.mark.parametrize("bad", [1e300, 1e10, "abc", None, -5, True, [1]])
def test_a_hand_edited_setting_the_pages_cannot_use_falls_back_to_its_default(tmp_path: Path, bad: object,
                                                                               caplog: pytest.LogCaptureFixture) -> None:
    """{"batch_size": 1e300} in settings.json kept the window from opening (OverflowError in the Gallery page)."""
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"batch_size": bad, "device": "", "ray_address": 5, "recent_workspaces": "x"}),
                    encoding="utf-8")
    with caplog.at_level("WARNING", logger="embridge.app"):
        settings = Settings(path)
    assert settings.get("batch_size") == 256 and settings.get("device") == "auto" and settings.get("ray_address") == ""
    assert settings.recent_workspaces == []
    assert sum("is not a valid value, using the default" in r.getMessage() for r in caplog.records) == 4


def test_opening_a_folder_that_is_no_workspace_reports_why(qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    from app_fixtures import close_error_dialogs, error_dialogs

    assert not window.ctx.open_workspace(tmp_path)
    qtbot.waitUntil(lambda: bool(error_dialogs()), timeout=5_000)
    (dialog,) = error_dialogs()
    assert dialog.message == f"{tmp_path}: not an Embridge workspace (no embridge.db); run 'embridge init' first"
    close_error_dialogs()
    assert window.ctx.ws is None


def test_window_geometry_is_remembered(qtbot: QtBot) -> None:
    from embridge.app.launch import application, build_main_window

    application()
    first = build_main_window()
    qtbot.addWidget(first)
    first.show()
    first.resize(1180, 780)
    qtbot.waitUntil(lambda: first.size().width() == 1180)
    first.close()
    assert (Path(os.environ["EMBRIDGE_CONFIG_DIR"]) / "window.ini").is_file()
    second = build_main_window()
    qtbot.addWidget(second)
    assert (second.size().width(), second.size().height()) == (1180, 780)
    second.close()


def test_a_squeezed_jobs_dock_comes_back_wide_enough(qtbot: QtBot) -> None:
    """A jobs dock dragged to 90 px clips the job cards; the next start gives it its width back."""
    from embridge.app.launch import application, build_main_window
    from embridge.app.main_window import JOBS_WIDTH

    application()
    first = build_main_window()
    qtbot.addWidget(first)
    first.show()
    assert first.jobs_dock.width() >= JOBS_WIDTH - 40
    first.jobs_panel.setMinimumWidth(0)  # what an older layout allowed
    first.resizeDocks([first.jobs_dock], [90], Qt.Orientation.Horizontal)
    qtbot.waitUntil(lambda: first.jobs_dock.width() < 120)
    first.close()
    second = build_main_window()
    qtbot.addWidget(second)
    second.show()
    qtbot.waitUntil(lambda: second.jobs_dock.width() >= JOBS_WIDTH - 40)
    second.close()


def test_screenshots_render_every_page_at_both_sizes(qapp: object, demo_copy: Path, tmp_path: Path) -> None:
    """A workspace with no runs: no page opens a dialog, and the window is gone afterwards (the
    Qt hygiene fixture fails this test on any window, timer or thread left behind)."""
    from embridge.app.main_window import MIN_SIZE
    from embridge.app.screenshots import main

    out = tmp_path / "shots"
    assert main(["--workspace", str(demo_copy), "--out", str(out), "--size", "1100x760", "--size", "min"]) == 0
    from PySide6.QtGui import QImage

    for key, _title, _target in PAGES:
        image = QImage(str(out / f"{key}.png"))
        assert (image.width(), image.height()) == (1100, 760), key
        small = QImage(str(out / "minimum" / f"{key}.png"))
        assert (small.width(), small.height()) == (MIN_SIZE.width(), MIN_SIZE.height()), key
