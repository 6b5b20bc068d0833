"""The wheel installs under the ``embridge`` name only, and the engine installs and runs without Qt."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDER_IMPORT = re.compile(r"\s*(from|import) (core|app)(\.|\s|$)")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("build")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=600, env={**_env(), "TMPDIR": str(build)},
    )
    assert done.returncode == 0, done.stderr
    (path,) = out.glob("embridge-*.whl")
    return path


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def test_wheel_installs_only_the_embridge_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert top == {"embridge", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}
    for expected in ("embridge/core/cli/main.py", "embridge/app/launch.py", "embridge/core/py.typed",
                     "embridge/resources/demo/digits.npz", "embridge/resources/demo/bible-kjv-ylt.jsonl.gz",
                     "embridge/resources/icons/embridge.svg"):
        assert expected in names
    assert not any(n.startswith(("embridge/tests/", "embridge/bench/")) for n in names)


def test_qt_is_required_only_by_the_gui_extra(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        meta_name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(zf.read(meta_name).decode())
        entry_points = zf.read(meta_name.replace("METADATA", "entry_points.txt")).decode()
    requires = meta.get_all("Requires-Dist") or []
    qt = [r for r in requires if r.lower().startswith("pyside6")]
    assert qt and all('extra == "gui"' in r for r in qt), qt
    unconditional = [r for r in requires if "extra ==" not in r]
    assert any(r.startswith("torch") for r in unconditional)
    assert "gui" in (meta.get_all("Provides-Extra") or [])
    assert "embridge = embridge.core.cli.main:run_program" in entry_points
    assert "embridge-gui = embridge.app.gui_entry:main" in entry_points


def test_unpacked_wheel_runs_the_command_line_without_qt(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = (
        "import sys\n"
        "class BlockQt:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('PySide6', 'shiboken6'):\n"
        "            raise ImportError('Qt is blocked in this test')\n"
        f"sys.meta_path.insert(0, BlockQt())\nsys.path.insert(0, {str(site)!r})\n"
        "import embridge.core.demo as demo, embridge.core.cli.main as cli\n"
        f"assert demo.__file__.startswith({str(site)!r}), demo.__file__\n"
        "assert demo.DATA_FILE.is_file(), demo.DATA_FILE\n"
        "sys.exit(cli.main(['demo', '--workspace', sys.argv[1]]))\n"
    )
    ws = tmp_path / "ws"
    done = subprocess.run([sys.executable, "-c", probe, str(ws)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600, env=_env())
    assert done.returncode == 0, done.stderr
    assert (ws / "embridge.db").is_file()
    assert not any(m.startswith("PySide6") for m in done.stdout.split())


def test_gui_entry_names_the_extra_when_qt_is_missing() -> None:
    probe = (
        "import sys\nsys.modules['PySide6'] = None\n"
        "from embridge.app.gui_entry import main\nsys.exit(main([]))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "embridge-gui: the desktop app needs Qt (PySide6); install it with: pip install 'embridge[gui]'"
    ]


def test_no_module_is_imported_under_its_folder_name() -> None:
    """``core`` and ``app`` are folders, not packages: every import names ``embridge.core``/``embridge.app``."""
    offenders = []
    for folder in ("core", "app", "tests", "bench", "packaging"):
        for path in (ROOT / folder).rglob("*.py"):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if FOLDER_IMPORT.match(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}")
    assert offenders == []


def test_module_file_names_are_unique() -> None:
    seen: dict[str, list[str]] = {}
    for folder in ("core", "app"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.name != "__init__.py":
                seen.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    assert {name: paths for name, paths in seen.items() if len(paths) > 1} == {}


def test_the_packaged_entry_point_names_its_three_modes_and_hints_at_cli() -> None:
    """The frozen executable's --help was the desktop app's own (as embridge-gui, without 'cli'), and a command
    given without 'cli' was an unrecognized argument."""
    entry = ROOT / "packaging" / "embridge_app.py"
    shown = subprocess.run([sys.executable, str(entry), "--help"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "embridge cli COMMAND" in shown.stdout and "--self-test" in shown.stdout
    wrong = subprocess.run([sys.executable, str(entry), "demo", "--workspace", "x"], capture_output=True, text=True,
                           timeout=60)
    assert wrong.returncode == 2 and wrong.stderr == ("embridge: error: 'demo' is not an option of the desktop app; "
                                                      "run a command as 'embridge cli demo ...'\n")
    hinted = subprocess.run([sys.executable, str(entry), "cli", "plan", "--fraction", "0"], capture_output=True,
                            text=True, timeout=120)  # its usage hints name the way it is run there
    assert hinted.returncode == 2 and hinted.stderr.endswith("(see 'embridge cli plan --help')\n"), hinted.stderr


def test_the_packaged_command_lines_hints_name_the_command_as_it_is_run_there(tmp_path: Path) -> None:
    """Its usage named 'embridge cli', but its other hints told the user to run 'embridge train'."""
    import contextlib
    import io

    from embridge.core.cli.main import main

    ws = str(tmp_path / "ws")
    assert main(["init", "-w", ws]) == 0
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["bundle", "export", "-w", ws, "--out", str(tmp_path / "b.zip")], prog="embridge cli")
    assert code == 1 and "run 'embridge cli train' first" in err.getvalue(), err.getvalue()
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        assert main(["plan", "-w", ws, "--fraction", "0"], prog="embridge cli") == 2
    assert err.getvalue().endswith("(see 'embridge cli plan --help')\n"), err.getvalue()  # not 'embridge cli cli'
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        main(["bundle", "export", "-w", ws, "--out", str(tmp_path / "b.zip")])
    assert "run 'embridge train' first" in err.getvalue()  # the installed program's own words stay
