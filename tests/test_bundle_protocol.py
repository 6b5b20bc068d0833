"""What a bundle tells its receiver: how to serve it, every number with its protocol, no local paths."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bundle_fixtures import build_upgrade_workspace

from embridge.core.adapters.cascade import cascade_rank
from embridge.core.bundle import bundle_text, export_bundle, load_bundle
from embridge.core.cli.main import main
from embridge.core.report.build import ReportOptions, build_report
from embridge.core.report.number_source import source_of_report
from embridge.core.report.report_record import CASCADE_CURVES
from embridge.core.retrieval import l2_normalize
from embridge.core.run_record import other_cells_note
from embridge.core.store import Workspace
from embridge.core.train.runs import train_run


@pytest.fixture(scope="module")
def upgrade(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The bundle workspace plus a cascade run with its report and a held-out-gallery report."""
    info = build_upgrade_workspace(tmp_path_factory.mktemp("protocol") / "ws")
    with Workspace.open(info["path"]) as ws:
        info["cascade"] = train_run(ws, "cascade", old="v1", new="v3", device="cpu")["run_id"]
        info["cascade_report"] = build_report(ws, info["cascade"], ReportOptions(n_boot=50, backfill_steps=3)).report_id
        info["heldout_report"] = build_report(ws, info["runs"]["v3_to_v1"], ReportOptions(
            n_boot=50, backfill_steps=3, heldout_gallery=True)).report_id
    return info


def _blocks(readme: str, heading: str) -> str:
    """The python code block under ``heading`` in a README."""
    part = readme.split(heading, 1)[1]
    return re.search(r"```python\n(.*?)```", part, re.S).group(1)


def _protocol_of(ws_path: Path, report_id: int) -> str:
    """The report's upgraded-cell protocol, then where new/new was measured when that differs."""
    data = json.loads((ws_path / "reports" / str(report_id) / "report.json").read_text())
    lead = source_of_report(data).label()
    return lead + other_cells_note(data["headline"], lead)


def test_a_cascade_bundle_says_how_it_is_served_and_its_code_is_the_cascade(
        upgrade: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "cascade"
    with Workspace.open(upgrade["path"]) as ws:
        manifest = export_bundle(ws, out, [upgrade["cascade"]])["manifest"]
    k = manifest["adapter"]["method"]["k"]
    readme = (out / "README.md").read_text()
    assert f"## Serve it as a cascade (K = {k})" in readme
    assert "the layer alone is not the measured system" in readme
    protocol = _protocol_of(upgrade["path"], upgrade["cascade_report"])
    assert f"old-index recall of {k}" in protocol and f"Measured (report {upgrade['cascade_report']}" in readme
    # old/old searched the old index exactly, not as the cascade: its own protocol is named
    assert re.search(r"\(upgraded\); old/old( and new/new)? on [^;]*; exact cosine search", protocol), protocol
    assert f"on {protocol}: upgraded_top1" in readme
    text = bundle_text(manifest)
    assert f"serving: the old index recalls the top {k}" in text and "not the measured system" in text
    # its curves' areas are the base layer's where nothing is backfilled: said beside them, not only in the report
    curves = manifest["metrics"]["also_measured"][-1]
    assert curves["protocol"].startswith(f"the partial-backfill curves ({CASCADE_CURVES}) (area under top-1")

    # the README's code, run as written, ranks exactly as the cascade the report measured
    v1, v3 = upgrade["vectors"]["v1"], upgrade["vectors"]["v3"]
    space: dict[str, Any] = {"x": v3[:2].astype(np.float32)}
    monkeypatch.chdir(out)
    exec(_blocks(readme, "## Use with onnxruntime only"), space)  # noqa: S102 - the deploy note's own code
    exec(_blocks(readme, "## Serve it as a cascade"), space)  # noqa: S102
    q, g = slice(0, 40), slice(40, None)
    old_q, new_q = l2_normalize(v1[q]), l2_normalize(v3[q])
    layer = load_bundle(out)
    has = np.arange(len(v1[g])) % 2 == 0
    for gallery, mask in ((None, None), (v3[g], has)):
        got = space["cascade_search"](old_q, new_q, v1[g], gallery, mask)
        want = cascade_rank(old_q, v1[g], new_q, None if gallery is None else gallery[has],
                            None if gallery is None else np.flatnonzero(has), k, layer=layer)
        assert got.shape == (40, k) and np.array_equal(got, want.ids)

    # `bundle apply` writes the fallback layer's vectors only: it says so (it was silent)
    from embridge.core.bundle import apply_bundle

    np.save(tmp_path / "queries.npy", v3[q].astype(np.float32))
    applied = apply_bundle(out, tmp_path / "queries.npy", tmp_path / "applied.npy")
    assert applied["note"].startswith("these are the cascade's fallback layer's vectors alone, not the measured "
                                      f"system (serving: the old index recalls the top {k}")


def test_every_number_in_a_bundle_names_its_protocol(upgrade: dict, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    run_id, report_id = upgrade["runs"]["v3_to_v1"], upgrade["heldout_report"]
    out = tmp_path / "heldout.zip"
    assert main(["bundle", "export", "-w", str(upgrade["path"]), "--run", str(run_id), "--report", str(report_id),
                 "--out", str(out), "--json"]) == 0
    exported = json.loads(capsys.readouterr().out)
    manifest = exported["manifest"]
    assert exported["warning"] is None  # the layer passes: the text prints no WARNING either
    with Workspace.open(upgrade["path"]) as ws:
        run = ws.run(run_id)
    report_protocol = _protocol_of(upgrade["path"], report_id)
    run_protocol = run["metrics"]["heldout_protocol"] + other_cells_note(run["metrics"])
    assert "without the train fold" in report_protocol and report_protocol != run_protocol
    # every model embedded every item here: new/new searched the very gallery the upgraded cell searched,
    # the whole gallery less the train fold, and the protocol names it once
    assert "against the whole gallery without the train fold (" in report_protocol
    assert "; new/new on " not in report_protocol and "evaluation sample" not in report_protocol
    metrics = manifest["metrics"]
    assert metrics["source"] == f"report {report_id}" and metrics["protocol"] == report_protocol
    training, curves = metrics["also_measured"]
    assert training["source"] == f"training run {run_id}, held-out" and training["protocol"] == run_protocol
    assert training["values"]["upgraded_top1"] == run["metrics"]["upgraded_top1"]
    # the backfill areas were measured on the curves' sample, not on the upgraded cell's gallery: apart
    stored = json.loads((upgrade["path"] / "reports" / str(report_id) / "report.json").read_text())
    sample = stored["cells"][stored["ceiling_cell"]]["protocol"]["text"]
    assert curves["source"] == f"report {report_id}, partial backfill"
    assert curves["protocol"] == f"the partial-backfill curves (area under top-1 over the backfilled share β) on {sample}"
    assert curves["values"] == {f"backfill_area_{p}": c["areas"]["top1"] for p, c in stored["backfill"]["policies"].items()}
    assert not any(k.startswith("backfill_area") for k in metrics["values"])
    step = manifest["chain"][0]  # the step's own numbers: the run's, with new/new's gallery named apart
    assert step["metrics"]["heldout_protocol"] == run_protocol
    assert step["metrics"]["new_new_top1"] == run["metrics"]["new_new_top1"]
    assert step["metrics_from"] == f"training run {run_id}'s held-out numbers (not report {step['report_id']}'s)"

    # the README: one line per protocol, each number next to the gallery it was measured on
    assert main(["bundle", "inspect", str(out), "--json"]) == 0
    inspected = json.loads(capsys.readouterr().out)
    assert [(m["source"], m["protocol"]) for m in inspected["measured"]] == [
        (f"report {report_id}", report_protocol), (f"training run {run_id}, held-out", run_protocol),
        (curves["source"], curves["protocol"])]
    assert main(["bundle", "inspect", str(out)]) == 0
    human = capsys.readouterr().out
    import zipfile

    with zipfile.ZipFile(out) as zf:
        readme = zf.read("README.md").decode()
    for text, marker in ((readme, "upgraded_top1 = "), (human, "upgraded_top1=")):
        lines = [line for line in text.splitlines() if marker in line]
        assert len(lines) == 2, lines
        assert f"report {report_id}" in lines[0] and f" on {report_protocol}: " in lines[0]
        assert f"training run {run_id}" in lines[1] and f" on {run_protocol}: " in lines[1]
    assert "FAILS" not in readme and "FAILS" not in human
    # a source without any of the README's headline numbers (the backfill areas) gets no empty line
    assert not [line for line in readme.splitlines() if "Measured (" in line and line.rstrip(" .").endswith(":")]

    # the same manifest with the shipped report failing the criterion: README and inspect warn first
    from embridge.core.bundle.readme import readme_text

    failing = json.loads(json.dumps(manifest))
    failing["metrics"]["values"].update(compatible=False, upgraded_top1=0.2, old_old_top1=0.5)
    for text in (readme_text(failing), bundle_text(failing)):
        (warning,) = [line for line in text.splitlines() if "FAILS the compatibility criterion" in line]
        assert f"(report {report_id}): upgraded top-1 0.200 is not above old/old 0.500" in warning
        assert "serving new queries through it" in warning  # a query-side layer
        shown = text.splitlines()
        assert shown.index(warning) < min([n for n, line in enumerate(shown) if line.startswith(("```", "adapter:"))])
    assert bundle_text(failing).splitlines()[0].startswith("WARNING: this layer FAILS")
    from embridge.core.bundle.measured import verdict_line

    assert verdict_line(failing) == bundle_text(failing).splitlines()[0]  # what export --json gives as "warning"
    assert readme_text(failing).splitlines()[2].startswith("**WARNING: this layer FAILS")  # under the title


def test_the_manifest_leaves_out_the_exporting_machines_model_path(upgrade: dict, tmp_path: Path) -> None:
    gone = str(tmp_path / "tmpmodel-gone" / "new-model")
    with Workspace.open(upgrade["path"]) as ws:
        sha = "ab" * 32
        ws.add_model("v3local", "other", {"name": "v3local", "kind": "vectors", "dim": 32, "sha256": sha,
                                          "path": gone, "query_prompt": "query: "}, None)
        ws.add_vector_set("v3local", upgrade["ids"], upgrade["vectors"]["v3"])
        run_id = train_run(ws, "procrustes", old="v1", new="v3local", device="cpu")["run_id"]
        manifest = export_bundle(ws, tmp_path / "b", [run_id])["manifest"]
    entry = manifest["models"]["new"]
    assert entry["name"] == "v3local" and entry["sha256"] == sha and entry["spec"]["sha256"] == sha
    assert "path" not in entry["spec"] and entry["spec"]["query_prompt"] == "query: "
    assert gone not in (tmp_path / "b" / "manifest.json").read_text()
    assert "tmpmodel-gone" not in (tmp_path / "b" / "README.md").read_text()


def test_a_cascade_names_old_old_protocol_apart_from_its_own() -> None:
    """A cascade's upgraded cell searches its own way (old recall, new re-rank) while old/old searched
    exactly: the sentence led by the cascade's protocol names old/old's, not the cascade's twice."""
    gallery, sample = "40 queries against the whole gallery (400 items)", "40 queries against the sample (100 items)"
    cascade, exact = f"{gallery}; cascade: exact old-index recall of 5", f"{gallery}; exact cosine search"
    metrics = {"protocols": {"old/old": {"text": exact}, "new→old": {"text": cascade},
                             "new/new": {"text": f"{sample}; exact cosine search"}}}
    assert cascade + other_cells_note(metrics, cascade) == (
        f"{cascade} (upgraded); old/old on {exact}; new/new on {sample}; exact cosine search")
    # the common case reads as before: the lead is old/old's own protocol, shared with the upgraded cell
    metrics["protocols"]["new→old"] = {"text": exact}
    assert other_cells_note(metrics, exact) == other_cells_note(metrics) == (
        f"; new/new on {sample}; exact cosine search")


def test_a_steps_new_new_number_names_the_sample_it_searched(demo_copy: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """The demo's new model embedded 600 of its 997 gallery items: new/new searched those 600."""
    assert main(["train", "-w", str(demo_copy), "--method", "procrustes", "--device", "cpu", "--json"]) == 0
    capsys.readouterr()
    with Workspace.open(demo_copy) as ws:
        run = ws.latest_run("train")
    assert main(["bundle", "export", "-w", str(demo_copy), "--out", str(tmp_path / "b.zip"), "--json"]) == 0
    exported = json.loads(capsys.readouterr().out)
    # run_id is the training run, as in train and report --json; the export's own record is export_run_id
    assert exported["run_id"] == run["id"] and exported["run_ids"] == [run["id"]]
    with Workspace.open(demo_copy) as ws:
        assert exported["export_run_id"] == ws.latest_run("export")["id"] != run["id"]
    step = exported["manifest"]["chain"][0]
    protocol = step["metrics"]["heldout_protocol"]
    assert protocol.startswith(run["metrics"]["heldout_protocol"]) and "997 items" in protocol
    assert "; new/new (and the _sample numbers and gain_retained) on " in protocol
    assert "600 items" in protocol.split("; new/new ")[1]


def test_a_bundle_leaves_out_the_training_runs_numbers_the_workspace_has_outgrown(
        demo_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Exported with a report made after the evaluation sample grew, a bundle also shipped the training
    run's held-out numbers of the smaller sample, with nothing saying they were outgrown: two gains retained
    for one layer."""
    ws = str(demo_copy)
    assert main(["train", "-w", ws, "--method", "procrustes"]) == 0
    assert main(["embed", "-w", ws, "--model", "new-cnn", "--split", "gallery", "--sample", "800"]) == 0
    assert main(["report", "-w", ws, "--run", "1", "--bootstrap", "20"]) == 0
    capsys.readouterr()
    assert main(["bundle", "export", "-w", ws, "--run", "1", "--out", str(tmp_path / "b.zip"), "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)["manifest"]
    assert "measured_before_changes" not in manifest
    assert [m["source"] for m in manifest["metrics"]["also_measured"]] == ["report 1, partial backfill"]
    assert "training run 1" not in bundle_text(manifest)


def test_a_cascade_reports_curve_areas_say_whose_they_are(upgrade: dict, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Printed under the cascade's report, its areas read as the cascade's; β = 0 is its base layer alone."""
    import shutil

    ws = shutil.copytree(upgrade["path"], tmp_path / "ws")
    capsys.readouterr()
    assert main(["report", "-w", str(ws), "--run", str(upgrade["cascade"]), "--bootstrap", "20",
                 "--backfill-steps", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    said = lines.index(f"partial backfill: {CASCADE_CURVES}")
    assert lines[said - 1].startswith("partial backfill (") and "area under the top-1 curve" in lines[said - 1]


def test_a_report_and_its_training_run_on_one_protocol_share_one_line(demo_copy: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """The report lists ARR among the numbers measured on the evaluation sample, the training run does not:
    the protocols differed in that list alone, and the README and inspect printed the same numbers twice."""
    ws = str(demo_copy)
    assert main(["train", "-w", ws, "--method", "procrustes", "--device", "cpu"]) == 0
    assert main(["report", "-w", ws, "--run", "1", "--bootstrap", "20"]) == 0
    capsys.readouterr()
    out = tmp_path / "b.zip"
    assert main(["bundle", "export", "-w", ws, "--run", "1", "--probes", "5000", "--out", str(out), "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)["manifest"]
    report, training = manifest["metrics"], manifest["metrics"]["also_measured"][0]
    assert training["source"] == "training run 1, held-out" and report["protocol"] != training["protocol"]
    assert "gain_retained and arr) on " in report["protocol"]
    text = bundle_text(manifest)
    (line,) = [line for line in text.splitlines() if "upgraded_top1=" in line]
    assert line.startswith("metrics (report 1; training run 1, held-out) on ") and report["protocol"] in line
    # fewer held-out query vectors than the probes asked for: all of them, and the count says so
    with Workspace.open(demo_copy) as w:
        held_out = len(w.query_ids())
    assert manifest["probes"]["count"] == held_out < 5000
    assert f"probes: {held_out} held-out (test query) vectors of model 'new-cnn' (every one there is; 5000 were " \
           "asked)" in text.splitlines()
