"""A bundle's report is the report of its own layer: export refuses another run's, verify catches one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from bundle_fixtures import build_upgrade_workspace

from embridge.core.bundle import export_bundle, verify_bundle
from embridge.core.bundle.manifest import checksums_text
from embridge.core.cli.main import main
from embridge.core.errors import BundleError, InputError
from embridge.core.report.build import ReportOptions, build_report
from embridge.core.store import Workspace
from embridge.core.store.files import sha256_file


@pytest.fixture(scope="module")
def two_reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A workspace whose v3->v1 and v2->v1 runs each have a report, and a bundle of each."""
    root = tmp_path_factory.mktemp("reports")
    info = build_upgrade_workspace(root / "ws")  # reports the v3 -> v1 run
    runs = info["runs"]
    with Workspace.open(info["path"]) as ws:
        info["other_report"] = build_report(ws, runs["v2_to_v1"], ReportOptions(n_boot=50, backfill_steps=3)).report_id
        export_bundle(ws, root / "v3", [runs["v3_to_v1"]])
        export_bundle(ws, root / "v2", [runs["v2_to_v1"]])
    info["v3"], info["v2"] = root / "v3", root / "v2"
    return info


def _tables(ws_path: Path) -> tuple[list, list]:
    with Workspace.open(ws_path) as ws:
        return ws.runs(), ws.bundles()


def test_a_report_of_another_run_is_refused_before_anything_is_written(
        two_reports: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs, other = two_reports["runs"], two_reports["other_report"]
    before = _tables(two_reports["path"])
    out = tmp_path / "x3.zip"
    code = main(["bundle", "export", "-w", str(two_reports["path"]), "--run", str(runs["v3_to_v1"]),
                 "--report", str(other), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 1 and captured.out == "" and captured.err.count("\n") == 1, captured.err
    assert (f"--report {other}: was measured for run {runs['v2_to_v1']}, not run {runs['v3_to_v1']}"
            in captured.err)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    assert _tables(two_reports["path"]) == before
    # the run's own report is accepted; a chain refuses one step's report as its quality (the chain's own
    # report measures it end to end)
    with Workspace.open(two_reports["path"]) as ws:
        own = export_bundle(ws, tmp_path / "own.zip", [runs["v2_to_v1"]], report_id=other)["manifest"]
        with pytest.raises(InputError, match=rf"--report {other}: measured one step of this chain"):
            export_bundle(ws, tmp_path / "chain.zip", [runs["v3_to_v2"], runs["v2_to_v1"]], report_id=other)
    assert own["report"]["id"] == other and own["report"]["run_id"] == runs["v2_to_v1"]
    verify_bundle(tmp_path / "own.zip")
    assert not (tmp_path / "chain.zip").exists()


def _rewrite_hashes(folder: Path) -> dict[str, Any]:
    """Make the manifest and CHECKSUMS agree with the files again, as a careful forger would."""
    manifest = json.loads((folder / "manifest.json").read_text())
    for name in manifest["files"]:
        manifest["files"][name] = {"sha256": sha256_file(folder / name), "bytes": (folder / name).stat().st_size}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    sums = {name: entry["sha256"] for name, entry in manifest["files"].items()}
    sums["manifest.json"] = sha256_file(folder / "manifest.json")
    (folder / "CHECKSUMS").write_text(checksums_text(sums))
    return manifest


def test_verify_catches_a_report_of_another_layer(two_reports: dict, tmp_path: Path) -> None:
    runs = two_reports["runs"]
    bundle = tmp_path / "bundle"
    shutil.copytree(two_reports["v3"], bundle)
    verify_bundle(bundle)
    for name in ("report.json", "report.html"):  # the other run's report, hashes rewritten to match
        shutil.copyfile(two_reports["v2"] / name, bundle / name)
    _rewrite_hashes(bundle)
    with pytest.raises(BundleError, match=rf"report\.json was measured for run {runs['v2_to_v1']} .*not for this "
                                          rf"bundle's layer \(run {runs['v3_to_v1']}\)"):
        verify_bundle(bundle)
    assert main(["bundle", "verify", str(bundle)]) == 1


def test_a_manifest_naming_another_run_for_its_report_is_named_as_the_culprit(two_reports: dict,
                                                                             tmp_path: Path) -> None:
    """Only the manifest's report.run_id was edited (hashes rewritten), and verify blamed report.json."""
    runs = two_reports["runs"]
    bundle = tmp_path / "bundle"
    shutil.copytree(two_reports["v3"], bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["report"]["run_id"] = 99
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    _rewrite_hashes(bundle)
    with pytest.raises(BundleError, match=rf"manifest\.json field 'report\.run_id' says its report measured run 99, "
                                          rf"not this bundle's layer \(run {runs['v3_to_v1']}\)$"):
        verify_bundle(bundle)


def test_a_report_edited_after_it_was_measured_is_not_shipped_and_does_not_verify(
        two_reports: dict, tmp_path: Path) -> None:
    """A stored report.json whose headline was edited (top-1 raised) was copied into a bundle whose
    manifest recorded the real number, and verify passed it."""
    ws_copy = tmp_path / "ws"
    shutil.copytree(two_reports["path"], ws_copy)
    with Workspace.open(ws_copy) as ws:
        row = ws.report(max(r["id"] for r in ws.reports() if r["run_id"] == two_reports["runs"]["v3_to_v1"]))
        stored = ws_copy / row["json_file"]
        data = json.loads(stored.read_text())
        real = data["headline"]["upgraded_top1"]
        data["headline"]["upgraded_top1"] = 0.999
        stored.write_text(json.dumps(data))
        before = ws.bundles()
        with pytest.raises(BundleError, match=rf"{stored}: gives upgraded_top1 = 0\.999, where the workspace "
                                              rf"recorded {real} when report {row['id']} was measured"):
            export_bundle(ws, tmp_path / "forged.zip", [two_reports["runs"]["v3_to_v1"]])
        assert ws.bundles() == before and not (tmp_path / "forged.zip").exists()
        stored.write_text("{garbage")  # named as the workspace's file, not the export's temp file
        with pytest.raises(BundleError, match=rf"{stored}: report {row['id']}'s report\.json is not a readable JSON"):
            export_bundle(ws, tmp_path / "forged.zip", [two_reports["runs"]["v3_to_v1"]])
    bundle = tmp_path / "bundle"  # an exported bundle edited the same way, every hash rewritten
    shutil.copytree(two_reports["v3"], bundle)
    shipped = json.loads((bundle / "report.json").read_text())
    shipped["headline"]["upgraded_top1"] = 0.999
    (bundle / "report.json").write_text(json.dumps(shipped))
    _rewrite_hashes(bundle)
    with pytest.raises(BundleError, match="the report was changed after it was measured"):
        verify_bundle(bundle)


def test_bundles_without_the_new_records_still_verify(two_reports: dict, tmp_path: Path) -> None:
    """Older bundles record no report run; their report is still checked against the chain's adapter."""
    bundle = tmp_path / "bundle"
    shutil.copytree(two_reports["v3"], bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    for key in ("run_id", "adapter_id"):
        manifest["report"].pop(key)
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    _rewrite_hashes(bundle)
    assert verify_bundle(bundle)["ok"] is True
    report = json.loads((bundle / "report.json").read_text())
    report["report_id"] = manifest["report"]["id"] + 100
    (bundle / "report.json").write_text(json.dumps(report))
    _rewrite_hashes(bundle)
    with pytest.raises(BundleError, match=rf"report\.json is report {report['report_id']}, but manifest\.json says"):
        verify_bundle(bundle)


def test_a_bundle_of_renamed_models_says_its_report_names_them_as_measured(two_reports: dict, tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """The report's files are shipped as hashed, with the names of the day; the bundle names the rename."""
    ws_path = tmp_path / "ws"
    shutil.copytree(two_reports["path"], ws_path)
    assert main(["model", "rename", "--name", "v3", "--to", "v3-2027", "-w", str(ws_path)]) == 0
    out = tmp_path / "renamed"
    assert main(["bundle", "export", "-w", str(ws_path), "--run", str(two_reports["runs"]["v3_to_v1"]),
                 "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["models"]["new"]["name"] == "v3-2027"
    assert json.loads((out / "report.json").read_text())["models"]["new"]["name"] == "v3"
    assert manifest["report"]["models_renamed"] == {"new": {"measured_as": "v3", "now": "v3-2027"}}
    line = "report.json and report.html name the models as they were called when measured: new model 'v3' (now 'v3-2027')"
    assert line in (out / "README.md").read_text()
    capsys.readouterr()
    assert main(["bundle", "inspect", str(out)]) == 0
    assert line in capsys.readouterr().out
    assert "models_renamed" not in json.loads((two_reports["v3"] / "manifest.json").read_text())["report"]
