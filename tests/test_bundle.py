"""Exporting, verifying and loading bundles: outputs equal the in-process adapters."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bundle_fixtures import build_upgrade_workspace

from embridge.core.adapters import adapt_gallery, adapt_queries, load_adapter
from embridge.core.bundle import compose_adapters, export_bundle, inspect_bundle, load_bundle, verify_bundle
from embridge.core.cli.main import main
from embridge.core.errors import BundleError, Cancelled, InputError
from embridge.core.evaluation.tasks import heldout_queries
from embridge.core.retrieval import l2_normalize
from embridge.core.store import Workspace
from embridge.core.store.file_lock import HeldLock
from embridge.core.store.files import sha256_file, sha256_tree

F32 = {"rtol": 1e-5, "atol": 1e-6}


@pytest.fixture(scope="module")
def upgrade(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return build_upgrade_workspace(tmp_path_factory.mktemp("bundle") / "ws")


def _adapter(ws: Workspace, run_id: int) -> Any:
    return load_adapter(ws.adapter_path(ws.adapter_for_run(run_id)["id"]))


def test_zip_bundle_reproduces_the_adapter_and_describes_the_upgrade(upgrade: dict, tmp_path: Path) -> None:
    out = tmp_path / "out" / "upgrade.zip"
    with Workspace.open(upgrade["path"]) as ws:
        result = export_bundle(ws, out, [upgrade["runs"]["v3_to_v1"]])
        adapter = _adapter(ws, upgrade["runs"]["v3_to_v1"])
        models = {m["name"]: m for m in ws.models()}
        registered = ws.bundles()[-1]
        export_run = ws.runs("export")[-1]
        row = ws.adapter_for_run(upgrade["runs"]["v3_to_v1"])
        held_out = heldout_queries(ws, [row["old_model"], row["new_model"]])[0].ids.size  # as reports measure
        summary = ws.report(upgrade["report_id"])["summary"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["upgrade.zip"]  # no temp leftovers

    v3 = upgrade["vectors"]["v3"]
    loaded = load_bundle(out)
    np.testing.assert_allclose(loaded(v3), adapt_queries(adapter, l2_normalize(v3)), **F32)

    m = result["manifest"]
    assert m["format_version"] == 2 and m["embridge_version"]
    assert m["adapter"] | {"run_ids": [upgrade["runs"]["v3_to_v1"]]} == m["adapter"]
    assert (m["adapter"]["kind"], m["adapter"]["direction"], m["adapter"]["in_dim"], m["adapter"]["out_dim"]) == \
        ("procrustes", "backward", 32, 16)
    assert m["models"]["old"]["sha256"] == models["v1"]["sha256"]
    assert m["models"]["new"]["spec"] == models["v3"]["spec"]
    assert m["normalisation"]["input"] == "l2" and m["normalisation"]["output"] == "l2"
    assert m["report"]["id"] == upgrade["report_id"]
    assert m["metrics"]["source"] == f"report {upgrade['report_id']}"
    assert m["metrics"]["values"]["upgraded_top1"] == summary["upgraded_top1"]
    assert m["metrics"]["values"]["negative_flip_rate"] == summary["negative_flip_rate"]
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        report_json = json.loads(zf.read("report.json"))
        readme = zf.read("README.md").decode()
    assert {"manifest.json", "CHECKSUMS", "adapter.pt", "adapter.safetensors", "adapter_state.pt", "report.json",
            "report.html", "probes/inputs.npy", "probes/outputs.npy", "README.md"} == names
    assert set(m["files"]) == names - {"manifest.json", "CHECKSUMS"}
    assert report_json["report_id"] == upgrade["report_id"]
    assert report_json["headline"]["upgraded_top1"] == summary["upgraded_top1"]
    assert "torch.jit.load" in readme and "F.normalize" in readme
    assert registered["sha256"] == sha256_file(out) == result["sha256"]
    assert registered["manifest"]["adapter"]["kind"] == "procrustes"
    assert export_run["status"] == "completed"

    checked = verify_bundle(out)
    assert checked["ok"] and checked["probes"]["count"] == min(64, held_out)
    # fewer test queries than the 64 probes asked for: all of them, and the source says so
    short = " (every one there is; 64 were asked)" if held_out < 64 else ""
    assert m["probes"]["source"] == f"{min(64, held_out)} held-out (test query) vectors of model 'v3'{short}"
    assert checked["probes"]["max_abs_diff"] <= checked["probes"]["atol"]
    assert inspect_bundle(out)["manifest"]["adapter"]["kind"] == "procrustes"


def test_folder_bundle_runs_with_torch_alone(upgrade: dict, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    with Workspace.open(upgrade["path"]) as ws:
        result = export_bundle(ws, out, [upgrade["runs"]["v3_to_v2"]])
        assert ws.bundles()[-1]["sha256"] == sha256_tree(out)
    assert result["format"] == "folder" and result["manifest"]["report"]["id"] is None
    script = (
        "import sys, numpy as np, torch, torch.nn.functional as F\n"
        "m = torch.jit.load('adapter.pt').eval()\n"
        "x = torch.from_numpy(np.load('probes/inputs.npy'))\n"
        "y = m(F.normalize(x, dim=-1)).detach().numpy()\n"
        "assert not any(k == 'embridge' or k.startswith('embridge.') for k in sys.modules)\n"
        "print(float(np.abs(y - np.load('probes/outputs.npy')).max()))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=out, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) <= 1e-5
    if shutil.which("sha256sum"):  # the documented check without Embridge
        sums = subprocess.run(["sha256sum", "--quiet", "-c", "CHECKSUMS"], cwd=out, capture_output=True, timeout=60)
        assert sums.returncode == 0, sums.stdout


def test_forward_bundle_carries_the_transformed_gallery(upgrade: dict, tmp_path: Path) -> None:
    out = tmp_path / "fct.zip"
    with Workspace.open(upgrade["path"]) as ws:
        export_bundle(ws, out, [upgrade["runs"]["fct"]])
        adapter = _adapter(ws, upgrade["runs"]["fct"])
        gallery_ids = ws.item_ids("gallery")
    with zipfile.ZipFile(out) as zf:
        vectors = np.load(zf.open("gallery_transformed/vectors.npy"))
        ids = np.load(zf.open("gallery_transformed/ids.npy"))
        keys = np.load(zf.open("gallery_transformed/keys.npy"))
        manifest = json.loads(zf.read("manifest.json"))
    np.testing.assert_array_equal(ids, gallery_ids)
    position = {int(i): n for n, i in enumerate(upgrade["ids"])}
    rows = [position[int(i)] for i in ids]
    assert list(keys) == [f"item-{r:03d}" for r in rows]
    expected = adapt_gallery(adapter, l2_normalize(upgrade["vectors"]["v1"][rows]))
    np.testing.assert_allclose(vectors, expected, **F32)
    assert manifest["adapter"]["direction"] == "forward" and manifest["adapter"]["inputs"] == ["old"]
    assert manifest["gallery_transformed"]["count"] == len(gallery_ids)
    v1 = upgrade["vectors"]["v1"]
    np.testing.assert_allclose(load_bundle(out)(v1), adapt_gallery(adapter, l2_normalize(v1)), **F32)


def test_chained_bundle_equals_the_two_layers_in_sequence(upgrade: dict, tmp_path: Path) -> None:
    runs = upgrade["runs"]
    out = tmp_path / "chain.zip"
    with Workspace.open(upgrade["path"]) as ws:
        # given oldest step first: the export orders the chain itself
        manifest = export_bundle(ws, out, [runs["v2_to_v1"], runs["v3_to_v2"]])["manifest"]
        v3_to_v2, v2_to_v1 = _adapter(ws, runs["v3_to_v2"]), _adapter(ws, runs["v2_to_v1"])
    v3 = upgrade["vectors"]["v3"]
    in_sequence = adapt_queries(v2_to_v1, l2_normalize(adapt_queries(v3_to_v2, l2_normalize(v3))))
    np.testing.assert_allclose(load_bundle(out)(v3), in_sequence, **F32)
    assert [s["run_id"] for s in manifest["chain"]] == [runs["v3_to_v2"], runs["v2_to_v1"]]
    assert [(s["new_model"], s["old_model"]) for s in manifest["chain"]] == [("v3", "v2"), ("v2", "v1")]
    assert (manifest["models"]["new"]["name"], manifest["models"]["old"]["name"]) == ("v3", "v1")
    assert [m["name"] for m in manifest["models"]["intermediate"]] == ["v2"]
    assert (manifest["adapter"]["kind"], manifest["adapter"]["in_dim"], manifest["adapter"]["out_dim"]) == \
        ("chain", 32, 16)
    from embridge.core.bundle import bundle_text
    from embridge.core.bundle.readme import readme_text

    for text, sep in ((readme_text(manifest), " = "), (bundle_text(manifest), "=")):  # each step's own numbers
        for i, step in enumerate(manifest["chain"], 1):
            (line,) = [x for x in text.splitlines() if f"Step {i} (training run {step['run_id']}" in x]
            assert f" on {step['metrics']['heldout_protocol']}: " in line
            assert f"upgraded_top1{sep}{step['metrics']['upgraded_top1']:.4g}" in line
        assert "not measured by any one step: run `embridge chain`" in text

    import torch

    composed = compose_adapters(v3_to_v2, v2_to_v1, normalise_between=True)
    with torch.inference_mode():
        eager = composed(torch.from_numpy(l2_normalize(v3))).numpy()
    np.testing.assert_allclose(eager, in_sequence, **F32)
    raw = compose_adapters(v3_to_v2, v2_to_v1)
    with torch.inference_mode():
        plain = raw(torch.from_numpy(l2_normalize(v3))).numpy()
    np.testing.assert_allclose(plain, adapt_queries(v2_to_v1, adapt_queries(v3_to_v2, l2_normalize(v3))), **F32)


def test_a_chain_with_a_failing_step_is_flagged_as_a_failing_layer_is(upgrade: dict, tmp_path: Path) -> None:
    import copy

    from embridge.core.bundle import bundle_text
    from embridge.core.bundle.measured import verdict_line, weighed
    from embridge.core.bundle.readme import readme_text

    runs = upgrade["runs"]
    with Workspace.open(upgrade["path"]) as ws:
        manifest = export_bundle(ws, tmp_path / "chain.zip", [runs["v2_to_v1"], runs["v3_to_v2"]])["manifest"]
    steps_pass = [weighed(step["metrics"]).compatible for step in manifest["chain"]]
    assert all(steps_pass) == (verdict_line(manifest) is None)
    broken = copy.deepcopy(manifest)
    second = broken["chain"][1]["metrics"]
    second.update(upgraded_top1=second["old_old_top1"] - 0.2, compatible=False)
    warning = verdict_line(broken)
    assert warning is not None and warning.startswith("WARNING: ")
    step = broken["chain"][1]
    assert f"step 2 (training run {step['run_id']}, {step['kind']}): upgraded top-1 " in warning
    assert f"is not above old/old {second['old_old_top1']:.3f}" in warning and "`embridge chain`" in warning
    for text in (readme_text(broken), bundle_text(broken)):
        assert warning in text


def test_chain_refuses_runs_that_do_not_link(upgrade: dict, tmp_path: Path) -> None:
    runs = upgrade["runs"]
    with Workspace.open(upgrade["path"]) as ws:
        with pytest.raises(BundleError, match="do not form one chain"):
            export_bundle(ws, tmp_path / "x.zip", [runs["v2_to_v1"], runs["v3_to_v1"]])
        with pytest.raises(BundleError, match="fusion"):
            export_bundle(ws, tmp_path / "y.zip", [runs["v3_to_v2"], runs["fusion"]])
        with pytest.raises(BundleError, match="cannot be chained"):
            compose_adapters(_adapter(ws, runs["fusion"]), _adapter(ws, runs["v2_to_v1"]))
        with pytest.raises(BundleError, match="16-d vectors"):
            compose_adapters(_adapter(ws, runs["v3_to_v1"]), _adapter(ws, runs["v3_to_v2"]))
    assert not (tmp_path / "x.zip").exists()


def test_bt2_and_fusion_bundles_deploy_the_query_side(upgrade: dict, tmp_path: Path) -> None:
    runs, v1, v3 = upgrade["runs"], upgrade["vectors"]["v1"], upgrade["vectors"]["v3"]
    with Workspace.open(upgrade["path"]) as ws:
        export_bundle(ws, tmp_path / "bt2", [runs["bt2"]])
        export_bundle(ws, tmp_path / "fusion", [runs["fusion"]])
        bt2, fusion = _adapter(ws, runs["bt2"]), _adapter(ws, runs["fusion"])
    head = load_bundle(tmp_path / "bt2")
    assert head.out_dim == 16
    # its ceiling (head/head) is the whole head, which the deployed old-compatible part does not give
    method = json.loads((tmp_path / "bt2" / "manifest.json").read_text())["adapter"]["method"]
    assert method["head_dim"] == bt2.out_dim > 16 and "head/head ceiling is the whole head's" in method["serving"]
    readme = (tmp_path / "bt2" / "README.md").read_text()
    assert f"The layer is the first 16 of a BT² head's {bt2.out_dim} output dims" in readme
    np.testing.assert_allclose(head(v3), adapt_queries(bt2, l2_normalize(v3)), **F32)
    fused = load_bundle(tmp_path / "fusion")
    assert fused.inputs == ["new", "old"] and (tmp_path / "fusion" / "probes" / "old_inputs.npy").is_file()
    np.testing.assert_allclose(fused(v3, v1), adapt_queries(fusion, l2_normalize(v3), l2_normalize(v1)), **F32)
    with pytest.raises(BundleError, match="old model's query vectors"):
        fused(v3)


def test_cancelled_or_refused_export_leaves_nothing(upgrade: dict, tmp_path: Path) -> None:
    out = tmp_path / "b.zip"
    calls = {"n": 0}

    def stop_during_gallery() -> bool:
        calls["n"] += 1
        return True

    with Workspace.open(upgrade["path"]) as ws:
        with pytest.raises(Cancelled):
            export_bundle(ws, out, [upgrade["runs"]["fct"]], should_stop=stop_during_gallery)
        assert ws.runs("export")[-1]["status"] == "cancelled"
        assert calls["n"] >= 1
        assert list(tmp_path.iterdir()) == []
        out.write_bytes(b"keep me")
        with pytest.raises(InputError, match="already exists"):
            export_bundle(ws, out, [upgrade["runs"]["v3_to_v1"]])
        assert out.read_bytes() == b"keep me"
        exports = len(ws.runs("export"))
        with pytest.raises(InputError, match=r"--gallery: a transformed gallery needs an old->new \(forward\) layer "
                                             r"without side information; run \d+'s procrustes layer maps new queries"):
            export_bundle(ws, tmp_path / "g.zip", [upgrade["runs"]["v3_to_v1"]], gallery=True)
        assert len(ws.runs("export")) == exports  # refused before the export is recorded as a run
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.zip"]


@pytest.mark.parametrize("name", ["b.zip", "folder"])
def test_a_file_that_appears_at_out_during_the_export_is_never_replaced(upgrade: dict, tmp_path: Path,
                                                                       name: str) -> None:
    out = tmp_path / name

    def someone_writes_out() -> bool:
        if not out.exists():
            out.write_bytes(b"precious")  # another process takes the name while the bundle is made
        return False

    with Workspace.open(upgrade["path"]) as ws:
        bundles = len(ws.bundles())
        with pytest.raises(BundleError, match="appeared while the bundle was being written; nothing was replaced"):
            export_bundle(ws, out, [upgrade["runs"]["fct"]], should_stop=someone_writes_out)
        assert ws.runs("export")[-1]["status"] == "failed" and len(ws.bundles()) == bundles
    assert out.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_two_exports_never_write_one_bundle_at_once(upgrade: dict, tmp_path: Path) -> None:
    """An export holds ``<out>.lock`` (as ``bundle apply`` does): a second export to that path is
    refused at once, before it records a run, and leaves the bundle there as it was."""
    out = tmp_path / "b.zip"
    with Workspace.open(upgrade["path"]) as ws:
        export_bundle(ws, out, [upgrade["runs"]["v3_to_v1"]])
        assert sorted(p.name for p in tmp_path.iterdir()) == ["b.zip"]  # the lock file goes with the export
        before, runs, bundles = out.read_bytes(), len(ws.runs()), len(ws.bundles())
        other = HeldLock(tmp_path / "b.zip.lock", lambda: AssertionError("the lock was free"))
        try:
            with pytest.raises(BundleError, match=r"b\.zip: another 'bundle export' is writing this bundle"):
                export_bundle(ws, out, [upgrade["runs"]["fct"]], overwrite=True)
            assert (len(ws.runs()), len(ws.bundles())) == (runs, bundles)
        finally:
            other.release()
        assert out.read_bytes() == before
        export_bundle(ws, out, [upgrade["runs"]["fct"]], overwrite=True)
        assert len(ws.bundles()) == bundles + 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.zip"]
    verify_bundle(out)


def test_an_export_stopped_before_it_is_recorded_takes_its_bundle_back(upgrade: dict, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C or SIGTERM between the bundle taking its name and its workspace record: nothing is left at
    --out, so the same command can simply run again."""
    out = tmp_path / "b.zip"
    with Workspace.open(upgrade["path"]) as ws:
        bundles = len(ws.bundles())

        def interrupted(*args: object, **kwargs: object) -> None:
            assert out.is_file()  # the bundle had its name when the stop came
            raise KeyboardInterrupt

        monkeypatch.setattr(ws, "add_bundle", interrupted)
        with pytest.raises(KeyboardInterrupt):
            export_bundle(ws, out, [upgrade["runs"]["v3_to_v1"]])
        monkeypatch.undo()
        assert ws.runs("export")[-1]["status"] == "cancelled" and len(ws.bundles()) == bundles
        assert list(tmp_path.iterdir()) == []
        result = export_bundle(ws, out, [upgrade["runs"]["v3_to_v1"]])
        assert len(ws.bundles()) == bundles + 1 and result["sha256"] == sha256_file(out)
    verify_bundle(out)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_while_a_bundle_takes_its_name_waits_for_its_record(
        upgrade: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        signum: int) -> None:
    """Ctrl-C or SIGTERM inside the swap of a bundle folder with the earlier one (``--overwrite``) lost track of
    where the earlier bundle lay: cleaning up deleted it, and the new bundle stayed at --out unrecorded."""
    from embridge.core.bundle import bundle_export

    out = tmp_path / "bundle"
    export = ["bundle", "export", "--workspace", str(upgrade["path"]), "--out", str(out), "--overwrite", "--run"]
    assert main([*export, str(upgrade["runs"]["v3_to_v2"])]) == 0
    swap = bundle_export.exchange

    def stopped_inside(a: Path, b: Path) -> bool:
        swapped = swap(a, b)
        os.kill(os.getpid(), signum)  # delivered before the swap's caller has returned
        return swapped

    monkeypatch.setattr(bundle_export, "exchange", stopped_inside)
    capsys.readouterr()
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    assert main([*export, str(upgrade["runs"]["v3_to_v1"])]) == 0  # the stop came after the work, as documented
    # a command run in-process leaves the caller's handlers as they were (it ignored both signals from then
    # on, which every child process of later tests inherited)
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers
    monkeypatch.undo()
    with Workspace.open(upgrade["path"]) as ws:
        latest = ws.bundles()[-1]
        assert ws.runs("export")[-1]["status"] == "completed"
        layer = ws.run(upgrade["runs"]["v3_to_v1"])["metrics"]["adapter_id"]
    assert latest["sha256"] == sha256_tree(out) and latest["adapter_id"] == layer
    verify_bundle(out)
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]  # the earlier bundle went once the new one was recorded


def test_overwrite_never_deletes_files_added_inside_a_bundle_folder(upgrade: dict, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bundle"
    export = ["bundle", "export", "--workspace", str(upgrade["path"]), "--run", str(upgrade["runs"]["v3_to_v2"]),
              "--out", str(out), "--overwrite"]
    assert main(export) == 0
    (out / "notes.txt").write_text("mine\n")
    (out / "probes" / "extra.npy").write_bytes(b"also mine")
    (out / "drafts").mkdir()
    with Workspace.open(upgrade["path"]) as ws:
        runs, bundles = len(ws.runs()), len(ws.bundles())
    before = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(export) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert f"{out}: holds files that are not part of the bundle (drafts/, notes.txt, probes/extra.npy)" in captured.err
    assert {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert (out / "drafts").is_dir() and sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
    with Workspace.open(upgrade["path"]) as ws:
        assert (len(ws.runs()), len(ws.bundles())) == (runs, bundles)
    for name in ("notes.txt", "probes/extra.npy"):
        (out / name).unlink()
    (out / "drafts").rmdir()
    assert main(export) == 0  # only the bundle's own files: replaced
    verify_bundle(out)


def test_the_gallery_file_has_its_space_reserved_before_the_first_row(upgrade: dict, tmp_path: Path) -> None:
    """Written through a memory map of a sparse file, a full disk would kill the export with SIGBUS."""
    seen: list[tuple[int, int]] = []

    def look_then_stop() -> bool:
        for path in tmp_path.glob(".tmp-*/gallery_transformed/vectors.npy"):
            st = path.stat()
            seen.append((st.st_size, st.st_blocks * 512))
        return True

    with Workspace.open(upgrade["path"]) as ws, pytest.raises(Cancelled):
        export_bundle(ws, tmp_path / "g", [upgrade["runs"]["fct"]], should_stop=look_then_stop)
    assert len(seen) == 1 and seen[0][0] > 4096 and seen[0][1] >= seen[0][0], seen
    assert list(tmp_path.iterdir()) == []


def test_an_export_into_a_bundle_folder_or_onto_a_device_is_refused(upgrade: dict, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A file written inside a bundle folder is not in its manifest: the bundle would no longer verify."""
    out = tmp_path / "bundle"
    export = ["bundle", "export", "--workspace", str(upgrade["path"]), "--run", str(upgrade["runs"]["v3_to_v2"])]
    assert main([*export, "--out", str(out)]) == 0
    before = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    for inner in (out / "inner.zip", out / "probes" / "deeper"):
        assert main([*export, "--out", str(inner)]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"--out: {inner}: is inside the bundle {out}" in err
    assert {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    verify_bundle(out)
    assert main([*export, "--out", "/dev/null", "--overwrite"]) == 1
    assert "/dev/null: is a device; an export replaces only an earlier bundle" in capsys.readouterr().err


def test_a_chain_bundle_ships_its_chain_report_end_to_end_not_one_steps(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """--report of the chain's own report was refused ('measured for no training run'), while one step's report
    was taken and headed the bundle as the upgrade's quality (v3->v2 against the v2 gallery)."""
    up = build_upgrade_workspace(tmp_path / "ws", with_report=True)
    ws_path, runs = str(up["path"]), up["runs"]
    chain = f"{runs['v2_to_v1']},{runs['v3_to_v2']}"
    capsys.readouterr()
    assert main(["chain", "-w", ws_path, "--models", "v1,v2,v3", "--runs", chain, "--json"]) == 0
    measured = json.loads(capsys.readouterr().out)
    matrix, report_id = measured["matrix"], measured["report_id"]
    with Workspace.open(ws_path) as ws:
        manifest = export_bundle(ws, tmp_path / "c.zip", [runs["v2_to_v1"], runs["v3_to_v2"]],
                                 report_id=report_id)["manifest"]
        from embridge.core.report.build import ReportOptions, build_report

        step_report = build_report(ws, runs["v3_to_v2"], ReportOptions(n_boot=20, backfill_steps=2)).report_id
        with pytest.raises(InputError, match=rf"--report {step_report}: measured one step of this chain \(run "
                                             rf"{runs['v3_to_v2']}\), not the chain end to end; give the chain's own "
                                             rf"report \('embridge chain --runs {chain}' makes one\)"):
            export_bundle(ws, tmp_path / "step.zip", [runs["v2_to_v1"], runs["v3_to_v2"]], report_id=step_report)
    metrics = manifest["metrics"]
    assert metrics["source"] == f"chain report {report_id} (v1 -> v2 -> v3, end to end)"
    assert metrics["values"]["upgraded_top1"] == matrix[-1][0] and metrics["values"]["old_old_top1"] == matrix[0][0]
    assert metrics["values"]["new_new_top1"] == matrix[-1][-1] and metrics["values"]["ac"] == measured["ac"]
    from embridge.core.bundle.readme import readme_text

    text = readme_text(manifest)
    assert f"upgraded_top1 = {matrix[-1][0]:.4g}" in text and "not measured by any one step" not in text
    assert verify_bundle(tmp_path / "c.zip") and not (tmp_path / "step.zip").exists()
    capsys.readouterr()  # a one-step chain's report is that run's too: shipped, not refused as "not of run N"
    assert main(["chain", "-w", ws_path, "--models", "v1,v3", "--runs", str(runs["v3_to_v1"]), "--json"]) == 0
    one = json.loads(capsys.readouterr().out)
    with Workspace.open(ws_path) as ws:
        single = export_bundle(ws, tmp_path / "one.zip", [runs["v3_to_v1"]], report_id=one["report_id"])["manifest"]
    assert single["metrics"]["values"]["upgraded_top1"] == one["matrix"][-1][0]


def test_chain_export_refusals_name_the_option_and_the_run(upgrade: dict, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    runs, ws = upgrade["runs"], str(upgrade["path"])
    a, b = runs["v2_to_v1"], runs["v3_to_v2"]
    out = ["--out", str(tmp_path / "x.zip")]
    cases = [(["--chain", f"{a},99"], 1, "--chain: names run 99, which the workspace does not hold"),
             (["--chain", f"{a},{b}", "--run", str(a)], 2, "--chain: names the chain's runs itself"),
             (["--run", str(a), "--run", str(a)], 1, f"run {a} is named twice among the bundle's runs ({a}, {a})")]
    capsys.readouterr()
    for args, code, said in cases:
        assert main(["bundle", "export", "-w", ws, *args, *out]) == code, args
        err = capsys.readouterr().err
        assert said in err and err.count("\n") == 1, err
    assert not (tmp_path / "x.zip").exists()


def test_a_bundle_carries_the_improvements_interval_its_warning_reads(upgrade: dict, tmp_path: Path) -> None:
    """A drop within the noise was 'worse than today' in a bundle's warning while its report said 'within
    noise': the manifest held no interval to read."""
    with Workspace.open(upgrade["path"]) as ws:
        manifest = export_bundle(ws, tmp_path / "b.zip", [upgrade["runs"]["v3_to_v1"]],
                                 report_id=upgrade["report_id"])["manifest"]
        report = json.loads((ws.root / ws.report(upgrade["report_id"])["json_file"]).read_text())
    low, high = report["headline"]["improvement_ci"]["top1"]
    values = manifest["metrics"]["values"]
    assert (values["improvement_top1_ci_low"], values["improvement_top1_ci_high"]) == (low, high)
    (run,) = [e for e in manifest["metrics"]["also_measured"] if e["source"].startswith("training run")]
    assert "improvement_top1_ci_low" in run["values"]
