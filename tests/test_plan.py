"""The upgrade planner on constructed cases with a known right answer, and on the demo."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from report_fixtures import DemoCase, demo_case

from embridge.core.errors import InputError
from embridge.core.plan import Plan, Throughput, plan_from_report, plan_upgrade
from embridge.core.store import Workspace

N, D_OLD, D_NEW, ADAPTER_BYTES = 100_000, 32, 64, 1000
RATE = Throughput(embed_items_per_s=500.0, adapter_items_per_s=1e6)
BETAS = [0.0, 0.25, 0.5, 0.75, 1.0]
WHOLE = {"query_set": "test queries", "n_queries": 200, "gallery": "the whole gallery", "n_gallery": N,
         "relevance": "same label", "text": "200 test queries against the whole gallery"}


def make_report(oo: float, nn: float, up: float, curves: dict[str, list[float]] | None = None,
                direction: str = "backward") -> dict[str, Any]:
    """The few report fields the planner reads, with exactly known numbers."""
    curves = curves or {"random": [up, up, up, up, nn]}
    upgraded = "new/fct(old)" if direction == "forward" else "new→old"
    return {"cells": {"old/old": {"metrics": {"top1": oo}, "protocol": WHOLE}, "new/new": {"metrics": {"top1": nn}},
                      upgraded: {"metrics": {"top1": up}}},
            "upgraded_cell": upgraded, "ceiling_cell": "new/new",
            "adapter": {"kind": "fct" if direction == "forward" else "affine", "direction": direction,
                        "out_dim": D_NEW if direction == "forward" else D_OLD, "file_bytes": ADAPTER_BYTES},
            "models": {"old": {"dim": D_OLD, "bytes_per_value": 4}, "new": {"dim": D_NEW, "bytes_per_value": 4}},
            "sizes": {"gallery_full": N, "gallery": 2000},
            "backfill": {"policies": {p: {"betas": BETAS, "values": {"top1": v}} for p, v in curves.items()}}}


def options(plan: Plan) -> dict[str, dict[str, Any]]:
    return {o["name"]: o for o in plan.options}


def test_adapter_keeping_the_gain_is_enough() -> None:
    plan = plan_from_report(make_report(0.60, 0.80, 0.79), RATE)  # gain retained 0.95
    assert plan.recommendation == "adapter_only"
    opt = options(plan)["adapter_only"]
    assert opt["gain_retained"] == pytest.approx(0.95) and opt["time_s"] == 0.0 and opt["items_embedded"] == 0
    assert opt["storage_bytes"] == N * D_OLD * 4 + ADAPTER_BYTES
    assert "passes the compatibility criterion" in plan.reason


def test_failing_adapter_with_a_much_better_model_backfills_partially() -> None:
    report = make_report(0.60, 0.90, 0.55, {"random": [0.55, 0.70, 0.86, 0.88, 0.90]})
    plan = plan_from_report(report, RATE)
    assert plan.recommendation == "partial_backfill" and not plan.adapter_passes
    opt = options(plan)["partial_backfill"]
    assert opt["fraction"] == 0.5 and opt["quality"]["top1"] == 0.86  # first point >= 0.95 * 0.90
    assert opt["items_embedded"] == N // 2 and opt["time_s"] == pytest.approx(N / 2 / 500.0)
    assert opt["storage_bytes"] == N // 2 * D_NEW * 4 + N // 2 * D_OLD * 4 + ADAPTER_BYTES
    assert "fails the compatibility criterion" in plan.reason
    assert any("FAILS the compatibility criterion" in n and "fusion" in n for n in plan.notes)
    full = options(plan)["full_backfill"]
    assert full["time_s"] == pytest.approx(N / 500.0) and full["storage_bytes"] == N * D_NEW * 4
    assert full["bytes_per_item"] == D_NEW * 4 and options(plan)["stay"]["bytes_per_item"] == D_OLD * 4


def test_partial_backfill_gain_is_measured_from_old_old_on_the_curves_sample() -> None:
    """The curves run on a 2,000-item sample, old/old on the 100,000-item gallery (top-1 0.60, where
    more distractors make it lower): the partial row's gain starts from old/old on the sample."""
    report = make_report(0.60, 0.90, 0.55, {"random": [0.55, 0.70, 0.86, 0.88, 0.90]})
    report["backfill"]["old_old"] = {"metrics": {"top1": 0.80}}
    opt = options(plan_from_report(report, RATE))["partial_backfill"]
    assert opt["gain_retained"] == pytest.approx((0.86 - 0.80) / (0.90 - 0.80))  # 0.87 from the whole gallery's 0.60
    assert opt["passes_criterion"] is True
    assert any("old/old on the same sample (top-1 0.800)" in n for n in opt["notes"])
    report["backfill"]["old_old"] = {"metrics": {"top1": 0.87}}  # above the partial row's 0.86: it fails there
    opt = options(plan_from_report(report, RATE))["partial_backfill"]
    assert opt["passes_criterion"] is False and opt["gain_retained"] == pytest.approx((0.86 - 0.87) / (0.90 - 0.87))


def test_each_option_names_the_gallery_its_quality_was_measured_on() -> None:
    """The layer and old/old search the whole gallery, the full backfill and the curves the evaluation
    sample: a table of options read row by row would compare numbers of two galleries without this."""
    from embridge.core.cli.report_cmds import _plan_text

    report = make_report(0.60, 0.90, 0.55, {"random": [0.55, 0.70, 0.86, 0.88, 0.90]})
    sample = {**WHOLE, "gallery": "the evaluation sample", "n_gallery": 2000}
    report["cells"]["new→old"]["protocol"] = WHOLE
    report["cells"]["new/new"]["protocol"] = sample
    plan = plan_from_report(report, RATE)
    galleries = {name: o["measured_gallery"] for name, o in options(plan).items()}
    whole, part = f"the whole gallery ({N} items)", "the evaluation sample (2000 items)"
    assert galleries == {"stay": whole, "adapter_only": whole, "partial_backfill": part, "full_backfill": part}
    rows = _plan_text(plan).splitlines()[1:5]
    assert [row.endswith(f"  on {galleries[name]}") for row, name in zip(rows, galleries, strict=True)] == [True] * 4


def test_partial_backfill_without_a_sample_floor_gives_no_gain_unless_the_sample_is_the_gallery() -> None:
    report = make_report(0.60, 0.90, 0.55, {"random": [0.55, 0.70, 0.86, 0.88, 0.90]})  # an older report
    opt = options(plan_from_report(report, RATE))["partial_backfill"]
    assert opt["gain_retained"] is None and opt["passes_criterion"] is None
    assert any("no old/old on that sample" in n for n in opt["notes"])
    report["sizes"]["gallery"] = N  # the sample is the whole gallery: old/old was measured where the curves were
    opt = options(plan_from_report(report, RATE))["partial_backfill"]
    assert opt["gain_retained"] == pytest.approx((0.86 - 0.60) / (0.90 - 0.60)) and opt["passes_criterion"] is True


def test_a_fraction_that_rounds_to_every_item_or_none_says_so() -> None:
    report = make_report(0.60, 0.90, 0.55, {"random": [0.55, 0.70, 0.86, 0.88, 0.90]})
    for fraction, items, option in ((0.999999, N, "full backfill"), (0.000001, 0, "layer alone")):
        plan = plan_from_report(report, RATE, fraction=fraction)
        assert "partial_backfill" not in options(plan)
        assert f"re-embeds {items} of the {N} gallery items (rounded to whole items): that is the {option}" in \
            " ".join(plan.notes)
        assert not any("needs every item's new vector first" in n for n in plan.notes)  # random needs none


def test_no_early_point_means_full_backfill() -> None:
    plan = plan_from_report(make_report(0.60, 0.90, 0.62, {"random": [0.62, 0.66, 0.70, 0.75, 0.90]}), RATE)
    assert plan.recommendation == "full_backfill" and "partial_backfill" not in options(plan)
    assert "keeps only 6.7%" in plan.reason


def test_new_model_not_better_means_stay() -> None:
    plan = plan_from_report(make_report(0.70, 0.68, 0.69), RATE)
    assert plan.recommendation == "stay" and not plan.new_better
    assert "not better than the old one" in plan.reason and "not better" in plan.notes[0]
    assert not any("β = " in n or "reaches the target" in n for n in plan.notes)  # no backfill to weigh
    from embridge.core.scale.backfill_workspace import planner_order

    with pytest.raises(InputError, match=r"recommends stay .*it recommends no backfill; to re-embed every item "
                                         r"anyway, use --order stored$"):
        planner_order(None, plan)


def test_gain_retained_is_undefined_when_the_new_model_is_not_better() -> None:
    from embridge.core.evaluation.compat import NOT_BETTER

    plan = plan_from_report(make_report(0.45, 0.40, 0.50), RATE)  # the ratio's sign would flip: 2.0
    for option in plan.options:
        assert option["gain_retained"] is None and option["gain_retained_note"] == NOT_BETTER
    assert options(plan)["adapter_only"]["passes_criterion"] is True  # the criterion stays per metric


def test_informed_order_is_costed_with_its_ranking_pass() -> None:
    curves = {"random": [0.55, 0.60, 0.65, 0.70, 0.90], "least_confident": [0.55, 0.88, 0.89, 0.89, 0.90]}
    plan = plan_from_report(make_report(0.60, 0.90, 0.55, curves), RATE)
    # least_confident reaches the target at β = 0.25, but ranking by it needs every new vector first
    assert "partial_backfill" not in options(plan) and plan.recommendation == "full_backfill"
    assert any("least_confident order reaches 0.880 top-1 at β = 0.25" in n for n in plan.notes)


def test_chosen_fraction_reads_the_curve_between_points() -> None:
    report = make_report(0.60, 0.90, 0.55, {"random": [0.55, 0.70, 0.80, 0.85, 0.90]})
    plan = plan_from_report(report, RATE, fraction=0.3)
    opt = options(plan)["partial_backfill"]
    assert opt["fraction"] == 0.3 and opt["quality"]["top1"] == pytest.approx(0.70 + 0.2 * 0.10)
    # a β between the measured points is read by interpolation, and every place that shows it says so
    assert opt["interpolated"] and opt["title"] == "Partial backfill to β = 0.30 (random order, interpolated)"
    assert "β = 0.3 was not measured: its quality is interpolated linearly between the curve's points at β = " \
           "0.25 and 0.5 ('embridge report --backfill-steps N' measures more points)." in opt["notes"]
    measured = options(plan_from_report(report, RATE, fraction=0.25))["partial_backfill"]
    assert not measured["interpolated"] and measured["title"] == "Partial backfill to β = 0.25 (random order)"
    # β = 0.3 falls short of the target (0.855): the reason says so rather than speaking of every β
    assert plan.recommendation == "full_backfill" and "no partial backfill reaches" not in plan.reason
    assert "the partial backfill at β = 0.30 (the fraction given) reaches top-1 0.720" in plan.reason
    assert "no partial backfill reaches" in plan_from_report(report, RATE).reason  # true without --fraction
    with pytest.raises(InputError, match="between 0 and 1"):
        plan_from_report(report, RATE, fraction=1.5)


def test_forward_alternative_and_unknown_embedding_cost() -> None:
    report = make_report(0.60, 0.90, 0.55, {"random": [0.55, 0.60, 0.65, 0.70, 0.90]})
    no_backbone = Throughput(embed_items_per_s=None, adapter_items_per_s=1e6, notes=["no backbone here"])
    alt = {"name": "forward_transform", "kind": "fct", "quality": {"top1": 0.88}, "items_per_s": 2e5,
           "out_dim": D_NEW, "source": "run 7",
           "measured_on": {**WHOLE, "search": "exact", "text": "the same queries and gallery"}}
    plan = plan_from_report(report, no_backbone, alternatives=[alt])
    fwd = options(plan)["forward_transform"]
    assert plan.recommendation == "forward_transform"
    assert fwd["time_s"] == pytest.approx(N / 2e5) and fwd["gain_retained"] == pytest.approx(28 / 30)
    assert options(plan)["full_backfill"]["time_s"] is None and "no backbone here" in plan.notes
    assert "Forward transform (fct): from run 7, measured on the same queries and gallery" in plan.measured_on()


def test_an_alternative_measured_on_other_galleries_gets_no_gain_and_is_not_recommended() -> None:
    """A run reported with --heldout-gallery searched a smaller gallery: its top-1 is not weighed
    against this report's old/old (the gain would mix two galleries)."""
    report = make_report(0.60, 0.90, 0.55, {"random": [0.55, 0.60, 0.65, 0.70, 0.90]})
    smaller = {**WHOLE, "gallery": "the old gallery without the train fold", "n_gallery": N - 100,
               "text": "200 test queries against the old gallery without the train fold"}
    alt = {"name": "forward_transform", "kind": "fct", "quality": {"top1": 0.88}, "items_per_s": 2e5,
           "out_dim": D_NEW, "source": "run 7", "measured_on": smaller}
    plan = plan_from_report(report, RATE, alternatives=[alt])
    fwd = options(plan)["forward_transform"]
    assert fwd["gain_retained"] is None and fwd["passes_criterion"] is None and not fwd["acceptable"]
    assert plan.recommendation != "forward_transform"
    assert any("Measured on 200 test queries against the old gallery without the train fold, not on this "
               "report's old/old queries and gallery" in n for n in fwd["notes"])
    # the plan's text names where the row's numbers come from, beside the report's own cells
    assert ("Forward transform (fct): from run 7, measured on 200 test queries against the old gallery without "
            "the train fold; not this report's queries and gallery, so not weighed against them") in plan.measured_on()


def test_storage_counts_the_old_vectors_stored_not_every_gallery_item() -> None:
    """Gallery items the old model never embedded hold no old vector: staying, the layer and a forward
    transform were priced (and the transform's note counted) as if every item held one."""
    held = N - 1000  # 900 searched, and 100 train-fold items --heldout-gallery took out of the search
    report = make_report(0.60, 0.90, 0.55, {"random": [0.55, 0.70, 0.86, 0.88, 0.90]})
    report["sizes"].update(gallery_old=held - 100, removed_train=100)
    opts = options(plan_from_report(report, RATE))
    assert opts["stay"]["storage_bytes"] == held * D_OLD * 4
    assert opts["adapter_only"]["storage_bytes"] == held * D_OLD * 4 + ADAPTER_BYTES
    partial = opts["partial_backfill"]  # half re-embedded, the other half keeps its old vectors where it has one
    assert partial["storage_bytes"] == N // 2 * D_NEW * 4 + N // 2 * D_OLD * 4 + ADAPTER_BYTES
    assert opts["full_backfill"]["storage_bytes"] == N * D_NEW * 4 and opts["full_backfill"]["items_embedded"] == N
    forward = make_report(0.60, 0.90, 0.89, direction="forward")
    forward["sizes"].update(gallery_old=held, removed_train=0)
    fwd = options(plan_from_report(forward, RATE))["forward_transform"]
    assert fwd["storage_bytes"] == held * D_NEW * 4 + ADAPTER_BYTES and fwd["time_s"] == pytest.approx(held / 1e6)
    assert f"Transforms all {held} stored old vectors" in fwd["notes"][0]
    assert options(plan_from_report(make_report(0.60, 0.90, 0.55), RATE))["stay"]["storage_bytes"] == N * D_OLD * 4


def test_forward_layer_of_the_report_is_the_transform_option() -> None:
    plan = plan_from_report(make_report(0.60, 0.90, 0.89, direction="forward"), RATE)
    assert plan.recommendation == "forward_transform" and "adapter_only" not in options(plan)
    assert options(plan)["forward_transform"]["time_s"] == pytest.approx(N / 1e6)


@pytest.fixture(scope="module")
def case(demo_workspace_path: Path, tmp_path_factory: pytest.TempPathFactory) -> DemoCase:
    return demo_case(demo_workspace_path, tmp_path_factory)


def test_plan_on_the_demo_uses_its_report_and_measured_rates(case: DemoCase) -> None:
    with Workspace.open(case.path) as ws:
        before = len(ws.reports())
        plan = plan_upgrade(ws, case.run_id, device="cpu")
        assert len(ws.reports()) == before  # planned from the existing report
    assert plan.report_id == case.report.report_id and plan.run_id == case.run_id
    opts = options(plan)
    rate = plan.throughput["embed_items_per_s"]
    assert rate > 0 and plan.throughput["embed_sample"] == 64
    assert opts["full_backfill"]["time_s"] == pytest.approx(997 / rate)
    assert opts["stay"]["storage_bytes"] == 997 * 32 * 4 and opts["full_backfill"]["storage_bytes"] == 997 * 64 * 4
    cells = case.report.cells
    assert opts["adapter_only"]["quality"]["top1"] == cells["new→old"]["metrics"]["top1"]
    assert opts["full_backfill"]["quality"]["top1"] == cells["new/new"]["metrics"]["top1"]
    # the affine layer keeps about a fifth of the gain on the demo: not enough on its own
    assert case.report.headline["gain_retained"] < 0.9
    assert plan.recommendation in ("partial_backfill", "full_backfill") and "keeps only" in plan.reason


def test_without_labels_own_item_retrieval_decides() -> None:
    report = make_report(1.0, 1.0, 0.97, {"random": [0.97, 0.97, 0.98, 0.99, 1.0]})
    report["sizes"]["relevance"] = "item"
    plan = plan_from_report(report, RATE)
    assert plan.recommendation == "adapter_only" and plan.new_better is None and plan.adapter_passes is None
    assert "own-item retrieval" in plan.reason and "Without labels" in plan.notes[0]
    report["cells"]["new→old"]["metrics"]["top1"] = 0.40
    report["backfill"]["policies"]["random"]["values"]["top1"] = [0.40, 0.70, 0.96, 0.99, 1.0]
    plan = plan_from_report(report, RATE)
    assert plan.recommendation == "partial_backfill" and options(plan)["partial_backfill"]["fraction"] == 0.5


def test_re_embedding_is_timed_only_on_items_holding_raw_inputs(demo_workspace_path: Path, tmp_path: Path) -> None:
    """Items that came from a vector store as vectors alone sit in the gallery with nothing to embed;
    the re-embedding rate is timed on the others, and is unknown (not an error) when none are left."""
    import shutil

    from embridge.core.plan.throughput import embed_rate

    root = shutil.copytree(demo_workspace_path, tmp_path / "ws")
    with Workspace.open(root) as ws:
        new = next(m["name"] for m in ws.models() if m["role"] == "new")
        ws.add_items([{"key": f"store-{i}", "modality": "vector", "split": "gallery"} for i in range(5000)])
        rate, timed, _, note = embed_rate(ws, new, device="cpu")
        assert rate is not None and rate > 0 and timed == 64
        # a backfill's fixed start (Python, torch, the model's load) is said to be left out of the times
        assert re.search(r"starts Python and torch and loads the model first \(\d+\.\d s here for the load\), a "
                         "fixed cost these times leave out", note), note
        with ws.transaction():
            ws.db.execute("update items set modality = 'vector' where split is not 'query'")
        rate, timed, device, note = embed_rate(ws, new, device="cpu")
        assert (rate, timed, device) == (None, 0, "none") and "no gallery item holds raw inputs" in note


def test_gallery_items_the_new_model_cannot_embed_leave_re_embedding_untimed(demo_workspace_path: Path,
                                                                              tmp_path: Path) -> None:
    """28x28 images imported beside the 8x8 digits: the report built, and the plan failed with the image's
    error, naming no step; a backfill would stop on them too, and the plan says so in a note."""
    import shutil

    from PIL import Image

    from embridge.core.importers import import_items
    from embridge.core.plan.throughput import embed_rate

    root = shutil.copytree(demo_workspace_path, tmp_path / "ws")
    for i in range(300):
        folder = tmp_path / "big" / str(i % 3)
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("L", (28, 28), color=i % 256).save(folder / f"{i}.png")
    with Workspace.open(root) as ws:
        import_items(ws, tmp_path / "big", "images", "gallery")
        new = next(m["name"] for m in ws.models() if m["role"] == "new")
        rate, timed, device, note = embed_rate(ws, new, device="cpu")
    assert (rate, timed, device) == (None, 0, "none")
    assert note.startswith("re-embedding could not be timed: 64 sampled gallery items include some") and \
        "image is 28 high x 28 wide but model" in note and "a backfill would stop on them too" in note


def test_without_backfill_curves_the_plan_says_they_were_not_measured() -> None:
    report = make_report(0.60, 0.90, 0.62)
    report["backfill"] = {"policies": {}}
    plan = plan_from_report(report, RATE)
    assert plan.recommendation == "full_backfill" and "partial_backfill" not in options(plan)
    assert "partial-backfill quality was not measured" in plan.reason
    assert "no partial backfill reaches" not in plan.reason
    assert not any("No backfill order" in n for n in plan.notes)
    assert any(n.startswith("Partial-backfill quality was not measured") for n in plan.notes)
    failing = make_report(0.60, 0.90, 0.55)
    failing["backfill"] = {"policies": {}}
    (note,) = [n for n in plan_from_report(failing, RATE).notes if "FAILS" in n]
    assert note.endswith("Offer instead: fusion during the transition, a cascade, or a full backfill.")


def test_a_failing_fusion_layer_is_offered_backfills_only_as_the_report_and_bundle_say() -> None:
    from embridge.core.bundle.measured import verdict_line
    from embridge.core.upgrade_advice import bridge_alternatives

    failing = make_report(0.60, 0.90, 0.55)
    failing["adapter"]["kind"] = "fusion"  # fusion already serves both models: offering it again helps nobody
    (note,) = [n for n in plan_from_report(failing, RATE).notes if "FAILS" in n]
    assert note.endswith("Offer instead: a full backfill.")  # no partial backfill reaches the layer here
    assert bridge_alternatives("fusion") == bridge_alternatives("cascade") == "a partial backfill or a full backfill"
    manifest = {"adapter": {"kind": "fusion"}, "metrics": {"source": "report 3", "values": {
        "compatible": False, "upgraded_top1": 0.55, "old_old_top1": 0.60, "new_new_top1": 0.90}}}
    warning = verdict_line(manifest)
    assert warning is not None and "Consider a partial backfill or a full backfill instead" in warning
    assert "fusion during" not in warning and "cascade" not in warning
    manifest["adapter"]["kind"] = "affine"
    assert "Consider fusion during the transition, a cascade, a partial backfill, or a full backfill" in str(
        verdict_line(manifest))


def test_a_planner_backfill_without_a_partial_option_says_where_to_look_and_what_to_do() -> None:
    from embridge.core.scale.backfill_workspace import planner_order

    report = make_report(0.60, 0.90, 0.62)
    report["backfill"] = {"policies": {}}
    plan = plan_from_report(report, RATE, fraction=0.3)
    with pytest.raises(InputError, match="no partial-backfill option.*--order stored") as err:
        planner_order(None, plan)  # refused before the workspace is read
    assert "--fraction" not in str(err.value)
    assert "recommends full_backfill" in str(err.value) and "was not measured" in str(err.value)  # the plan's why
    plan = plan_from_report(make_report(0.60, 0.90, 0.62, {"random": [0.62, 0.66, 0.70, 0.75, 0.90]}), RATE)
    with pytest.raises(InputError, match="No backfill order that is free to compute reaches 0.855 top-1"):
        planner_order(None, plan)


def test_plan_on_a_judged_workspace_reads_partial_backfill_off_the_judged_curves(tmp_path: Path) -> None:
    from judged_fixtures import build_judged_workspace

    from embridge.core.plan.upgrade_options import curve_point
    from embridge.core.report.build import ReportOptions, build_report
    from embridge.core.train.runs import train_run

    case = build_judged_workspace(tmp_path / "ws", n_docs=200, n_queries=60)
    with Workspace.open(case["path"]) as ws:
        run = train_run(ws, "affine", device="cpu")
        report = build_report(ws, run["run_id"], ReportOptions(n_boot=20, backfill_steps=5))
        plan = plan_upgrade(ws, report=report, throughput=RATE, fraction=0.5)
    partial = next(o for o in plan.options if o["name"] == "partial_backfill")
    curve = report.backfill["policies"][partial["policy"]]
    for name in ("top1", "ndcg@10", "mrr@10"):
        assert partial["quality"][name] == pytest.approx(curve_point(curve["betas"], curve["values"][name], 0.5))
    assert "not measured" not in " ".join([plan.reason, *plan.notes])
    ceiling_protocol = report.cells[report.ceiling_cell]["protocol"]["text"]
    assert f"partial backfill read off the curves measured on {ceiling_protocol}" in plan.measured_on()




def test_a_curve_that_starts_above_the_target_names_its_own_value() -> None:
    report = make_report(0.60, 0.90, 0.55, {"random": [0.88, 0.89, 0.90, 0.90, 0.90]})
    plan = plan_from_report(report, RATE)
    assert "partial_backfill" not in options(plan)
    assert "The layer alone already reaches the target 0.855 top-1: 0.880 at β = 0 on the curves' sample." \
        in plan.notes


def judged_report(oo: dict[str, float], nn: dict[str, float], up: dict[str, float],
                  curves: dict[str, dict[str, list[float]]] | None = None) -> dict[str, Any]:
    """A report over graded judgments: every cell has top-1 (success@1) and nDCG@10."""
    report = make_report(oo["top1"], nn["top1"], up["top1"])
    for cell, values in (("old/old", oo), ("new/new", nn), ("new→old", up)):
        report["cells"][cell]["metrics"] = dict(values)
    report["cells"]["old/old"]["protocol"] = {**WHOLE, "relevance": "relevance judgments (test split)"}
    if curves is not None:
        report["backfill"] = {"policies": {p: {"betas": BETAS, "values": v} for p, v in curves.items()}}
    return report


def test_with_judgments_the_plan_weighs_ndcg_not_one_more_first_hit() -> None:
    # one more first hit, while the judged documents rank worse: not an upgrade
    report = judged_report({"top1": 0.962, "ndcg@10": 0.773}, {"top1": 1.0, "ndcg@10": 0.708},
                           {"top1": 0.154, "ndcg@10": 0.198})
    plan = plan_from_report(report, RATE)
    assert plan.metric == "ndcg@10" and plan.recommendation == "stay" and plan.new_better is False
    assert "new/new nDCG@10 0.708 vs old/old 0.773" in plan.reason
    assert any("top-1 rises (new/new 1.000 vs old/old 0.962) while nDCG@10 falls" in n for n in plan.notes)
    assert options(plan)["full_backfill"]["acceptable"] is False
    assert not any("Offer instead" in n for n in plan.notes)  # no backfill to a model that is no better
    # and the other way: equal top-1, nDCG@10 up and kept by the layer
    report = judged_report({"top1": 0.80, "ndcg@10": 0.60}, {"top1": 0.80, "ndcg@10": 0.80},
                           {"top1": 0.80, "ndcg@10": 0.79})
    plan = plan_from_report(report, RATE)
    assert plan.recommendation == "adapter_only" and plan.adapter_passes is True
    assert options(plan)["adapter_only"]["gain_retained"] == pytest.approx(0.95)
    assert "nDCG@10 0.790 > old/old 0.600" in plan.reason
    assert any("top-1 (new/new 0.800 vs old/old 0.800) does not rise with it" in n for n in plan.notes)


def test_a_recommendation_that_loses_first_hits_says_so() -> None:
    """A fusion recommended on nDCG@10 (0.484 vs 0.362) lowered top-1 (0.383 vs 0.500) and MRR@10 without a word."""
    report = judged_report({"top1": 0.50, "ndcg@10": 0.362, "mrr@10": 0.634}, {"top1": 0.90, "ndcg@10": 0.49},
                           {"top1": 0.383, "ndcg@10": 0.484, "mrr@10": 0.608})  # the layer keeps 95% of the gain
    plan = plan_from_report(report, RATE)
    assert plan.recommendation == "adapter_only" and plan.metric == "ndcg@10"
    (note,) = [n for n in plan.notes if "first less often" in n]
    assert "is recommended on nDCG@10 (0.484 vs 0.362 today), but top-1 0.383 vs 0.500 and MRR@10 0.608 vs 0.634 " \
           "fall against staying" in note
    kept = judged_report({"top1": 0.50, "ndcg@10": 0.362}, {"top1": 0.90, "ndcg@10": 0.49},
                         {"top1": 0.60, "ndcg@10": 0.484})
    assert not any("first less often" in n for n in plan_from_report(kept, RATE).notes)  # top-1 rises too


def test_with_judgments_a_partial_backfill_is_read_off_the_ndcg_curve() -> None:
    curves = {"random": {"top1": [0.50, 0.90, 0.90, 0.90, 0.90], "ndcg@10": [0.50, 0.60, 0.70, 0.86, 0.90]}}
    report = judged_report({"top1": 0.60, "ndcg@10": 0.55}, {"top1": 0.90, "ndcg@10": 0.90},
                           {"top1": 0.50, "ndcg@10": 0.50}, curves)
    plan = plan_from_report(report, RATE)
    partial = options(plan)["partial_backfill"]
    # top-1 reaches 95% of the full backfill's at β = 0.25, nDCG@10 only at β = 0.75
    assert plan.recommendation == "partial_backfill" and partial["fraction"] == 0.75
    assert partial["quality"]["ndcg@10"] == 0.86 and partial["quality"]["top1"] == 0.90
    assert "reaches nDCG@10 0.860" in plan.reason and plan.targets["target_ndcg@10"] == pytest.approx(0.855)


def test_a_layer_better_than_today_is_recommended_even_when_the_new_model_is_not() -> None:
    plan = plan_from_report(make_report(0.45, 0.40, 0.50), RATE)
    assert plan.new_better is False and plan.recommendation == "adapter_only"
    assert "search better than today (top-1 0.500 > old/old 0.450)" in plan.reason
    assert any("a backfill would not gain" in n for n in plan.notes)
    assert not options(plan)["full_backfill"]["acceptable"]


def test_a_forward_transform_better_than_today_wins_over_staying_though_it_takes_time() -> None:
    plan = plan_from_report(make_report(0.45, 0.40, 0.50, direction="forward"), RATE)
    transform = options(plan)["forward_transform"]
    assert transform["time_s"] > 0 and transform["acceptable"] and not options(plan)["stay"]["acceptable"]
    assert plan.recommendation == "forward_transform"


def _head_plan_beside_fct(fct_top1: float, share: float) -> Plan:
    """The plan of a bt2 head (head/head 0.70, old/old 0.60) listing an fct layer of top-1 ``fct_top1`` whose
    own full backfill (new/new) is 0.80; ``share``: both the gain threshold and the target share."""
    head = make_report(0.60, 0.70, 0.65)
    head["ceiling_cell"] = "head/head"
    head["cells"]["head/head"] = head["cells"].pop("new/new")
    fct = {"name": "forward_transform", "kind": "fct", "quality": {"top1": fct_top1}, "items_per_s": 1e6,
           "source": "test", "measured_on": WHOLE, "out_dim": D_NEW, "ceiling": {"top1": 0.80}}
    return plan_from_report(head, RATE, alternatives=[fct], gain_threshold=share, target_share=share)


def test_another_runs_layer_keeps_the_gain_its_own_ceiling_gives_whichever_run_is_planned() -> None:
    """A bt2 head's plan (ceiling head/head 0.70) listed an fct layer (ceiling new/new 0.80) with its gain
    taken against 0.70: 1.0 instead of 0.5, and its target too low, so the plan of one run accepted a
    layer the plan of the other refused."""
    plan = _head_plan_beside_fct(0.70, share=0.9)
    row = options(plan)["forward_transform"]
    assert row["gain_retained"] == pytest.approx(0.5)  # (0.70 - 0.60) / (0.80 - 0.60): its own full backfill
    assert not row["acceptable"]  # 0.70 < 0.9 x 0.80, though it reaches 0.9 x 0.70
    own = plan_from_report(make_report(0.60, 0.80, 0.70, direction="forward"), RATE, gain_threshold=0.9,
                           target_share=0.9)
    assert options(own)["forward_transform"]["gain_retained"] == pytest.approx(row["gain_retained"])


@pytest.mark.parametrize("fraction", [0.0, 1.0, 1e-9])
def test_a_fraction_that_gives_no_partial_backfill_is_said_to_not_that_none_reaches(fraction: float) -> None:
    """With --fraction 0, 1 or under one item there is no partial option and no search was made: the
    reason said 'no partial backfill reaches ...', which the search without --fraction contradicts."""
    report = make_report(0.60, 0.90, 0.62, {"random": [0.62, 0.70, 0.88, 0.89, 0.90]})
    assert plan_from_report(report, RATE).recommendation == "partial_backfill"
    plan = plan_from_report(report, RATE, fraction=fraction)
    assert plan.recommendation == "full_backfill" and "partial_backfill" not in options(plan)
    assert f"the fraction given, {fraction:g}, gives no partial backfill to weigh" in plan.reason
    assert "no partial backfill reaches" not in plan.reason


def test_a_layer_enough_by_the_target_share_says_so_beside_its_gain() -> None:
    """Gain 0.85 is under the 0.9 threshold; 0.77 reaches 0.95 x 0.80: accepted, and the reason said only
    'keeps 85% of the gain', which reads as breaking the threshold. Gains read to one decimal, as every
    other page and command gives them."""
    plan = plan_from_report(make_report(0.60, 0.80, 0.77), RATE)
    assert plan.recommendation == "adapter_only"
    assert "keeps 85.0% of the full-backfill gain, under the 90% threshold, but reaches top-1 0.770, at least 95% " \
           "of the full backfill's 0.800 (the target share)" in plan.reason
    assert "but reaches" not in plan_from_report(make_report(0.60, 0.80, 0.79), RATE).reason  # 95% kept: no aside


def test_the_plan_says_its_counts_include_the_items_of_the_evaluation_sample() -> None:
    plan = plan_from_report(make_report(0.60, 0.80, 0.79), RATE)  # new/new searched 2,000 of 100,000 items
    assert any(n.startswith("Items re-embedded count every gallery item an option needs, the 2000 whose new vectors "
                            "this workspace holds (the evaluation sample, and any earlier backfill) included")
               for n in plan.notes)
    worse = plan_from_report(make_report(0.60, 0.55, 0.58), RATE)  # nothing to re-embed for: no such note
    heldout = make_report(0.60, 0.80, 0.79)  # --heldout-gallery: new/new searched the sample less its train fold
    heldout["sizes"].update(gallery=1500, gallery_both=2000, removed_train=500)
    assert any(n.startswith("Items re-embedded count every gallery item an option needs, the 2000 whose new vectors")
               for n in plan_from_report(heldout, RATE).notes)  # it said the 1500 searched
    assert not any(n.startswith("Items re-embedded count") for n in worse.notes)


def test_a_bridge_is_planned_beside_the_plain_layer_of_its_model_pair(demo_copy: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Planning a cascade run left out the procrustes run of the same models, which passes the criterion with
    one encoder and scores higher; the plan called the cascade 'the only option' that passes."""
    import json

    from embridge.core.cli.main import main

    ws = str(demo_copy)
    for argv in (["train", "-w", ws, "--method", "procrustes"], ["report", "-w", ws, "--run", "1"],
                 ["train", "-w", ws, "--method", "cascade", "--set", "base=procrustes",
                  "--set", "rerank_new_vectors=false"]):
        assert main(argv) == 0
    capsys.readouterr()
    assert main(["plan", "-w", ws, "--run", "3", "--json"]) == 0
    plan = Plan.from_json(json.loads(capsys.readouterr().out))
    cascade, plain = plan.option("cascade"), plan.option("adapter_only")
    assert cascade is not None and plain is not None and plain["title"] == "Adapter only (procrustes)"
    assert plain["quality_from"]["source"] == "report 1 of run 1" and plain["quality_from"]["comparable"]
    with Workspace.open(demo_copy) as w:
        report = json.loads((demo_copy / w.report(1)["json_file"]).read_text(encoding="utf-8"))
    assert plain["quality"]["top1"] == report["headline"]["upgraded_top1"]
    assert plain["passes_criterion"] and "the only option" not in plan.reason


def test_a_damaged_layer_of_another_run_is_left_out_of_the_plan_not_an_error(demo_copy: Path,
                                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Another run's changed layer file (an fct of the same models) stopped the plan of this run with the
    integrity error, and `backfill --order planner` with it: the alternative is only not offered."""
    import json

    from embridge.core.cli.main import main

    ws = str(demo_copy)
    for argv in (["train", "-w", ws, "--method", "procrustes"], ["train", "-w", ws, "--method", "fct"]):
        assert main(argv) == 0
    capsys.readouterr()
    assert main(["plan", "-w", ws, "--run", "1", "--json"]) == 0
    assert Plan.from_json(json.loads(capsys.readouterr().out)).option("forward_transform") is not None
    with Workspace.open(demo_copy) as w:
        fct_file = w.adapter_path(w.adapter_for_run(2)["id"])
    with fct_file.open("ab") as fh:
        fh.write(b"x")
    assert main(["plan", "-w", ws, "--run", "1", "--json"]) == 0
    plan = Plan.from_json(json.loads(capsys.readouterr().out))
    assert plan.option("forward_transform") is None and plan.option("adapter_only") is not None


def test_a_fusion_at_alpha_zero_says_its_base_layer_alone_serves_the_same() -> None:
    report = make_report(0.60, 0.90, 0.80)
    report["adapter"] |= {"kind": "fusion", "config": {"alpha": 0.0}}
    fusion = options(plan_from_report(report, RATE))["fusion"]
    assert "α = 0: the fused query is the mapped new query alone, so the base layer trained on its own scores the " \
           "same and serves with one encoder." in fusion["notes"]
    report["adapter"]["config"] = {"alpha": 0.4}
    assert not any(n.startswith("α = 0") for n in options(plan_from_report(report, RATE))["fusion"]["notes"])


def test_a_small_backfilled_share_is_not_shown_as_zero() -> None:
    """``--fraction 0.001`` re-embeds an item but its option read "β = 0.00", which the reason calls the layer alone."""
    from embridge.core.formatting import format_beta

    assert [format_beta(b) for b in (0.001, 0.0042, 0.0, 0.7, 0.01, 1.0)] == ["0.001", "0.0042", "0.00", "0.70",
                                                                            "0.01", "1.00"]


def test_a_share_just_below_one_is_not_shown_as_the_full_backfill() -> None:
    """``--fraction 0.999`` (996 of 997 items) read "β = 1.00", the full backfill's share."""
    from embridge.core.formatting import format_beta

    assert [format_beta(b) for b in (0.994, 0.995, 0.999, 0.9996, 1.0)] == ["0.99", "0.995", "0.999", "0.9996",
                                                                           "1.00"]


def test_an_option_enough_by_its_own_full_backfill_names_that_backfill() -> None:
    """An fct layer (its own new/new 0.995) listed in a bt2 plan (head/head 0.975) was accepted by the target
    share of 0.995, which the reason called "the full backfill's", a number the plan's full-backfill row
    does not show."""
    plan = _head_plan_beside_fct(0.78, share=0.95)
    assert plan.recommendation == "forward_transform", plan.reason
    assert "at least 95% of its own full backfill's 0.800 (new/new where this option was measured)" in plan.reason
    assert "of the full backfill's" not in plan.reason


@pytest.mark.parametrize("interval, recommended", [([-0.004, 0.02], "stay"), ([0.01, 0.09], "adapter_only")])
def test_a_layer_beating_today_only_within_noise_is_not_worth_serving(interval: list[float], recommended: str) -> None:
    """With a much worse new model, a fusion beating old/old by 4 queries in 500 (0.986 vs 0.978, 95% interval of
    the difference 0.000 to 0.018) was recommended: a second encoder for which queries happened to be drawn."""
    report = make_report(0.45, 0.40, 0.50)
    report["headline"] = {"improvement_ci": {"top1": interval}}
    plan = plan_from_report(report, RATE)
    assert plan.new_better is False and plan.recommendation == recommended
    assert options(plan)["adapter_only"]["improvement_ci"] == interval
    noise = ("the Adapter only (affine) option's top-1 0.500 beats old/old 0.450 only within noise (95% interval of "
             "the difference -0.004 to +0.020, paired bootstrap over the test queries)")
    assert (noise in plan.reason) is (recommended == "stay")
    # an alternative's interval is weighed the same way
    fusion = {"name": "fusion", "kind": "fusion", "quality": {"top1": 0.52}, "items_per_s": 1e6, "source": "test",
              "measured_on": WHOLE, "improvement_ci": {"top1": [-0.01, 0.1]}}
    plan = plan_from_report(report, RATE, alternatives=[fusion])
    assert not options(plan)["fusion"]["acceptable"] and plan.recommendation == recommended


@pytest.mark.parametrize("interval", [[-0.03, 0.08], [0.01, 0.09]])
def test_a_bridge_kept_for_the_transition_says_when_its_margin_is_within_noise(interval: list[float]) -> None:
    """A cascade keeping 6.5% of the gain was recommended for the transition with a 95% interval of its margin
    over old/old of -0.03 to +0.08, and the reason gave no hint that the margin may be no gain at all."""
    report = make_report(0.60, 0.90, 0.62)
    report["adapter"] |= {"kind": "fusion", "config": {"alpha": 0.5}}
    report["headline"] = {"improvement_ci": {"top1": interval}}
    plan = plan_from_report(report, RATE)
    assert plan.new_better and plan.recommendation == "fusion", plan.reason
    noise = (f"; but its margin over old/old is within noise (95% interval of the difference {interval[0]:+.3f} to "
             f"{interval[1]:+.3f}, paired bootstrap over the test queries), so the transition may gain nothing")
    assert (noise in plan.reason) is (interval[0] <= 0), plan.reason


@pytest.mark.parametrize(("option", "settings"), [("--target-share", {"target_share": 0.0}),
                                                  ("--target-share", {"target_share": 1.5}),
                                                  ("--gain-threshold", {"gain_threshold": -0.1})])
def test_the_plans_targets_are_checked_in_the_core(option: str, settings: dict[str, float]) -> None:
    """The command line's parser refused a target share of 0, but the app's Plan page planned with it and
    recommended an option that was enough "at least 0% of the full backfill"."""
    from embridge.core.errors import InputError

    with pytest.raises(InputError, match=f"^{option}: "):
        plan_from_report(make_report(0.60, 0.90, 0.80), RATE, **settings)


@pytest.mark.parametrize("interval", [[-0.005, 0.010], [0.001, 0.010]])
def test_a_layer_recommended_by_the_target_share_says_when_its_margin_is_within_noise(interval: list[float]) -> None:
    """3072-d old, 1024-d new: old/old 0.973, new/new 0.988, the layer 0.975 (one query in 600), reaching the
    target share as staying itself would; the plan recommended the layer without a word of the noise."""
    report = make_report(0.9733, 0.9883, 0.975)
    report["headline"] = {"improvement_ci": {"top1": interval}}
    plan = plan_from_report(report, RATE)
    assert plan.new_better and plan.recommendation == "adapter_only", plan.reason
    noise = (f"; but its margin over old/old is within noise (95% interval of the difference {interval[0]:+.3f} to "
             f"{interval[1]:+.3f}, paired bootstrap over the test queries), so new queries may search no better than "
             "today until a backfill")
    assert (noise in plan.reason) is (interval[0] <= 0)


def test_a_heads_full_backfill_stores_the_head_it_serves_through() -> None:
    """A bt2 head's full backfill serves head(new) outputs, so the head ships with it: its storage left the
    head's file out while every layer option counted its own."""
    plan = _head_plan_beside_fct(0.70, share=0.9)
    full = options(plan)["full_backfill"]
    assert full["storage_bytes"] == N * D_OLD * 4 + ADAPTER_BYTES  # the head's outputs (out_dim) and its file
    plain = options(plan_from_report(make_report(0.60, 0.80, 0.70), RATE))["full_backfill"]
    assert plain["storage_bytes"] == N * D_NEW * 4  # no head: the new model's own vectors alone


def _bt2_report(oo: float, head_head: float, up: float, new_new: float,
                curves: dict[str, list[float]] | None = None) -> dict[str, Any]:
    """A bt2 run's report: its ceiling the head on both sides (``head_head``), the new model's own ``new_new``."""
    head = make_report(oo, head_head, up, curves)
    head["ceiling_cell"] = "head/head"
    head["cells"]["head/head"] = head["cells"]["new/new"]
    head["cells"]["new/new"] = {"metrics": {"top1": new_new}}
    head["adapter"]["kind"] = "bt2"
    head["headline"] = {"old_old_top1": oo, "new_new_top1": new_new, "ceiling_top1": head_head, "upgraded_top1": up}
    return head


def test_a_head_whose_new_model_is_no_better_is_planned_with_the_reports_caution() -> None:
    """A bt2 head beats old/old (0.69 > 0.60) while the new model itself does not (new/new 0.59): the plan
    recommends the layer, as the report passes it, and says as the report does where its gain comes from."""
    head = _bt2_report(0.60, 0.70, 0.69, new_new=0.59)
    plan = plan_from_report(head, RATE)
    assert plan.recommendation == "adapter_only"
    assert plan.notes[0].startswith("The new model by itself is no better than the old one (new/new top-1 59.0% "
                                    "against old/old 60.0%): what the bt2 layer gains over today comes from its head")
    head["headline"]["new_new_top1"] = 0.68
    assert not any("by itself" in note for note in plan_from_report(head, RATE).notes)


def test_a_heads_backfill_options_say_the_backfill_stores_the_new_models_own_vectors() -> None:
    """A bt2 plan priced its backfills by head/head (the head's output indexed), which no backfill writes."""
    head = _bt2_report(0.60, 0.90, 0.65, new_new=0.80, curves={"random": [0.65, 0.86, 0.88, 0.89, 0.90]})
    plan = plan_from_report(head, RATE)
    said = "'embridge backfill' stores the new model's own vectors, which new queries search as new/new (top-1 0.800)"
    assert plan.recommendation == "partial_backfill"
    assert any(note.startswith("The curve scores backfilled items through the bt2 head") and said in note
               for note in options(plan)["partial_backfill"]["notes"])
    assert any(f"That cell indexes every item through the bt2 head; {said}" in n for n in options(plan)["full_backfill"]["notes"])
    head["adapter"]["kind"] = "affine"
    assert not any("stores the new model's own" in n for o in plan_from_report(head, RATE).options for n in o["notes"])


def test_a_random_partial_backfill_says_what_single_draws_of_its_share_scored() -> None:
    report = make_report(0.60, 0.90, 0.65, curves={"random": [0.65, 0.86, 0.88, 0.89, 0.90]})
    curve = report["backfill"]["policies"]["random"]
    curve.update(draws=8, spread={"top1": [[0.65, 0.65], [0.84, 0.88], [0.86, 0.90], [0.88, 0.90], [0.9, 0.9]]})
    plan = plan_from_report(report, RATE)
    partial = options(plan)["partial_backfill"]
    assert partial["fraction"] == 0.25  # the mean curve's first point at 95% of 0.90
    assert "The random curve is the mean of 8 random draws of that share of the sample: single draws scored top-1 " \
           "0.840 to 0.880 there" in " ".join(partial["notes"])
