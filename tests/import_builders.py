"""Builders of hostile import inputs (vector files, id lists, CSV/JSONL, image folders) for the corpus.

Each returns the path (or name) the one-line error must mention; see ``badinputs.py``.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
from badinput_builders import Env, image_folder, png, write

from embridge.core.errors import printable


# -- vector files -----------------------------------------------------------------------------
def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


def header_only(shape: tuple[int, ...], descr: str) -> bytes:
    """An .npy header declaring ``shape`` of ``descr`` with no data behind it."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def raw_npz(path: Path, members: dict[str, bytes], compress: int = zipfile.ZIP_DEFLATED) -> Path:
    """An .npz written member by member, so headers can say anything."""
    with zipfile.ZipFile(path, "w", compress) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def npz_arrays(path: Path, ids: np.ndarray, vectors: np.ndarray) -> Path:
    """ids and vectors exactly as given (any dtype or shape), objects included."""
    return raw_npz(path, {"ids.npy": npy_bytes(ids), "vectors.npy": npy_bytes(vectors)})


def zero_byte_ids(env: Env, rows: int, vector_rows: int, width: int = 16) -> Path:
    """A few hundred bytes: ids of dtype <U0 claiming ``rows`` keys (0 bytes of data each)."""
    vectors = npy_bytes(np.ones((vector_rows, width), np.float32)) if width else header_only((vector_rows, 0), "<f4")
    return raw_npz(env.inputs / f"zero-ids-{rows}.npz", {"ids.npy": header_only((rows,), "<U0"),
                                                       "vectors.npy": vectors})


def forged_member_size(env: Env, name: str, compress: int, size: int) -> Path:
    """A good .npz whose central directory claims ``size`` bytes for ids.npy."""
    path = raw_npz(env.inputs / name, {"ids.npy": npy_bytes(np.array(["new-0", "new-1"])),
                                       "vectors.npy": npy_bytes(np.ones((2, 16), np.float32))}, compress)
    data = bytearray(path.read_bytes())
    at = data.index(b"PK\x01\x02")
    while bytes(data[at + 46:at + 46 + 7]) != b"ids.npy":
        name_len, extra_len, comment_len = struct.unpack("<HHH", data[at + 28:at + 34])
        at += 46 + name_len + extra_len + comment_len
    data[at + 24:at + 28] = struct.pack("<I", size)
    return write(path, bytes(data))


def ids_file_case(env: Env, text: str | bytes, name: str = "ids.txt", rows: int = 2) -> Path:
    """``vec.npy`` of ``rows`` rows and an id list with the given content; returns the id list."""
    np.save(env.inputs / "vec.npy", np.ones((rows, 16), np.float32))
    return write(env.inputs / name, text)


def huge_float64(env: Env, name: str = "big64.npz") -> Path:
    vectors = np.ones((2, 16))
    vectors[1, 3] = 1e39  # finite in float64, infinite in float32
    np.savez(env.inputs / name, ids=np.array(["new-0", "new-1"]), vectors=vectors)
    return env.inputs / name


def with_existing_key(env: Env, key: str) -> None:
    """Add one item with ``key`` to the workspace copy (before the snapshot)."""
    from embridge.core.store import Workspace

    with Workspace.open(env.ws) as ws:
        ws.add_items([{"key": key, "text": "seed", "modality": "text"}], source="seed")


# -- images -----------------------------------------------------------------------------------
def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(path: Path, width: int, height: int, real_data: bool = True) -> Path:
    """A grey PNG of ``width`` x ``height`` zeros: a few kB of file, ``width * height`` bytes decoded."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    if real_data:
        comp = zlib.compressobj(9)
        row = b"\0" * (width + 1)
        idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    else:
        idat = zlib.compress(b"\0" * 64)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write(path, b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat)
                 + png_chunk(b"IEND", b""))


def bad_image(env: Env, folder: str, name: str, data: bytes) -> Path:
    root = image_folder(env, folder)
    return write(root / "dog" / name, data)


def truncated_png(env: Env) -> Path:
    root = image_folder(env, "cut-png")
    good = png(root / "dog" / "big.png", 0)
    from PIL import Image

    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8), mode="L").save(good)
    return write(good, good.read_bytes()[:300])


def truncated_jpeg(env: Env) -> Path:
    from PIL import Image

    root = image_folder(env, "cut-jpg")
    path = root / "dog" / "photo.jpg"
    rng = np.random.default_rng(4)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), mode="RGB").save(path, quality=90)
    return write(path, path.read_bytes()[:600])


def folder_links_to_root(env: Env) -> Path:
    root = image_folder(env, "loop")
    (root / "again").symlink_to(root, target_is_directory=True)
    return root / "again"


def nested_link_to_label(env: Env) -> Path:
    root = image_folder(env, "nested-loop")
    (root / "cat" / "more").symlink_to(root / "dog", target_is_directory=True)
    return root / "dog"


def npy_image(env: Env, folder: str, name: str, raw: bytes) -> Path:
    root = image_folder(env, folder)
    return write(root / "dog" / name, raw)


def odd_named_image(env: Env, folder: str, label: str, name: str) -> str:
    root = image_folder(env, folder)
    png(root / label / name, 5)
    return printable(str(root / label / name))


def look_alike_images(env: Env) -> Path:
    root = image_folder(env, "lookalike")
    png(root / "cat" / "caf\u00e9.png", 1)
    png(root / "cat" / "cafe\u0301.png", 2)
    return root


def only_hidden_images(env: Env) -> Path:
    root = env.inputs / "hidden"
    png(root / "cat" / ".thumb.png", 1)
    return root
