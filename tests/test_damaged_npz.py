"""A damaged ``.npz`` is refused with one line naming the member, and nothing is stored.

A vector member that ``np.savez`` stored uncompressed is memory-mapped, so zipfile never checked
its CRC-32: one flipped exponent byte (1.8 read as 9.7e21, a finite value) was stored by ``model add`` and
``embed``, or by an attach, without a word. A damaged deflate stream or CRC of a member that
``np.savez_compressed`` wrote ended the command as a crash (exit 3).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers.vector_workspaces import gallery_workspace
from helpers.workspace_files import snapshot, table_dump

from embridge.core.cli.main import main

ROWS, DIM = 300, 24


def _member_data_start(path: Path, member: str) -> int:
    """Where the member's bytes (its .npy header first) start in the archive."""
    info = zipfile.ZipFile(path).getinfo(member)
    raw = path.read_bytes()
    at = info.header_offset
    name_len, extra_len = int.from_bytes(raw[at + 26:at + 28], "little"), int.from_bytes(raw[at + 28:at + 30], "little")
    return at + 30 + name_len + extra_len


@pytest.fixture
def workspace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, list[str], np.ndarray]:
    keys = [f"doc{i}" for i in range(ROWS)]
    vectors = np.random.default_rng(0).normal(size=(ROWS, DIM)).astype(np.float32)
    np.savez(tmp_path / "old.npz", ids=np.array(keys), vectors=vectors)
    np.savez(tmp_path / "good.npz", ids=np.array(keys), vectors=vectors[:, :16])
    ws = tmp_path / "ws"
    w = gallery_workspace(ws, tmp_path / "old.npz")
    assert main(["model", "add", *w, "--name", "new", "--path", str(tmp_path / "good.npz"), "--role", "new"]) == 0
    capsys.readouterr()
    return ws, keys, vectors


def _refused(argv: list[str], ws: Path, capsys: pytest.CaptureFixture[str]) -> str:
    before = snapshot(ws), table_dump(ws)
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert (snapshot(ws), table_dump(ws)) == before  # nothing stored changed
    return err


def test_a_flipped_byte_in_a_stored_member_is_refused_not_stored(workspace: tuple[Path, list[str], np.ndarray],
                                                                 tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    ws, keys, vectors = workspace
    bad = tmp_path / "new.npz"
    np.savez(bad, ids=np.array(keys), vectors=vectors[:, :16] * 2)
    raw = bytearray(bad.read_bytes())
    start = _member_data_start(bad, "vectors.npy")
    data = start + 10 + int.from_bytes(raw[start + 8:start + 10], "little")  # after the .npy header
    raw[data + 16 * 4 + 3] ^= 0x1E  # the exponent byte of row 1, column 0
    bad.write_bytes(bytes(raw))
    damaged = float(np.frombuffer(bytes(raw[data + 64:data + 68]), "<f4")[0])
    assert not np.isclose(damaged, vectors[1, 0] * 2, rtol=1e-3)  # a finite value, far from the one written
    w = ["--workspace", str(ws)]
    for argv in (["model", "add", *w, "--name", "other", "--path", str(bad)],  # reads every row
                 ["import", *w, "--format", "vectors", "--path", str(bad), "--model", "new"]):  # an attach
        err = _refused(argv, ws, capsys)
        assert str(bad) in err and "member vectors.npy is damaged" in err and "CRC-32" in err, err


@pytest.mark.parametrize("damage", ["deflate stream", "crc"])
def test_a_damaged_compressed_member_is_one_line_not_a_crash(workspace: tuple[Path, list[str], np.ndarray],
                                                            tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            damage: str) -> None:
    ws, keys, vectors = workspace
    bad = tmp_path / "new.npz"
    np.savez_compressed(bad, ids=np.array(keys), vectors=vectors[:, :16] * 2)
    raw = bytearray(bad.read_bytes())
    info = zipfile.ZipFile(bad).getinfo("vectors.npy")
    start = _member_data_start(bad, "vectors.npy")
    if damage == "crc":  # the stream decodes, its bytes differ from those recorded
        crc_at = info.header_offset + 14
        raw[crc_at] ^= 0xFF
        central = raw.rfind(b"PK\x01\x02", 0, len(raw))
        while central >= 0 and raw[central + 46:central + 46 + len(info.filename)] != info.filename.encode():
            central = raw.rfind(b"PK\x01\x02", 0, central)
        raw[central + 16] ^= 0xFF  # the central directory's copy too (zipfile reads that one)
    else:
        raw[start + info.compress_size // 2:start + info.compress_size // 2 + 16] = b"\xff" * 16
    bad.write_bytes(bytes(raw))
    w = ["--workspace", str(ws)]
    for argv in (["model", "add", *w, "--name", "other", "--path", str(bad)],  # reads every row
                 ["import", *w, "--format", "vectors", "--path", str(bad), "--model", "new"]):  # an attach
        err = _refused(argv, ws, capsys)
        assert str(bad) in err and "unexpected" not in err, err
