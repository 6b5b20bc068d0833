"""Error types the command line and the app turn into one readable line.

Every error a user can cause derives from :class:`EmbridgeError`; its message names the file (or
object) and the problem, so the CLI prints ``str(exc)`` and exits non-zero, and the app shows it in
a dialog. Anything else escaping the core is a bug and is shown with its traceback.
"""

from __future__ import annotations

import re
from pathlib import Path


class EmbridgeError(Exception):
    """A user-facing failure with a one-line explanation."""


class InputError(EmbridgeError):
    """A file or value given by the user is unusable; the message names it and says why."""

    def __init__(self, source: str | Path | None, problem: str) -> None:
        self.source = printable(str(source)) if source is not None else None
        self.problem = problem
        super().__init__(f"{self.source}: {problem}" if self.source else problem)

    def __reduce__(self) -> tuple:
        # rebuilt from its parts: a worker process (Ray) sends the error back to the driver pickled
        return _rebuilt_input_error, (type(self), self.source, self.problem)


def _rebuilt_input_error(cls: type[InputError], source: str | None, problem: str) -> InputError:
    err = cls.__new__(cls)
    err.source, err.problem = source, problem
    Exception.__init__(err, f"{source}: {problem}" if source else problem)
    return err


class UsageError(InputError):
    """An option's value, or a combination of options, refused before any work: exit status 2, as for
    the values the argument parser itself refuses (a script can tell misuse from a failed run)."""


class CheckpointError(InputError):
    """A model checkpoint cannot be loaded or does not behave like an embedder."""


class VectorFileError(InputError):
    """A vector file is unreadable, misaligned or holds non-finite values."""


class ImportDataError(InputError):
    """Items to import are malformed (duplicates, missing files, empty input...)."""


class StoreError(EmbridgeError):
    """The workspace cannot satisfy a request (missing object, integrity failure...)."""


class IntegrityError(StoreError):
    """A stored file no longer matches its recorded checksum or shape."""


class DiskFullError(StoreError):
    """The disk ran out of space mid-write: the work done so far is kept where it can be resumed."""


class WorkspaceBusyError(StoreError):
    """Another process holds the workspace database for longer than the busy timeout."""


class SchemaVersionError(StoreError):
    """The workspace was written by a newer Embridge, or its schema is unknown."""


class DeviceError(EmbridgeError):
    """The requested compute device is not available."""


class UnknownDeviceError(DeviceError):
    """The device name is none a machine can have ('banana', 'cuda:x')."""


class TrainingError(EmbridgeError):
    """Training cannot proceed (NaN loss, missing labels, out of memory...)."""


class BundleError(EmbridgeError):
    """An upgrade bundle is malformed, unsafe or has been tampered with."""


class Cancelled(EmbridgeError):  # noqa: N818 - reads naturally as `raise Cancelled()`
    """The user asked a running job to stop; partial results were kept where possible."""

    def __init__(self, message: str = "cancelled by the user") -> None:
        super().__init__(message)


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's text, for one-line error messages; a line that only
    introduces what follows (ending in ':', as PyTorch's "Error(s) in loading state_dict for Dense:") takes
    the next line with it."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    first = lines[0] if not (lines[0].endswith(":") and len(lines) > 1) else f"{lines[0]} {lines[1]}"
    return first.split(". ")[0][:300]


# directional formatting characters: they reorder what follows them on a line (U+202E shows "txt.exe" as
# "exe.txt"); other format characters (zero-width joiners, which emoji sequences and Persian words are made
# of) are part of the name and stay
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def printable(text: str, keep: str = "") -> str:
    """``text`` with control characters, line separators and directional overrides escaped (``\\n`` ->
    ``\\x0a``, a right-to-left override -> ``\\u202e``), so a hostile file name can neither break the
    one-line error, recolour or retitle the terminal, nor reorder or hide part of itself. Characters of
    any script, spaces (a no-break space too) and joiners stay as they are; ``keep``: controls to leave."""
    def shown(ch: str) -> str:
        code = ord(ch)
        if ch in keep or not (code < 32 or 127 <= code < 160 or ch in _BIDI or ch in "\u2028\u2029"
                              or 0xD800 <= code < 0xE000):
            return ch
        return f"\\x{code:02x}" if code < 256 else f"\\u{code:04x}"

    return "".join(shown(ch) for ch in text)


def raised_remotely(exc: BaseException) -> BaseException:
    """The error a remote task (a Ray worker) raised, not Ray's wrapper of it, whose text is the worker's
    whole coloured traceback: Ray's wrappers hold the original as ``cause``; ``exc`` itself otherwise."""
    seen: set[int] = set()
    while isinstance(getattr(exc, "cause", None), BaseException) and id(exc) not in seen:
        seen.add(id(exc))
        exc = exc.cause  # type: ignore[attr-defined]
    return exc


def os_error_number(text: str) -> int | None:
    """The errno a Rust library's message names as '(os error N)' (Lance's), else None."""
    found = re.search(r"\(os error (\d+)\)", text)
    return int(found.group(1)) if found else None


def user_error(exc: BaseException) -> EmbridgeError | None:
    """The :class:`EmbridgeError` behind ``exc``: itself, or the one a remote task (a Ray worker)
    raised and the driver received wrapped. Ray's wrappers hold it as ``cause`` (followed always,
    to the original error) or as ``__cause__`` (followed only until a user error is found, since a
    user error may itself be raised from another)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    found: EmbridgeError | None = None
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, EmbridgeError):
            found = current
        inner = getattr(current, "cause", None)
        if isinstance(inner, BaseException):
            current = inner
        else:
            current = current.__cause__ if found is None else None
    return found
