"""``embridge`` command line: one subcommand per core action.

Each command module exposes ``register(subparsers)``; a handler returns ``(data, text)``: a JSON-able
dict printed as one object with ``--json``, else the human summary. Progress goes to stderr. Any
:class:`EmbridgeError` becomes one line on stderr and exit status 1; a :class:`UsageError` (an option
refused before any work) exit status 2, as argparse gives for the values it refuses itself.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import sqlite3
import sys
import threading
import traceback
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from embridge.core import __version__, stop_signals
from embridge.core.cli.engine_flags import check_engine_flags
from embridge.core.errors import (
    Cancelled,
    EmbridgeError,
    UsageError,
    os_error_number,
    printable,
    raised_remotely,
)
from embridge.core.jobs import TERMINATED

COMMAND_MODULES = (
    "embridge.core.cli.workspace_cmds",
    "embridge.core.cli.train_cmds",
    "embridge.core.cli.report_cmds",
    "embridge.core.cli.bundle_cmds",
    "embridge.core.cli.store_cmds",
    "embridge.core.cli.scale_cmds",
    "embridge.core.cli.jobs_cmds",
)


def build_parser(prog: str = "embridge") -> argparse.ArgumentParser:
    import importlib

    from embridge.core.cli.option_types import OneLineParser

    parser = OneLineParser(prog=prog, description="Plan and check embedding model upgrades.")
    parser.add_argument("--version", action="version", version=f"embridge {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # a command family not installed in this build
            raise
        module.register(subparsers)
    return parser


# what a terminal that cannot show the command line's few non-ASCII signs (a Latin-1 or ASCII locale) gets
PLAIN_SIGNS = str.maketrans({"→": "->", "←": "<-", "β": "beta", "≥": ">=", "≤": "<=", "…": "...", "×": "x",
                             "±": "+/-", "—": "-", "–": "-", "·": "-", "≈": "~"})


def emit(data: dict[str, Any], text: str, as_json: bool) -> None:
    """The command's result on stdout; with ``--json`` its WARNING lines (``warning``, or each of a
    ``warnings`` list, which the text shows first or last) go to stderr too, so a person still sees them
    when the JSON goes to a program."""
    if as_json:
        from embridge.core.json_values import dumps  # numpy: loaded once a command has run, not at start-up

        out = dumps(data, indent=None) + "\n"
        warning = data.get("warning")
        listed = data.get("warnings")
        lines = [warning.rstrip()] if isinstance(warning, str) and warning else []
        lines += [f"warning: {w}" for w in listed if isinstance(w, str)] if isinstance(listed, list) else []
        if lines and sys.stderr is not None:
            sys.stderr.write("\n".join(lines) + "\n")
    else:  # names and paths in the text are the user's: their control characters are shown, not obeyed
        text = as_typed(_arguments_shown(text))  # a line break inside a path given is part of the path
        out = "\n".join(printable(line, keep="\t") for line in text.rstrip().split("\n")) + "\n"
    try:
        sys.stdout.write(out)
    except UnicodeEncodeError:  # nothing was written: the text again in what the terminal can show
        encoding = sys.stdout.encoding or "ascii"
        sys.stdout.write(out.translate(PLAIN_SIGNS).encode(encoding, "backslashreplace").decode(encoding))
    sys.stdout.flush()


_ARGUMENTS: list[str] = []  # this command's argument values that hold characters shown escaped
_PROGRAM = ["embridge"]  # how the user runs the command line ('embridge cli' in the packaged app)


def as_typed(text: str) -> str:
    """``text`` with the commands it tells the user to run ("run 'embridge train' first") as this program is
    run; a hint already written so ('embridge cli plan --help') is left as it is."""
    prog = _PROGRAM[0]
    if prog == "embridge":
        return text
    rest = prog.removeprefix("embridge").strip()
    hint = re.compile(r"(['`])embridge " + (rf"(?!{re.escape(rest)}\b)" if rest else "") + r"(?=[a-z])")
    return hint.sub(lambda m: f"{m.group(1)}{prog} ", text)


def _note_arguments(args: argparse.Namespace) -> None:
    """Remember the argument values (paths, names) whose control characters must be shown escaped."""
    values = {str(v) for v in vars(args).values() if isinstance(v, str | Path)}
    _ARGUMENTS[:] = sorted((v for v in values if printable(v) != v), key=len, reverse=True)


def _arguments_shown(text: str) -> str:
    for value in _ARGUMENTS:
        text = text.replace(value, printable(value))
    return text


def main(argv: Sequence[str] | None = None, *, program: bool = False, prog: str = "embridge") -> int:
    """Run one command; its exit status. ``program``: this is the whole process (the ``embridge``
    program), so once the command's work is done a late Ctrl-C or SIGTERM is ignored rather than
    turning a finished command into a failed one; callers in-process keep their own signal handling.
    ``prog``: how the user runs the command line, as usage and hints name it (``embridge cli`` in the
    packaged app)."""
    if program and not os.environ.get("EMBRIDGE_DEBUG"):
        warnings.showwarning = _warning_line  # a library's warning, one line as Embridge's own
    try:
        return _main(argv, program, prog)
    finally:  # damaged vector sets the command passed over, whatever its outcome
        from embridge.core.store import damage_log

        for line in damage_log.take():
            if sys.stderr is not None:
                sys.stderr.write(f"WARNING: {one_line(as_typed(line))}\n")


def _warning_line(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None,
                  line: str | None = None) -> None:
    """A Python warning (qdrant-client's about a key sent over plain http, say) as one 'WARNING:' line on
    stderr, without the file, line and source that Python's own format adds on a second line."""
    out = file or sys.stderr
    if out is not None:
        out.write(f"WARNING: {one_line(as_typed(str(message)))}\n")


# what a command writes, named when the system's error names no file (pyarrow's and Lance's writers do not)
_OUTPUTS = (("target", "--to"), ("out", "--out"), ("workspace", "--workspace"))


def _missing_package_line(module: str | None) -> str:
    """The package, and the extra that brings it; else a bundle-only install (numpy alone) is the likely cause."""
    from embridge.core.extras import extra_for, install_hint

    module = module.split(".")[0] if module else module  # 'pyarrow.parquet' is installed with 'pyarrow'
    extra = extra_for(module)
    if extra is not None:
        return f"this command needs the Python package '{module}' of the {extra} extra; {install_hint(extra)}"
    return (f"this command needs the Python package '{module}', which is not installed here; install Embridge "
            "with its dependencies (an install without them runs only bundle verify, inspect and apply)")


def _read_only_workspace(exc: OSError, args: argparse.Namespace) -> str:
    """'; the workspace folder is read-only …' when a write inside the workspace was refused because it is (the
    words a refused database write gives, for the folders a command writes before it reaches the database)."""
    import errno

    from embridge.core.store.sqlite_errors import read_only_folder

    workspace = getattr(args, "workspace", None)
    if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS) or not workspace:
        return ""
    try:
        target, root = Path(os.fsdecode(exc.filename)).absolute(), Path(workspace).absolute()
        folder = target if target.is_dir() else target.parent
        if not target.is_relative_to(root) or not read_only_folder(folder):
            return ""
    except (OSError, ValueError):
        return ""
    return "; the workspace folder is read-only to this user; copy the workspace to a writable folder"


def _os_error_line(exc: OSError, args: argparse.Namespace) -> str:
    from embridge.core.paths import shown_path

    if exc.filename:
        return f"{shown_path(exc.filename)}: {exc.strerror or exc}{_read_only_workspace(exc, args)}"
    written = next(((flag, value) for key, flag in _OUTPUTS if (value := getattr(args, key, None))), None)
    where = f"{written[0]} {written[1]}" if written else "a file"
    text = exc.strerror or str(exc)
    number = os_error_number(text)  # Lance's Rust errors: the system's words, not its source file
    return f"{where}: {os.strerror(number) if number is not None else text}"


def _main(argv: Sequence[str] | None, program: bool, prog: str = "embridge") -> int:
    _PROGRAM[0] = prog
    try:
        args = build_parser(prog).parse_args(argv)
    except SystemExit as exc:  # a usage error (already printed as one line), --help or --version
        code = exc.code if isinstance(exc.code, int) else 2
        if code == 2:
            from embridge.core.cli.option_types import OneLineParser
            from embridge.core.cli.report_cmds import junit_after_refusal

            junit_after_refusal(list(sys.argv[1:] if argv is None else argv), OneLineParser.last_error)
        return code
    except KeyboardInterrupt:  # Ctrl-C while the command line itself loads: the same one line
        _error("interrupted")
        return 130
    _note_arguments(args)
    finished: tuple[dict[str, Any], str] | None = None
    try:
        # with --json stdout carries the one object alone: what a library prints meanwhile (Ray's notes of a
        # worker that died and was retried, say) goes to stderr
        quiet = contextlib.redirect_stdout(sys.stderr) if getattr(args, "json", False) else contextlib.nullcontext()
        with _sigterm_interrupts(), stop_signals.held_until_exit(), quiet:
            check_engine_flags(args)
            check_context_workspace(args)
            finished = args.handler(args)
            if program:
                _ignore_stop_signals()
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (see _sigterm_interrupts)
        if finished is None:
            _error(str(exc) or "interrupted")
            return 128 + signal.SIGTERM if str(exc) == TERMINATED else 130
        if program:  # the stop came after the work was done: report it as done (a caller's handlers stay)
            _ignore_stop_signals()
    except Cancelled as exc:
        _error(str(exc))
        return 130
    except UsageError as exc:  # as argparse's own refusals: one line naming the option, status 2
        from embridge.core.cli.option_types import command_words

        _error(f"{exc} (see '{prog} {command_words(args)} --help')")
        return 2
    except EmbridgeError as exc:
        _error(str(raised_remotely(exc)))
        return 1
    except sqlite3.DatabaseError as exc:  # outside the workspace's own transactions: same words as inside
        from embridge.core.paths import DB_NAME
        from embridge.core.store.sqlite_errors import translate

        workspace = getattr(args, "workspace", None)
        _error(str(translate(exc, Path(workspace) / DB_NAME)) if workspace else f"database error: {exc}")
        return 1
    except OSError as exc:  # the machine, not a bug: a full disk, a permission, a vanished file
        _error(_os_error_line(raised_remotely(exc), args))
        return 1
    except ModuleNotFoundError as exc:  # a package this command needs is absent (an extra, or a bundle-only install)
        _error(_missing_package_line(exc.name))
        return 1
    except Exception as exc:  # a bug: one line, and the traceback when asked for
        from embridge.core.paths import as_os_error

        loop = as_os_error(exc) if isinstance(exc, RuntimeError) else exc
        if isinstance(loop, OSError):  # a link leading back to itself, met by Path.resolve: the path's problem
            _error(_os_error_line(loop, args))
            return 1
        if os.environ.get("EMBRIDGE_DEBUG"):
            traceback.print_exc()
        cause = raised_remotely(exc)
        _error(f"unexpected {type(cause).__name__}: {cause} (set EMBRIDGE_DEBUG=1 for the traceback)")
        return 3
    data, text = finished
    try:
        emit(data, text, getattr(args, "json", False))
    except BrokenPipeError:  # the reader quit (| head): nothing more to say, and nothing left to flush at exit
        _quiet_stdout()
        return 1
    except OSError as exc:  # a full disk behind a redirection: the work is done and recorded, its output is not
        _quiet_stdout()
        _error(f"the command's work is done, but its output could not be written ({exc.strerror or exc})")
        return 1
    return int(getattr(args, "exit_status", 0))  # a handler sets 1 when a check it ran failed (report gate)


def _quiet_stdout() -> None:
    """Point stdout at the null device, so the interpreter's own flush at exit raises nothing more."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # in-process callers' stdout may have no file descriptor
        pass


def run_program() -> None:
    """The ``embridge`` program: :func:`main` as the whole process, then exit with its status."""
    from embridge.core.mpl_config import use_writable_matplotlib_config

    use_writable_matplotlib_config()
    sys.exit(main(program=True))


def _ignore_stop_signals() -> None:
    """From here on the process only prints what it did and exits: Ctrl-C and SIGTERM are ignored."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """While a command runs, SIGTERM unwinds it like Ctrl-C: transactions roll back, temp files are
    removed and a run in progress is recorded as interrupted, instead of the process just vanishing."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(TERMINATED)

    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGTERM) is interrupt:  # not when the program already ignores it
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


MAX_ERROR_CHARS = 4_000  # a message quoting a hostile input whole (a 200,000-character key) is cut in its middle


def one_line(message: str, most: int = MAX_ERROR_CHARS) -> str:
    """``message`` on one line, its middle cut when longer than ``most`` (the file named first and the
    problem said last both stay)."""
    # an escape sequence in a name must not reach the terminal; a line break in a path given is shown, not
    # turned into a space (the path would name another file)
    line = printable(" ".join(_arguments_shown(message).split()))
    if len(line) <= most:
        return line
    head, tail = most * 2 // 3, most // 3
    return f"{line[:head]} … ({len(line) - head - tail:,} characters left out) … {line[-tail:]}"


def _error(message: str) -> None:
    if sys.stderr is not None:
        sys.stderr.write("embridge: error: " + one_line(as_typed(message)) + "\n")


def add_common(parser: argparse.ArgumentParser, workspace: bool = True) -> None:
    """Flags every command shares: --workspace and --json. A command that reads no workspace (it works on
    a bundle, a store or a dataset) still takes ``--workspace``, optional, so a script can pass it to every
    command: it must name a workspace, and the command's outputs may not lie inside it."""
    from embridge.core.cli.option_types import PATH

    if workspace:
        parser.add_argument("--workspace", "-w", type=PATH, required=True, metavar="DIR", help="workspace folder")
    else:
        parser.add_argument("--workspace", "-w", type=PATH, metavar="DIR", dest="context_workspace",
                            help="a workspace (optional: this command reads none; it must be one, and no output "
                                 "may lie inside it)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def check_context_workspace(args: argparse.Namespace) -> None:
    """``--workspace`` given to a command that reads none: it must name a workspace (a typo is not ignored)."""
    folder = getattr(args, "context_workspace", None)
    if folder is None:
        return
    from embridge.core.paths import DB_NAME

    if not (Path(folder) / DB_NAME).is_file():
        raise UsageError("--workspace", f"{folder} is not an Embridge workspace (no {DB_NAME}); this command reads "
                                        "no workspace, so the option may also be left out")


if __name__ == "__main__":
    run_program()
