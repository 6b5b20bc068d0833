"""After a partial backfill the report measures the mixed gallery the workspace now serves."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from report_fixtures import old_gallery_ids

from embridge.core.adapters import adapt_queries, load_adapter
from embridge.core.cli.main import main
from embridge.core.data_state import report_stale_note
from embridge.core.formatting import capitalised
from embridge.core.plan.planner import plan_upgrade
from embridge.core.report.build import build_report
from embridge.core.report.number_source import served_lines
from embridge.core.retrieval import l2_normalize
from embridge.core.store import Workspace
from embridge.core.train.runs import train_run


def _backfill(ws_path: Path, fraction: str) -> None:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["backfill", "-w", str(ws_path), "--model", "new-cnn", "--order", "planner",
                     "--fraction", fraction]) == 0


def _served_by_brute_force(ws: Workspace, adapter_id: int, backfilled: np.ndarray) -> dict:
    """Every gallery item by its old vector against the mapped query, the backfilled ones by their new
    vector against the raw new query: one score matrix, ranked by plain numpy."""
    queries = np.asarray(ws.item_ids("query"), dtype=np.int64)
    gallery = old_gallery_ids(ws, "old-mlp")
    q_new, q_old = (l2_normalize(ws.vectors_for(m, queries)) for m in ("new-cnn", "old-mlp"))
    q_up = l2_normalize(adapt_queries(load_adapter(ws.adapter_path(adapter_id)), q_new, q_old))
    cols = np.flatnonzero(np.isin(gallery, backfilled))
    scores = q_up @ l2_normalize(ws.vectors_for("old-mlp", gallery)).T
    scores[:, cols] = q_new @ l2_normalize(ws.vectors_for("new-cnn", gallery[cols])).T
    labels = np.array(ws.labels(gallery)), np.array(ws.labels(queries))
    order = np.argsort(-scores, axis=1, kind="stable")
    hits = labels[0][order] == labels[1][:, None]
    first = np.where(hits.any(axis=1), hits.argmax(axis=1), hits.shape[1])
    return {"top1": float((first < 1).mean()), "top5": float((first < 5).mean()),
            "recall@10": float((first < 10).mean()), "backfilled_in_gallery": int(cols.size)}


def test_the_report_scores_the_gallery_a_partial_backfill_left(demo_copy: Path) -> None:
    with Workspace.open(demo_copy) as ws:
        run = train_run(ws, "procrustes", device="cpu")
        before = build_report(ws, run["run_id"])
    assert before.served is None  # nothing backfilled: the upgraded cell is what is served
    _backfill(demo_copy, "0.3")
    with Workspace.open(demo_copy) as ws:
        after = build_report(ws, run["run_id"])
        backfill_run = max(int(r["id"]) for r in ws.runs("backfill"))
        vector_set = int(ws.runs("backfill")[-1]["metrics"]["vector_set"])
        embedded = int(ws.runs("backfill")[-1]["metrics"]["embedded"])
        backfilled = ws.vector_set_ids(vector_set)
        truth = _served_by_brute_force(ws, run["adapter_id"], backfilled)
    served = after.served
    assert served is not None and served["backfill"]["run_id"] == backfill_run
    assert served["new_vectors"] == truth["backfilled_in_gallery"] == 299  # 30% of the 997 gallery items
    for metric in ("top1", "top5", "recall@10"):
        assert served["metrics"][metric] == truth[metric], metric
    # the mixed gallery serves more than the layer alone, and is measured on the whole gallery
    assert served["metrics"]["top1"] > after.headline["upgraded_top1"]
    assert served["protocol"]["n_gallery"] == after.sizes["gallery_full"] == 997
    assert "backfilled items by their new vectors" in served["protocol"]["text"]
    # the items it embedded joined the evaluation sample, chosen by the planner's order: the protocol says so
    assert 0 < embedded < 299 and f"includes {embedded} items backfill run {backfill_run} chose in the planner's " \
        "order, not a random draw" in " ".join(after.protocol)
    assert not any("planner's order" in line for line in before.protocol)
    lines = served_lines(served)  # the command line, the HTML report and the app say the same
    assert lines[0].startswith(f"served now (after backfill run #{backfill_run}: 299 of the 997 gallery items")
    assert all(line in Path(after.html_file).read_text(encoding="utf-8") for line in lines)
    with Workspace.open(demo_copy) as ws:  # the plan states what is served beside the options it weighs
        plan = plan_upgrade(ws, run["run_id"], device="cpu")
    assert capitalised(lines[0]) in plan.notes
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()):
        assert main(["plan", "-w", str(demo_copy), "--device", "cpu"]) == 0
    assert out.getvalue().startswith(f"plan for run {run['run_id']} (procrustes, new-cnn→old-mlp), full gallery 997")
    # `runs` names the pair a report compared and what the backfill made
    for args in (["--json"], []):
        with contextlib.redirect_stdout(io.StringIO()) as out:
            assert main(["runs", "-w", str(demo_copy), *args]) == 0
        if args:
            rows = {r["id"]: r for r in json.loads(out.getvalue())["runs"]}
            reports = [r for r in rows.values() if r["kind"] == "report"]
            assert reports and all(r["models"] == {"old": "old-mlp", "new": "new-cnn"} for r in reports)
        else:
            assert f"#{backfill_run:<4} backfill new-cnn     completed   299 items -> vector set {vector_set} " \
                   "(" in out.getvalue()


def test_a_second_backfill_is_the_one_measured_and_outgrows_the_report_before_it(demo_copy: Path) -> None:
    with Workspace.open(demo_copy) as ws:
        run = train_run(ws, "procrustes", device="cpu")
    _backfill(demo_copy, "0.2")
    _backfill(demo_copy, "0.5")
    with Workspace.open(demo_copy) as ws:
        first = build_report(ws, run["run_id"])
    assert first.served is not None and first.served["new_vectors"] == round(0.5 * 997)
    _backfill(demo_copy, "0.1")  # a prefix of the same order: every vector is copied, none embedded
    with Workspace.open(demo_copy) as ws:
        latest = max(int(r["id"]) for r in ws.runs("backfill"))
        assert ws.runs("backfill")[-1]["metrics"]["embedded"] == 0
        note = report_stale_note(ws, int(first.report_id))
        assert note is not None and f"model 'new-cnn' was backfilled (run {latest})" in note
        again = build_report(ws, run["run_id"])
        assert report_stale_note(ws, int(again.report_id)) is None
    assert again.served is not None and again.served["new_vectors"] == round(0.1 * 997)
    assert again.served["backfill"]["run_id"] == latest


def _planned_after_a_full_backfill(ws_path: Path, method: str) -> tuple[Any, int]:
    """(the plan of a ``method`` layer trained before a backfill of every gallery item, that backfill's run):
    the full backfill is recommended, at no cost left."""
    with Workspace.open(ws_path) as ws:
        train_run(ws, method, device="cpu")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["backfill", "-w", str(ws_path), "--model", "new-cnn"]) == 0
    with Workspace.open(ws_path) as ws:
        plan = plan_upgrade(ws, device="cpu")
        backfill_run = max(int(r["id"]) for r in ws.runs("backfill"))
    full = plan.option("full_backfill")
    assert full is not None and full["items_embedded"] == 0 and full["time_s"] == 0.0
    assert plan.recommendation == "full_backfill"
    return plan, backfill_run


def test_after_a_full_backfill_the_plan_recommends_what_is_served_not_a_partial_one(demo_copy: Path) -> None:
    """After every gallery item was backfilled the plan still recommended a partial backfill to β = 0.70
    (698 items to embed), four points below the served gallery's top-1."""
    plan, backfill_run = _planned_after_a_full_backfill(demo_copy, "procrustes")
    assert plan.reason.startswith(f"Backfill run #{backfill_run} already re-embedded all {plan.gallery_full} gallery items")
    assert any(note.startswith("Served now") for note in plan.notes)
    # part of the work already done costs nothing (it was priced at 698 items, more than the whole job left);
    # following the plan's partial option now would record fewer new vectors than are served: refused
    partial = plan.option("partial_backfill")
    assert partial is not None and partial["items_embedded"] == 0 and partial["time_s"] == 0.0
    assert any(f"Backfill run #{backfill_run} already gives {plan.gallery_full} gallery items" in n
               for n in partial["notes"])
    assert any(n.startswith(f"Done: backfill run #{backfill_run} already embedded all") for n in partial["notes"])
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        assert main(["backfill", "-w", str(demo_copy), "--model", "new-cnn", "--order", "planner"]) == 1
    assert err.getvalue().count("\n") == 1 and f"backfill run #{backfill_run} already re-embedded" in err.getvalue()
    with Workspace.open(demo_copy) as ws:
        assert max(int(r["id"]) for r in ws.runs("backfill")) == backfill_run
        assert ws.latest_backfill_run("new-cnn")["id"] == backfill_run


def test_after_a_full_backfill_a_cascades_plan_says_the_full_backfill_is_done(demo_copy: Path) -> None:
    """A cascade's report measures no served gallery apart (its own cell re-ranks by the backfill's new
    vectors), so its plan still priced a full re-embedding of the 997 items a backfill had just embedded."""
    plan, backfill_run = _planned_after_a_full_backfill(demo_copy, "cascade")
    with Workspace.open(demo_copy) as ws:
        report = build_report(ws, plan.run_id)
    assert report.served is None and report.cells[str(report.upgraded_cell)]["protocol"]["new_vectors"] == 997
    served = report.cells[str(report.upgraded_cell)]["metrics"]["top1"]
    full = plan.option("full_backfill")["quality"]["top1"]  # the row beside it: new queries on new vectors alone
    assert f"{full:.1%}" != f"{served:.1%}"
    assert plan.reason.startswith(f"Backfill run #{backfill_run} already re-embedded all 997 gallery items with the "
                                  f"new model (served now: top-1 {served:.1%} through the cascade's re-ranking of the "
                                  f"old index's top K; {full:.1%} searching the new vectors alone)")


def test_a_backfill_finishing_while_a_report_runs_is_not_half_in_it(demo_copy: Path, monkeypatch,
                                                                     capsys) -> None:
    """A report measured its cells on the gallery of its start and its served line on a backfill that finished
    meanwhile (the sample's 600 new vectors beside a served line over 997), and said it was not stale."""
    import embridge.core.report.build as build

    with Workspace.open(demo_copy) as ws:
        run = train_run(ws, "procrustes", device="cpu")
    real = build.upgrade_vectors

    def backfill_meanwhile(*args: object, **kwargs: object) -> object:  # after the sample was drawn
        assert main(["backfill", "-w", str(demo_copy), "--model", "new-cnn"]) == 0
        return real(*args, **kwargs)

    monkeypatch.setattr(build, "upgrade_vectors", backfill_meanwhile)
    capsys.readouterr()
    assert main(["report", "-w", str(demo_copy), "--run", str(run["run_id"]), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["served"] is None  # no backfill had finished when it began: none is half in it
    assert report["sizes"]["gallery"] == 600  # the sample it drew then
    with Workspace.open(demo_copy) as ws:  # and the data has moved on since it began
        assert "backfilled (run" in (report_stale_note(ws, report["report_id"]) or "")


def test_a_heads_served_gallery_is_searched_by_the_vectors_the_backfill_stored(demo_copy: Path) -> None:
    """After a backfill of a bt2 run the report scored the backfilled items through the head (head/head: top-1
    100% on an image upgrade) while the backfill stores the new model's own vectors (92% there): nothing
    written could serve the number stated. The plan's full backfill says what its head/head cell assumes."""
    with Workspace.open(demo_copy) as ws:
        run = train_run(ws, "bt2", device="cpu", config={"epochs": 3})
    _backfill(demo_copy, "0.3")
    with Workspace.open(demo_copy) as ws:
        after = build_report(ws, run["run_id"])
        backfilled = ws.vector_set_ids(int(ws.runs("backfill")[-1]["metrics"]["vector_set"]))
        truth = _served_by_brute_force(ws, run["adapter_id"], backfilled)
        plan = plan_upgrade(ws, run["run_id"])
    served = after.served
    assert served is not None and served["new_vectors"] == truth["backfilled_in_gallery"] > 0
    for metric in ("top1", "top5", "recall@10"):
        assert served["metrics"][metric] == truth[metric], metric
    assert "backfilled items by their new vectors as the backfill stored them, not through the bt2 head" in \
        served["protocol"]["text"]
    full = plan.option("full_backfill")
    assert full is not None and any("'embridge backfill' stores the new model's own vectors, which new queries "
                                    f"search as new/new (top-1 {after.headline['new_new_top1']:.3f})" in note
                                    for note in full["notes"]), full["notes"]


def test_a_planner_backfill_with_a_model_the_plan_is_not_for_is_refused(demo_copy: Path, capsys) -> None:
    """`backfill --model old --order planner` re-embedded the gallery with the old model and recorded it."""
    with Workspace.open(demo_copy) as ws:
        train_run(ws, "procrustes", device="cpu")
        before = len(ws.runs("backfill"))
    capsys.readouterr()
    code = main(["backfill", "-w", str(demo_copy), "--model", "old-mlp", "--order", "planner", "--fraction", "0.3"])
    err = capsys.readouterr().err
    assert code != 0 and err.count("\n") == 1, err
    assert "--model: 'old-mlp' is not the new model of the run the plan is for" in err and "-> new-cnn)" in err
    with Workspace.open(demo_copy) as ws:
        assert len(ws.runs("backfill")) == before


def test_runs_and_a_bundle_list_the_served_number_with_its_own_protocol(demo_copy: Path, tmp_path: Path,
                                                                        capsys) -> None:
    """`runs` never showed a report's served-after-backfill number, so it could not be checked against
    `report --json`; a bundle of that report carries it apart, with the served gallery's protocol."""
    with Workspace.open(demo_copy) as ws:
        run = train_run(ws, "procrustes", device="cpu")
    _backfill(demo_copy, "0.3")
    with Workspace.open(demo_copy) as ws:
        report = build_report(ws, run["run_id"])
    served = report.served
    capsys.readouterr()
    assert main(["runs", "-w", str(demo_copy), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["runs"][-1]["metrics"]
    assert listed["served_top1"] == served["metrics"]["top1"] and listed["served_new_vectors"] == served["new_vectors"]
    assert listed["served_protocol"] == served["protocol"]["text"]
    assert main(["runs", "-w", str(demo_copy)]) == 0
    text = capsys.readouterr().out
    assert f"served_top1={served['metrics']['top1']:.3f}" in text
    assert f"served (after backfill run #{served['backfill']['run_id']}: {served['new_vectors']} items by their new " \
           f"vectors) on {served['protocol']['text']}" in text
    assert main(["bundle", "export", "-w", str(demo_copy), "--out", str(tmp_path / "b.zip")]) == 0
    import zipfile

    with zipfile.ZipFile(tmp_path / "b.zip") as zf:
        metrics = json.loads(zf.read("manifest.json"))["metrics"]
    assert not any(k.startswith("served_") for k in metrics["values"])  # not under the upgraded cell's protocol
    (entry,) = [e for e in metrics["also_measured"] if "served gallery" in e["source"]]
    assert entry["values"]["served_top1"] == served["metrics"]["top1"] and entry["protocol"] == served["protocol"]["text"]


def test_plan_writes_the_partial_backfills_order_as_the_backfill_takes_it(demo_copy: Path, tmp_path: Path,
                                                                           capsys) -> None:
    """No command gave the planner's order as data: a vectors-only new model (whose vectors are made
    elsewhere) could not carry out the partial backfill the plan recommended."""
    with Workspace.open(demo_copy) as ws:
        train_run(ws, "procrustes", device="cpu")
    out = tmp_path / "order.npy"
    capsys.readouterr()
    args = ["plan", "-w", str(demo_copy), "--fraction", "0.3", "--order-out", str(out)]
    assert main([*args, "--json"]) == 0
    said = json.loads(capsys.readouterr().out)["order_out"]
    keys = np.load(out)
    assert said == {"path": str(out), "items": 299} and len(keys) == 299
    assert main(args) == 1 and "already exists" in capsys.readouterr().err  # never replaced
    assert main(["plan", "-w", str(demo_copy), "--fraction", "0.3"]) == 0
    text = capsys.readouterr().out  # the backfill options' own notes, as --json and the Plan page give them
    assert "Partial backfill to β = 0.30 (random order): The random curve is the mean of 8 random draws" in text
    assert "Full backfill: Re-embeds all 997 gallery items with the new model" in text
    _backfill(demo_copy, "0.3")
    with Workspace.open(demo_copy) as ws:
        backfilled = ws.keys_of(ws.vector_set_ids(int(ws.runs("backfill")[-1]["metrics"]["vector_set"])))
    assert sorted(keys.tolist()) == sorted(backfilled)  # the very items `backfill --order planner` embedded
    assert main(["plan", "-w", str(demo_copy), "--order-out", str(demo_copy / "o.npy")]) == 1
    assert "--order-out" in capsys.readouterr().err and not (demo_copy / "o.npy").exists()


def test_order_keys_stay_as_the_items_are_keyed_and_a_plan_without_a_partial_backfill_writes_none() -> None:
    from types import SimpleNamespace

    import pytest

    from embridge.core.errors import InputError
    from embridge.core.scale.planner_keys import key_array, planner_keys

    assert key_array(["370", "-5", "12"]).dtype == np.int64
    assert key_array(["0370", "12"]).tolist() == ["0370", "12"]  # '0370' is no integer key: 370 names no item
    assert key_array(["12", "a"]).dtype.kind == "U" and key_array(["+7"]).dtype.kind == "U"
    plan = SimpleNamespace(options=[{"name": "stay"}, {"name": "full_backfill"}], recommendation="full_backfill")
    with pytest.raises(InputError, match=r"--order-out: the plan recommends full_backfill and has no partial backfill "
                                         r"to write the order of; nothing was written") as caught:
        planner_keys(None, plan)
    assert "--order stored" not in str(caught.value)  # a backfill option, not this command's
