"""Numbers measured on data the workspace has since outgrown are named as such on every surface.

The gallery grows (an import and its embedding) after a layer was trained and reported: the runs
listing and the app's pages say the recorded numbers describe the earlier data, a plan measures a
fresh report instead of weighing the old one, and an export warns that the numbers it ships are not
the workspace's current ones. Nothing is flagged while the data stays as it was.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from embridge.core.cli.main import main
from embridge.core.data_state import DataState, changes_since
from embridge.core.store import Workspace


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def _grow_gallery(ws: Path, tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Twelve more gallery images (copies of query images under their labels), embedded by the old model."""
    extra = tmp / f"extra-{tmp.name}"
    for label in ("0", "1", "2"):
        (extra / label).mkdir(parents=True)
        for image in sorted((ws / "demo-items" / "query" / label).iterdir())[:4]:
            shutil.copy(image, extra / label / f"{tmp.name}-{image.name}")
    _run(["import", "-w", str(ws), "--path", str(extra), "--format", "images", "--split", "gallery"], capsys)
    _run(["embed", "-w", str(ws), "--model", "old-mlp"], capsys)


def test_numbers_measured_before_the_gallery_grew_are_named_stale(demo_copy: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    ws = str(demo_copy)
    _run(["train", "-w", ws, "--method", "procrustes"], capsys)
    _run(["report", "-w", ws, "--run", "1", "--backfill-steps", "5", "--bootstrap", "50"], capsys)
    listed = json.loads(_run(["runs", "-w", ws, "--json"], capsys))["runs"]
    assert [r["stale"] for r in listed] == [None, None]
    plan = json.loads(_run(["plan", "-w", ws, "--run", "1", "--json"], capsys))
    assert plan["report_id"] == 1 and not any("measured before" in n for n in plan["notes"])  # current: reused

    _grow_gallery(demo_copy, tmp_path, capsys)
    listed = json.loads(_run(["runs", "-w", ws, "--json"], capsys))["runs"]
    train, report = listed[0], listed[1]
    with Workspace.open(demo_copy) as w:
        held = len(w.ids_with_vectors("old-mlp"))
    for run in (train, report):
        assert run["stale"] == (f"measured before the workspace changed (model 'old-mlp' has vectors of 12 more items "
                                f"({held - 12} then, {held} now)): these numbers describe its data as it was; "
                                "'embridge report --run 1' measures it as it is now")
    text = _run(["runs", "-w", ws], capsys)
    assert text.count("measured before the workspace changed") == 2

    with Workspace.open(demo_copy) as w:
        gallery = w.gallery_count()
        reports = len(w.reports())
    plan = json.loads(_run(["plan", "-w", ws, "--run", "1", "--json"], capsys))
    assert plan["report_id"] == reports + 1 and plan["gallery_full"] == gallery == 997 + 12
    assert "report 1 was measured before the workspace changed (model 'old-mlp' has vectors of 12 more items" \
        in plan["notes"][-1] and plan["notes"][-1].endswith("so this plan measured a new one with its settings")
    with Workspace.open(demo_copy) as w:  # the fresh report repeats the earlier one's settings
        fresh = next(r for r in w.runs("report") if r["metrics"].get("report_id") == plan["report_id"])
    assert (fresh["config"]["backfill_steps"], fresh["config"]["n_boot"]) == (5, 50)
    assert plan["protocols"]["old/old"]["text"].endswith(f"against the whole gallery ({gallery} items), relevance: "
                                                          "same label; exact cosine search")
    # the fresh report is current; the training run's own held-out numbers still describe the old gallery
    listed = json.loads(_run(["runs", "-w", ws, "--json"], capsys))["runs"]
    assert listed[-1]["kind"] == "report" and listed[-1]["stale"] is None
    assert listed[0]["stale"].endswith(f"report {plan['report_id']} measures it as it is now")  # names that report

    exported = json.loads(_run(["bundle", "export", "-w", ws, "--run", "1", "--out", str(tmp_path / "b.zip"),
                                "--json"], capsys))
    assert exported["stale"] is None and exported["warning"] is None  # ships the fresh report
    _grow_gallery(demo_copy, tmp_path / "again", capsys)
    capsys.readouterr()
    assert main(["bundle", "export", "-w", ws, "--run", "1", "--out", str(tmp_path / "c.zip"), "--json"]) == 0
    out, err = capsys.readouterr()
    exported = json.loads(out)
    assert exported["warning"] in err.splitlines()  # seen by a person when the JSON goes to a program
    assert exported["warning"].startswith("WARNING: the bundle's numbers were measured before the workspace "
                                          "changed (model 'old-mlp' has vectors of 12 more items")
    text = _run(["bundle", "export", "-w", ws, "--run", "1", "--out", str(tmp_path / "d.zip")], capsys)
    assert text.rstrip().splitlines()[-1] == exported["warning"]
    assert text.count(exported["stale"]) == 1  # said once, in the WARNING line, not again in the summary
    # the deploying side reads the same note: the manifest, the bundle's README and `bundle inspect`
    note = exported["stale"]
    assert exported["manifest"]["measured_before_changes"] == note
    with zipfile.ZipFile(tmp_path / "c.zip") as bundle:
        assert f"Note: the numbers below were {note}." in bundle.read("README.md").decode("utf-8")
    assert f"note: these numbers were {note}" in _run(["bundle", "inspect", str(tmp_path / "c.zip")], capsys)
    _run(["bundle", "verify", str(tmp_path / "c.zip")], capsys)


def test_only_the_measured_models_vectors_count() -> None:
    """A third model's new vectors change nothing the old/new pair was measured on; a rename keeps its id."""
    names = {"1": "old", "2": "new", "3": "other"}
    then = DataState(0, {"1": 100, "2": 60, "3": 10}, names)
    now = DataState(0, {"1": 100, "2": 60, "3": 50}, names)
    assert changes_since(then, now, ("old", "new")) == []
    assert changes_since(then, now, None) == ["model 'other' has vectors of 40 more items (10 then, 50 now)"]
    renamed = DataState(0, {"1": 100, "2": 61, "3": 10}, {**names, "2": "new-v2"})
    assert changes_since(then, renamed, ("old", "new")) == ["model 'new-v2' has vectors of 1 more item (60 then, 61 now)"]
    judged = DataState(7, {"1": 100, "2": 60, "3": 10}, names)
    assert changes_since(then, judged, ("old", "new")) == ["7 relevance judgments added"]
    assert DataState.from_json(judged.to_json()) == judged


def test_items_without_vectors_and_copied_vectors_change_nothing(demo_copy: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Items imported without any model's vectors, and a backfill that only copies vectors the model already
    held, leave every number as it was: the training run is not flagged. The backfill changes the gallery
    a system serves, which a report measures (its served-now line), so the report before it is flagged
    and plan measures a new one."""
    ws = str(demo_copy)
    _run(["embed", "-w", ws, "--model", "new-cnn", "--split", "gallery"], capsys)
    _run(["train", "-w", ws, "--method", "procrustes"], capsys)
    _run(["report", "-w", ws, "--run", "2"], capsys)
    copied = json.loads(_run(["backfill", "-w", ws, "--model", "new-cnn", "--json"], capsys))
    assert copied["embedded"] == 0  # every gallery item already held the new model's vector
    extra = tmp_path / "extra" / "0"
    extra.mkdir(parents=True)
    for image in sorted((demo_copy / "demo-items" / "query" / "0").iterdir())[:3]:
        shutil.copy(image, extra / f"late-{image.name}")
    _run(["import", "-w", ws, "--path", str(extra.parent), "--format", "images", "--split", "gallery"], capsys)
    runs = json.loads(_run(["runs", "-w", ws, "--json"], capsys))["runs"]
    train, report = [r["stale"] for r in runs if r["kind"] in ("train", "report")]
    backfill_run = next(r["id"] for r in runs if r["kind"] == "backfill")
    assert train is None and f"model 'new-cnn' was backfilled (run {backfill_run})" in report
    assert json.loads(_run(["plan", "-w", ws, "--run", "2", "--json"], capsys))["report_id"] == 2


def test_an_outgrown_chain_report_names_the_chain_command_that_measures_it_again(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np
    from report_fixtures import build_chain_workspace

    chain = build_chain_workspace(tmp_path / "ws")
    ws, runs = str(chain["path"]), ",".join(map(str, chain["runs"]))
    command = ["chain", "-w", ws, "--models", ",".join(chain["models"]), "--runs", runs]
    _run(command, capsys)
    with Workspace.open(chain["path"]) as w:
        ids = w.add_items([{"key": f"late{n}", "label": "1", "split": "gallery"} for n in range(4)], source="late")
        w.add_vector_set("v1", ids, np.random.default_rng(0).normal(size=(4, w.vector_dim("v1"))))
    (report,) = [r for r in json.loads(_run(["runs", "-w", ws, "--json"], capsys))["runs"] if r["method"] == "chain"]
    asked = f"'embridge chain --models {','.join(chain['models'])} --runs {runs}' measures it as it is now"
    assert report["stale"].endswith(asked)
    _run(command, capsys)  # the command named runs as written


def _fusion_beside_procrustes(ws: str, capsys: pytest.CaptureFixture[str]) -> Callable[[], dict]:
    """Train procrustes (run 1) and fusion (run 2), report the fusion; the fusion's option in run 1's plan."""
    _run(["train", "-w", ws, "--method", "procrustes"], capsys)
    _run(["train", "-w", ws, "--method", "fusion"], capsys)
    _run(["report", "-w", ws, "--run", "2", "--bootstrap", "20", "--backfill-steps", "2"], capsys)

    def fusion() -> dict:
        plan = json.loads(_run(["plan", "-w", ws, "--run", "1", "--json"], capsys))
        return next(o for o in plan["options"] if o["name"] == "fusion")

    return fusion


def test_another_runs_layer_measured_on_an_earlier_sample_is_not_weighed(demo_copy: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The plan took a fusion run's gain retained from a report whose upgraded-sample numbers searched the
    600-item evaluation sample, beside old/old and new/new on the 800-item sample the plan's own fresh
    report searched: numerator and denominator of two galleries, shown as comparable."""
    ws = str(demo_copy)
    fusion = _fusion_beside_procrustes(ws, capsys)
    before = fusion()  # measured on this very sample: weighed
    assert before["quality_from"]["comparable"] and before["gain_retained"] is not None
    _run(["embed", "-w", ws, "--model", "new-cnn", "--sample", "1000"], capsys)  # 800 gallery items
    after = fusion()
    assert after["quality_from"]["comparable"] is False and after["comparable"] is False
    assert after["gain_retained"] is None and after["passes_criterion"] is None
    note = next(n for n in after["notes"] if n.startswith("Its gain retained was measured on "))
    assert "(600 items)" in note and "(800 items)" in note, note
    # the protocol line says why too (it said "not this report's queries and gallery", the very ones it named)
    assert after["quality_from"]["why_not"] == ("its gain retained was measured on another evaluation sample (600 "
                                                "items; this report's holds 800), so not weighed against this "
                                                "report's: report that run again")
    text = _run(["plan", "-w", ws, "--run", "1"], capsys)
    assert "not this report's queries and gallery" not in text and "another evaluation sample (600 items" in text


def test_another_runs_layer_measured_before_judgments_were_added_is_not_weighed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Judgments added since another run's report leave that report's protocol words as they were (same
    queries, same gallery): the plan refreshed its own report but weighed the fusion's old nDCG@10 against
    it, computed a gain retained across two sets of judgments and could recommend it on that."""
    from judged_fixtures import build_judged_workspace

    built = build_judged_workspace(tmp_path / "ws")
    fusion = _fusion_beside_procrustes(str(built["path"]), capsys)
    before = fusion()
    assert before["quality_from"]["comparable"] and before["gain_retained"] is not None
    test_queries = [q for q, split in zip(built["query_ids"], built["splits"], strict=True) if split == "test"]
    with Workspace.open(built["path"]) as w:
        keys = w.keys_of(test_queries[:20])
    qrels = tmp_path / "more.tsv"  # each of 20 test queries gets a second relevant document
    qrels.write_text("".join(f"{k}\td{n}\t1\ttest\n" for n, k in enumerate(keys)))
    _run(["import", "-w", str(built["path"]), "--qrels", str(qrels)], capsys)
    after = fusion()
    assert after["quality_from"]["comparable"] is False and after["comparable"] is False
    assert after["gain_retained"] is None and after["passes_criterion"] is None
    assert after["quality_from"]["why_not"] == ("measured before the workspace changed (20 relevance judgments "
                                                "added), so not weighed against this report: report that run again")
    plan = json.loads(_run(["plan", "-w", str(built["path"]), "--run", "1", "--json"], capsys))
    assert plan["recommendation"] != "fusion"


def test_a_rerun_that_reuses_the_served_backfill_outgrows_no_report(demo_copy: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A backfill rerun that finds its items backfilled (same vector set, nothing embedded) recorded a new run,
    and every report measured after the first then read stale, with the same served numbers."""
    ws = str(demo_copy)
    _run(["train", "-w", ws, "--method", "procrustes"], capsys)
    backfill = ["backfill", "-w", ws, "--model", "new-cnn", "--order", "planner", "--fraction", "0.2", "--json"]
    first = json.loads(_run(backfill, capsys))
    report = json.loads(_run(["report", "-w", ws, "--run", "1", "--json"], capsys))
    again = json.loads(_run(backfill, capsys))
    assert again["reused"] is True and again["embedded"] == 0 and again["vector_set"] == first["vector_set"]
    runs = json.loads(_run(["runs", "-w", ws, "--json"], capsys))["runs"]
    assert [r["stale"] for r in runs if r["kind"] == "report"][-1] is None  # the report measured after it
    assert report["served"]["backfill"]["run_id"] == min(r["id"] for r in runs if r["kind"] == "backfill")
    with Workspace.open(ws) as opened:  # the served backfill is the run that made the set
        assert opened.latest_backfill_run("new-cnn")["id"] == report["served"]["backfill"]["run_id"]
    smaller = json.loads(_run([*backfill[:-2], "0.1", "--json"], capsys))  # a new set: the served gallery moves
    assert smaller["vector_set"] != first["vector_set"]
    runs = json.loads(_run(["runs", "-w", ws, "--json"], capsys))["runs"]
    assert "was backfilled" in ([r["stale"] for r in runs if r["kind"] == "report"][-1] or "")
