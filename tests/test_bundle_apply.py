"""``apply`` on vector files (chunked, resumable) and the ``embridge bundle`` commands end to end."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bundle_fixtures import build_upgrade_workspace

from embridge.core.adapters import adapt_queries, load_adapter
from embridge.core.bundle import apply_bundle, load_bundle
from embridge.core.bundle.matrix_out import MatrixFile
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
    zero = setup["big"][:10].copy()
    zero[[6, 8]] = 0.0  # no direction: with L2-normalised inputs the output would be the bias alone
    np.save(tmp_path / "zero.npy", zero)
    with pytest.raises(VectorFileError, match=r"zero\.npy: row 6 is all zeros \(2 such rows in this chunk\)"):
        apply_bundle(setup["bundle"], tmp_path / "zero.npy", tmp_path / "o.npy")
    assert not (tmp_path / "o.npy").exists()


def test_integer_vectors_apply_as_their_float32_values(setup: dict, tmp_path: Path) -> None:
    """A vectors import takes integer matrices (quantised vectors); apply takes the same files."""
    ints = np.rint(setup["big"][:200] * 20).astype(np.int16)
    np.save(tmp_path / "int.npy", ints)
    np.save(tmp_path / "float.npy", ints.astype(np.float32))
    apply_bundle(setup["bundle"], tmp_path / "int.npy", tmp_path / "a.npy")
    apply_bundle(setup["bundle"], tmp_path / "float.npy", tmp_path / "b.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))
    np.save(tmp_path / "bool.npy", ints > 0)
    with pytest.raises(VectorFileError, match=r"bool\.npy: vectors must be floats or integers, got bool"):
        apply_bundle(setup["bundle"], tmp_path / "bool.npy", tmp_path / "c.npy")


def test_float64_rows_of_any_scale_keep_their_direction(setup: dict, tmp_path: Path) -> None:
    """A layer on L2-normalised inputs reads only each row's direction; float64 rows of tiny values were cast
    to float32 zeros and refused as all-zero rows, and rows of huge values were refused as beyond float32."""
    rows = setup["big"][:4].astype(np.float64)
    scaled = rows * np.array([[1e-300], [1e39], [1e300], [1.0]])
    np.save(tmp_path / "in64.npy", scaled)
    apply_bundle(setup["bundle"], tmp_path / "in64.npy", tmp_path / "out.npy")
    expected = adapt_queries(setup["adapter"], l2_normalize(setup["big"][:4]))
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, **F32)
    np.save(tmp_path / "zero64.npy", np.vstack([rows[:1], np.zeros((1, rows.shape[1]))]))
    with pytest.raises(VectorFileError, match="row 1 is all zeros"):  # a row that is zero is still refused
        apply_bundle(setup["bundle"], tmp_path / "zero64.npy", tmp_path / "zero.npy")


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
    assert "no report" not in str(exported["warning"])  # a chain's steps each name their own measurement
    single = tmp_path / "single.zip"  # a layer exported before any report of it was made: said, with the way out
    assert main(["bundle", "export", "--workspace", str(setup["path"]), "--run", str(runs["v3_to_v1"]),
                 "--out", str(single)]) == 0
    warned = [line for line in capsys.readouterr().out.splitlines() if line.startswith("WARNING: no report")]
    assert warned == [f"WARNING: no report of this layer was made, so the bundle carries no report.html or "
                      f"report.json, only the training run's held-out numbers; run 'embridge report --run "
                      f"{runs['v3_to_v1']}' and export again to ship its report"]
    verified = _json(capsys, ["bundle", "verify", str(chain), "--json"])
    assert verified["ok"] is True and verified["probes"]["max_abs_diff"] <= verified["probes"]["atol"]
    inspected = _json(capsys, ["bundle", "inspect", str(chain), "--json"])
    assert inspected["manifest"]["adapter"]["kind"] == "chain" and inspected["verified"] is False
    applied = _json(capsys, ["bundle", "apply", str(chain), "--vectors", str(setup["input"]),
                             "--out", str(tmp_path / "o.npy"), "--chunk-rows", "256", "--json"])
    assert applied["rows"] == 1000 and applied["dim"] == 16 and applied["normalised"] is True
    layer = load_bundle(chain)(setup["big"])
    assert not np.allclose(np.linalg.norm(layer, axis=1), 1.0, atol=1e-3)  # the layer alone leaves rows unnormalised
    np.testing.assert_allclose(np.load(tmp_path / "o.npy"), l2_normalize(layer), **F32)  # as manifest's output: l2
    raw = _json(capsys, ["bundle", "apply", str(chain), "--vectors", str(setup["input"]),
                         "--out", str(tmp_path / "raw.npy"), "--no-normalise", "--json"])
    assert raw["normalised"] is False
    np.testing.assert_allclose(np.load(tmp_path / "raw.npy"), layer, **F32)

    assert main(["bundle", "verify", str(chain)]) == 0
    assert "OK" in capsys.readouterr().out
    broken = tmp_path / "broken.zip"
    broken.write_bytes(chain.read_bytes()[:-200])
    assert main(["bundle", "verify", str(broken), "--json"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and "broken.zip" in captured.err
    assert main(["bundle", "export", "--workspace", str(setup["path"]), "--chain", "1,x", "--out",
                 str(tmp_path / "x.zip")]) == 2
    assert "argument --chain: expected an integer from 1 to 9223372036854775807, got 'x'" in capsys.readouterr().err


def _one_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """The single error line of a refused command (exit 1, nothing on stdout, no traceback)."""
    assert main(argv) == 1
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.startswith("embridge: error: ")]
    assert captured.out == "" and len(lines) == 1 and captured.err.rstrip().splitlines()[-1] == lines[0]
    return lines[0]


def test_an_existing_output_is_replaced_only_with_overwrite_and_only_if_npy(
        setup: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    notes, out = tmp_path / "notes.txt", tmp_path / "out.npy"
    notes.write_text("important\n")
    apply = ["bundle", "apply", str(setup["bundle"]), "--vectors", str(setup["input"])]
    line = _one_line(capsys, [*apply, "--out", str(notes)])
    assert f"--out {notes}: already exists" in line and "--overwrite" in line
    line = _one_line(capsys, [*apply, "--out", str(notes), "--overwrite"])
    assert f"--out {notes}: is not a .npy file" in line
    assert notes.read_text() == "important\n" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    # an .npz name got a plain .npy matrix, which np.load and zipfile then read as neither
    assert main([*apply, "--out", str(tmp_path / "out.npz")]) == 2
    assert f"--out {tmp_path / 'out.npz'}: the output is one .npy matrix; name it .npy" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]

    np.save(out, np.zeros((2, 2), np.float32))
    before = out.read_bytes()
    line = _one_line(capsys, [*apply, "--out", str(out)])
    assert f"--out {out}: already exists" in line
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "out.npy"]
    assert main([*apply, "--out", str(out), "--overwrite", "--chunk-rows", "300"]) == 0
    capsys.readouterr()
    np.testing.assert_allclose(np.load(out), l2_normalize(adapt_queries(setup["adapter"], l2_normalize(setup["big"]))),
                               **F32)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "out.npy"]


def _reserved(path: Path) -> bool:
    """Every byte of the file has its disk blocks (not a sparse file with holes to fill later)."""
    st = os.stat(path)
    return st.st_size > 0 and st.st_blocks * 512 >= st.st_size


def test_the_output_space_is_reserved_before_the_first_row(setup: dict, tmp_path: Path) -> None:
    """A sparse output written through a memory map dies of SIGBUS when the disk fills; a reserved one cannot."""
    out = tmp_path / "out.npy"
    partial, sidecar = partial_paths(out)
    with pytest.raises(Cancelled):
        apply_bundle(setup["bundle"], setup["input"], out, should_stop=_stop_after(0))
    assert json.loads(sidecar.read_text())["done"] == 0
    assert partial.stat().st_size > 1000 * 16 * 4 and _reserved(partial)
    result = apply_bundle(setup["bundle"], setup["input"], out, chunk_rows=300)  # and resumes onto it
    np.testing.assert_allclose(np.load(out), adapt_queries(setup["adapter"], l2_normalize(setup["big"])), **F32)
    assert result["rows"] == 1000 and not partial.exists()


def test_space_is_reserved_by_writing_where_fallocate_is_missing(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "posix_fallocate", raising=False)
    rows = np.arange(600, dtype=np.float32).reshape(200, 3)
    with MatrixFile.create(tmp_path / "m.npy", 200, 3) as matrix:
        assert _reserved(tmp_path / "m.npy")
        matrix.write(100, rows[100:])
        matrix.write(0, rows[:100])
        matrix.flush()
    np.testing.assert_array_equal(np.load(tmp_path / "m.npy"), rows)
    with MatrixFile.reopen(tmp_path / "m.npy", 200, 3) as matrix, pytest.raises(ValueError, match="do not fit"):
        matrix.write(150, rows[:100])
    with pytest.raises(ValueError, match=r"not a \(200, 4\) float32 matrix"):
        MatrixFile.reopen(tmp_path / "m.npy", 200, 4)


def _file_size_limit(limit: int) -> Any:
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG errors instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_full_disk_is_one_line_naming_out_and_leaves_nothing(setup: dict, tmp_path: Path) -> None:
    """A real file-size limit (EFBIG, as ENOSPC) in a real process: exit 1, one line, no output or companions."""
    out = tmp_path / "out.npy"
    argv = [sys.executable, "-m", "embridge.core.cli.main", "bundle", "apply", str(setup["bundle"]),
            "--vectors", str(setup["input"]), "--out", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, preexec_fn=_file_size_limit(20_000))
    errors = [line for line in done.stderr.splitlines() if line.startswith("embridge: error: ")]
    assert done.returncode == 1 and done.stdout == "" and len(errors) == 1, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.rstrip().splitlines()[-1] == errors[0]
    assert f"--out {out}: not enough disk space to write the output" in errors[0]
    assert list(tmp_path.iterdir()) == []
    again = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert np.load(out).shape == (1000, 16)


def test_an_apply_resumes_with_a_re_export_of_the_same_layer(setup: dict, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys
    import zipfile

    def export(out: Path, seed: str) -> str:  # TorchScript names and ids vary with the process's hash seed
        subprocess.run([sys.executable, "-m", "embridge.core.cli.main", "bundle", "export", "--workspace",
                        str(setup["path"]), "--run", str(setup["runs"]["fct"]), "--out", str(out)],
                       check=True, env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True)
        with zipfile.ZipFile(out) as zf:
            return json.loads(zf.read("manifest.json"))["files"]["adapter.pt"]["sha256"]

    first, second = tmp_path / "a.zip", tmp_path / "b.zip"
    assert export(first, "1") != export(second, "2")  # one layer, other TorchScript bytes
    x = np.random.default_rng(3).standard_normal((1000, load_bundle(first).in_dim)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "out.npy"
    with pytest.raises(Cancelled):
        apply_bundle(first, tmp_path / "x.npy", out, chunk_rows=100, should_stop=_stop_after(4))
    result = apply_bundle(second, tmp_path / "x.npy", out, chunk_rows=100)
    assert result["resumed_from"] == 400
    whole = apply_bundle(first, tmp_path / "x.npy", tmp_path / "whole.npy", chunk_rows=100)
    assert whole["resumed_from"] == 0
    np.testing.assert_array_equal(np.load(out), np.load(tmp_path / "whole.npy"))


@pytest.mark.parametrize(("out", "problem"), [
    (".", "names a folder, not a file"), ("/", "names a folder, not a file"), ("..", "names a folder, not a file"),
    ("{tmp}", "is a folder; give the .npy file to write"),
    ("{tmp}/notes.txt/out.npy", "notes.txt is a file, not a folder, so nothing can be written under it")])
def test_apply_out_that_names_no_file_is_one_line(setup: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch, out: str, problem: str) -> None:
    """``--out .`` or ``/`` used to end in "unexpected ValueError" (exit 3), a path under a regular file in
    "File exists": each is one line naming --out, exit 1, and nothing written."""
    (tmp_path / "notes.txt").write_text("mine")
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    code = main(["bundle", "apply", str(setup["bundle"]), "--vectors", str(setup["input"]),
                 "--out", out.format(tmp=tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and err[0].startswith("embridge: error: --out ") and problem in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before and (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("argv", [
    ["bundle", "apply", "", "--vectors", "in.npy", "--out", "o.npy"],
    ["bundle", "apply", "b.zip", "--vectors", "", "--out", "o.npy"],
    ["bundle", "apply", "b.zip", "--vectors", "in.npy", "--out", ""],
    ["bundle", "verify", ""], ["bundle", "inspect", "  "],
    ["bundle", "export", "-w", "ws", "--out", ""],
    ["import", "-w", "ws", "--path", ""], ["import", "-w", "ws", "--qrels", ""],
    ["import", "-w", "", "--path", "x.csv"], ["model", "add", "-w", "ws", "--name", "m", "--path", ""],
    ["migrate", "--bundle", "b.zip", "--from", "", "--to", "parquet:///tmp/x"], ["check", "--uri", ""]])
def test_an_empty_path_is_a_usage_error_not_the_current_folder(argv: list[str], tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """An empty string for a file, folder or store option was read as the current folder (``import --path ""``
    imported it as an image folder; ``bundle verify ""`` verified it)."""
    monkeypatch.chdir(tmp_path)
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "is empty; name a file, folder or store" in err[0]
    assert list(tmp_path.iterdir()) == []


def test_a_head_bundle_shows_the_ceiling_its_gain_retained_is_measured_against(
        demo_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A bt2 bundle said gain retained 57.4% beside new/new 0.907, from which it reads 56.9%: the gain is
    measured against head/head, which the bundle did not show."""
    from embridge.core.bundle import bundle_text
    from embridge.core.cli.main import main

    for method in ("bt2", "affine"):
        assert main(["train", "-w", str(demo_copy), "--method", method, "--epochs", "3", "--json"]) == 0
        run_id = json.loads(capsys.readouterr().out)["run_id"]
        assert main(["bundle", "export", "-w", str(demo_copy), "--run", str(run_id), "--out",
                     str(tmp_path / f"{method}.zip"), "--json"]) == 0
        manifest = json.loads(capsys.readouterr().out)["manifest"]
        values = manifest["metrics"]["values"]
        sampled = values.get("old_old_sample_top1") is not None  # new/new searched the evaluation sample: so did the gain
        up = values["upgraded_sample_top1" if sampled else "upgraded_top1"]
        old, ceiling = values["old_old_sample_top1" if sampled else "old_old_top1"], values["ceiling_top1"]
        assert values["gain_retained"] == pytest.approx((up - old) / (ceiling - old))  # from the numbers shown
        text = bundle_text(manifest)
        if method == "bt2":  # its own space's ceiling, not new/new: named beside the gain
            assert ceiling != values["new_new_top1"] and f"head/head top1 (the ceiling)={ceiling:.4g}" in text
        else:  # a plain layer's ceiling is new/new itself: not said twice
            assert ceiling == values["new_new_top1"] and "ceiling" not in text
