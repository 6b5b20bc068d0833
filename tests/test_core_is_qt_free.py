"""The engine must import without Qt: every module under core/, in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import importlib, pkgutil, sys
import embridge.core
names = [m.name for m in pkgutil.walk_packages(embridge.core.__path__, 'embridge.core.')]
for name in names:
    importlib.import_module(name)
qt = sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'PyQt5', 'PyQt6', 'shiboken6', 'qtpy'))
print(len(names))
print(','.join(qt))
"""


def test_importing_every_core_module_loads_no_qt() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    count, qt = out.stdout.strip().split("\n") + [""] * (2 - len(out.stdout.strip().split("\n")))
    assert int(count) >= 10, "expected to import the whole core package"
    assert qt == "", f"core imported Qt modules: {qt}"


def test_no_core_source_mentions_qt_imports() -> None:
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "core").rglob("*.py")
        for line in p.read_text(encoding="utf-8").splitlines()
        if line.lstrip().startswith(("import PySide6", "from PySide6", "import PyQt", "from PyQt", "import qtpy"))
    ]
    assert offenders == []
