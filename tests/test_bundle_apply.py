"""``apply`` on vector files (chunked, resumable) and the ``embridge bundle`` commands end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bundle_fixtures import build_upgrade_workspace

from embridge.core.adapters import adapt_queries, load_adapter
from embridge.core.bundle import apply_bundle, load_bundle
from embridge.core.bundle.transform_file import partial_paths
from embridge.core.cli.main import main
from embridge.core.errors import Cancelled, VectorFileError
from embridge.core.retrieval import l2_normalize
from embridge.core.store import Workspace

F32 = {"rtol": 1e-5, "atol": 1e-6}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("apply")
    info = build_upgrade_workspace(root / "ws", with_report=False)
    code = main(["bundle", "export", "--workspace", str(info["path"]), "--run", str(info["runs"]["v3_to_v1"]),
                 "--out", str(root / "b.zip")])
    assert code == 0
    with Workspace.open(info["path"]) as ws:
        info["adapter"] = load_adapter(ws.adapter_path(ws.adapter_for_run(info["runs"]["v3_to_v1"])["id"]))
    rng = np.random.default_rng(7)
    info["big"] = (rng.standard_normal((1000, 32)) * 3.0).astype(np.float32)  # not normalised
    np.save(root / "in.npy", info["big"])
    info["bundle"], info["input"] = root / "b.zip", root / "in.npy"
    return info


def test_apply_matches_in_process_application(setup: dict, tmp_path: Path) -> None:
    out = tmp_path / "out.npy"
    result = apply_bundle(setup["bundle"], setup["input"], out, chunk_rows=300)
    expected = adapt_queries(setup["adapter"], l2_normalize(setup["big"]))
    np.testing.assert_allclose(np.load(out), expected, **F32)
    assert result["rows"] == 1000 and result["resumed_from"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npy"]
    normalised = apply_bundle(load_bundle(setup["bundle"]), setup["input"], tmp_path / "n.npy",
                              normalise_output=True)
    np.testing.assert_allclose(np.load(tmp_path / "n.npy"), l2_normalize(expected), **F32)
    assert normalised["normalised"] is True


def _stop_after(chunks: int) -> Any:
    calls = {"n": 0}

    def should_stop() -> bool:
        calls["n"] += 1
        return calls["n"] > chunks

    return should_stop


def test_an_interrupted_apply_resumes_and_matches(setup: dict, tmp_path: Path) -> None:
    out = tmp_path / "out.npy"
    partial, sidecar = partial_paths(out)
    with pytest.raises(Cancelled):
        apply_bundle(setup["bundle"], setup["input"], out, chunk_rows=100, should_stop=_stop_after(3))
    assert not out.exists() and partial.exists()
    assert json.loads(sidecar.read_text())["done"] == 300
    seen: list[int] = []
    result = apply_bundle(setup["bundle"], setup["input"], out, chunk_rows=100,
                          on_progress=lambda done, total, info: seen.append(done))
    assert result["resumed_from"] == 300 and seen[0] == 300 and seen[-1] == 1000
    np.testing.assert_allclose(np.load(out), adapt_queries(setup["adapter"], l2_normalize(setup["big"])), **F32)
    assert not partial.exists() and not sidecar.exists()


def test_a_changed_input_restarts_instead_of_resuming(setup: dict, tmp_path: Path) -> None:
    src, out = tmp_path / "in.npy", tmp_path / "out.npy"
    np.save(src, setup["big"])
    with pytest.raises(Cancelled):
        apply_bundle(setup["bundle"], src, out, chunk_rows=100, should_stop=_stop_after(2))
    changed = setup["big"][::-1].copy()
    np.save(src, changed)
    result = apply_bundle(setup["bundle"], src, out, chunk_rows=100)
    assert result["resumed_from"] == 0
    np.testing.assert_allclose(np.load(out), adapt_queries(setup["adapter"], l2_normalize(changed)), **F32)


def test_apply_rejects_bad_vector_files(setup: dict, tmp_path: Path) -> None:
    np.save(tmp_path / "wide.npy", np.zeros((5, 31), np.float32))
    with pytest.raises(VectorFileError, match=r"wide\.npy: vectors have shape \(5, 31\)"):
        apply_bundle(setup["bundle"], tmp_path / "wide.npy", tmp_path / "o.npy")
    bad = setup["big"][:10].copy()
    bad[4, 2] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(VectorFileError, match="row 4 holds NaN"):
        apply_bundle(setup["bundle"], tmp_path / "nan.npy", tmp_path / "o.npy")
    assert not (tmp_path / "o.npy").exists()


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict[str, Any]:
    assert main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    return json.loads(out[0])


def test_cli_export_verify_inspect_apply(setup: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = setup["runs"]
    chain = tmp_path / "chain.zip"
    exported = _json(capsys, ["bundle", "export", "--workspace", str(setup["path"]), "--chain",
                              f"{runs['v3_to_v2']},{runs['v2_to_v1']}", "--out", str(chain), "--json"])
    assert exported["format"] == "zip" and len(exported["manifest"]["chain"]) == 2
    verified = _json(capsys, ["bundle", "verify", str(chain), "--json"])
    assert verified["ok"] is True and verified["probes"]["max_abs_diff"] <= verified["probes"]["atol"]
    inspected = _json(capsys, ["bundle", "inspect", str(chain), "--json"])
    assert inspected["manifest"]["adapter"]["kind"] == "chain" and inspected["verified"] is False
    applied = _json(capsys, ["bundle", "apply", str(chain), "--vectors", str(setup["input"]),
                             "--out", str(tmp_path / "o.npy"), "--chunk-rows", "256", "--json"])
    assert applied["rows"] == 1000 and applied["dim"] == 16
    np.testing.assert_allclose(np.load(tmp_path / "o.npy"), load_bundle(chain)(setup["big"]), **F32)

    assert main(["bundle", "verify", str(chain)]) == 0
    assert "OK" in capsys.readouterr().out
    broken = tmp_path / "broken.zip"
    broken.write_bytes(chain.read_bytes()[:-200])
    assert main(["bundle", "verify", str(broken), "--json"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and "broken.zip" in captured.err
    assert main(["bundle", "export", "--workspace", str(setup["path"]), "--chain", "1,x", "--out",
                 str(tmp_path / "x.zip")]) == 1
    assert "--chain" in capsys.readouterr().err
