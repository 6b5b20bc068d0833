"""Where matplotlib keeps its settings and font cache when the user's config folder cannot take them.

Matplotlib writes ``$MPLCONFIGDIR`` or ``~/.config/matplotlib`` on first use and, when neither can be
made (a read-only or missing home, as system users have), prints a multi-line warning on every run.
The program entry points call :func:`use_writable_matplotlib_config` first: a private temporary
folder, removed at exit, is named instead, and the warning is never printed; nothing changes where
the usual folder works or ``MPLCONFIGDIR`` is set.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path


def _writable(folder: Path) -> bool:
    """Whether ``folder`` exists as a writable folder, or could be made under its nearest existing parent.
    A parent the user may not even look into (``sudo -u`` keeps root's ``HOME``) is not writable."""
    probe = folder
    try:
        while not probe.exists():
            if probe.parent == probe:
                return False
            probe = probe.parent
        return probe.is_dir() and os.access(probe, os.W_OK | os.X_OK)
    except OSError:  # Python 3.11's exists() raises on a parent without search permission
        return False


def use_writable_matplotlib_config() -> None:
    """Name a temporary ``MPLCONFIGDIR`` when matplotlib's own folder cannot be made or written."""
    if os.environ.get("MPLCONFIGDIR"):
        return
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    if _writable(Path(base) / "matplotlib"):
        return
    try:
        folder = tempfile.mkdtemp(prefix="embridge-matplotlib-")
    except OSError:
        return  # no temporary folder either: matplotlib says so itself
    os.environ["MPLCONFIGDIR"] = folder
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
