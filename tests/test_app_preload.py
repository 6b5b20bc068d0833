"""Background imports of torch and faiss: the libraries are preloaded, the imports work, GC resumes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _fresh(code: str) -> dict:
    """Run ``code`` in a new interpreter (this one imported torch long ago) and parse its JSON line."""
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the library names checked are Linux ones")
def test_preload_loads_native_libraries_then_imports_working_packages() -> None:
    got = _fresh("""
        import gc, json, sys, threading
        from embridge.app.preload import preload
        result = {}
        worker = threading.Thread(target=lambda: result.update(preload("torch", "faiss")))
        worker.start(); worker.join()
        again = preload("torch")
        maps = open("/proc/self/maps").read()
        import faiss, torch
        index = faiss.IndexFlatIP(3)
        index.add(torch.eye(3).numpy())
        print(json.dumps({"outcome": result, "again": again, "gc": gc.isenabled(), "frozen": gc.get_freeze_count(),
                          "libtorch_python": "libtorch_python" in maps, "ntotal": index.ntotal,
                          "sum": float(torch.ones(4).sum())}))
    """)
    assert got["outcome"] == {"torch": "native", "faiss": "native"}
    assert got["again"] == {"torch": "already imported"}
    assert got["gc"] is True and got["frozen"] > 10_000  # the imported objects left the collector's walk
    assert got["libtorch_python"] and got["ntotal"] == 3 and got["sum"] == 4.0


def test_missing_packages_are_reported_not_raised() -> None:
    got = _fresh("""
        import gc, json
        from embridge.app.preload import preload
        print(json.dumps({"outcome": preload("json", "embridge_no_such_package"), "gc": gc.isenabled()}))
    """)
    assert got["outcome"]["json"] == "already imported"
    assert got["outcome"]["embridge_no_such_package"].startswith("failed: No module named")
    assert got["gc"] is True


def test_modules_whose_set_up_holds_the_gil_are_imported_before_the_window_exists() -> None:
    """ml_dtypes (imported by onnx, so by a bundle's ONNX export) held the GIL for about 0.55 s in the
    warm-up thread, freezing the window 3 s after it showed; it is imported before the window is made."""
    got = _fresh("""
        import json, os, sys
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        from embridge.app import launch, preload
        seen = {}
        real = launch.MainWindow

        def spy(ctx):
            seen["ml_dtypes"] = "ml_dtypes" in sys.modules
            return real(ctx)

        launch.MainWindow = spy
        app = launch.application()
        window = launch.build_main_window(None)
        again = preload.import_gil_holders()
        preload.GIL_HOLDERS = ("embridge_no_such_package",)
        absent = preload.import_gil_holders()
        window.close()
        window.ctx.jobs.shutdown(10.0)
        print(json.dumps({"before_window": seen["ml_dtypes"], "again": again, "absent": absent}))
    """)
    assert got["before_window"] is True
    assert got["again"] == {"ml_dtypes": "already imported"}
    assert got["absent"] == {"embridge_no_such_package": "absent"}


def test_the_workspace_store_library_is_imported_in_the_background_before_a_workspace_opens() -> None:
    """Opening the first workspace of a session imported sqlite-utils on the window's thread (0.22-0.27 s
    of a 0.4-1.2 s freeze); the device job imports it first, in the background, without pandas."""
    got = _fresh("""
        import json, os, sys, threading
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        from embridge.app import launch
        app = launch.application()
        window = launch.build_main_window(None)
        before = "sqlite_utils" in sys.modules
        seen = {}
        window.ctx.devices_changed.connect(lambda: seen.update(
            thread=threading.current_thread() is threading.main_thread(), loaded="sqlite_utils" in sys.modules))
        window.ctx.detect_devices()
        window.ctx.jobs.wait(120.0)
        window.close()
        window.ctx.jobs.shutdown(10.0)
        print(json.dumps({"before": before, **seen, "pandas": "pandas" in sys.modules}))
    """)
    assert got == {"before": False, "thread": True, "loaded": True, "pandas": False}
