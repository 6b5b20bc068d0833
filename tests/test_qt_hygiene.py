"""The Qt hygiene fixture fails tests that leave widgets, timers or threads behind."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST = "from qt_hygiene import qt_hygiene  # noqa: F401\n"


@pytest.mark.parametrize(("body", "complaint"), [
    ("w = QWidget(); w.show(); KEEP.append(w)", "top-level widgets left open: QWidget"),
    ("t = QTimer(); t.start(60000); KEEP.append(t)", "QTimer(s) still active"),
    ("QTimer.singleShot(60000, lambda: None)", "QTimer(s) still active"),
    # runs until this test lets it go (the file RELEASE appears), however slow the machine
    ("import threading; threading.Thread(target=wait_for_release, name='sleeper', daemon=True).start()",
     "threads left running: ['sleeper']"),
])
def test_a_leaking_qt_test_fails(pytester: pytest.Pytester, body: str, complaint: str) -> None:
    release = pytester.path / "RELEASE"
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(f"""
        import os, time
        from PySide6.QtCore import QTimer
        from PySide6.QtWidgets import QWidget
        KEEP = []

        def wait_for_release():
            deadline = time.monotonic() + 120
            while not os.path.exists({str(release)!r}) and time.monotonic() < deadline:
                time.sleep(0.02)

        def test_leaks(qtbot):
            {body}
    """)
    try:
        result = pytester.runpytest_inprocess("-q")
    finally:
        _release_sleepers(release)
    result.assert_outcomes(passed=1, errors=1)
    assert complaint in result.stdout.str()


def _release_sleepers(release: Path) -> None:
    release.touch()
    for thread in threading.enumerate():
        if thread.name == "sleeper":
            thread.join(timeout=10)


def test_a_tidy_qt_test_passes(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile("""
        from PySide6.QtCore import QTimer
        from PySide6.QtWidgets import QWidget

        def test_tidy(qtbot):
            w = QWidget()
            qtbot.addWidget(w)
            w.show()
            t = QTimer(w)
            t.start(10)
            qtbot.wait(30)
            t.stop()
    """)
    result = pytester.runpytest_inprocess("-q")
    result.assert_outcomes(passed=1)
