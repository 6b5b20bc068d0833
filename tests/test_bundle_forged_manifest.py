"""Forged manifests (checksums rewritten to match) are refused alike by verify, inspect and apply.

A manifest that changes how inputs are prepared must fail the probe check (verify runs the probes
through the same call as apply), a field outside the values the exporter writes is refused naming
the field, and ``--old-vectors`` with a bundle that takes none is a usage error rather than ignored.
"""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from bundle_fixtures import build_upgrade_workspace

from embridge.core.adapters import save_adapter
from embridge.core.adapters.linear import AffineAdapter
from embridge.core.bundle import apply_bundle, export_bundle, verify_bundle
from embridge.core.bundle.manifest import checksums_text
from embridge.core.cli.main import main
from embridge.core.errors import InputError
from embridge.core.l2 import l2_normalize
from embridge.core.store import Workspace


def _raw_policy_run(ws: Workspace) -> int:
    """An affine v3 -> v1 layer recorded as fitted on raw (unnormalised) vectors."""
    rng = np.random.default_rng(11)
    adapter = AffineAdapter(32, 16)
    with torch.no_grad():
        adapter.weight.copy_(torch.as_tensor(rng.standard_normal((32, 16)).astype(np.float32)))
        adapter.bias.copy_(torch.as_tensor(rng.standard_normal(16).astype(np.float32)))
    run_id = ws.start_run("train", "affine", {"method": "affine", "old": "v1", "new": "v3"})
    with tempfile.TemporaryDirectory() as tmp:
        row = ws.add_adapter(run_id, "affine", "backward", 32, 16, "v1", "v3",
                             save_adapter(adapter.eval(), Path(tmp) / "affine.pt"),
                             {**adapter.config(), "input_normalised": False})
    ws.finish_run(run_id, "completed", metrics={"adapter_id": row["id"]})
    return run_id


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("forged")
    info = build_upgrade_workspace(root / "ws", with_report=False)
    runs = info["runs"]
    with Workspace.open(info["path"]) as ws:
        raw_run = _raw_policy_run(ws)
        for name, run in (("l2", runs["v3_to_v1"]), ("onnx", runs["fct"]), ("fusion", runs["fusion"]),
                          ("none", raw_run)):
            export_bundle(ws, root / f"{name}.zip", [run], gallery=False, probes=16)
    rng = np.random.default_rng(2)
    np.save(root / "q32.npy", (3.0 * rng.standard_normal((50, 32))).astype(np.float32))
    np.save(root / "old16.npy", rng.standard_normal((50, 16)).astype(np.float32))
    return {"root": root, "v3": info["vectors"]["v3"]}


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {i.filename: z.read(i.filename) for i in z.infolist()}


def _forge(src: Path, dst: Path, edit: Callable[[dict], Any], replace: dict[str, bytes] | None = None) -> Path:
    """A copy of ``src`` with its manifest edited (and members replaced), every hash rewritten to match."""
    files = _members(src)
    files.update(replace or {})
    manifest = json.loads(files["manifest.json"])
    for name, data in (replace or {}).items():
        manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    edit(manifest)
    files["manifest.json"] = json.dumps(manifest).encode()
    files["CHECKSUMS"] = checksums_text({n: hashlib.sha256(b).hexdigest() for n, b in files.items()
                                         if n != "CHECKSUMS"}).encode()
    with zipfile.ZipFile(dst, "w") as out:
        for name, data in files.items():
            out.writestr(name, data)
    return dst


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    """Exit status and the error lines of one command (progress lines left out)."""
    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, [line for line in err.splitlines() if line.startswith("embridge: error: ")]


def _set_policy(value: str) -> Callable[[dict], None]:
    def edit(m: dict) -> None:
        m["normalisation"]["input"] = value
        m["portable"]["input_normalisation"] = value

    return edit


@pytest.mark.parametrize(("name", "flipped"), [("l2", "none"), ("none", "l2"), ("onnx", "none")])
def test_a_bundle_whose_input_normalisation_was_flipped_fails_verify_and_apply(
        bundles: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, flipped: str) -> None:
    root = bundles["root"]
    assert _cli(["bundle", "verify", str(root / f"{name}.zip")], capsys) == (0, [])
    forged = _forge(root / f"{name}.zip", tmp_path / "forged.zip", _set_policy(flipped))
    before = forged.read_bytes()
    code, lines = _cli(["bundle", "verify", str(forged)], capsys)
    assert code == 1 and len(lines) == 1
    assert f"{forged}: " in lines[0] and "no longer reproduces probes/outputs.npy" in lines[0]
    out = tmp_path / "out.npy"
    code, lines = _cli(["bundle", "apply", str(forged), "--vectors", str(root / "q32.npy"), "--out", str(out)],
                       capsys)
    assert code == 1 and len(lines) == 1 and "no longer reproduces" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["forged.zip"] and forged.read_bytes() == before


def test_probe_inputs_are_stored_raw_and_old_normalised_probes_still_verify(bundles: dict, tmp_path: Path) -> None:
    root = bundles["root"]
    raw = np.load(io.BytesIO(_members(root / "l2.zip")["probes/inputs.npy"]))
    lengths = np.linalg.norm(raw, axis=1)
    assert np.all((lengths < 0.9) | (lengths > 1.1))  # unit model vectors, scaled away from length 1
    # bundles exported before the probes were stored raw hold them already normalised: still verified
    buf = io.BytesIO()
    np.save(buf, l2_normalize(raw))
    legacy = _forge(root / "l2.zip", tmp_path / "legacy.zip", lambda m: None, {"probes/inputs.npy": buf.getvalue()})
    assert verify_bundle(legacy)["ok"] is True


@pytest.mark.parametrize("value", ["l3", "L2", "", None, 2, ["l2"]])
def test_an_unknown_input_normalisation_is_refused_naming_the_field(
        bundles: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str], value: object) -> None:
    root = bundles["root"]
    forged = _forge(root / "l2.zip", tmp_path / "forged.zip", lambda m: m["normalisation"].update(input=value))
    out = tmp_path / "out.npy"
    for argv in (["bundle", "verify", str(forged)], ["bundle", "inspect", str(forged)],
                 ["bundle", "apply", str(forged), "--vectors", str(root / "q32.npy"), "--out", str(out)]):
        code, lines = _cli(argv, capsys)
        assert code == 1 and len(lines) == 1, argv
        assert "manifest.json field 'normalisation.input' must be one of 'l2', 'none'" in lines[0]
    assert not out.exists()


def _drop(*path: str | int) -> Callable[[dict], None]:
    def edit(m: dict) -> None:
        node = m
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return edit


def _put(value: object, *path: str | int) -> Callable[[dict], None]:
    def edit(m: dict) -> None:
        node: Any = m
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return edit


FORGED = [
    ("models-missing", _drop("models"), "models"),
    ("models-list", _put(["old", "new"], "models"), "models"),
    ("models-old-missing", _drop("models", "old"), "models.old"),
    ("models-new-string", _put("v3", "models", "new"), "models.new"),
    ("model-name-missing", _drop("models", "old", "name"), "models.old.name"),
    ("model-sha-number", _put(5, "models", "new", "sha256"), "models.new.sha256"),
    ("model-spec-list", _put([], "models", "new", "spec"), "models.new.spec"),
    ("chain-step-model-missing", _drop("chain", 0, "new_model"), "chain.0.new_model"),
    ("also-measured-number", _put(3, "metrics", "also_measured"), "metrics.also_measured"),
    ("report-id-string", _put("one", "report", "id"), "report.id"),
    ("protocol-number", _put(5, "metrics", "protocol"), "metrics.protocol"),  # was shown as "not recorded"
    ("source-list", _put(["x"], "metrics", "source"), "metrics.source"),
    ("run-ids-string", _put("x", "adapter", "run_ids"), "adapter.run_ids"),  # turned off the report cross-check
    ("adapter-ids-floats", _put([1.5], "adapter", "adapter_ids"), "adapter.adapter_ids"),
    ("head-dim-zero", _put(0, "adapter", "method", "head_dim"), "adapter.method.head_dim"),
    ("method-list", _put([1], "adapter", "method"), "adapter.method"),
    ("direction-unknown", _put("sideways", "adapter", "direction"), "adapter.direction"),
    ("direction-against-inputs", _put("forward", "adapter", "direction"), "adapter.direction"),
    ("metric-text", _put("x", "metrics", "values", "upgraded_top1"), "metrics.values.upgraded_top1"),
    ("output-normalisation-unknown", _put("none", "normalisation", "output"), "normalisation.output"),
    ("formula-missing", _drop("portable", "formula"), "portable.formula"),
    ("tensors-string", _put("weight", "portable", "tensors"), "portable.tensors"),
    ("policy-disagrees", _put("none", "portable", "input_normalisation"), "portable.input_normalisation"),
    ("kind-unknown", _put("nonsense", "adapter", "kind"), "adapter.kind"),  # inspect showed it as a layer
    ("kind-against-chain", _put("lowrank", "adapter", "kind"), "adapter.kind"),
    ("kind-against-runtime", lambda m: [_put("mlp", "adapter", "kind")(m), _put("mlp", "chain", 0, "kind")(m)],
     "portable.runtime"),  # a linear layer relabelled mlp verified, served by numpy
    ("metric-nan", _put(float("nan"), "metrics", "values", "upgraded_top1"), "metrics.values.upgraded_top1"),
    ("metric-share-above-one", _put(7.5, "metrics", "values", "negative_flip_rate"),
     "metrics.values.negative_flip_rate"),
    # with the checkpoint's name changed or gone, verify skipped rebuilding the layer from it: another layer's
    # adapter_state.pt passed
    ("state-file-renamed", _put("none.pt", "adapter", "state_file"), "adapter.state_file"),
    ("state-file-missing", _drop("adapter", "state_file"), "adapter.state_file"),
    # without the step's layer sha256, the checkpoint's identity went unchecked: another run's layer passed
    ("layer-sha-missing", _drop("chain", 0, "adapter_sha256"), "chain.0.adapter_sha256"),
    ("layer-sha-null", _put(None, "chain", 0, "adapter_sha256"), "chain.0.adapter_sha256"),
    ("layer-sha-short", _put("abc", "chain", 0, "adapter_sha256"), "chain.0.adapter_sha256"),
]


@pytest.mark.parametrize(("label", "edit", "field"), FORGED, ids=[f[0] for f in FORGED])
def test_a_forged_manifest_is_refused_alike_by_verify_inspect_and_apply(
        bundles: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str], label: str,
        edit: Callable[[dict], None], field: str) -> None:
    root = bundles["root"]
    forged = _forge(root / "l2.zip", tmp_path / "forged.zip", edit)
    before = forged.read_bytes()
    out = tmp_path / "out.npy"
    for argv in (["bundle", "verify", str(forged)], ["bundle", "inspect", str(forged)],
                 ["bundle", "apply", str(forged), "--vectors", str(root / "q32.npy"), "--out", str(out)]):
        code, lines = _cli(argv, capsys)
        assert code == 1 and len(lines) == 1, (argv, lines)
        assert f"{forged}: manifest.json field '{field}'" in lines[0], lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["forged.zip"] and forged.read_bytes() == before


def test_an_onnx_entry_naming_another_file_is_refused(bundles: dict, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """portable.onnx named any listed file: inspect and the 'not checked' message showed it while
    onnxruntime ran adapter.onnx."""
    forged = _forge(bundles["root"] / "onnx.zip", tmp_path / "forged.zip",
                    _put("probes/inputs.npy", "portable", "onnx"))
    for argv in (["bundle", "verify", str(forged)], ["bundle", "inspect", str(forged)]):
        code, lines = _cli(argv, capsys)
        assert code == 1 and len(lines) == 1, (argv, lines)
        assert f"{forged}: manifest.json field 'portable.onnx' must be 'adapter.onnx'" in lines[0], lines[0]


def test_old_vectors_with_a_bundle_that_takes_none_is_refused(
        bundles: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = bundles["root"]
    out = tmp_path / "out.npy"
    argv = ["bundle", "apply", str(root / "l2.zip"), "--vectors", str(root / "q32.npy"),
            "--old-vectors", str(root / "old16.npy"), "--out", str(out)]
    code, lines = _cli(argv, capsys)
    assert code == 1 and len(lines) == 1
    assert lines[0].startswith("embridge: error: --old-vectors: ") and "not a fusion bundle" in lines[0]
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == []
    with pytest.raises(InputError, match=r"^--old-vectors: .*not a fusion bundle"):
        apply_bundle(root / "l2.zip", root / "q32.npy", out, old_vectors=root / "old16.npy")
    assert not out.exists()
    # a fusion bundle takes them, and the same call succeeds
    fused = ["bundle", "apply", str(root / "fusion.zip"), "--vectors", str(root / "q32.npy"),
             "--old-vectors", str(root / "old16.npy"), "--out", str(out)]
    assert _cli(fused, capsys) == (0, []) and np.load(out).shape == (50, 16)


def test_manifest_strings_cannot_forge_or_recolour_the_inspect_output(
        bundles: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A model name holding an escape sequence and a newline printed as colour and a forged 'fake: OK'
    line; control characters are shown escaped, each on the line they belong to."""
    evil = "\x1b[31mEVIL\x1b[0m\nfake: OK"

    def rename(m: dict) -> None:  # consistently: a name the chain contradicts is refused before it is shown
        for step in m["chain"]:
            step.update({k: evil for k in ("old_model", "new_model") if step[k] == m["models"]["new"]["name"]})
        m["models"]["new"].update(name=evil)

    forged = _forge(bundles["root"] / "l2.zip", tmp_path / "forged.zip", rename)
    capsys.readouterr()
    assert main(["bundle", "inspect", str(forged)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and not any(line.startswith("fake: OK") for line in out.splitlines())
    assert "new model: \\x1b[31mEVIL\\x1b[0m\\nfake: OK (" in out
