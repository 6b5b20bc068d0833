"""Tampered and hostile bundles fail loudly with a BundleError that names the file."""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from bundle_fixtures import build_upgrade_workspace

from embridge.core.bundle import BundleLimits, export_bundle, inspect_bundle, load_bundle, verify_bundle
from embridge.core.bundle.manifest import checksums_text
from embridge.core.cli.main import main
from embridge.core.errors import BundleError, InputError
from embridge.core.store import Workspace
from embridge.core.store.files import sha256_file, torch_bytes


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("safety")
    info = build_upgrade_workspace(root / "ws")
    with Workspace.open(info["path"]) as ws:
        export_bundle(ws, root / "bundle", [info["runs"]["v3_to_v1"]])
        export_bundle(ws, root / "bundle.zip", [info["runs"]["v3_to_v1"]])
        export_bundle(ws, root / "other", [info["runs"]["v2_to_v1"]])
    return {"folder": root / "bundle", "zip": root / "bundle.zip", "other": root / "other"}


@pytest.fixture
def folder(exported: dict[str, Any], tmp_path: Path) -> Path:
    target = tmp_path / "bundle"
    shutil.copytree(exported["folder"], target)
    return target


def _flip_byte(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    at = len(data) // 2 if offset is None else offset
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("name", ["adapter.pt", "probes/inputs.npy", "probes/outputs.npy", "report.json",
                                  "adapter_state.pt", "README.md"])
def test_a_changed_byte_is_caught_naming_the_file(folder: Path, name: str) -> None:
    verify_bundle(folder)  # intact copy passes
    _flip_byte(folder / name)
    with pytest.raises(BundleError, match=rf"{name}.*(changed after export|sha256)"):
        verify_bundle(folder)
    with pytest.raises(BundleError, match=name):
        load_bundle(folder)


def test_missing_and_extra_files_are_caught(folder: Path) -> None:
    (folder / "report.html").unlink()
    with pytest.raises(BundleError, match=r"report\.html is listed in the manifest but missing"):
        verify_bundle(folder)
    shutil.copyfile(folder / "README.md", folder / "report.html")
    with pytest.raises(BundleError, match=r"report\.html was changed after export"):
        verify_bundle(folder)


def test_an_extra_unlisted_file_is_caught(folder: Path) -> None:
    (folder / "probes" / "notes.txt").write_text("added later")
    with pytest.raises(BundleError, match=r"probes/notes\.txt is not listed in the manifest"):
        verify_bundle(folder)


def test_an_edited_manifest_is_caught(folder: Path) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["metrics"]["values"]["upgraded_top1"] = 0.99
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    with pytest.raises(BundleError, match=r"manifest\.json was edited after export"):
        verify_bundle(folder)
    (folder / "CHECKSUMS").unlink()
    with pytest.raises(BundleError, match="CHECKSUMS is missing"):
        verify_bundle(folder)


def _rewrite_checksums(folder: Path, manifest: dict[str, Any]) -> None:
    """What a careful forger would do: keep both lists consistent."""
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    sums = {name: e["sha256"] for name, e in manifest["files"].items()}
    sums["manifest.json"] = sha256_file(folder / "manifest.json")
    (folder / "CHECKSUMS").write_text(checksums_text(sums))


def test_a_swapped_adapter_with_rewritten_hashes_fails_the_probes(folder: Path, exported: dict) -> None:
    shutil.copyfile(exported["other"] / "adapter.pt", folder / "adapter.pt")  # 24-d input, not 32-d
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["adapter.pt"]["sha256"] = sha256_file(folder / "adapter.pt")
    manifest["files"]["adapter.pt"]["bytes"] = (folder / "adapter.pt").stat().st_size
    _rewrite_checksums(folder, manifest)
    with pytest.raises(BundleError, match=r"adapter\.pt"):
        verify_bundle(folder)
    # a same-shape adapter that computes something else: scale the weights slightly
    module = torch.jit.load(str(exported["folder"] / "adapter.pt"))
    with torch.no_grad():
        for p in module.parameters():
            p.mul_(1.01)
        for b in module.buffers():
            b.mul_(1.01)
    torch.jit.save(module, str(folder / "adapter.pt"))
    manifest["files"]["adapter.pt"] = {"sha256": sha256_file(folder / "adapter.pt"),
                                       "bytes": (folder / "adapter.pt").stat().st_size}
    _rewrite_checksums(folder, manifest)
    with pytest.raises(BundleError, match=r"adapter\.pt no longer reproduces probes/outputs\.npy"):
        verify_bundle(folder)


def test_a_changed_checkpoint_with_rewritten_hashes_is_caught(folder: Path, exported: dict) -> None:
    """adapter_state.pt is what Embridge loads (and training continues from); no runtime ran it, so one edited
    with every hash rewritten passed verify. A one-layer bundle's checkpoint is the workspace's file, whose
    sha256 the manifest records."""
    state = torch.load(folder / "adapter_state.pt", map_location="cpu", weights_only=True)
    verify_bundle(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["chain"][0]["adapter_sha256"] == sha256_file(folder / "adapter_state.pt")
    for name, value in state["state_dict"].items():
        if value.is_floating_point():
            state["state_dict"][name] = value * 1.01
    (folder / "adapter_state.pt").write_bytes(torch_bytes(state))
    manifest["files"]["adapter_state.pt"] = {"sha256": sha256_file(folder / "adapter_state.pt"),
                                             "bytes": (folder / "adapter_state.pt").stat().st_size}
    _rewrite_checksums(folder, manifest)
    with pytest.raises(BundleError, match=r"adapter_state\.pt is not the layer the manifest describes"):
        verify_bundle(folder)


def test_another_runs_whole_layer_with_rewritten_hashes_is_caught(folder: Path, exported: dict) -> None:
    """Every file of another run's layer (runtime files, checkpoint, probe outputs) copied in with the hashes
    rewritten reproduced its own probes and passed, under the first run's id, metrics and report."""
    manifest = json.loads((folder / "manifest.json").read_text())
    layer_files = [n for n in manifest["files"] if n.startswith("adapter") or n == "probes/outputs.npy"]
    assert "adapter_state.pt" in layer_files and "adapter.pt" in layer_files
    for name in layer_files:
        shutil.copyfile(exported["other"] / name, folder / name)
        manifest["files"][name] = {"sha256": sha256_file(folder / name), "bytes": (folder / name).stat().st_size}
    _rewrite_checksums(folder, manifest)
    with pytest.raises(BundleError, match=r"adapter_state\.pt is not the layer the manifest describes .*run "
                                          rf"{manifest['chain'][0]['run_id']}'s layer"):
        verify_bundle(folder)


def test_models_swapped_in_the_manifest_with_rewritten_hashes_are_caught(folder: Path) -> None:
    """inspect and the README print ``models``: swapped, they told users to embed queries with the old model."""
    manifest = json.loads((folder / "manifest.json").read_text())
    old, new = manifest["models"]["old"]["name"], manifest["models"]["new"]["name"]
    manifest["models"]["old"]["name"], manifest["models"]["new"]["name"] = new, old
    _rewrite_checksums(folder, manifest)
    with pytest.raises(BundleError, match=rf"field 'models\.old\.name' says '{new}', but the chain's layers map between "
                                          rf"'{new}' \(new\) and '{old}' \(old\)"):
        verify_bundle(folder)


def test_model_widths_and_an_empty_chain_in_a_forged_manifest_are_caught(folder: Path) -> None:
    """inspect printed 'old model: ... (999-d)' under '64 -> 32 dims', and an empty chain turned the
    kind and model cross-checks off, so a manifest naming the new model as both passed verify."""
    original = json.loads((folder / "manifest.json").read_text())
    inp, out = original["adapter"]["in_dim"], original["adapter"]["out_dim"]
    manifest = json.loads(json.dumps(original))
    manifest["models"]["old"]["dim"] = 999
    _rewrite_checksums(folder, manifest)
    with pytest.raises(BundleError, match=rf"field 'models\.old\.dim' says 999, but the layer's out_dim is {out}"):
        verify_bundle(folder)
    manifest = json.loads(json.dumps(original))
    manifest["models"]["new"]["dim"] = inp + 1
    _rewrite_checksums(folder, manifest)
    with pytest.raises(BundleError, match=rf"field 'models\.new\.dim' says {inp + 1}, but the layer's in_dim is {inp}"):
        verify_bundle(folder)
    manifest = json.loads(json.dumps(original))
    manifest["chain"], manifest["models"]["old"] = [], manifest["models"]["new"]
    _rewrite_checksums(folder, manifest)
    with pytest.raises(BundleError, match=r"field 'chain' lists no step"):
        verify_bundle(folder)
    _rewrite_checksums(folder, original)
    verify_bundle(folder)


def test_unsupported_format_version_is_refused(folder: Path) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["format_version"] = 3
    _rewrite_checksums(folder, manifest)
    with pytest.raises(BundleError, match="bundle format 3 is not supported"):
        verify_bundle(folder)


def test_a_changed_member_inside_the_zip_is_caught(exported: dict, tmp_path: Path) -> None:
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(exported["zip"]) as src, zipfile.ZipFile(tampered, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "probes/inputs.npy":
                array = np.load(io.BytesIO(data))
                array[0, 0] += 1e-3
                buf = io.BytesIO()
                np.save(buf, array)
                data = buf.getvalue()
            dst.writestr(info.filename, data)
    verify_bundle(exported["zip"])
    with pytest.raises(BundleError, match=r"probes/inputs\.npy was changed after export"):
        verify_bundle(tampered)


@pytest.mark.parametrize("member", ["CHECKSUMS", "manifest.json"])
def test_a_flipped_byte_in_the_zips_checksums_or_manifest_is_one_line(exported: dict, tmp_path: Path, member: str,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """These two are read before any hash is checked, so zipfile's CRC error escaped as a crash (exit 3)."""
    raw = bytearray(exported["zip"].read_bytes())
    info = zipfile.ZipFile(exported["zip"]).getinfo(member)
    start = info.header_offset + 30 + int.from_bytes(raw[info.header_offset + 26:info.header_offset + 28], "little") \
        + int.from_bytes(raw[info.header_offset + 28:info.header_offset + 30], "little")
    raw[start + info.compress_size // 2] ^= 0x01
    damaged = tmp_path / "damaged.zip"
    damaged.write_bytes(bytes(raw))
    vectors = tmp_path / "in.npy"
    np.save(vectors, np.ones((2, json.loads(zipfile.ZipFile(exported["zip"]).read("manifest.json"))["adapter"]
                                 ["in_dim"]), dtype=np.float32))
    inspect = [["bundle", "inspect", str(damaged)]] if member == "manifest.json" else []  # it reads no CHECKSUMS
    for argv in (["bundle", "verify", str(damaged)], *inspect,
                 ["bundle", "apply", str(damaged), "--vectors", str(vectors), "--out", str(tmp_path / "out.npy")]):
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and f"{member} is corrupt in the archive" in err, err


def _zip_with(path: Path, source: Path, extra: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        for name, data in extra:
            dst.writestr(name, data)
    return path


def _symlink_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize(("member", "message"), [
    ("../evil", "points outside the bundle"),
    ("probes/../../evil", "points outside the bundle"),
    ("/etc/evil", "absolute path"),
    ("C:/evil", "absolute path"),
    ("probes\\..\\evil", "backslash"),
])
def test_unsafe_member_names_are_refused(exported: dict, tmp_path: Path, member: str, message: str) -> None:
    hostile = _zip_with(tmp_path / "hostile.zip", exported["zip"], [(member, b"x")])
    for action in (verify_bundle, inspect_bundle, load_bundle):
        with pytest.raises(BundleError, match=message):
            action(hostile)
    assert not (tmp_path.parent / "evil").exists()


def test_symlink_members_and_folders_with_links_are_refused(exported: dict, folder: Path, tmp_path: Path) -> None:
    hostile = _zip_with(tmp_path / "link.zip", exported["zip"], [(_symlink_info("probes/link"), b"/etc/passwd")])
    with pytest.raises(BundleError, match="probes/link is a symbolic link"):
        verify_bundle(hostile)
    (folder / "probes" / "link").symlink_to("/etc/passwd")
    with pytest.raises(BundleError, match="probes/link is a symbolic link"):
        verify_bundle(folder)


def test_oversize_members_and_zip_bombs_are_refused(exported: dict, tmp_path: Path) -> None:
    bomb = _zip_with(tmp_path / "bomb.zip", exported["zip"], [("probes/zeros.bin", bytes(20 << 20))])
    assert bomb.stat().st_size < 1 << 20  # 20 MiB of zeros compress to a few KiB
    with pytest.raises(BundleError, match=r"probes/zeros\.bin is \d+ bytes, over the \d+-byte cap per file"):
        verify_bundle(bomb, BundleLimits(max_member_bytes=8 << 20))
    with pytest.raises(BundleError, match="possible zip bomb"):
        inspect_bundle(bomb, BundleLimits(max_total_bytes=10 << 20))
    with pytest.raises(BundleError, match=r"probes/zeros\.bin is not listed"):  # within the caps: still extra
        verify_bundle(bomb)


def test_duplicate_members_and_non_bundles_are_refused(exported: dict, tmp_path: Path) -> None:
    with zipfile.ZipFile(exported["zip"]) as src:
        readme = src.read("README.md")
    dup = tmp_path / "dup.zip"
    shutil.copyfile(exported["zip"], dup)
    with pytest.warns(UserWarning), zipfile.ZipFile(dup, "a") as zf:
        zf.writestr("README.md", readme + b"!")
    with pytest.raises(BundleError, match="README.md appears twice"):
        verify_bundle(dup)
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(BundleError, match="not a bundle"):
        verify_bundle(junk)
    with pytest.raises(BundleError, match="no such bundle"):
        verify_bundle(tmp_path / "missing.zip")


def test_a_fifo_is_named_as_such_not_as_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Reading a FIFO would block: it is refused by its kind before anything opens it."""
    fifo = tmp_path / "f.zip"
    os.mkfifo(fifo)
    for action in (verify_bundle, inspect_bundle, load_bundle):
        with pytest.raises(InputError, match=r"f\.zip: is a FIFO \(named pipe\); the bundle must be a regular file"):
            action(fifo)
    assert main(["bundle", "verify", str(fifo)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and "is a FIFO" in captured.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.zip"]
