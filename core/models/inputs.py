"""Turning workspace items into a model's input batch.

Items are the store's records (``modality``, ``path``, ``text``, ``metadata``, ``key``). Images
(PNG/JPEG/BMP through matplotlib, or ``.npy`` arrays) are converted to the model's input shape only
when that is trivial: channel order (HWC -> CHW), grayscale <-> RGB, dropping alpha, flattening
for vector-input models. Anything else (another image size, say) is an error naming the file,
because silently resizing would change what the model sees. Raw vector items carry their values
in ``metadata['array']`` (a list of floats). Integer pixels are scaled to [0, 1] as matplotlib
does for PNG, so ``.npy`` and PNG copies of one image give the same input.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embridge.core.errors import InputError
from embridge.core.images import check_npy_values, image_header, upright, validate_npy_image
from embridge.core.models.checkpoint_reader import first_line
from embridge.core.models.spec import ModelSpec

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_CHANNEL_COUNTS = (1, 3, 4)


def make_inputs(items: Sequence[Mapping[str, Any]], spec: ModelSpec) -> torch.Tensor | list[str]:
    """A float32 batch of shape (len(items), *spec.input_shape), or a list of texts for text models."""
    if spec.kind == "vectors":
        raise InputError(spec.path, "an embeddings-only model looks items up by key; it takes no inputs")
    if spec.modality == "text":
        return [_text_of(item, spec) for item in items]
    rows = [_array_of(item, spec) for item in items]
    if not rows:
        return torch.empty((0, *spec.input_shape), dtype=torch.float32)
    return torch.from_numpy(np.stack(rows))


def _describe(item: Mapping[str, Any]) -> str:
    return f"item '{item.get('key', item.get('id', '?'))}'"


def _text_of(item: Mapping[str, Any], spec: ModelSpec) -> str:
    text = item.get("text")
    if item.get("modality") != "text" or not isinstance(text, str) or not text.strip():
        raise InputError(_describe(item), f"model {spec.name} takes text input, "
                         f"{_describe(item)} is {item.get('modality') or 'not text'}")
    return text


def _array_of(item: Mapping[str, Any], spec: ModelSpec) -> np.ndarray:
    modality = item.get("modality")
    if modality == "text":
        raise InputError(_describe(item), f"model {spec.name} takes {spec.modality} input, {_describe(item)} is text")
    if modality == "image":
        path = item.get("path")
        if not path:
            raise InputError(_describe(item), "image item has no file path")
        return conform_image(read_image(path), spec.input_shape, path, spec.name)
    if modality in ("array", "vector"):
        values = (item.get("metadata") or {}).get("array")
        if values is None:
            raise InputError(_describe(item), f"no raw values (metadata 'array') to feed model {spec.name}; "
                             "import its vectors for this model instead")
        arr = np.asarray(values, dtype=np.float32)
        if arr.size != math.prod(spec.input_shape):
            raise InputError(_describe(item), f"{arr.size} values but model {spec.name} takes input of shape "
                             f"{spec.input_shape}")
        return arr.reshape(spec.input_shape)
    raise InputError(_describe(item), f"unknown item modality {modality!r}")


def read_image(path: str | Path) -> np.ndarray:
    """Pixels of a PNG/JPEG/BMP (matplotlib) or ``.npy`` file as float32, integers scaled to [0, 1]."""
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "image file not found")
    if p.suffix.lower() == ".npy":
        validate_npy_image(p)  # the header's size first: never allocate what a forged header claims
        orientation = 1
    else:
        orientation = image_header(p)[3]  # the pixel count first: never decode a decompression bomb
    try:
        if p.suffix.lower() == ".npy":
            arr = np.load(p, allow_pickle=False)
        else:
            import matplotlib.image as mpimg

            arr = mpimg.imread(p)
    except Exception as exc:  # decoders raise many types for damaged files
        raise InputError(p, f"unreadable image ({first_line(exc)})") from exc
    if p.suffix.lower() == ".npy":
        check_npy_values(p, arr)  # an item imported before the check came in
    arr = upright(np.asarray(arr), orientation)
    if arr.dtype.kind in "ui":
        return arr.astype(np.float32) / np.float32(np.iinfo(arr.dtype).max)
    if arr.dtype.kind not in "fb":
        raise InputError(p, f"image array has non-numeric dtype {arr.dtype}")
    return arr.astype(np.float32)


def conform_image(arr: np.ndarray, shape: tuple[int, ...], source: str | Path, model: str) -> np.ndarray:
    """Fit pixels to ``shape`` ((D,), (H, W) or (C, H, W)) with trivial conversions only; a 1-D ``.npy``
    (the import takes 1-3-D arrays) feeds a model of vector input of its length as it is."""
    if arr.ndim == 1:
        if len(shape) != 1 or arr.size != shape[0]:
            raise InputError(source, f"a 1-D array of {arr.size} values feeds only a model of vector input of that "
                             f"length; model {model} takes input of shape {shape}")
        return np.ascontiguousarray(arr)
    chw = _to_chw(arr, shape, source)
    if len(shape) == 1:
        if chw.size != shape[0] and chw.shape[1] * chw.shape[2] == shape[0]:
            chw = _set_channels(chw, 1, source)
        if chw.size != shape[0]:
            raise InputError(source, f"image of shape {arr.shape} has {arr.size} values but model {model} "
                             f"takes {shape[0]}")
        return chw.reshape(shape)
    want_c, (h, w) = (1 if len(shape) == 2 else shape[0]), shape[-2:]
    if chw.shape[1:] != (h, w):
        raise InputError(source, f"image is {chw.shape[1]} high x {chw.shape[2]} wide but model {model} takes "
                         f"{h} high x {w} wide images; resize the images first (a model that reads any size may be added again "
                         f"with --input-shape {want_c},{chw.shape[1]},{chw.shape[2]})")
    return np.ascontiguousarray(_set_channels(chw, want_c, source).reshape(shape))


def _to_chw(arr: np.ndarray, shape: tuple[int, ...], source: str | Path) -> np.ndarray:
    if arr.ndim == 2:
        return arr[None]
    if arr.ndim != 3:
        raise InputError(source, f"an image must be 2-D or 3-D, got shape {arr.shape}")
    hw = tuple(shape[-2:]) if len(shape) >= 2 else None
    if hw and arr.shape[:2] == hw and arr.shape[2] in _CHANNEL_COUNTS:
        chw = arr.transpose(2, 0, 1)
    elif hw and arr.shape[1:] == hw and arr.shape[0] in _CHANNEL_COUNTS:
        chw = arr
    elif arr.shape[2] in _CHANNEL_COUNTS:
        chw = arr.transpose(2, 0, 1)
    elif arr.shape[0] in _CHANNEL_COUNTS:
        chw = arr
    else:
        raise InputError(source, f"cannot tell the channel axis of an image of shape {arr.shape}")
    return chw[:3] if chw.shape[0] == 4 else chw


def _set_channels(chw: np.ndarray, want: int, source: str | Path) -> np.ndarray:
    have = chw.shape[0]
    if have == want:
        return chw
    if want == 1 and have == 3:
        return np.tensordot(_LUMA, chw, axes=1)[None].astype(np.float32)
    if want == 3 and have == 1:
        return np.repeat(chw, 3, axis=0)
    raise InputError(source, f"cannot convert a {have}-channel image to {want} channels")
