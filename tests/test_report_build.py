"""The assembled report on the demo: cells, protocol, numbers against an independent numpy check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from report_fixtures import DemoCase, brute_force, demo_case, old_gallery_ids, protocol_ids

from embridge.core.adapters import adapt_queries, load_adapter
from embridge.core.report.build import ReportOptions, build_report, load_report
from embridge.core.store import Workspace


@pytest.fixture(scope="module")
def case(demo_workspace_path: Path, tmp_path_factory: pytest.TempPathFactory) -> DemoCase:
    return demo_case(demo_workspace_path, tmp_path_factory)


@pytest.fixture(scope="module")
def truth(case: DemoCase) -> dict[str, dict]:
    """old/old and new→old over the whole old gallery, new/new over the evaluation sample, by brute force."""
    with Workspace.open(case.path) as ws:
        old, new = case.train["old"], case.train["new"]
        queries, gallery = protocol_ids(ws, old, new)
        full = old_gallery_ids(ws, old)
        q_lab, g_lab, f_lab = (np.array(ws.labels(ids)) for ids in (queries, gallery, full))
        q_old, g_old, f_old = (ws.vectors_for(old, ids) for ids in (queries, gallery, full))
        q_new, g_new = ws.vectors_for(new, queries), ws.vectors_for(new, gallery)
        adapter = load_adapter(ws.adapter_path(case.train["adapter_id"]))
    norm = [v / np.linalg.norm(v, axis=1, keepdims=True) for v in (q_new, q_old)]
    q_up = adapt_queries(adapter, *norm)
    q_up = q_up / np.linalg.norm(q_up, axis=1, keepdims=True)
    return {"sizes": {"queries": len(queries), "gallery": len(gallery), "old_gallery": len(full)},
            "old/old": brute_force(q_old, f_old, q_lab, f_lab),
            "new/new": brute_force(q_new, g_new, q_lab, g_lab),
            "new→old": brute_force(q_up, f_old, q_lab, f_lab),
            "new→old on the sample": brute_force(q_up, g_old, q_lab, g_lab),
            "old/old on the sample": brute_force(q_old, g_old, q_lab, g_lab)}


def test_cells_and_protocol_are_stated(case: DemoCase) -> None:
    r = case.report
    assert r.schema == "embridge.report/1" and r.kind == "upgrade"
    assert set(r.cells) == {"old/old", "new/new", "new→old"}
    assert r.upgraded_cell == "new→old" and r.ceiling_cell == "new/new"
    s = r.sizes
    # the demo: 200 query items, a 600-item evaluation sample of the 997-item gallery
    assert (s["queries"], s["gallery"], s["gallery_full"]) == (200, 600, 997)
    assert s["relevance"] == "label" and s["query_source"] == "query split"
    assert s["gallery_train_fold"] > 0 and not s["heldout_gallery"]
    assert any(f"contains {s['gallery_train_fold']} items the layer was fitted on" in line for line in r.protocol)
    assert r.search["exact"] and r.search["method"] == "exact"
    assert r.scoring["map_key"] == "mAP" and r.scoring["ranking_depth"] == 997
    assert s["gallery_old"] == 997  # old/old and new→old search the whole gallery the old model embedded
    assert [r.cells[c]["gallery"] for c in ("old/old", "new→old", "new/new")] == ["old", "old", "sample"]
    assert [r.cells[c]["protocol"]["n_gallery"] for c in ("old/old", "new→old", "new/new")] == [997, 997, 600]
    assert any("search the whole gallery: 997 items" in line for line in r.protocol)
    for cell in r.cells.values():
        for name, value in cell["metrics"].items():
            assert 0.0 <= value <= 1.0, name
        for lo, hi in cell["ci"].values():
            assert 0.0 <= lo <= hi <= 1.0
        assert cell["n_queries"] == 200


def test_cells_match_brute_force(case: DemoCase, truth: dict) -> None:
    assert truth["sizes"] == {"queries": 200, "gallery": 600, "old_gallery": 997}
    for cell in ("old/old", "new/new", "new→old"):
        got = case.report.cells[cell]["metrics"]
        for metric in ("top1", "top5", "recall@10", "mAP"):
            # near-ties may order differently in float32 (faiss vs numpy); one changed query moves a number by 1/200
            assert got[metric] == pytest.approx(truth[cell][metric], abs=1e-6), (cell, metric)
    h = case.report.headline
    assert h["old_old_top1"] == pytest.approx(truth["old/old"]["top1"], abs=1e-12)
    assert h["upgraded_top1"] == pytest.approx(truth["new→old"]["top1"], abs=1e-12)
    oo, nn, up = (truth[c]["top1"] for c in ("old/old", "new/new", "new→old"))
    oo_s, up_s = truth["old/old on the sample"]["top1"], truth["new→old on the sample"]["top1"]
    # new/new searched the 600-item sample: gain retained is measured there, all three on one gallery
    assert h["old_old_sample_top1"] == pytest.approx(oo_s, abs=1e-12)
    assert h["upgraded_sample_top1"] == pytest.approx(up_s, abs=1e-12)
    assert h["gain_retained"] == pytest.approx((up_s - oo_s) / (nn - oo_s))
    assert h["arr"] == pytest.approx(truth["new→old on the sample"]["recall@10"] / truth["new/new"]["recall@10"])
    # the demo's new model (all ten digits) beats the old one (five digits) by a wide margin
    assert nn > oo + 0.15 and h["compatible"] == (up > oo)


def test_flips_agree_with_top1_and_list_real_results(case: DemoCase, truth: dict) -> None:
    h = case.report.headline
    old_ok, up_ok = truth["old/old"]["correct"], truth["new→old"]["correct"]
    assert h["negative_flip_rate"] == pytest.approx(np.mean(old_ok & ~up_ok))
    assert h["positive_flip_rate"] == pytest.approx(np.mean(~old_ok & up_ok))
    flipped = case.report.flipped_list()
    negative = [f for f in flipped if f["flip"] == "negative"]
    assert len(negative) == int((old_ok & ~up_ok).sum()) and len(flipped) - len(negative) == int((~old_ok & up_ok).sum())
    for f in flipped:
        assert len(f["old_top"]) == 5 and len(f["upgraded_top"]) == 5
        right_before = f["old_top_labels"][0] == f["label"]
        right_after = f["upgraded_top_labels"][0] == f["label"]
        assert (right_before, right_after) == ((True, False) if f["flip"] == "negative" else (False, True))
        assert [f["old_top_grades"][0], f["upgraded_top_grades"][0]] == [int(right_before), int(right_after)]
        assert f["old_top_grades"] == [int(lab == f["label"]) for lab in f["old_top_labels"]]
    with Workspace.open(case.path) as ws:
        keys = [f["query_key"] for f in flipped] + [k for f in flipped for k in f["old_top"]]
        assert len(ws.ids_for_keys(keys)) == len(keys)


def test_backfill_endpoints_are_the_cells(case: DemoCase, truth: dict) -> None:
    b = case.report.backfill
    assert set(b["policies"]) == {"random", "least_confident", "largest_residual"}
    up = truth["new→old on the sample"]["top1"]  # the curves run on the evaluation sample
    nn = case.report.cells["new/new"]["metrics"]["top1"]
    for curve in b["policies"].values():
        assert curve["betas"][0] == 0.0 and curve["betas"][-1] == 1.0 and len(curve["betas"]) == 11
        assert curve["values"]["top1"][0] == pytest.approx(up, abs=1e-12) and curve["values"]["top1"][-1] == nn
        values = np.array(curve["values"]["top1"])
        assert curve["areas"]["top1"] == pytest.approx(np.trapezoid(values, curve["betas"]))
        assert values.min() >= 0 and values.max() <= 1


def test_backfill_floor_is_old_old_on_the_curves_sample(case: DemoCase, truth: dict) -> None:
    """The curves search the 600-item sample, old/old the 997-item gallery: the report also scores
    old/old on the sample, the floor a partial backfill's gain is measured from."""
    floor = case.report.backfill["old_old"]
    for metric in ("top1", "top5"):
        assert floor["metrics"][metric] == pytest.approx(truth["old/old on the sample"][metric], abs=1e-12), metric
    assert floor["protocol"]["n_gallery"] == 600 and floor["protocol"]["n_queries"] == 200
    # the demo's two galleries give different old/old numbers, so the one of the whole gallery would mislead
    assert floor["metrics"]["top1"] != pytest.approx(case.report.cells["old/old"]["metrics"]["top1"], abs=1e-9)
    page = Path(case.report.html_file).read_text(encoding="utf-8")
    assert f"old/old on the same queries and gallery: top-1 {floor['metrics']['top1']:.4f}" in page


def test_each_cells_flips_are_against_old_old_on_the_gallery_it_searched(case: DemoCase, truth: dict) -> None:
    """new/new searched the 600-item sample, new→old the 997-item gallery: each is compared with old/old there."""
    flips = case.report.flips
    for cell, base, against in (("new/new", "old/old on the sample", "old/old on the evaluation sample"),
                                ("new→old", "old/old", "old/old")):
        old_ok, new_ok = truth[base]["correct"], truth[cell]["correct"]
        assert flips[cell]["against"] == against
        assert flips[cell]["negative_flip_rate"] == pytest.approx(float((old_ok & ~new_ok).mean()), abs=1e-12), cell
        assert flips[cell]["positive_flip_rate"] == pytest.approx(float((~old_ok & new_ok).mean()), abs=1e-12), cell
    page = Path(case.report.html_file).read_text(encoding="utf-8")
    assert "old/old on the evaluation sample" in page


def test_the_training_runs_numbers_name_new_news_own_gallery(case: DemoCase) -> None:
    held = case.report.run["heldout"]
    assert "997 items" in held["heldout_protocol"].split("; new/new ")[0]
    assert "600 items" in held["heldout_protocol"].split("; new/new (and the _sample numbers and gain_retained) on ")[1]
    page = Path(case.report.html_file).read_text(encoding="utf-8")
    training = page.split("<h2>Training</h2>")[1]
    assert "; new/new (and the _sample numbers and gain_retained) on " in training
    # gain retained is shown beside the sample numbers it is computed from (only the whole gallery's were)
    gain = (held["upgraded_sample_top1"] - held["old_old_sample_top1"]) / (held["new_new_top1"] - held["old_old_sample_top1"])
    assert held["gain_retained"] == pytest.approx(gain)
    assert f"<td>old_old_sample_top1</td><td class=\"n\">{held['old_old_sample_top1']:.4g}" in training


def test_the_search_statement_names_each_gallery_searched(case: DemoCase) -> None:
    statement = case.report.search["statement"]
    assert "997 (old/old, new→old)" in statement and "600 (new/new)" in statement, statement


def test_per_label_and_compatibility_rate(case: DemoCase) -> None:
    r = case.report
    for name, rows in r.per_label.items():
        n = np.array([row["n"] for row in rows])
        top1 = np.array([row["top1"] for row in rows])
        assert n.sum() == 200 and {row["label"] for row in rows} == {str(d) for d in range(10)}
        assert float((n * top1).sum() / n.sum()) == pytest.approx(r.cells[name]["metrics"]["top1"])
    rate = r.compatibility_rate
    assert rate["n_positive"] == rate["n_negative"] == 10_000 and 0 <= rate["rate"] <= 1
    assert rate["rate"] == pytest.approx((rate["positive_rate"] + rate["negative_rate"]) / 2)


def test_report_is_written_registered_and_round_trips(case: DemoCase) -> None:
    r = case.report
    folder = case.path / "reports" / str(r.report_id)
    assert Path(r.json_file) == folder / "report.json" and (folder / "report.html").is_file()
    with Workspace.open(case.path) as ws:
        row = ws.report(r.report_id)
        assert row["run_id"] == case.run_id and row["summary"]["upgraded_top1"] == r.headline["upgraded_top1"]
        assert load_report(ws, r.report_id).cells["old/old"]["metrics"] == r.cells["old/old"]["metrics"]
        recorded = ws.run(r.report_run_id)
        assert recorded["kind"] == "report" and recorded["status"] == "completed"
    assert not list((case.path / "reports").glob(".tmp-*"))  # the scratch folder is gone


def test_heldout_gallery_leaves_out_the_train_fold(case: DemoCase) -> None:
    with Workspace.open(case.path) as ws:
        folds = ws.folds()
        report = build_report(ws, case.run_id, ReportOptions(heldout_gallery=True, backfill_steps=3, n_boot=50), write=False)
    s = report.sizes
    in_train = sum(1 for k in ws_gallery_ids(case) if folds.get(k) == "train")
    assert s["heldout_gallery"] and s["removed_train"] == in_train > 0
    assert s["gallery"] == 600 - in_train and s["gallery_train_fold"] == 0
    assert s["gallery_both"] == 600  # the items holding both models' vectors, the train fold included
    assert any("were removed from the gallery" in line for line in report.protocol)
    assert report.report_id is None  # not written
    # the demo's old model embedded every gallery item: the gallery is the whole one, less the train fold
    old_old = report.cells["old/old"]["protocol"]["text"]
    assert "against the whole gallery without the train fold (" in old_old, old_old
    assert "every gallery item the old model embedded" not in old_old


def ws_gallery_ids(case: DemoCase) -> list[int]:
    with Workspace.open(case.path) as ws:
        return [int(i) for i in protocol_ids(ws, case.train["old"], case.train["new"])[1]]


def test_an_undefined_gain_retained_has_no_interval(tmp_path: Path) -> None:
    """With a new model worse than the old one, gain retained is undefined (null, with its note), but its
    interval came from the bootstrap resamples where the new model happened to be better: [-1.0, -1.0]."""
    from bundle_fixtures import build_upgrade_workspace

    from embridge.core.train.runs import train_run

    build_upgrade_workspace(tmp_path / "ws", with_report=False)
    with Workspace.open(tmp_path / "ws") as ws:
        run = train_run(ws, "procrustes", old="v2", new="v1", device="cpu")  # the better model as the old one
        report = build_report(ws, run["run_id"], ReportOptions(n_boot=200))
    h = report.headline
    assert h["new_new_top1"] < h["old_old_top1"] and h["gain_retained"] is None and h["gain_retained_note"]
    assert h["gain_retained_ci"] == [None, None]
