"""Checks that an image file is safe and decodable before anything stores or decodes it in full.

A few kilobytes of PNG can declare billions of pixels (a decompression bomb), so the pixel count
is read from the header and compared with a limit before any decoding. The limit defaults to
:data:`DEFAULT_MAX_PIXELS` and can be changed with ``EMBRIDGE_MAX_IMAGE_PIXELS``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from embridge.core.errors import ImportDataError, InputError, VectorFileError, first_line

DEFAULT_MAX_PIXELS = 40_000_000  # e.g. 8000 x 5000; embedders look at a few hundred pixels a side
PIXELS_ENV = "EMBRIDGE_MAX_IMAGE_PIXELS"


def max_pixels() -> int:
    value = os.environ.get(PIXELS_ENV)
    if not value:
        return DEFAULT_MAX_PIXELS
    try:
        limit = int(value)
    except ValueError:
        raise InputError(PIXELS_ENV, f"must be a whole number of pixels, got {value!r}") from None
    if limit < 1:
        raise InputError(PIXELS_ENV, f"must be at least 1, got {limit}")
    return limit


def check_pixel_count(path: str | Path, pixels: int, described: str) -> None:
    limit = max_pixels()
    if pixels > limit:
        raise ImportDataError(path, f"image is {described} ({pixels} pixels), over the limit of {limit} "
                              f"(a decompression bomb?); set {PIXELS_ENV} to allow larger images")


def check_image_header(path: str | Path) -> tuple[int, int]:
    """(width, height) from the header, refusing non-images and images over the pixel limit."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                width, height = im.size
    except Image.DecompressionBombError as exc:
        raise ImportDataError(path, f"image is too large to decode safely ({exc})") from None
    except UnidentifiedImageError:
        raise ImportDataError(path, "unreadable image (unknown or damaged format)") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImportDataError(path, f"unreadable image ({first_line(exc)})") from None
    check_pixel_count(path, width * height, f"{width} x {height}")
    return width, height


def validate_image(path: str | Path) -> None:
    """Refuse a file that is not a whole, decodable image of an acceptable size."""
    if Path(path).suffix.lower() == ".npy":
        validate_npy_image(path)
        return
    from PIL import Image

    check_image_header(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if im.format == "JPEG":
                    im.draft(im.mode, (64, 64))  # decode at reduced scale: enough to prove it decodes
                im.load()
    except Exception as exc:  # decoders raise many types for damaged data  # noqa: BLE001
        raise ImportDataError(path, f"unreadable image ({first_line(exc)})") from None


def validate_npy_image(path: str | Path) -> None:
    """A ``.npy`` image: a plain numeric 2-D or 3-D array whose header fits the file."""
    from embridge.core.vector_files import npy_header

    try:
        shape, dtype = npy_header(Path(path))
    except VectorFileError as exc:
        raise ImportDataError(path, exc.problem) from None
    except (ValueError, OSError, EOFError) as exc:
        raise ImportDataError(path, f"not a readable .npy image ({first_line(exc)})") from None
    if dtype.hasobject or dtype.kind not in "uifb":
        raise ImportDataError(path, f"a .npy image must hold numbers, got dtype {dtype}")
    if len(shape) not in (1, 2, 3):
        raise ImportDataError(path, f"a .npy image must be 1-, 2- or 3-D, got shape {shape}")
    check_pixel_count(path, int(np.prod(shape, dtype=np.float64)), "x".join(map(str, shape)) + " values")

