"""The CRC-32 a zip stores for each member, checked while a memory-mapped member is read.

``np.savez`` stores its arrays uncompressed, and Embridge maps such a member straight from the file
instead of reading it through :mod:`zipfile`, which would check the CRC but copy every byte. So the
check is made here, on the bytes the reader already has, in file order: a damaged byte (a flipped
exponent turns 1.8 into 9.7e21) is refused rather than stored. Rows read out of order, or only some
of them, cannot be checked this way; reading every row in order, as adding a model and importing
do, always is.
"""

from __future__ import annotations

import zlib
from pathlib import Path

from embridge.core.errors import VectorFileError


class MemberCrc:
    """Running CRC-32 of one zip member: its header bytes, then its rows as they are read in order."""

    def __init__(self, path: Path, member: str, expected: int, header: bytes, rows: int) -> None:
        self.path, self.member, self.expected, self.rows = path, member, expected, rows
        self.value = zlib.crc32(header)
        self.next_row = 0

    def feed(self, first_row: int, raw: memoryview | bytes, count: int) -> None:
        """``count`` rows starting at ``first_row``, as stored; a gap or a repeat ends the check."""
        if first_row != self.next_row:
            self.next_row = -1  # out of order: this pass cannot vouch for the member
            return
        self.value = zlib.crc32(raw, self.value)
        self.next_row += count

    def finish(self) -> None:
        """Refuse the member when every row was read and its bytes are not the ones the zip recorded."""
        if self.next_row == self.rows and self.value != self.expected:
            raise VectorFileError(self.path, f"member {self.member} is damaged: its bytes do not match the "
                                  "CRC-32 the archive recorded for them (changed or corrupted after it was "
                                  "written); write the file again")
