"""What a zip member of a vector file (``.npz``) declares, checked before anything is read for it.

A forged size would make a reader allocate gigabytes or expand a bomb; an encrypted member or one compressed
by a method the zip module cannot read raised errors no reader expected (exit 3 instead of one line).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from embridge.core.errors import VectorFileError

DEFLATE_MAX_RATIO = 1100  # deflate expands at most about 1032:1; a member claiming more was forged
READABLE_COMPRESSION = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)


def check_member(src: Path, info: zipfile.ZipInfo) -> None:
    """Refuse a member the zip module cannot read, or whose declared sizes no real member has."""
    if info.flag_bits & 0x1:
        raise VectorFileError(src, f"member {info.filename} is encrypted; save the arrays with np.savez")
    if info.compress_type not in READABLE_COMPRESSION:
        raise VectorFileError(src, f"member {info.filename} uses zip compression method {info.compress_type}, "
                              "which cannot be read here; save the arrays with np.savez or np.savez_compressed")
    if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
        raise VectorFileError(src, f"member {info.filename} claims {info.file_size} bytes but stores "
                              f"{info.compress_size} (forged sizes)")
    if info.compress_type == zipfile.ZIP_DEFLATED and info.file_size > DEFLATE_MAX_RATIO * info.compress_size + 4096:
        raise VectorFileError(src, f"member {info.filename} claims {info.file_size} bytes from "
                              f"{info.compress_size} compressed bytes, more than deflate can expand")
