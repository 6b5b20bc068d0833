"""``embridge-gui``: one clear line instead of a traceback when the desktop app's Qt is not installed.

The engine and the command line install without Qt; the app is the ``gui`` extra. This module imports
nothing from Qt itself, so it can say what to install before ``embridge.app.launch`` needs PySide6.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from embridge.core.extras import install_hint, installed

INSTALL_HINT = f"embridge-gui: the desktop app needs Qt (PySide6); {install_hint('gui')}"


def main(argv: Sequence[str] | None = None) -> int:
    qt_found = installed("PySide6.QtWidgets")
    args = list(sys.argv[1:] if argv is None else argv)
    if not qt_found and "--self-test" in args:  # the headless pipeline check runs the engine alone: no Qt needed
        from embridge.core.selftest import self_test_main

        return self_test_main(args)
    if not qt_found:
        print(INSTALL_HINT, file=sys.stderr)
        return 1
    from embridge.app.launch import main as launch

    return launch(argv)


if __name__ == "__main__":
    sys.exit(main())
