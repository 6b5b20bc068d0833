"""Short human forms of durations, sizes and shares for labels and tables."""

from __future__ import annotations

import math
import unicodedata
from typing import Any


def format_seconds(seconds: float) -> str:
    """'4.2 s', '40 ms', '3 min 05 s' or '1 h 02 min': short enough for a status line."""
    if seconds < 0.1:
        return _short(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _short(seconds: float) -> str:
    """Under a tenth of a second in milliseconds: '0.0 s' read as free (a re-embedding of 40 ms)."""
    if seconds <= 0:
        return "0 s"
    return f"{int(seconds * 1000 + 0.5)} ms" if seconds >= 0.0005 else "under 1 ms"  # half a ms reads 1, not 0


def format_bytes(count: float) -> str:
    """'512 B', '3.4 MiB', '1.2 GiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


def format_share(value: Any, digits: int = 1) -> str:
    """A share in [0, 1] as a percentage; 'n/a' for undefined numbers (None, NaN, infinities, non-numbers)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return "n/a"
    return f"{100 * value:.{digits}f}%"


def beyond_backfill(gain: Any) -> str:
    """' (more than the full backfill itself: ...)' for a gain retained above 100%, where the bridge scores
    above the full backfill it is measured against, so re-embedding would cost quality; '' otherwise."""
    if isinstance(gain, bool) or not isinstance(gain, int | float) or not math.isfinite(gain) or gain <= 1:
        return ""
    return " (more than the full backfill itself: this bridge scores above it, so re-embedding would lose quality)"


def format_beta(beta: float) -> str:
    """A backfilled share β to two decimals, with as many more as it takes for a share strictly between 0 and 1
    never to read "0.00" or "1.00" (a partial backfill that re-embeds some items, or leaves some out)."""
    if 0 < beta < 0.01:
        return f"{beta:.2g}"
    if 0.995 <= beta < 1:  # '0.999', '0.9999': never the full backfill's 1.00
        digits = 3
        while f"{beta:.{digits}f}" == f"{1:.{digits}f}" and digits < 12:
            digits += 1
        return f"{beta:.{digits}f}"
    return f"{beta:.2f}"


def format_duration(seconds: float | None) -> str:
    """An estimate in words for sentences: 'about 4.2 s', 'about 12 min', 'about 3.5 h'."""
    if seconds is None:
        return "an unmeasured time"
    if seconds < 0.1:
        return _short(seconds) if seconds < 0.0005 else f"about {_short(seconds)}"
    if seconds < 120:
        return f"about {seconds:.1f} s"
    return f"about {seconds / 60:.0f} min" if seconds < 7200 else f"about {seconds / 3600:.1f} h"


def sample_floor_text(old_old: object, upgraded: object) -> str:
    """' (on the evaluation sample: old/old 63.4%, upgraded 70.0%)' where new/new searched a sample of the
    gallery (where the new model is compared and gain retained measured), else ''."""
    if old_old is None:
        return ""
    return f" (on the evaluation sample: old/old {format_share(old_old)}, upgraded {format_share(upgraded)})"


def sample_words(ceiling_floor: float | None) -> str:
    """Where new/new was compared with old/old: 'this gallery', or the evaluation sample when new/new
    searched that and not the whole gallery (``ceiling_floor``: old/old there)."""
    return "this gallery" if ceiling_floor is None else "the evaluation sample both models embedded"


def early_stop_text(info: dict) -> str:
    """When a training job may end, from its progress: 'stops early after 3 more epoch(s) without
    validation gain', or the epochs left where the last epoch comes first; '' without the numbers."""
    patience, idle = info.get("patience"), info.get("epochs_without_gain")
    if not isinstance(patience, int) or not isinstance(idle, int):
        return ""
    left = max(patience - idle, 0)
    epoch, epochs = info.get("epoch"), info.get("epochs")
    # both counts take in the epoch under way, whose end is validated as every epoch's is
    if isinstance(epoch, int) and isinstance(epochs, int) and epochs - epoch + 1 <= left:
        return f"ends with its last epoch ({epochs}) at the latest"
    return f"stops early after {left} more epoch(s) without validation gain"


def capitalised(text: str) -> str:
    """``text`` as the start of a sentence: its first letter in capitals (core messages start lower case)."""
    return text[:1].upper() + text[1:]


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """'1 key', '3 keys' ('1 query', '2 queries' with ``plural``): messages count single things too."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def shown_name(name: str, most: int = 80) -> str:
    """A key or name as a one-line message shows it: a 10,000-character key is cut, its length said, and
    characters that cannot be seen or look like a plain space (a zero-width space, a no-break space) are
    written as escapes, since a key that differs from another only by them is what such a message is about.
    Joiners, which scripts need, stay."""
    cut = name if len(name) <= most else name[:most - 20]  # cut before escaping: never inside an escape
    shown = "".join(_escaped(ch) if _unseen(ch) else ch for ch in cut)
    return shown if cut == name else f"{shown}… ({len(name):,} characters)"


def _escaped(ch: str) -> str:
    return f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}"


def _unseen(ch: str) -> bool:
    """A format character (other than the joiners and an emoji flag's tags), a combining grapheme joiner, a
    blank-looking letter, or a space other than U+0020 (variation selectors stay: emoji and keycaps use them)."""
    if ch in "\u200c\u200d" or ch == " " or ch.isascii() or 0xE0020 <= ord(ch) <= 0xE007F:
        return False
    return unicodedata.category(ch) in ("Cf", "Zs") or ch in "\u034f\u115f\u1160\u3164\uffa0\u2800"


def for_example(names: list[str], most: int = 5) -> str:
    """': d1' for one name, ', e.g. d1, d2' for several: the tail of a message that counts them first."""
    shown = [shown_name(str(n)) for n in names[:most]]
    return f": {shown[0]}" if len(names) == 1 else f", e.g. {', '.join(shown)}"


def count_words(items: int, embedded: int, resumed: int = 0) -> str:
    """'120 embedded, 80 by the interrupted run it resumed, 99 copied from the workspace': one wording
    for the ``backfill`` line and the ``runs`` listing of the same counts."""
    copied = items - embedded - resumed
    return (f"{embedded} embedded" + (f", {resumed} by the interrupted run it resumed" if resumed else "")
            + (f", {copied} copied from the workspace (they already held the model's vectors)" if copied > 0 else ""))
