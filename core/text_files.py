"""Where a text file stops being UTF-8: the line and the byte of the file, not of a decoder's block.

A decoding error raised while a file is read line by line counts its offset within the block the
reader was decoding (8 KiB or so), which names the wrong place in any larger file; the file is read
again in binary to find the first byte that is not UTF-8.
"""

from __future__ import annotations

from pathlib import Path

_BLOCK = 1 << 20


def first_invalid_utf8(path: str | Path) -> tuple[int, int, str] | None:
    """(byte offset in the file, line number, the decoder's reason) of the first byte that is not
    UTF-8, or None when the file decodes (or cannot be read again)."""
    offset, line, carry = 0, 1, b""
    try:
        with open(path, "rb") as fh:
            while True:
                block = fh.read(_BLOCK)
                data = carry + block
                if not data:
                    return None
                try:
                    data.decode("utf-8")
                    good, carry = len(data), b""
                except UnicodeDecodeError as exc:
                    truncated = exc.reason == "unexpected end of data" and exc.end == len(data)
                    if not (truncated and block):  # a sequence cut by the block's end is read on
                        return offset + exc.start, line + data.count(b"\n", 0, exc.start), exc.reason
                    good, carry = exc.start, data[exc.start:]
                line += data.count(b"\n", 0, good)
                offset += good
                if not block:
                    return None
    except OSError:
        return None


def utf8_problem(path: str | Path, exc: UnicodeDecodeError) -> str:
    """'not UTF-8 text (invalid start byte at line 450, byte 391850 of the file)'; the decoder's own
    offset when the file cannot be read again."""
    found = first_invalid_utf8(path)
    if found is None:
        return f"not UTF-8 text ({exc.reason})"
    offset, line, reason = found
    return f"not UTF-8 text ({reason} at line {line}, byte {offset} of the file)"
