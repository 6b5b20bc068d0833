"""Checks that an image file is safe and decodable before anything stores or decodes it in full.

A few kilobytes of PNG can declare billions of pixels (a decompression bomb), so the pixel count
is read from the header and compared with a limit before any decoding. The limit defaults to
:data:`DEFAULT_MAX_PIXELS` and can be changed with ``EMBRIDGE_MAX_IMAGE_PIXELS``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from embridge.core.env_numbers import env_number
from embridge.core.errors import ImportDataError, VectorFileError, first_line

DEFAULT_MAX_PIXELS = 40_000_000  # e.g. 8000 x 5000; embedders look at a few hundred pixels a side
PIXELS_ENV = "EMBRIDGE_MAX_IMAGE_PIXELS"


def max_pixels() -> int:
    return env_number(PIXELS_ENV, DEFAULT_MAX_PIXELS, int, 1, "a whole number of pixels")


def check_pixel_count(path: str | Path, pixels: int, described: str) -> None:
    limit = max_pixels()
    if pixels > limit:
        raise ImportDataError(path, f"image is {described} ({pixels} pixels), over the limit of {limit} "
                              f"(a decompression bomb?); set {PIXELS_ENV} to allow larger images")


# the format each suffix promises; the decoder used when embedding reads a .png as PNG only
SUFFIX_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP"}
# image files of formats not imported, refused by name rather than left out of a folder silently
UNSUPPORTED_IMAGE_SUFFIXES = {".gif": "GIF", ".webp": "WebP", ".tif": "TIFF", ".tiff": "TIFF", ".heic": "HEIC",
                              ".heif": "HEIF", ".avif": "AVIF", ".jp2": "JPEG 2000", ".ico": "ICO"}
ORIENTATION_TAG = 0x0112  # EXIF: how a viewer turns the stored pixels to show the photo upright


def _pil_image() -> Any:
    """PIL's Image with its own decompression-bomb limit at ours: it would otherwise refuse images
    ``EMBRIDGE_MAX_IMAGE_PIXELS`` allows, and with its own words."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = max_pixels()
    return Image


def image_header(path: str | Path) -> tuple[int, int, str, int]:
    """(width, height, format, EXIF orientation 1-8; 1 unless a JPEG says otherwise) from the header,
    refusing non-images and images over the pixel limit."""
    from PIL import UnidentifiedImageError

    Image = _pil_image()
    Image.MAX_IMAGE_PIXELS = None  # only the header is read here; the count is checked below, with the size
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                width, height = im.size
                kind = "JPEG" if im.format == "MPO" else str(im.format)  # a camera's multi-picture JPEG
                check_pixel_count(path, width * height, f"{height} high x {width} wide")
                # a JPEG's EXIF is in its header; other formats may keep it after the pixels (read only by
                # decoding them), and cameras write JPEG
                orientation = int(im.getexif().get(ORIENTATION_TAG, 1) or 1) if kind == "JPEG" else 1
    except Image.DecompressionBombError:
        limit = max_pixels()
        raise ImportDataError(path, f"image is over the limit of {limit} pixels (a decompression bomb?); set "
                              f"{PIXELS_ENV} to allow larger images") from None
    except UnidentifiedImageError:
        raise ImportDataError(path, "unreadable image (unknown or damaged format)") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImportDataError(path, f"unreadable image ({first_line(exc)})") from None
    finally:
        _pil_image()  # decoding, from here on, is bounded by the limit again
    return width, height, kind, orientation if 1 <= orientation <= 8 else 1


def upright(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Decoded pixels (height x width [x channels]) turned as the EXIF orientation tells a viewer to show
    them (what PIL's ``ImageOps.exif_transpose`` does), so a model sees the photo as people do."""
    turned = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
              5: lambda a: np.swapaxes(a, 0, 1), 6: lambda a: np.rot90(a, -1),
              7: lambda a: np.swapaxes(a[::-1, ::-1], 0, 1), 8: lambda a: np.rot90(a, 1)}
    return np.ascontiguousarray(turned[orientation](arr)) if orientation in turned else arr


def validate_image(path: str | Path) -> None:
    """Refuse a file that is not a whole, decodable image of an acceptable size."""
    if Path(path).suffix.lower() == ".npy":
        validate_npy_image(path)
        check_npy_values(path, np.load(path, mmap_mode="r", allow_pickle=False))
        return
    suffix = Path(path).suffix.lower()
    _, _, kind, _ = image_header(path)
    wanted = SUFFIX_FORMATS.get(suffix)
    if wanted is not None and kind != wanted:  # embedding decodes by the name: refused now, not then
        named = next((s for s, f in SUFFIX_FORMATS.items() if f == kind), None)
        fix = f"rename it {named}" if named else "convert it to PNG or JPEG"
        raise ImportDataError(path, f"holds a {kind} image under a {suffix} name; {fix}")
    Image = _pil_image()
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
    if 0 in shape:  # stored, it failed only when a model embedded it
        raise ImportDataError(path, f"a .npy image holds no values (shape {shape})")
    check_pixel_count(path, int(np.prod(shape, dtype=np.float64)), "x".join(map(str, shape)) + " values")


def check_npy_values(path: str | Path, values: np.ndarray) -> None:
    """A ``.npy`` image's values, read: NaN or inf is refused naming the file (not the model's output)."""
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise ImportDataError(path, "a .npy image holds NaN or inf values")
    if values.dtype.kind in "fiu" and values.size and np.abs(values).max() > np.finfo(np.float32).max:
        raise ImportDataError(path, "a .npy image holds values beyond the float32 range a model reads "
                              f"(largest {float(np.abs(values).max()):.3g})")

