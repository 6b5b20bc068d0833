"""The installed Qt bindings keep Python's reference counts.

The app emits signals and starts single-shot timers for the whole of a session, so a binding that
drops a reference on each call ends the app with "Fatal Python error: bool_dealloc" (or
``none_dealloc``) once the object's count reaches zero. PySide6 6.12.0 released one reference to
``True`` per signal emitted from Python and one to ``None`` per ``QTimer.singleShot`` or
``processEvents``: about 30,000 emits after the app's start-up imports. pyproject.toml excludes that
release; this test fails on any binding that does the same.

The calls are measured in a child process with a bare QApplication, as the test fixtures wrap
``QTimer.singleShot``; the child holds extra references first, so a faulty binding is measured, not
crashed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

CALLS = 2_000
SLACK = 200  # other objects made or freed meanwhile move the counts a little; a leak moves them by CALLS

MEASURE = textwrap.dedent(f"""
    import json, os, sys
    from PySide6.QtCore import QCoreApplication, QObject, QTimer, Signal
    from PySide6.QtWidgets import QApplication

    class Emitter(QObject):
        value = Signal(object)
        pair = Signal(int, str)

    def nothing():
        pass

    app = QApplication([])
    keep = [True, False, None] * {10 * CALLS}  # a faulty binding's drops cannot take a count to zero here
    emitter = Emitter()
    received = []
    emitter.value.connect(received.append)
    emitter.pair.connect(lambda number, text: received.append(number))
    actions = {{
        "emit(object)": lambda: emitter.value.emit(1),
        "emit(int, str)": lambda: emitter.pair.emit(1, "x"),
        "QTimer.singleShot": lambda: QTimer.singleShot(0, nothing),
        "processEvents": QCoreApplication.processEvents,
    }}
    moved = {{}}
    for name, action in actions.items():
        action()  # anything made once on the first call is made before the counts are read
        before = [sys.getrefcount(v) for v in (True, False, None)]
        for _ in range({CALLS}):
            action()
        after = [sys.getrefcount(v) for v in (True, False, None)]
        QCoreApplication.processEvents()  # the timers fire now, outside the measured calls
        moved[name] = [b - a for a, b in zip(before, after)]
    print(json.dumps({{"moved": moved, "received": len(received)}}), flush=True)
    os._exit(0)  # the counts a faulty binding took down are not released again at exit
""")


@pytest.fixture(scope="module")
def measured() -> dict[str, object]:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    done = subprocess.run([sys.executable, "-c", MEASURE], capture_output=True, text=True, env=env,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("call", ["emit(object)", "emit(int, str)", "QTimer.singleShot", "processEvents"])
def test_qt_calls_leave_reference_counts_as_they_were(measured: dict[str, object], call: str) -> None:
    moved = measured["moved"][call]  # type: ignore[index]
    assert all(abs(m) < SLACK for m in moved), (
        f"{call} x {CALLS} moved the reference counts of True, False and None by {moved}: "
        "these Qt bindings drop references, and the app would crash in a long session")


def test_the_measured_signals_were_delivered(measured: dict[str, object]) -> None:
    assert measured["received"] == 2 * (CALLS + 1)  # the calls measured are real emits, not no-ops
