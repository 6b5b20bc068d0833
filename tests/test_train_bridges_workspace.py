"""Fusion, cascade and the retrieval objective through a workspace: judged queries, training runs,
held-out numbers, the report's verdict, the plan's options and the bundle manifest."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from train_fixtures import one_torch_thread  # noqa: F401 (autouse fixture)

from embridge.core.bundle.bundle_export import export_bundle
from embridge.core.plan.throughput import Throughput
from embridge.core.plan.upgrade_options import plan_from_report
from embridge.core.report.build import build_report
from embridge.core.store import Workspace
from embridge.core.store.judgments import Judgments
from embridge.core.synthetic import query_document_task
from embridge.core.train.runs import train_run

FAST = {"epochs": 15}


def build_judged_workspace(path: Path, seed: int = 0, coverage: float = 1.0) -> Path:
    """The synthetic query/document task as a workspace: documents (``coverage`` of them also under the
    new model), queries under both models, one judged relevant document per query in train / dev / test.
    (Partial coverage is exercised at array level in test_train_retrieval.py.)"""
    t = query_document_task(seed=seed)
    n_docs, n_q = len(t.old_docs), len(t.relevant)
    ws = Workspace.create(path)
    doc_ids = np.asarray(ws.add_items([{"key": f"d{i}", "split": "gallery"} for i in range(n_docs)]))
    q_ids = np.asarray(ws.add_items([{"key": f"q{i}", "split": "query"} for i in range(n_q)]))
    for k, (name, dim) in enumerate((("old", t.old_docs.shape[1]), ("new", t.new_docs.shape[1]))):
        spec = {"name": name, "kind": "vectors", "modality": "vector", "dim": dim, "sha256": f"{k:064d}", "path": ""}
        ws.add_model(name, name, spec, None)
    embedded = np.sort(np.random.default_rng(seed).permutation(n_docs)[: int(coverage * n_docs)])
    ws.add_vector_set("old", np.concatenate([doc_ids, q_ids]), np.concatenate([t.old_docs, t.old_queries]))
    ws.add_vector_set("new", np.concatenate([doc_ids[embedded], q_ids]),
                      np.concatenate([t.new_docs[embedded], t.new_queries]))
    splits = np.random.default_rng(seed).choice(["train", "dev", "test"], size=n_q, p=[0.4, 0.2, 0.4])
    ws.add_judgments(Judgments(q_ids, doc_ids[t.relevant], np.ones(n_q, np.int32), splits.astype("<U5")))
    ws.close()
    return path


@pytest.fixture(scope="module")
def ws_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_judged_workspace(tmp_path_factory.mktemp("bridges") / "ws")


@pytest.fixture(scope="module")
def runs(ws_path: Path) -> dict[str, dict[str, Any]]:
    with Workspace.open(ws_path) as ws:
        return {"auto": train_run(ws, "auto", device="cpu",
                                  config={**FAST, "candidates": ["procrustes", "affine", "fusion", "cascade"]}),
                "cascade": train_run(ws, "cascade", device="cpu", config={"base": "affine"}),
                "fusion": train_run(ws, "fusion", device="cpu", config={"base": "affine"}),
                "mse": train_run(ws, "mlp", device="cpu", config={**FAST, "loss": "mse"}),
                "retrieval": train_run(ws, "mlp", device="cpu", config=FAST)}


def test_judged_train_queries_train_the_retrieval_objective(runs: dict[str, dict[str, Any]]) -> None:
    mse, ret = runs["mse"], runs["retrieval"]
    assert "judged" in ret["val_protocol"] and ret["val_metric_name"] == "judged_ndcg@10"
    # measured (seed 0): retrieval 0.73 vs mse 0.56 on the test queries
    assert ret["upgraded_top1"] >= mse["upgraded_top1"] + 0.1
    assert ret["upgraded_top1"] > ret["old_old_top1"] + 0.2


def test_cascade_run_is_measured_as_a_cascade(runs: dict[str, dict[str, Any]], ws_path: Path) -> None:
    run = runs["cascade"]
    assert run["kind"] == "cascade" and "K = " in run["reason"]
    assert run["upgraded_top1"] > run["old_old_top1"]
    with Workspace.open(ws_path) as ws:
        report = build_report(ws, run["run_id"])
    k = report.adapter["config"]["k"]
    assert report.cells["new→old"]["query_side"].startswith(f"cascade: old query recalls K = {k}")
    assert any(v.startswith(f"Cascade with K = {k}") for v in report.verdicts)
    assert report.headline["upgraded_top1"] == pytest.approx(run["upgraded_top1"])
    # its partial-backfill curves mix the layer alone with new vectors: said so, not "the upgraded system"
    assert "β = 0 is the cascade's layer alone on the sample, without the new model's re-rank" in \
        report.backfill["note"][0]
    ceiling = report.cells[report.ceiling_cell]["metrics"]
    for curve in report.backfill["policies"].values():  # judged curves meet at the full-backfill cell
        assert curve["values"]["top1"][-1] == pytest.approx(ceiling["top1"], abs=1e-9)
        assert curve["values"]["ndcg@10"][-1] == pytest.approx(ceiling["ndcg@10"], abs=1e-9)


def test_auto_picks_a_passing_option_and_records_every_candidate(runs: dict[str, dict[str, Any]]) -> None:
    run = runs["auto"]
    rows = {c["kind"]: c for c in run["candidates"]}
    assert set(rows) == {"procrustes", "affine", "fusion", "cascade"}
    assert all(r["val_metric"] is not None and r["duration_s"] >= 0 for r in rows.values())
    assert "alpha" in rows["fusion"] and "k" in rows["cascade"]
    assert "today's system (old/old) scores" in run["reason"]
    assert run["upgraded_top1"] > run["old_old_top1"]
    # on graded judgments the candidates compete on nDCG@10, the cascade's K included
    assert run["val_metric_name"] == "judged_ndcg@10" and "won with validation nDCG@10" in run["reason"]
    from embridge.core.cli.train_cmds import _train_text

    text = _train_text({**run, "adapter_id": 1, "adapter_path": "x"})
    assert "candidate procrustes  validation judged nDCG@10 " in text  # the metric the candidates competed on


def test_plan_recommends_thebest_passing_bridge(runs: dict[str, dict[str, Any]], ws_path: Path) -> None:
    with Workspace.open(ws_path) as ws:
        report = build_report(ws, runs["cascade"]["run_id"])
    head = report.headline
    assert head["compatible"]  # measured (seed 0): the cascade scores 0.53, above new/new 0.47 and old/old 0.30
    # the real case: a bridge that passes but keeps a third of the gain (the plan is a pure function of the
    # report, so its rule is checked on this report with the cascade's cell set to that share)
    report = copy.deepcopy(report)
    floor, ceiling = report.cells["old/old"]["metrics"], report.cells[report.ceiling_cell]["metrics"]
    decided = ("top1", "ndcg@10")  # judged: the plan weighs nDCG@10, so both numbers move together

    def share(metrics: dict[str, Any], part: float) -> None:
        """Set the cell to keep ``part`` of the gain from old/old to the ceiling, on every decided metric."""
        for m in decided:
            if m in metrics:
                metrics[m] = floor[m] + (ceiling[m] - floor[m]) * part

    def offset(delta: float) -> dict[str, float]:
        return {m: floor[m] + delta for m in decided if m in floor}

    share(report.cells["new→old"]["metrics"], 1 / 3)
    # a layer that fails next to this cascade: the cascade is then the only passing free option
    tp = Throughput(embed_items_per_s=None, adapter_items_per_s=1e5)
    failing = {"name": "adapter_only", "kind": "affine", "quality": offset(-0.05),
               "items_per_s": 1e5, "source": "test", "measured_on": report.cells["old/old"]["protocol"]}
    # as measured, every document re-ranked by its new vector: that cascade needs the whole gallery embedded
    cell = report.cells["new→old"]
    n = report.sizes["gallery_full"]
    assert cell["protocol"]["new_vectors"] == n and f"new-model vectors of {n} of the {n}" in cell["protocol"]["text"]
    plan = plan_from_report(report, tp, alternatives=[failing])
    measured = next(o for o in plan.options if o["name"] == "cascade")
    assert measured["items_embedded"] == n and not measured.get("best_passing_bridge")
    assert measured["storage_bytes"] >= 2 * next(o for o in plan.options if o["name"] == "stay")["storage_bytes"]
    assert plan.recommendation == "full_backfill"
    assert f"the cascade option (with the new vectors of {n} items) keeps only" in plan.reason
    assert "layer alone" not in plan.reason
    # measured on a gallery of half this size, with 10 of its items' new vectors: here that share is 20 items
    cell["protocol"].update(new_vectors=10, n_gallery=n // 2)
    share(cell["metrics"], 1.0)  # and good enough to be chosen: the reason names what it re-embeds
    plan = plan_from_report(report, tp, alternatives=[failing])
    scaled = next(o for o in plan.options if o["name"] == "cascade")
    assert scaled["items_embedded"] == round(10 * n / (n // 2))
    assert f"10 of the {n // 2} gallery items it searched; here {scaled['items_embedded']} of the {n}" in scaled["notes"][0]
    assert plan.recommendation == "cascade" and "nothing re-embedded" not in plan.reason
    assert f"with the new vectors of {scaled['items_embedded']} items it was measured with" in plan.reason
    cell["protocol"]["n_gallery"] = n
    share(cell["metrics"], 1 / 3)
    # a cascade measured with no document's new vector (day one of the transition) re-embeds nothing
    cell["protocol"]["new_vectors"] = 0
    plan = plan_from_report(report, tp, alternatives=[failing])
    options = {o["name"]: o for o in plan.options}
    cascade = options["cascade"]
    k = report.adapter["config"]["k"]
    assert cascade["serving_cost"] == {"encoders_at_query_time": 2, "reranks_per_query": k, "rerank_new_vectors": True}
    assert cascade["items_embedded"] == 0
    assert plan.recommendation == "cascade" and cascade["best_passing_bridge"]
    assert "the only option that passes the compatibility criterion without re-embedding" in plan.reason
    assert f"{k} re-ranked items per query" in plan.reason
    # a weaker free option that passes too does not change the choice (it once turned it into a full
    # backfill, so the plan of one run differed from the plan of another with the same options)
    weaker = {**failing, "name": "fusion", "kind": "fusion", "quality": offset(0.01)}
    plan = plan_from_report(report, tp, alternatives=[weaker])
    assert plan.recommendation == "cascade"
    assert "the best of the 2 options (with Fusion" in plan.reason  # ranked on the whole gallery: no sample here
    # a stronger passing bridge is chosen instead; a stronger plain layer below the threshold is not a bridge
    # for the transition, and with it the full backfill stays the recommendation
    stronger = {**weaker, "quality": {m: v + 0.2 * (ceiling[m] - floor[m]) for m, v in
                                      next(o for o in plan.options if o["name"] == "cascade")["quality"].items()
                                      if m in decided}}
    plan = plan_from_report(report, tp, alternatives=[stronger])
    assert plan.recommendation == "fusion"
    plain = {**stronger, "name": "adapter_only", "kind": "affine"}
    plan = plan_from_report(report, tp, alternatives=[plain])
    assert plan.recommendation == "full_backfill"


def test_bundle_manifest_records_the_serving_method(runs: dict[str, dict[str, Any]], ws_path: Path,
                                                    tmp_path: Path) -> None:
    with Workspace.open(ws_path) as ws:
        export_bundle(ws, tmp_path / "cascade", [runs["cascade"]["run_id"]])
        export_bundle(ws, tmp_path / "fusion", [runs["fusion"]["run_id"]])
    manifest = json.loads((tmp_path / "cascade" / "manifest.json").read_text())
    method = manifest["adapter"]["method"]
    assert method["kind"] == "cascade" and method["reranks_per_query"] == method["k"] >= 1 and method["encoders"] == 2
    assert f"recalls the top {method['k']}" in method["serving"]
    manifest = json.loads((tmp_path / "fusion" / "manifest.json").read_text())
    method = manifest["adapter"]["method"]
    assert method["kind"] == "fusion" and 0.0 <= method["alpha"] <= 1.0 and method["encoders"] == 2
    assert manifest["adapter"]["inputs"] == ["new", "old"]


def test_another_layers_option_keeps_its_judged_metrics(runs: dict[str, dict[str, Any]], ws_path: Path,
                                                        tmp_path: Path) -> None:
    """The cascade run's report measured nDCG@10 and MRR@10 too: the plan of another run shows them."""
    import shutil

    from embridge.core.plan.planner import plan_upgrade
    from embridge.core.report.report_export import save_report

    copy_path = tmp_path / "ws"
    shutil.copytree(ws_path, copy_path)
    with Workspace.open(copy_path) as ws:
        report = build_report(ws, runs["cascade"]["run_id"])
        save_report(ws, report)
        cell = report.cells[str(report.upgraded_cell)]["metrics"]
        # the fusion run has no report yet: the plan weighs nDCG@10, so its option carries the run's held-out one
        unreported = plan_upgrade(ws, runs["cascade"]["run_id"], device="cpu")
        plan = plan_upgrade(ws, runs["fusion"]["run_id"], device="cpu")
        mlp_plan = plan_upgrade(ws, runs["retrieval"]["run_id"], device="cpu")  # an MLP's file is larger
        export_bundle(ws, tmp_path / "cascade", [runs["cascade"]["run_id"]])
    fusion = next(o for o in unreported.options if o["name"] == "fusion")
    assert unreported.metric == "ndcg@10" and fusion["quality"]["ndcg@10"] == runs["fusion"]["ndcg@10"]
    assert "held-out top-1 and nDCG@10 of training run" in " ".join(fusion["notes"])
    readme = (tmp_path / "cascade" / "README.md").read_text(encoding="utf-8")
    assert f"upgraded ndcg@10 = {cell['ndcg@10']:.4g}" in readme and ", ndcg@10 = " not in readme  # names its cell
    cascade = next(o for o in plan.options if o["name"] == "cascade")
    assert {k: cascade["quality"][k] for k in ("top1", "ndcg@10", "mrr@10")} == \
        {k: cell[k] for k in ("top1", "ndcg@10", "mrr@10")}
    # a layer borrowed from another run costs its own file, as in that run's own plan
    for name, own_plan in (("fusion", plan), ("cascade", unreported)):
        own = next(o for o in own_plan.options if o["name"] == name)
        borrowed = next(o for o in mlp_plan.options if o["name"] == name)
        assert borrowed["storage_bytes"] == own["storage_bytes"], name


def test_a_cascade_re_ranking_through_its_layer_re_embeds_nothing(runs: dict[str, dict[str, Any]], ws_path: Path,
                                                                  tmp_path: Path) -> None:
    """Every document here has a new vector; a cascade told not to use them is measured, planned and
    shipped as what it is: old recall, re-ranked through the layer, nothing re-embedded. The auto run's
    cascade candidate is scored that way too."""
    import shutil

    from embridge.core.plan.planner import plan_upgrade

    rows = {c["kind"]: c for c in runs["auto"]["candidates"]}
    assert "no new vector of the gallery is used" in rows["cascade"]["reason"]
    copy_path = tmp_path / "ws"
    shutil.copytree(ws_path, copy_path)
    with Workspace.open(copy_path) as ws:
        run = train_run(ws, "cascade", device="cpu", config={"base": "affine", "rerank_new_vectors": False})
        report = build_report(ws, run["run_id"])
        plan = plan_upgrade(ws, run["run_id"], device="cpu")
        export_bundle(ws, tmp_path / "bundle", [run["run_id"]])
    cell = report.cells["new→old"]
    assert cell["protocol"]["new_vectors"] == 0 and cell["gallery_side"] == "old gallery (no backfill)"
    assert cell["query_side"].endswith("new query re-ranks through the layer")
    assert report.headline["upgraded_top1"] == pytest.approx(run["upgraded_top1"])
    stored = runs["cascade"]  # the same cascade re-ranking by the stored new vectors scores differently
    assert run["upgraded_top1"] != pytest.approx(stored["upgraded_top1"])
    option = next(o for o in plan.options if o["name"] == "cascade")
    assert option["items_embedded"] == 0 and option["serving_cost"]["rerank_new_vectors"] is False
    assert "by layer(new query) against their old vectors (no gallery item's new vector is used" in option["notes"][0]
    method = json.loads((tmp_path / "bundle" / "manifest.json").read_text())["adapter"]["method"]
    assert method["new_vectors"] is False and "no new vector of the gallery is used" in method["serving"]
    readme = (tmp_path / "bundle" / "README.md").read_text(encoding="utf-8")
    assert "def cascade_search(old_q, new_q, old_gallery, k=K):" in readme and "has_new" not in readme


def test_a_cascade_plans_partial_backfill_curve_says_it_lacks_the_re_rank(runs: dict[str, dict[str, Any]],
                                                                         ws_path: Path, tmp_path: Path) -> None:
    """The partial-backfill curve of a cascade run searches one mixed gallery through the fallback layer:
    the plan's option read off it says so, since the cascade's own number includes the re-rank."""
    import shutil

    from embridge.core.plan.planner import plan_upgrade
    from embridge.core.report.report_export import save_report

    copy_path = tmp_path / "ws"
    shutil.copytree(ws_path, copy_path)
    with Workspace.open(copy_path) as ws:
        save_report(ws, build_report(ws, runs["cascade"]["run_id"]))
        plan = plan_upgrade(ws, runs["cascade"]["run_id"], device="cpu", fraction=0.5)
        save_report(ws, build_report(ws, runs["fusion"]["run_id"]))
        other = plan_upgrade(ws, runs["fusion"]["run_id"], device="cpu", fraction=0.5)
    partial = next(o for o in plan.options if o["name"] == "partial_backfill")
    assert any("through the cascade's layer alone, without its re-rank" in n for n in partial["notes"])
    partial = next(o for o in other.options if o["name"] == "partial_backfill")
    assert not any("cascade" in n for n in partial["notes"])


def test_a_fusion_runs_protocol_says_its_queries_are_fused(runs: dict[str, dict[str, Any]]) -> None:
    """The fusion's held-out cell searched with fused queries: its protocol says how, as a cascade's does."""
    from embridge.core.adapters import load_adapter

    run = runs["fusion"]
    alpha = float(load_adapter(run["adapter_path"]).alpha)
    assert (f"; queries fused as {alpha:g} × old + {1 - alpha:g} × affine(new), exact cosine search"
            in run["heldout_protocol"])


def test_the_best_passing_bridge_is_ranked_where_the_gains_were_measured() -> None:
    """Where new/new searched a sample, the options' gains are measured there: a plain layer ahead on the
    whole gallery but behind on the sample does not hide the fusion that is better where the gain counts
    (the plan of the plain layer's run recommended a full backfill, the fusion run's plan the fusion)."""
    from embridge.core.plan.option_choice import best_passing_bridge

    def option(name: str, whole: float, sample: float | None) -> dict[str, Any]:
        return {"name": name, "title": name, "items_embedded": 0, "passes_criterion": True, "acceptable": False,
                "quality": {"ndcg@10": whole}, **({"quality_sample": {"ndcg@10": sample}} if sample else {})}

    plain, fusion = option("adapter_only", 0.699, 0.821), option("fusion", 0.681, 0.836)
    assert best_passing_bridge([plain, fusion], "ndcg@10") is fusion
    assert fusion["best_passing_bridge"] == {"with": ["adapter_only"], "on_sample": True}  # what the reason says
    assert best_passing_bridge([option("adapter_only", 0.699, None), option("fusion", 0.681, None)], "ndcg@10") is None
    # tied on the sample (a cascade whose recall covers the whole sample re-ranks it as its layer does): the
    # plain layer, better on the whole gallery and serving with one encoder, is not passed over
    cascade, plain = option("cascade", 0.2274, 0.3972), option("adapter_only", 0.2522, 0.3972)
    assert best_passing_bridge([cascade, plain], "ndcg@10") is None
    cascade, plain = option("cascade", 0.2522, 0.3972), option("adapter_only", 0.2522, 0.3972)
    assert best_passing_bridge([cascade, plain], "ndcg@10") is None  # tied everywhere: one encoder
