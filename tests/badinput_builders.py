"""Builders of malformed inputs for the corpus in ``badinputs.py``.

Each builder writes one bad input under an :class:`Env` (a workspace copy, an inputs folder and a
good bundle to damage) and returns the path the resulting error must name.
"""

from __future__ import annotations

import hashlib
import io
import json
import pathlib
import pickle
import sqlite3
import stat
import struct
import zipfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MLP_CONFIG = {"input_dim": 8, "out_dim": 4}


@dataclass
class Env:
    """Where a case builds: ``ws`` (a workspace copy), ``inputs``, a good ``bundle`` to damage."""

    root: Path
    ws: Path
    inputs: Path
    bundle: Path
    stack: ExitStack = field(default_factory=ExitStack)  # closed after the command (releases locks)
    environ: dict[str, str] = field(default_factory=dict)  # variables set while the command runs


class TouchOnLoad:
    """Unpickling this creates ``marker``: proof that loading ran code, if the file ever appears."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


# -- checkpoints ------------------------------------------------------------------------------
def cut_after_zipped_member(env: Env, name: str = "adapter.pt") -> Path:
    """The bundle cut right after a stored member that is a zip itself (TorchScript's adapter.pt): a zip
    reader then finds that member's own list of files at the end and takes it for the bundle's."""
    stored = rezip(env, "stored.zip", compress=zipfile.ZIP_STORED)  # as `bundle export` stores tensor files
    with zipfile.ZipFile(stored) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith(name))
    data = stored.read_bytes()
    stored.unlink()
    start = info.header_offset + 30 + int.from_bytes(data[info.header_offset + 26:info.header_offset + 28], "little") \
        + int.from_bytes(data[info.header_offset + 28:info.header_offset + 30], "little")
    return write(env.inputs / "cut-in-member.zip", data[:start + info.compress_size])


def write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def state_checkpoint(path: Path, config: dict | None = None, nan: bool = False) -> Path:
    import torch

    from embridge.core.models import build_model, save_checkpoint

    model = build_model("mlp", MLP_CONFIG)[0]
    if nan:
        with torch.no_grad():
            next(model.parameters()).fill_(float("nan"))
    save_checkpoint(path, model, "mlp", config or MLP_CONFIG)
    return path


def scripted(path: Path, mode: str = "ok") -> Path:
    from odd_models import scripted_model

    return scripted_model(path, mode)


def truncated(path: Path) -> Path:
    data = path.read_bytes()
    return write(path, data[: len(data) * 2 // 3])


def code_pickle(env: Env, with_torch: bool) -> Path:
    payload = {"state_dict": TouchOnLoad(env.inputs / "code-ran")}
    path = env.inputs / ("evil.pt" if with_torch else "evil-pickle.pt")
    if with_torch:
        import torch

        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=4))
    return path


def list_payload(env: Env) -> Path:
    import torch

    torch.save([torch.zeros(2)], env.inputs / "list.pt")
    return env.inputs / "list.pt"


def unknown_arch(env: Env) -> Path:
    import torch

    from embridge.core.models import build_model

    path = env.inputs / "arch.pt"
    torch.save({"format": 1, "arch": "resnet9000", "arch_config": {},
                "state_dict": build_model("mlp", MLP_CONFIG)[0].state_dict()}, path)
    return path


# -- vector files -----------------------------------------------------------------------------
def npz(path: Path, vectors: np.ndarray, ids: list[str] | None = None, **extra: np.ndarray) -> Path:
    keys = ids if ids is not None else [f"new-{i}" for i in range(len(vectors))]
    np.savez(path, ids=np.array(keys), vectors=vectors, **extra)
    return path


def npz_with_edited_ids(path: Path, edit: str) -> Path:
    """A valid 2 x 16 ``.npz`` whose ``ids`` member is then edited: ``codepoint`` (its text holds a code unit
    beyond U+10FFFF), ``method`` (a zip compression method Python cannot read) or ``encrypted`` (the flag set)."""
    import struct

    if edit == "codepoint":
        ids = np.array(["a", "b"])
        raw = bytearray(ids.tobytes())
        raw[4:8] = struct.pack("<I", 0x110000)
        ids = np.frombuffer(bytes(raw), dtype=ids.dtype)
    else:
        ids = np.array(["a", "b"])
    np.savez(path, ids=ids, vectors=np.ones((2, 16), dtype=np.float32))
    if edit in ("method", "encrypted"):
        data = bytearray(path.read_bytes())
        name = b"ids.npy"
        for sig, flag_at, method_at, name_at in ((b"PK\x03\x04", 6, 8, 30), (b"PK\x01\x02", 8, 10, 46)):
            at = data.find(sig)
            while at >= 0:
                if data[at + name_at:at + name_at + len(name)] == name:
                    if edit == "method":
                        data[at + method_at:at + method_at + 2] = struct.pack("<H", 93)
                    else:
                        data[at + flag_at] |= 0x1
                at = data.find(sig, at + 4)
        path.write_bytes(bytes(data))
    return path


def bad_values(value: float) -> np.ndarray:
    vectors = np.ones((4, 16), dtype=np.float32)
    vectors[2, 5] = value
    return vectors


def npy_header(shape: tuple[int, ...], data: bytes = b"\0" * 64, pad_header: int = 0) -> bytes:
    buf = io.BytesIO()
    header = {"descr": "<f4", "fortran_order": False, "shape": shape}
    if pad_header:  # a legal but enormous header (a giant dict string)
        text = repr(header)[:-1] + ", 'pad': '" + "x" * pad_header + "'}"
        text += " " * (-(len(text) + 11) % 64) + "\n"
        buf.write(b"\x93NUMPY\x02\x00" + struct.pack("<I", len(text)) + text.encode("latin1"))
    else:
        np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + data


def npy_with_ids(env: Env, name: str, raw: bytes) -> Path:
    (env.inputs / "ids.txt").write_text("new-0\nnew-1\n")
    return write(env.inputs / name, raw)


def huge_npz(env: Env) -> Path:
    path = env.inputs / "huge.npz"
    ids = io.BytesIO()
    np.save(ids, np.array(["a", "b"]))
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("vectors.npy", npy_header((10**12, 10**6)))
        zf.writestr("ids.npy", ids.getvalue())
    return path


# -- items ------------------------------------------------------------------------------------
def png(path: Path, value: int = 0) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((4, 4), value, dtype=np.uint8), mode="L").save(path)
    return path


def image_folder(env: Env, name: str) -> Path:
    root = env.inputs / name
    for label in ("cat", "dog"):
        png(root / label / "0.png", 10)
    return root


def symlinked_file(env: Env) -> Path:
    root = image_folder(env, "linked")
    secret = png(env.root / "outside" / "secret.png", 99)
    (root / "cat" / "evil.png").symlink_to(secret)
    return root / "cat" / "evil.png"


def symlinked_label(env: Env) -> Path:
    root = image_folder(env, "linked-label")
    png(env.root / "elsewhere" / "x.png", 7)
    (root / "bird").symlink_to(env.root / "elsewhere", target_is_directory=True)
    return root / "bird"


def loose_images(env: Env) -> Path:
    root = image_folder(env, "loose")
    png(root / "stray.png")
    return root


def empty_label_folder(env: Env) -> Path:
    (env.inputs / "empty-imgs" / "label").mkdir(parents=True)
    return env.inputs / "empty-imgs"


def empty_image(env: Env) -> Path:
    root = image_folder(env, "zero")
    return write(root / "dog" / "1.png", b"")


# -- bundles ----------------------------------------------------------------------------------
def rezip(env: Env, name: str, replace: dict[str, bytes] | None = None, drop: tuple[str, ...] = (),
           extra: list[tuple[zipfile.ZipInfo | str, bytes]] = (), compress: int = zipfile.ZIP_DEFLATED) -> Path:
    """A copy of the good bundle with members replaced, dropped or added."""
    out = env.inputs / name
    with zipfile.ZipFile(env.bundle) as src, zipfile.ZipFile(out, "w", compress) as dst:
        for info in src.infolist():
            if info.filename not in drop:
                dst.writestr(info.filename, (replace or {}).get(info.filename, src.read(info)))
        for member, data in extra:
            dst.writestr(member, data)
    return out


def forged(env: Env, name: str, manifest_edit: Callable[[dict], None] | None = None,
            files: dict[str, bytes] | None = None) -> Path:
    """A bundle changed the way a careful forger would: manifest and CHECKSUMS rewritten to match."""
    with zipfile.ZipFile(env.bundle) as src:
        members = {i.filename: src.read(i) for i in src.infolist()}
    members.update(files or {})
    manifest = json.loads(members["manifest.json"])
    for member, data in (files or {}).items():
        manifest["files"][member] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    if manifest_edit:
        manifest_edit(manifest)
    return with_manifest(env, name, members, json.dumps(manifest, indent=2, sort_keys=True).encode(),
                         manifest["files"])


def with_manifest(env: Env, name: str, members: dict[str, bytes], manifest: bytes,
                  listed: dict[str, dict]) -> Path:
    """The bundle ``members`` zipped with ``manifest`` as manifest.json and CHECKSUMS rewritten to match."""
    from embridge.core.bundle.manifest import checksums_text

    members = {**members, "manifest.json": manifest}
    sums = {n: e["sha256"] for n, e in listed.items()}
    sums["manifest.json"] = hashlib.sha256(manifest).hexdigest()
    members["CHECKSUMS"] = checksums_text(sums).encode()
    out = env.inputs / name
    with zipfile.ZipFile(out, "w") as dst:
        for member, data in members.items():
            dst.writestr(member, data)
    return out


def claims_huge_size(env: Env) -> Path:
    """The good bundle with one central-directory entry rewritten to claim 1 PiB (a zip64 size field)."""
    data = bytearray(env.bundle.read_bytes())
    name = b"probes/inputs.npy"
    at = data.index(b"PK\x01\x02")
    while bytes(data[at + 46:at + 46 + len(name)]) != name:  # walk the central directory to the member
        name_len, extra_len, comment_len = struct.unpack("<HHH", data[at + 28:at + 34])
        at += 46 + name_len + extra_len + comment_len
    name_len, extra_len = struct.unpack("<HH", data[at + 28:at + 32])
    data[at + 24:at + 28] = b"\xff\xff\xff\xff"  # uncompressed size: see the zip64 extra field
    data[at + 30:at + 32] = struct.pack("<H", extra_len + 12)
    data[at + 46 + name_len:at + 46 + name_len] = struct.pack("<HHQ", 1, 8, 1 << 50)
    end = data.rindex(b"PK\x05\x06")
    (cd_size,) = struct.unpack("<I", data[end + 12:end + 16])
    data[end + 12:end + 16] = struct.pack("<I", cd_size + 12)
    return write(env.inputs / "claims.zip", bytes(data))


def symlink_member(env: Env) -> Path:
    info = zipfile.ZipInfo("probes/link")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return rezip(env, "link.zip", extra=[(info, b"/etc/passwd")])


def flip_byte(env: Env) -> Path:
    with zipfile.ZipFile(env.bundle) as src:
        adapter = bytearray(src.read("adapter.pt"))
    adapter[len(adapter) // 2] ^= 1
    return rezip(env, "tampered.zip", replace={"adapter.pt": bytes(adapter)})


def duplicate_member(env: Env) -> Path:
    import warnings

    out = rezip(env, "dup.zip")
    with warnings.catch_warnings(), zipfile.ZipFile(out, "a") as zf:
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name we want
        zf.writestr("README.md", b"a second README")
    return out


def apply_input(env: Env, name: str, vectors: np.ndarray) -> Path:
    np.save(env.inputs / name, vectors)
    return env.inputs / name


# -- the workspace database -------------------------------------------------------------------
def db(env: Env) -> Path:
    return env.ws / "embridge.db"


def edit_db(env: Env, sql: str) -> Path:
    conn = sqlite3.connect(db(env))
    conn.execute(sql)
    conn.commit()
    conn.close()  # the last connection checkpoints and removes the WAL
    return db(env)


def foreign_db(env: Env) -> Path:
    db(env).unlink()
    conn = sqlite3.connect(db(env))
    conn.execute("create table notes (id integer primary key, body text)")
    conn.commit()
    conn.close()
    return db(env)


def locked_db(env: Env) -> Path:
    """Another connection holds a write transaction while the command tries to import."""
    write(env.inputs / "good.csv", "key,text\nfresh-1,hello\n")
    holder = sqlite3.connect(db(env), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    env.stack.callback(holder.close)
    env.stack.callback(holder.execute, "ROLLBACK")
    env.environ["EMBRIDGE_BUSY_TIMEOUT"] = "0.2"
    return db(env)


def tampered_vectors(env: Env) -> Path:
    conn = sqlite3.connect(db(env))
    (file,) = conn.execute("select v.file from vector_sets v join models m on m.id = v.model_id "
                           "where m.name = 'v1' limit 1").fetchone()
    conn.close()
    path = env.ws / file
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x20
    return write(path, bytes(data))


def no_workspace(env: Env) -> Path:
    (env.inputs / "plain").mkdir()
    write(env.inputs / "plain" / "notes.txt", "not a workspace")
    return env.inputs / "plain"


def savez_bytes(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def nan_rows(dim: int) -> np.ndarray:
    vectors = np.ones((3, dim), dtype=np.float32)
    vectors[1, 0] = np.nan
    return vectors


