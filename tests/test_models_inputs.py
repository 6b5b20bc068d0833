"""Items become model inputs with trivial conversions only; anything else names the item or file."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from embridge.core.errors import InputError
from embridge.core.models import ModelSpec, make_inputs


def _spec(shape: tuple[int, ...], modality: str = "image", kind: str = "torchscript") -> ModelSpec:
    return ModelSpec(name="net", kind=kind, modality=modality, input_shape=shape, dim=4, params=0,
                     sha256="", path="net.ts")


def _image(key: str, path: Path) -> dict:
    return {"key": key, "modality": "image", "path": str(path), "text": None, "metadata": {}}


def test_png_grayscale_matches_the_array_it_was_written_from(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).random((6, 5)).astype(np.float32)
    mpimg.imsave(tmp_path / "a.png", pixels, cmap="gray", vmin=0.0, vmax=1.0)  # written as 8-bit RGBA
    batch = make_inputs([_image("a", tmp_path / "a.png")], _spec((1, 6, 5)))
    assert batch.shape == (1, 1, 6, 5) and batch.dtype.is_floating_point
    np.testing.assert_allclose(batch[0, 0].numpy(), pixels, atol=1 / 255 + 1e-6)


def test_npy_images_change_channel_order_and_count(tmp_path: Path) -> None:
    rgb = np.random.default_rng(1).integers(0, 256, size=(4, 3, 3), dtype=np.uint8)  # H, W, C
    np.save(tmp_path / "rgb.npy", rgb)
    gray = np.random.default_rng(2).random((4, 3)).astype(np.float32)
    np.save(tmp_path / "gray.npy", gray)
    items = [_image("rgb", tmp_path / "rgb.npy"), _image("gray", tmp_path / "gray.npy")]
    as_rgb = make_inputs(items, _spec((3, 4, 3))).numpy()
    np.testing.assert_allclose(as_rgb[0], rgb.transpose(2, 0, 1) / 255.0, atol=1e-6)
    np.testing.assert_array_equal(as_rgb[1], np.stack([gray] * 3))
    as_gray = make_inputs(items, _spec((1, 4, 3))).numpy()
    luma = (rgb.astype(np.float32) / 255.0) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    np.testing.assert_allclose(as_gray[0, 0], luma, atol=1e-5)
    flat = make_inputs(items[1:], _spec((12,), modality="vector")).numpy()
    np.testing.assert_array_equal(flat[0], gray.ravel())


def test_other_image_sizes_are_an_error_naming_the_file(tmp_path: Path) -> None:
    np.save(tmp_path / "big.npy", np.zeros((8, 8), dtype=np.float32))
    with pytest.raises(InputError, match=r"big\.npy: image is 8 high x 8 wide but model net takes 4 high x 3 wide images"):
        make_inputs([_image("big", tmp_path / "big.npy")], _spec((1, 4, 3)))
    with pytest.raises(InputError, match=r"gone\.png: image file not found"):
        make_inputs([_image("gone", tmp_path / "gone.png")], _spec((1, 4, 3)))
    (tmp_path / "bad.png").write_bytes(b"not a png at all")
    with pytest.raises(InputError, match=r"bad\.png: unreadable image"):
        make_inputs([_image("bad", tmp_path / "bad.png")], _spec((1, 4, 3)))


def test_array_items_and_modality_mismatches() -> None:
    items = [{"key": f"v{i}", "modality": "vector", "metadata": {"array": [float(i)] * 6}} for i in range(3)]
    batch = make_inputs(items, _spec((2, 3), modality="image"))
    assert batch.shape == (3, 2, 3) and float(batch[2].sum()) == 12.0
    with pytest.raises(InputError, match=r"item 'v0': 6 values but model net takes input of shape \(4,\)"):
        make_inputs(items, _spec((4,), modality="vector"))
    text = {"key": "t1", "modality": "text", "text": "a cat", "metadata": {}}
    with pytest.raises(InputError, match=r"model net takes image input, item 't1' is text"):
        make_inputs([text], _spec((1, 4, 3)))
    with pytest.raises(InputError, match=r"model net takes text input, item 'v0' is vector"):
        make_inputs(items, _spec((), modality="text", kind="sentence_transformers"))
    assert make_inputs([text], _spec((), modality="text", kind="sentence_transformers")) == ["a cat"]
    with pytest.raises(InputError, match=r"item 'k': no raw values"):
        make_inputs([{"key": "k", "modality": "vector", "metadata": {}}], _spec((6,), modality="vector"))


def test_a_1d_npy_item_feeds_a_model_of_vector_input_of_its_length(tmp_path: Path) -> None:
    """The import takes 1-3-D .npy files, but embedding refused every 1-D one ('an image must be 2-D or 3-D')."""
    values = np.random.default_rng(3).random(8).astype(np.float32)
    np.save(tmp_path / "v.npy", values)
    batch = make_inputs([_image("v", tmp_path / "v.npy")], _spec((8,), modality="vector")).numpy()
    np.testing.assert_array_equal(batch[0], values)
    with pytest.raises(InputError, match=r"v\.npy: a 1-D array of 8 values feeds only a model of vector input of "
                                         r"that length; model net takes input of shape \(1, 4, 2\)"):
        make_inputs([_image("v", tmp_path / "v.npy")], _spec((1, 4, 2)))
