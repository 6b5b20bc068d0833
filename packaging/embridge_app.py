"""Entry point of the packaged Embridge app (PyInstaller onedir build).

``embridge --self-test [--self-test-out FILE]`` runs the headless pipeline check and exits 0 or 1;
``embridge cli COMMAND ...`` runs the command line; anything else starts the desktop app.
"""

from __future__ import annotations

import multiprocessing
import os
import sys


def _guard_streams() -> None:
    """Windowed builds start with ``sys.stdout``/``sys.stderr`` set to None; give them a sink."""
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w", encoding="utf-8")
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w", encoding="utf-8")


USAGE = """usage: embridge [--workspace DIR]                      start the desktop app
       embridge cli COMMAND ...                        the command line ('embridge cli --help' lists the commands)
       embridge --self-test [--self-test-out FILE]     headless check of the engine: exit status 0 or 1
"""


def main() -> int:
    multiprocessing.freeze_support()
    _guard_streams()
    argv = sys.argv[1:]
    if argv[:1] in (["-h"], ["--help"]):  # the app's own parser named only its options, as embridge-gui
        sys.stdout.write(USAGE)
        return 0
    if argv and not argv[0].startswith("-") and argv[0] != "cli":  # a command given without the 'cli' word
        sys.stderr.write(f"embridge: error: '{argv[0]}' is not an option of the desktop app; run a command as "
                         f"'embridge cli {argv[0]} ...'\n")
        return 2
    if "--self-test" in argv:
        from embridge.core.selftest import self_test_main

        return self_test_main(argv)
    if argv[:1] == ["cli"]:
        from embridge.core.cli.main import main as cli_main

        return cli_main(argv[1:], program=True, prog="embridge cli")  # its usage and hints name the 'cli' word
    from embridge.app.launch import main as app_main

    return app_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
