"""Validated option types for every ``embridge`` command, and one-line usage errors.

Every numeric option is parsed by :func:`number`: finite (no NaN or inf), an integer where an
integer is meant, and inside its range, so a bad value is a usage error (exit 2) naming the
option before anything is opened, run or written; a file, folder or store option given as an
empty string (``--path ""``) is one too, never read as the current folder. :class:`OneLineParser` prints usage errors as
the same single ``embridge: error:`` line as every other error.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Callable
from typing import NoReturn

from embridge.core.errors import printable

SEED_MAX = 2**32 - 1
_ASCII_INTEGER = re.compile(r"[+-]?[0-9]+")


_GIVEN = "_options_given"  # the namespace attribute, present only while parsing, of the options seen


class _StoreOnce(argparse._StoreAction):
    """An option that takes one value refuses a second one: argparse would keep the last silently
    (``import --path a.csv --path b.jsonl`` imported only b.jsonl). Options meant to repeat append."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        given = namespace.__dict__.setdefault(_GIVEN, set())
        if option_string is not None and self.dest in given:
            parser.error(f"argument {'/'.join(self.option_strings)}: given more than once; give it once")
        given.add(self.dest)
        super().__call__(parser, namespace, values, option_string)


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr and exit status 2, and whose single-value
    options refuse a second value. Its subcommands' parsers are of this class too."""

    last_error = ""  # the latest refusal's words, for a caller that records them elsewhere (report --junit)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.register("action", None, _StoreOnce)
        self.register("action", "store", _StoreOnce)

    def parse_known_args(self, args: object = None, namespace: argparse.Namespace | None = None
                         ) -> tuple[argparse.Namespace, list[str]]:
        parsed, rest = super().parse_known_args(args, namespace)  # type: ignore[arg-type]
        parsed.__dict__.pop(_GIVEN, None)
        return parsed, rest

    def parse_args(self, args: object = None, namespace: argparse.Namespace | None = None  # type: ignore[override]
                   ) -> argparse.Namespace:
        parsed, rest = self.parse_known_args(args, namespace)
        if rest:  # refused by the command they were given to, whose help lists its options
            words = command_words(parsed)
            self._refuse(f"{self.prog} {words}" if words else self.prog, f"unrecognized arguments: {' '.join(rest)}")
        return parsed

    def error(self, message: str) -> NoReturn:
        self._refuse(self.prog, message)

    @staticmethod
    def _refuse(prog: str, message: str) -> NoReturn:
        # a value as typed is shown, not obeyed: an escape sequence must not reach the terminal
        from embridge.core.cli.main import one_line  # its long values cut in the middle, as every error line

        OneLineParser.last_error = " ".join(printable(message).split())
        if sys.stderr is not None:
            sys.stderr.write(f"embridge: error: {one_line(OneLineParser.last_error)} (see '{prog} --help')\n")
        raise SystemExit(2)


def command_words(args: argparse.Namespace) -> str:
    """'model add' for ``embridge model add``: the command whose help lists its options ('' before one)."""
    command = getattr(args, "command", None)
    if not isinstance(command, str):
        return ""
    action = getattr(args, f"{command}_command", None)
    return f"{command} {action}" if isinstance(action, str) else command


def number(kind: type = int, *, low: float | None = None, high: float | None = None,
           low_open: bool = False) -> Callable[[str], int | float]:
    """An argparse ``type`` accepting a finite ``kind`` in [low, high] (``(low, high]`` if ``low_open``)."""
    noun = "an integer" if kind is int else "a number"
    if low is not None and high is not None:
        span = f"{'above' if low_open else 'from'} {_shown(low)} {'and at most' if low_open else 'to'} {_shown(high)}"
    elif low is not None:
        span = f"{'above' if low_open else 'at least'} {_shown(low)}"
    else:
        span = f"at most {_shown(high)}" if high is not None else ""
    wanted = f"{noun} {span}".strip()

    def parse(raw: str) -> int | float:
        text = raw.strip()
        try:
            if kind is int and not _ASCII_INTEGER.fullmatch(text):  # int() would take "1_0" and "５"
                raise ValueError(text)
            value: int | float = int(text, 10) if kind is int else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got '{raw}'") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got '{raw}' (not a finite number)")
        too_low = low is not None and (value <= low if low_open else value < low)
        if too_low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got '{raw}'")
        return value

    parse.__name__ = wanted  # argparse names the type in some messages
    return parse


def _shown(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _path(raw: str) -> str:
    """A file, folder or store address: an empty one would silently mean the current folder."""
    if not raw.strip():
        raise argparse.ArgumentTypeError("is empty; name a file, folder or store")
    try:  # the workspace records the paths it reads and writes as text (the current folder's part too)
        os.path.abspath(raw).encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(raw).decode("utf-8", "backslashreplace")
        raise argparse.ArgumentTypeError(f"{shown} (as a full path) is not valid UTF-8 text, which Embridge records "
                                         "paths as; rename the folder or file") from None
    return raw


_path.__name__ = "a path"


def _non_blank(raw: str) -> str:
    """A name or setting that must say something: empty or blank, it would silently mean the default
    (every split, the automatic device, a local Ray) instead of being refused."""
    if not raw.strip():
        raise argparse.ArgumentTypeError("is empty; give a value")
    return raw


_non_blank.__name__ = "a value"

# the options several commands share
PATH = _path
NON_BLANK = _non_blank
SEED = number(int, low=0, high=SEED_MAX)
RUN_ID = number(int, low=1, high=2**63 - 1)  # SQLite's largest integer: no run has a larger id
POSITIVE_COUNT = number(int, low=1, high=10**9)
BATCH_SIZE = number(int, low=1, high=1 << 20)
SHARE = number(float, low=0.0, high=1.0)
BACKFILL_SHARE = number(float, low=0.0, high=1.0, low_open=True)  # a backfill of none is no backfill
MEBIBYTES = number(float, low=0.0, high=float(1 << 30), low_open=True)


def run_id_list(raw: str) -> list[int]:
    """Comma-separated run ids (``3,5,8``), each a valid run id; an empty list or entry is refused."""
    parts = [part.strip() for part in raw.split(",")]
    if not all(parts):
        raise argparse.ArgumentTypeError(f"expected comma-separated run ids, got '{raw}'")
    return [int(RUN_ID(part)) for part in parts]


run_id_list.__name__ = "comma-separated run ids"
