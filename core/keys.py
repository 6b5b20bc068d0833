"""Item keys and labels as every importer stores them: NFC text, no control characters.

The same name typed on macOS (decomposed, NFD) and on Linux (composed, NFC) must be one item, so
keys are normalised to NFC; two keys of one import that only become equal through NFC are refused
as look-alikes rather than silently merged. A leading byte-order mark (U+FEFF), which editors on
Windows put before the first key of a file, is dropped. Labels are text or integers written the
canonical way (``3``, never ``3.0`` or ``True``), so the same class never turns into two.
"""

from __future__ import annotations

import decimal
import math
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from embridge.core.errors import ImportDataError, printable
from embridge.core.paths import check_regular

BOM = "\ufeff"
_FORBIDDEN_CATEGORIES = {"Cc", "Cs", "Zl", "Zp"}  # control, lone surrogate, line/paragraph separator
# an integral number written as a float ("3.0"): what a spreadsheet or pandas writes for an integer column
# with gaps, and what a JSON 3.0 is stored as ("3"), so the two files name one class
_INTEGRAL_FLOAT_TEXT = re.compile(r"(-?[0-9]+)\.0+")
# Python refuses to turn longer digit strings into an int (a guard against quadratic-time parsing)
MAX_INT_DIGITS = 4300


def char_name(ch: str) -> str:
    """'control character U+000A', 'lone surrogate U+D800' or 'line separator U+2028' for messages."""
    kind = {"Cs": "lone surrogate", "Zl": "line separator", "Zp": "paragraph separator"}
    return f"{kind.get(unicodedata.category(ch), 'control character')} U+{ord(ch):04X}"


def odd_text_char(text: str) -> str | None:
    """The first character item text may not hold: C0 controls but tab and line ends (NUL breaks
    tokenizers) and lone surrogates (not storable as UTF-8); line separators and C1 are legitimate text."""
    return next((ch for ch in text if (ch < " " and ch not in "\t\n\r") or unicodedata.category(ch) == "Cs"), None)


def bad_char(text: str) -> str | None:
    """The name of the first character a key, label or split name may not hold, or None."""
    for ch in text:
        if unicodedata.category(ch) in _FORBIDDEN_CATEGORIES:
            return char_name(ch)
    return None


def check_input_file(path: str | Path, label: str) -> None:
    """Refuse a FIFO, device or socket by its kind before anything opens it: opening a FIFO blocks
    forever and reading ``/dev/zero`` never ends. A missing file or a folder is left to the caller,
    which names it in its own words; ``label`` names the input (and its option) in the message."""
    p = Path(path)
    try:
        if not p.exists() or p.is_dir():
            return
    except OSError:  # cannot even be looked at: opening it fails too, in the caller's words
        return
    check_regular(p, label, folders=False)


def too_many_digits(text: str) -> bool:
    """Whether ``text`` (an integer's digits, maybe signed) has more digits than Python turns into an
    int (leading zeros count); ``int()`` would raise a ValueError that is no user's mistake to read."""
    return len(text.lstrip("+-")) > MAX_INT_DIGITS


def shortened(text: str, keep: int = 20) -> str:
    """``text`` cut to its first ``keep`` characters with a count of the rest: a 5000-digit number
    must not fill the one-line error."""
    return printable(text) if len(text) <= keep else f"{printable(text[:keep])}... ({len(text)} characters)"


def clean_text(raw: str, source: str | Path | None, where: str, what: str) -> str:
    """``raw`` without a leading BOM or outer spaces, in NFC; control characters are refused."""
    text = unicodedata.normalize("NFC", raw.strip().removeprefix(BOM).strip())
    bad = bad_char(text)
    if bad:
        raise ImportDataError(source, f"{where}: the {what} {text[:40]!r} holds the {bad}")
    return text


def normalise_key(raw: Any, source: str | Path | None, where: str) -> str:
    """One item key as stored: text (or an integer) in NFC, never empty."""
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise ImportDataError(source, f"{where}: a key must be text or an integer, got {_kind(raw)}")
    key = clean_text(str(raw), source, where, "key")
    if not key:
        raise ImportDataError(source, f"{where}: the key is empty")
    return key


def normalise_keys(raw: Sequence[Any], source: str | Path | None, noun: str = "key",
                   wheres: Sequence[str] | None = None) -> list[str]:
    """Every key normalised; keys that differ only in Unicode form (NFC vs NFD) are refused.

    ``wheres`` names each key's place in the file for messages ("line 3"); by default "key 3".
    Exact repeats are left to the caller, which reports duplicates in its own words.
    """
    if all(type(v) is str and v.isascii() and v.isprintable() and v and v[0] != " " and v[-1] != " " for v in raw):
        return list(raw)  # already as stored: ASCII is its own NFC and printable ASCII holds no control character
    keys: list[str] = []
    first: dict[str, tuple[str, str]] = {}
    for n, value in enumerate(raw):
        where = wheres[n] if wheres is not None else f"{noun} {n + 1}"
        key = normalise_key(value, source, where)
        given = str(value).strip().removeprefix(BOM).strip()
        before = first.setdefault(key, (given, where))
        if before[0] != given:
            raise ImportDataError(source, f"{where}: {given!r} and {before[0]!r} ({before[1]}) differ only in "
                                  "Unicode normalisation (they look the same); rename one")
        keys.append(key)
    return keys


def normalise_label(raw: Any, source: str | Path | None, where: str) -> str | None:
    """A label as stored: NFC text or a canonical integer; None (or "") means no label.

    An integral number written as text with a zero fraction ("3.0", "-2.00") is the integer ("3"),
    as the JSON number 3.0 is.

    Booleans, objects, lists and non-integral numbers are refused: stored as text they would
    become classes such as ``True`` or ``{'a': 1}`` that no user meant.
    """
    if raw is None:
        return None
    if isinstance(raw, decimal.Decimal):  # a PostgreSQL numeric or a Parquet decimal column: exact digits
        if not (raw.is_finite() and raw == raw.to_integral_value()):
            raise ImportDataError(source, f"{where}: a label must be text or an integer, got the number {raw}")
        raw = int(raw)
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise ImportDataError(source, f"{where}: a label must be text or an integer, got {_kind(raw)}")
    if isinstance(raw, float):
        if not (math.isfinite(raw) and raw.is_integer()):
            raise ImportDataError(source, f"{where}: a label must be text or an integer, got the number {raw!r}")
        if abs(raw) >= 2 ** 53:  # a float holds integers exactly only up to 2**53: the file's digits may be lost
            raise ImportDataError(source, f"{where}: the label {raw!r} is a number too large to hold its digits "
                                  "exactly as a decimal (above 2**53); write it as an integer or as text")
        raw = int(raw)
    label = clean_text(str(raw), source, where, "label")
    integral = _INTEGRAL_FLOAT_TEXT.fullmatch(label)
    if integral:
        if too_many_digits(integral.group(1)):
            raise ImportDataError(source, f"{where}: the label {shortened(label)} is an integer of more than "
                                  f"{MAX_INT_DIGITS} digits, more than Embridge reads as a number; write it "
                                  "without the '.0' to keep it as text")
        label = str(int(integral.group(1)))
    return label or None


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"the number {value!r}"
    return type(value).__name__
