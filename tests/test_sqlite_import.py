"""Opening a workspace does not import pandas (sqlite-utils would, for a type the workspace never stores)."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
from embridge.core.store import Workspace
with Workspace.open_or_create(sys.argv[1]) as ws:
    ws.db.execute("select 1")
print("pandas loaded by opening:", "pandas" in sys.modules)
import pandas
print("pandas importable after:", pandas.DataFrame({"a": [1]}).shape == (1, 1))
"""


def test_opening_a_workspace_leaves_pandas_unloaded_and_importable(tmp_path):
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "ws")], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert "pandas loaded by opening: False" in out
    assert "pandas importable after: True" in out


def test_a_process_that_loaded_pandas_keeps_it():
    script = ("import sys, pandas\nfrom embridge.core.store.sqlite_import import sqlite_utils\n"
              "m = sqlite_utils()\nimport sqlite_utils.db as db\n"
              "print(sys.modules['pandas'] is pandas, db.pd is pandas, m.Database.__name__)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         check=True).stdout
    assert out.split() == ["True", "True", "Database"]


def test_a_thread_asking_while_another_loads_it_gets_the_whole_module():
    """The app's start-up job loads sqlite-utils on a worker thread; a workspace opened meanwhile on the
    GUI thread found the half-initialised module in ``sys.modules`` (no ``Database`` yet)."""
    script = ("import sys, threading, time\nfrom embridge.core.store.sqlite_import import sqlite_utils\n"
              "t = threading.Thread(target=sqlite_utils)\nt.start()\n"
              "while 'sqlite_utils' not in sys.modules: time.sleep(0.0002)\n"
              "print(hasattr(sqlite_utils(), 'Database'))\nt.join()")
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                             check=True).stdout
        assert out.split() == ["True"]
