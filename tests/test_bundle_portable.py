"""Torch-free bundles: ``adapter.safetensors`` (numpy, linear kinds) and ``adapter.onnx`` (onnxruntime).

The decisive checks run ``embridge bundle apply`` and ``bundle verify`` in a subprocess where
``import torch`` fails, and compare the result with the layer applied in this process by torch.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from bundle_fixtures import build_upgrade_workspace

from embridge.core.adapters import load_adapter
from embridge.core.bundle import export_bundle, verify_bundle
from embridge.core.bundle.deploy import deploy_module
from embridge.core.bundle.manifest import CHECKSUMS, MANIFEST, checksums_text
from embridge.core.errors import BundleError
from embridge.core.retrieval import l2_normalize
from embridge.core.store import Workspace
from embridge.core.store.files import sha256_file
from embridge.core.train.runs import train_run

ROOT = Path(__file__).resolve().parents[1]
# Run a command as on a deployment machine with numpy, safetensors and onnxruntime only: a meta-path
# finder refuses torch and every other heavy dependency of the desktop build before anything loads.
BLOCKED = ("torch", "sqlite_utils", "faiss", "matplotlib", "onnx", "PySide6", "pyarrow", "transformers",
           "sentence_transformers")
DEPLOYMENT_ONLY = """
import sys, runpy
BLOCKED = {blocked!r}
class _Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError("No module named " + repr(name), name=name)  # as when it is absent
        return None
sys.meta_path.insert(0, _Blocked())
sys.argv = ["embridge", *sys.argv[1:]]
from embridge.core.cli.main import main
code = main()
assert not any(m.split(".")[0] in BLOCKED for m in sys.modules), "a blocked package was imported"
raise SystemExit(code)
"""


def run_without_torch(*args: str, blocked: tuple[str, ...] = BLOCKED) -> subprocess.CompletedProcess[str]:
    """Run ``embridge *args`` with ``blocked`` packages impossible to import (by default every package a
    deployment machine lacks; a store migration passes ``("torch",)``, as it needs its store's client)."""
    return subprocess.run([sys.executable, "-c", DEPLOYMENT_ONLY.format(blocked=blocked), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("portable")
    info = build_upgrade_workspace(root / "ws", with_report=False)
    out: dict[str, Any] = {"root": root, "vectors": info["vectors"], "adapters": {}, "paths": {}}
    with Workspace.open(info["path"]) as ws:
        runs = dict(info["runs"])
        for kind in ("mlp", "lowrank"):
            runs[kind] = train_run(ws, kind, old="v1", new="v3", device="cpu", config={"epochs": 3})["run_id"]
        for name in ("v3_to_v1", "lowrank", "fusion", "mlp", "fct", "bt2"):
            path = root / f"{name}.zip"
            out["paths"][name] = path
            out[name] = export_bundle(ws, path, [runs[name]], gallery=False)["manifest"]
            out["adapters"][name] = load_adapter(ws.adapter_path(ws.adapter_for_run(runs[name])["id"]))
    rng = np.random.default_rng(11)
    out["x32"] = root / "x32.npy"
    np.save(out["x32"], (rng.standard_normal((500, 32)) * 2.0).astype(np.float32))
    out["old16"] = root / "old16.npy"
    np.save(out["old16"], rng.standard_normal((500, 16)).astype(np.float32))
    return out


def in_process(adapter: Any, x: np.ndarray, old: np.ndarray | None = None) -> np.ndarray:
    """The layer as the workspace runs it: torch, on L2-normalised inputs."""
    module = deploy_module(adapter)
    with torch.no_grad():
        args = [torch.from_numpy(l2_normalize(x))]
        if old is not None:
            args.append(torch.from_numpy(np.asarray(old, dtype=np.float32)))
        return module(*args).numpy()


def test_every_bundle_carries_a_checked_torch_free_adapter(bundles: dict) -> None:
    expected = {"v3_to_v1": "numpy", "lowrank": "numpy", "fusion": "numpy", "mlp": "onnx", "fct": "onnx",
                "bt2": "onnx"}
    for name, runtime in expected.items():
        m = bundles[name]
        assert m["format_version"] == 2
        entry = m["portable"]
        assert entry["runtime"] == runtime, name
        assert "adapter.safetensors" in m["files"] and len(m["files"]["adapter.safetensors"]["sha256"]) == 64
        assert (entry["onnx"] in m["files"]) == (runtime == "onnx")
        assert entry["export_check"]["max_abs_diff"] <= 1e-5, name
        summary = verify_bundle(bundles["paths"][name])
        assert set(summary["runtimes_checked"]) == {runtime, "torch"}
        assert summary["runtimes_checked"][runtime]["max_abs_diff"] <= 1e-5
    assert bundles["fusion"]["portable"]["tensors"] == ["alpha", "bias", "weight"]


@pytest.mark.parametrize("name", ["v3_to_v1", "lowrank", "mlp", "bt2"])
def test_apply_without_torch_equals_the_layer(bundles: dict, name: str, tmp_path: Path) -> None:
    out = tmp_path / "out.npy"
    done = run_without_torch("bundle", "apply", str(bundles["paths"][name]), "--vectors", str(bundles["x32"]),
                             "--out", str(out), "--chunk-rows", "128", "--no-normalise", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["runtime"] == bundles[name]["portable"]["runtime"]
    expected = in_process(bundles["adapters"][name], np.load(bundles["x32"]))
    diff = float(np.abs(np.load(out) - expected).max())
    assert diff <= 1e-6, diff
    searchable = tmp_path / "searchable.npy"  # the default: rows L2-normalised, as normalisation.output says
    done = run_without_torch("bundle", "apply", str(bundles["paths"][name]), "--vectors", str(bundles["x32"]),
                             "--out", str(searchable))
    assert done.returncode == 0, done.stderr
    assert float(np.abs(np.load(searchable) - l2_normalize(expected)).max()) <= 1e-6
    verified = run_without_torch("bundle", "verify", str(bundles["paths"][name]), "--json")
    assert verified.returncode == 0, verified.stderr
    checks = json.loads(verified.stdout)["runtimes_checked"]
    assert list(checks) == [result["runtime"]] and checks[result["runtime"]]["max_abs_diff"] <= 1e-5


def test_fusion_applies_without_torch(bundles: dict, tmp_path: Path) -> None:
    out = tmp_path / "fused.npy"
    done = run_without_torch("bundle", "apply", str(bundles["paths"]["fusion"]), "--vectors", str(bundles["x32"]),
                             "--old-vectors", str(bundles["old16"]), "--out", str(out), "--no-normalise", "--json")
    assert done.returncode == 0, done.stderr
    old = l2_normalize(np.load(bundles["old16"]))
    expected = in_process(bundles["adapters"]["fusion"], np.load(bundles["x32"]), old)
    assert float(np.abs(np.load(out) - expected).max()) <= 1e-6
    import zipfile

    with zipfile.ZipFile(bundles["paths"]["fusion"]) as zf:  # its README's apply command runs as written
        readme = zf.read("README.md").decode("utf-8")
    written = re.search(r"`embridge (bundle apply <bundle> [^`]*)`", readme).group(1)
    named = {"<bundle>": str(bundles["paths"]["fusion"]), "in.npy": str(bundles["x32"]),
             "old_queries.npy": str(bundles["old16"]), "out.npy": str(tmp_path / "as-written.npy")}
    done = run_without_torch(*[named.get(word, word) for word in written.split()], "--no-normalise")
    assert done.returncode == 0, (written, done.stderr)
    assert float(np.abs(np.load(tmp_path / "as-written.npy") - expected).max()) <= 1e-6
    # each snippet says what its second input is (the torch-free ones named it without width or type)
    note = "old_query: float32 {}(n, 16), the old model's vectors of the same queries as x, row for row"
    assert readme.count(note.format("")) == 1 and readme.count(note.format("tensor ")) == 1


def test_a_zero_old_query_adds_nothing_to_the_fusion_as_the_report_scored_it(
        bundles: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An all-zero row of --old-vectors (an old model that found nothing in the query) was refused, while the
    report scored such queries with the mapped new query alone: the text demo's recommended fusion could not
    be applied to the test queries it was measured on. It applies as scored, and the output says so."""
    from embridge.core.cli.main import main

    old = np.load(bundles["old16"]).copy()
    old[2] = 0.0
    np.save(tmp_path / "old_zero.npy", old)
    out = tmp_path / "fused.npy"
    assert main(["bundle", "apply", str(bundles["paths"]["fusion"]), "--vectors", str(bundles["x32"]),
                 "--old-vectors", str(tmp_path / "old_zero.npy"), "--out", str(out), "--no-normalise"]) == 0
    said = capsys.readouterr().out
    assert "note: 1 old query vector is all zeros, so the old query adds nothing there: the fused query is the " \
           "mapped new query alone, as the report scored such queries" in said, said
    expected = in_process(bundles["adapters"]["fusion"], np.load(bundles["x32"]), l2_normalize(old))
    assert float(np.abs(np.load(out) - expected).max()) <= 1e-6


def test_other_commands_on_a_bundle_only_install_say_what_is_missing(bundles: dict, tmp_path: Path) -> None:
    """Installed without its dependencies (to apply bundles), every other command crashed (exit 3)."""
    for argv in (["info", "-w", str(bundles["root"] / "ws")], ["demo", "--workspace", str(tmp_path / "demo")]):
        done = run_without_torch(*argv)
        assert done.returncode == 1, done.stderr
        assert len(done.stderr.splitlines()) == 1 and "this command needs the Python package '" in done.stderr
        assert "install Embridge with its dependencies" in done.stderr, done.stderr


def test_torch_runtime_without_torch_is_one_clear_line(bundles: dict, tmp_path: Path) -> None:
    done = run_without_torch("bundle", "apply", str(bundles["paths"]["mlp"]), "--vectors", str(bundles["x32"]),
                             "--out", str(tmp_path / "o.npy"), "--runtime", "torch")
    assert done.returncode == 1 and "torch" in done.stderr and done.stderr.count("\n") == 1
    assert not (tmp_path / "o.npy").exists()


def test_an_onnx_bundle_with_neither_runtime_installed_names_what_to_install(bundles: dict, tmp_path: Path) -> None:
    """It advised --runtime torch on a machine without torch, which then sent the user back to onnx."""
    done = run_without_torch("bundle", "apply", str(bundles["paths"]["mlp"]), "--vectors", str(bundles["x32"]),
                             "--out", str(tmp_path / "o.npy"), blocked=(*BLOCKED, "onnxruntime"))
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert "pip install onnxruntime" in done.stderr and "--runtime torch" not in done.stderr
    assert "torch, which runs its TorchScript payload, is not installed either" in done.stderr
    assert not (tmp_path / "o.npy").exists()


@pytest.mark.parametrize(("name", "heading"), [("v3_to_v1", "numpy and safetensors (no torch)"), ("mlp", "onnxruntime only")])
def test_readme_snippet_reproduces_the_probes_without_torch(bundles: dict, tmp_path: Path, name: str,
                                                            heading: str) -> None:
    import zipfile

    folder = tmp_path / "b"
    with zipfile.ZipFile(bundles["paths"][name]) as zf:
        zf.extractall(folder)
    readme = (folder / "README.md").read_text(encoding="utf-8")
    assert f"## Use with {heading}" in readme and "## Use with torch" in readme
    snippet = re.search(rf"## Use with {re.escape(heading)}\n\n```python\n(.*?)```", readme, re.S).group(1)
    # the probes, then the same rows at 1e-14 and 1e20 times their size: a layer on L2-normalised inputs
    # gives them the same outputs (the snippet's unit once left tiny rows unscaled and overflowed on large ones)
    code = ("import sys; sys.modules['torch'] = None\nimport numpy as np\nprobes = np.load('probes/inputs.npy')\n"
            f"snippet = {snippet!r}\n"
            "for scale in (1.0, 1e-14, 1e20):\n"
            "  for dtype in (np.float32, np.float64):  # float64 rows: onnxruntime refused them\n"
            "    x = (probes.astype(np.float64) * scale).astype(np.float32).astype(dtype)\n"
            "    exec(snippet)\n"
            "    assert y.dtype == np.float32, y.dtype  # as bundle apply writes them\n"
            "    print(float(np.abs(y - unit(np.load('probes/outputs.npy'))).max()))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert all(float(line) <= 1e-5 for line in done.stdout.split()), done.stdout


def _as_format_1(src: Path, dst: Path) -> None:
    """A bundle as Embridge wrote it before format 2: no torch-free files, no 'portable' section."""
    import zipfile

    with zipfile.ZipFile(src) as zf:
        zf.extractall(dst)
    for name in ("adapter.safetensors", "adapter.onnx"):
        (dst / name).unlink(missing_ok=True)
    manifest = json.loads((dst / MANIFEST).read_text(encoding="utf-8"))
    manifest["format_version"] = 1
    manifest.pop("portable")
    manifest["files"] = {k: v for k, v in manifest["files"].items() if k not in ("adapter.safetensors", "adapter.onnx")}
    (dst / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    sums = {name: entry["sha256"] for name, entry in manifest["files"].items()}
    sums[MANIFEST] = sha256_file(dst / MANIFEST)
    (dst / CHECKSUMS).write_text(checksums_text(sums), encoding="utf-8")


def test_format_1_bundles_still_verify_with_torch(bundles: dict, tmp_path: Path) -> None:
    old = tmp_path / "v1"
    _as_format_1(bundles["paths"]["mlp"], old)
    summary = verify_bundle(old)
    assert summary["format_version"] == 1 and summary["runtime"] == "torch"
    with pytest.raises(BundleError, match="--runtime onnx"):
        verify_bundle(old, runtime="onnx")


def test_a_changed_torch_free_file_is_refused(bundles: dict, tmp_path: Path) -> None:
    import zipfile

    folder = tmp_path / "b"
    with zipfile.ZipFile(bundles["paths"]["mlp"]) as zf:
        zf.extractall(folder)
    data = bytearray((folder / "adapter.onnx").read_bytes())
    data[-10] ^= 0xFF
    (folder / "adapter.onnx").write_bytes(bytes(data))
    done = run_without_torch("bundle", "verify", str(folder))
    assert done.returncode == 1 and "adapter.onnx was changed after export" in done.stderr


def test_auto_falls_back_to_torch_only_where_onnxruntime_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    from embridge.core.bundle.runtime import choose_runtime

    onnx_bundle, numpy_bundle = {"portable": {"runtime": "onnx"}}, {"portable": {"runtime": "numpy"}}
    assert choose_runtime(onnx_bundle) == "onnx" and choose_runtime({"format_version": 1}) == "torch"
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert choose_runtime(onnx_bundle) == "torch" and choose_runtime(numpy_bundle) == "numpy"
    with pytest.raises(BundleError, match="--runtime numpy: this bundle's torch-free runtime is onnx"):
        choose_runtime(onnx_bundle, "numpy")


def test_verify_refuses_to_vouch_for_an_onnx_file_it_could_not_run(bundles: dict,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Without onnxruntime, `bundle verify` of an ONNX bundle said OK after the TorchScript check alone,
    so a tampered adapter.onnx passed; it now says the file was not checked (exit 1)."""
    from embridge.core.bundle import verify_bundle

    assert set(verify_bundle(bundles["paths"]["mlp"])["runtimes_checked"]) == {"onnx", "torch"}
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(BundleError, match=r"adapter\.onnx was not checked: onnxruntime cannot be imported"):
        verify_bundle(bundles["paths"]["mlp"])
    assert set(verify_bundle(bundles["paths"]["mlp"], runtime="torch")["runtimes_checked"]) == {"torch"}
    assert set(verify_bundle(bundles["paths"]["v3_to_v1"])["runtimes_checked"]) == {"numpy", "torch"}


def test_verify_checks_an_onnx_bundles_tensors_against_its_layer(bundles: dict, tmp_path: Path) -> None:
    """No runtime reads an ONNX bundle's adapter.safetensors, so a copy with one tensor scaled and every
    hash rewritten verified OK while its README still said it holds the layer's tensors."""
    import zipfile

    from safetensors.numpy import load, save

    folder = tmp_path / "b"
    with zipfile.ZipFile(bundles["paths"]["mlp"]) as zf:
        zf.extractall(folder)
    assert verify_bundle(folder)["ok"]  # as exported
    tensors = load((folder / "adapter.safetensors").read_bytes())
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] * 1.5 + 0.01
    (folder / "adapter.safetensors").write_bytes(save(tensors))
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    manifest["files"]["adapter.safetensors"] = {"sha256": sha256_file(folder / "adapter.safetensors"),
                                                "bytes": (folder / "adapter.safetensors").stat().st_size}
    (folder / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    sums = {n: e["sha256"] for n, e in manifest["files"].items()}
    sums[MANIFEST] = sha256_file(folder / MANIFEST)
    (folder / CHECKSUMS).write_text(checksums_text(sums), encoding="utf-8")
    with pytest.raises(BundleError, match=rf"adapter\.safetensors's tensor '{re.escape(name)}' is not adapter\.pt's"):
        verify_bundle(folder)


def test_verify_with_a_torch_that_does_not_import_checks_the_torch_free_runtime_and_says_so(
        bundles: dict[str, Any], tmp_path: Path) -> None:
    """A torch that is installed but fails to import (a missing CUDA library) failed `verify` with advice to
    use --runtime auto, the runtime that had just failed."""
    stub = tmp_path / "broken" / "torch"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise OSError('libcudnn.so.9: cannot open shared object file')\n")
    env = {**os.environ, "PYTHONPATH": f"{stub.parent}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}

    def verify(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "embridge.core.cli.main", "bundle", "verify",
                               str(bundles["paths"]["mlp"]), *extra], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=300)

    done = verify()
    assert done.returncode == 0, done.stderr
    assert ": OK: " in done.stdout and "onnx reproduces" in done.stdout
    assert "note: the TorchScript payload was not checked: torch is installed but does not import (libcudnn.so.9" \
        in done.stdout
    refused = verify("--runtime", "torch")
    errors = [line for line in refused.stderr.splitlines() if not line.startswith("verify: ")]  # not progress
    assert refused.returncode == 1 and len(errors) == 1, refused.stderr
    assert "torch is installed but does not import (libcudnn.so.9" in refused.stderr
    assert "--runtime numpy or onnx, which --runtime auto picks" in refused.stderr


def test_read_only_rows_reach_torch_without_a_warning(tmp_path: Path) -> None:
    """A memory-mapped input (as `bundle apply --old-vectors` reads it) went to torch read-only, and torch
    printed a multi-line UserWarning on every fusion apply with --runtime torch."""
    import warnings

    from embridge.core.bundle.runtime import run_module

    class Fused(torch.nn.Module):
        def forward(self, x: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
            return 0.5 * x + 0.5 * old

    rows = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.save(tmp_path / "x.npy", rows)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    assert not mapped.flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = run_module(Fused(), mapped, mapped)
    np.testing.assert_array_equal(out, rows)


def test_readme_torch_snippet_gives_numpy_rows(bundles: dict, tmp_path: Path) -> None:
    """The torch snippet's output tracked gradients through an MLP, so `y.numpy()` raised."""
    import zipfile

    folder = tmp_path / "b"
    with zipfile.ZipFile(bundles["paths"]["mlp"]) as zf:
        zf.extractall(folder)
    readme = (folder / "README.md").read_text(encoding="utf-8")
    snippet = re.search(r"## Use with torch\n\n```python\n(.*?)```", readme, re.S).group(1)
    code = ("import numpy as np, torch\n"
            "want = np.load('probes/outputs.npy')\n"
            "want /= np.linalg.norm(want, axis=1, keepdims=True)\n"
            "for dtype in (np.float32, np.float64):  # float64 rows failed in the TorchScript interpreter\n"
            "    x = torch.from_numpy(np.load('probes/inputs.npy').astype(dtype))\n"
            f"    exec({snippet!r})\n"
            "    print(float(np.abs(y.numpy() - want).max()))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert all(float(line) <= 1e-5 for line in done.stdout.split()), done.stdout
