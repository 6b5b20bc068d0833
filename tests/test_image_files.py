"""Files as cameras, folders and editors deliver them: EXIF orientation, a name that does not match the
format, image formats that are not imported, .npy images holding NaN, and a CSV with two byte-order marks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from embridge.core.errors import ImportDataError
from embridge.core.images import validate_image
from embridge.core.importers import import_items
from embridge.core.models.inputs import read_image
from embridge.core.store import Workspace


def _tagged_jpeg(path: Path, orientation: int) -> Path:
    """A 16 x 24 RGB photo of distinct blocks, stored as a camera does: a JPEG with an EXIF orientation tag."""
    pixels = np.kron(np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 14, np.ones((8, 8, 1), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, format="JPEG", quality=95, exif=exif)
    return path


@pytest.mark.parametrize("orientation", range(1, 9))
def test_pixels_are_turned_as_the_exif_orientation_says(tmp_path: Path, orientation: int) -> None:
    """A phone photo's pixels are stored sideways with a tag saying how to show them: the model was given
    them sideways."""
    path = _tagged_jpeg(tmp_path / f"o{orientation}.jpg", orientation)
    with Image.open(path) as im:
        shown = np.asarray(ImageOps.exif_transpose(im).convert("RGB"), dtype=np.float32) / 255
    got = read_image(path)
    assert got.shape == shown.shape
    np.testing.assert_array_equal(got, shown)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = Workspace.create(tmp_path / "ws")
    yield workspace
    workspace.close()


def _folder(root: Path, name: str, write: object) -> Path:
    (root / "cat").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(root / "cat" / "good.png")
    write(root / "cat" / name)  # type: ignore[operator]
    return root


def test_a_file_whose_format_is_not_its_name_is_refused_at_import(ws: Workspace, tmp_path: Path) -> None:
    """A JPEG named .png was imported, then every embed of the gallery failed on it ("not a PNG file")."""
    image = Image.fromarray(np.full((8, 8, 3), 90, dtype=np.uint8))
    root = _folder(tmp_path / "jpeg-as-png", "a.png", lambda p: image.save(p, format="JPEG"))
    with pytest.raises(ImportDataError, match=r"a\.png: holds a JPEG image under a \.png name; rename it \.jpg"):
        import_items(ws, root, "images")
    assert len(ws.item_ids()) == 0
    validate_image(root / "cat" / "good.png")


@pytest.mark.parametrize(("name", "kind"), [("a.gif", "GIF"), ("a.webp", "WebP"), ("a.tiff", "TIFF")])
def test_image_formats_not_imported_are_named_not_left_out(ws: Workspace, tmp_path: Path, name: str,
                                                           kind: str) -> None:
    """A .gif beside the PNGs was skipped without a word, and its label vanished from the gallery."""
    image = Image.fromarray(np.full((8, 8, 3), 90, dtype=np.uint8))
    root = _folder(tmp_path / kind, name, lambda p: image.save(p))
    with pytest.raises(ImportDataError, match=rf"{name}: is a {kind} image, which is not imported"):
        import_items(ws, root, "images")
    assert len(ws.item_ids()) == 0


def test_a_npy_image_holding_nan_is_refused_at_import(ws: Workspace, tmp_path: Path) -> None:
    """It was imported, and embedding then blamed the model's output for the NaN."""
    bad = np.zeros((8, 8), dtype=np.float32)
    bad[3, 4] = np.nan
    root = _folder(tmp_path / "npy", "a.npy", lambda p: np.save(p, bad))
    with pytest.raises(ImportDataError, match=r"a\.npy: a \.npy image holds NaN or inf values"):
        import_items(ws, root, "images")
    assert len(ws.item_ids()) == 0
    huge = np.full((8, 8), 1e40)  # finite in float64, inf once read as float32 as models take it
    root = _folder(tmp_path / "npy-huge", "b.npy", lambda p: np.save(p, huge))
    with pytest.raises(ImportDataError, match=r"b\.npy: a \.npy image holds values beyond the float32 range"):
        import_items(ws, root, "images")
    assert len(ws.item_ids()) == 0


def test_a_csv_whose_header_keeps_a_second_byte_order_mark_is_refused(ws: Workspace, tmp_path: Path) -> None:
    """Its key column was read as '\\ufeffkey': every item got a made-up key and the real one went to metadata."""
    path = tmp_path / "double_bom.csv"
    path.write_text("\ufeff\ufeffkey,text\nk1,a cat\n", encoding="utf-8")
    with pytest.raises(ImportDataError, match=r"double_bom\.csv: line 1: the header's column .* starts with a "
                                              r"byte-order mark"):
        import_items(ws, path, "csv")
    assert len(ws.item_ids()) == 0
