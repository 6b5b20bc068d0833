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
