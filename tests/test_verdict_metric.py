"""Verdicts of reports and bundles weigh graded judgments by nDCG@10, as the plan does."""

from __future__ import annotations

from typing import Any

from embridge.core.bundle.measured import verdict_line
from embridge.core.report.sections import verdicts


def judged_head(oo: float, nn: float, up: float, top1: tuple[float, float, float]) -> dict[str, Any]:
    return {"old_old_top1": top1[0], "ceiling_top1": top1[1], "upgraded_top1": top1[2], "gain_retained": None,
            "compatible": top1[2] > top1[0], "ndcg@10": up, "old_old_ndcg@10": oo, "new_new_ndcg@10": nn,
            "ceiling_ndcg@10": nn, "compatible_ndcg@10": up > oo,
            "gain_retained_ndcg@10": (up - oo) / (nn - oo) if nn > oo else None}


def test_a_judged_report_states_its_verdict_on_ndcg() -> None:
    # top-1 ties old/old; nDCG@10 is up and the layer keeps most of it
    lines = verdicts(judged_head(0.60, 0.80, 0.79, (0.80, 0.80, 0.80)), "new→old", "new/new", "affine", "judgments")
    assert lines == ["The affine layer passes the compatibility criterion: new→old nDCG@10 79.0% > old/old 60.0%; "
                     "it keeps 95.0% of the full-backfill gain."]


def test_a_worse_new_model_is_not_answered_with_a_backfill() -> None:
    lines = verdicts(judged_head(0.89, 0.64, 0.70, (1.0, 0.65, 0.70)), "new→old", "new/new", "affine", "judgments")
    assert "new/new nDCG@10 64.0% against old/old 89.0%. Upgrading does not pay here." in lines[0]
    assert lines[1].endswith("With the new model itself no better, stay on the old model.")
    assert not any("backfill" in line for line in lines)
    # labels: top-1 stays the measure, and a better new model still gets the remedies
    head = {"old_old_top1": 0.5, "ceiling_top1": 0.8, "upgraded_top1": 0.4, "gain_retained": -0.33,
            "compatible": False}
    (line,) = verdicts(head, "new→old", "new/new", "affine", "label")
    assert "new→old top-1 40.0% is not above old/old 50.0%" in line and "a full backfill" in line


def test_a_layer_that_cannot_pass_because_old_old_is_perfect_says_so() -> None:
    """Every system at top-1 100%: 'FAILS ... finds no more than today's system does' read as the layer's fault."""
    head = {"old_old_top1": 1.0, "ceiling_top1": 1.0, "upgraded_top1": 1.0, "gain_retained": None, "compatible": False}
    line = " ".join(verdicts(head, "new→old", "new/new", "fct", "label"))
    assert "finds no more than today's system does, which already scores the maximum: no layer can be above it" in line
    head = {**head, "old_old_top1": 0.9, "upgraded_top1": 0.9}
    assert "already scores the maximum" not in " ".join(verdicts(head, "new→old", "new/new", "fct", "label"))


def manifest(values: dict[str, Any]) -> dict[str, Any]:
    return {"metrics": {"source": "report 1", "protocol": "26 test queries", "values": values}}


def test_a_bundle_warns_on_the_judged_criterion_and_says_a_tie_is_no_gain() -> None:
    judged = judged_head(0.737, 0.707, 0.785, (0.808, 0.769, 0.808))
    assert verdict_line(manifest(judged)) is None  # top-1 ties, nDCG@10 passes
    tie = {"upgraded_top1": 0.808, "old_old_top1": 0.808, "compatible": False}
    line = verdict_line(manifest(tie))
    assert line is not None and "upgraded top-1 0.808 is not above old/old 0.808" in line
    assert "finds no more than today's system does" in line and "worse" not in line
    failing = judged_head(0.737, 0.80, 0.70, (0.70, 0.80, 0.90))  # top-1 up, nDCG@10 down
    line = verdict_line(manifest(failing))
    assert line is not None and "upgraded nDCG@10 0.700 is not above old/old 0.737" in line
    assert "makes search worse than today" in line


def test_check_calls_an_unfinished_checkpoint_unfinished_not_running() -> None:
    from embridge.core.connectors.check import StoreCheck

    stopped = StoreCheck("parquet store x", None, 120, {"v2": 120}, {"v2": 120}, "half-migrated",
                         {"status": "running", "written": 120, "total": 300})
    line = stopped.text().splitlines()[-1]
    assert "migration into it: unfinished (running, or stopped" in line and "120 of 300 points" in line
    done = StoreCheck("parquet store x", None, 300, {"v2": 300}, {"v2": 300}, "single",
                      {"status": "complete", "written": 300, "total": 300})
    assert done.text().splitlines()[-1] == "  migration into it: complete, 300 of 300 points written"


def test_a_bundle_of_a_new_model_no_better_advises_staying_not_a_backfill() -> None:
    worse = judged_head(0.891, 0.635, 0.701, (1.0, 0.65, 0.70))
    line = verdict_line(manifest(worse))
    assert line is not None and line.endswith("The new model itself is no better (nDCG@10 0.635 against old/old "
                                              "0.891): stay on the old model")
    assert "backfill" not in line
    better = judged_head(0.60, 0.80, 0.55, (0.5, 0.8, 0.4))
    assert "a partial backfill, or a full backfill instead" in (verdict_line(manifest(better)) or "")


def test_a_layer_that_ties_old_old_is_named_equal_beside_its_verdict() -> None:
    """Every item of one class: old/old, new/new and the layer all score 1.000. The table read 'equal' while
    runs and the HTML headline said only 'FAILS'; both now say the upgraded system equals old/old."""
    from embridge.core.evaluation.headline import criterion_text
    from embridge.core.report.html_page import _headline

    tied = {"old_old_top1": 1.0, "upgraded_top1": 1.0, "new_new_top1": 1.0, "compatible": False}
    assert criterion_text(tied) == "FAILS (top-1, equal to old/old)"
    assert criterion_text({**tied, "upgraded_top1": 0.9}) == "FAILS (top-1)"
    assert criterion_text({**tied, "upgraded_top1": 1.0, "old_old_top1": 0.9, "compatible": True}) == "passes (top-1)"
    page = _headline({"headline": tied, "upgraded_cell": "new→old", "ceiling_cell": "new/new"})
    assert "fails</span> (the upgraded system equals old/old, 1.000: no better than today)." in page


def test_a_pass_the_test_queries_cannot_tell_from_none_is_said_within_noise_on_every_surface() -> None:
    """A new model equal to the old: a layer beat old/old by 0.011 with an improvement interval of -0.022 to
    +0.043. Train, runs, the report's sentences and its page said 'passes'; only the plan said 'within noise'."""
    from embridge.core.cli.train_cmds import _train_text
    from embridge.core.evaluation.headline import criterion_text
    from embridge.core.report.html_page import _headline

    head = {"old_old_top1": 0.427, "upgraded_top1": 0.438, "new_new_top1": 0.427, "compatible": True,
            "gain_retained": None, "improvement_ci": {"top1": [-0.022, 0.043]}}
    said = "within noise: the 95% interval of the improvement over old/old is -0.022 to +0.043"
    assert criterion_text(head) == "passes (top-1, within noise)"
    assert said in _headline({"headline": head, "upgraded_cell": "new→old", "ceiling_cell": "new/new"})
    assert f"The cascade layer passes the compatibility criterion ({said}):" in \
        " ".join(verdicts(head, "new→old", "new/new", "cascade", "label"))
    run = {**head, "run_id": 1, "method": "auto", "kind": "cascade", "status": "completed", "device": "cpu",
           "fit_s": 1.0, "duration_s": 2.0, "adapter_id": 1, "adapter_path": "a.pt"}
    assert f"-> PASSES the compatibility criterion ({said})" in _train_text(run)
    clear = {**head, "improvement_ci": {"top1": [0.004, 0.043]}}  # an interval above 0: a plain pass
    assert criterion_text(clear) == "passes (top-1)" and "noise" not in " ".join(verdicts(clear, "new→old",
                                                                                          "new/new", "cascade", "label"))


def test_own_item_retrieval_with_identical_vectors_says_the_same_model_cells_miss_some() -> None:
    """Without labels a query's own item is the answer; 150 identical pairs left old/old and new/new at 85%
    (the later twin loses the tie), and the verdict still said the same-model cells find it trivially."""
    head = {"old_old_top1": 0.85, "ceiling_top1": 0.85, "upgraded_top1": 0.80, "gain_retained": None,
            "compatible": None}
    line = verdicts(head, "new→old", "new/new", "procrustes", "item")[0]
    assert "trivially" not in line and "old/old 85.0%, new/new 85.0%: tied items rank by gallery row" in line
    whole = {**head, "old_old_top1": 1.0, "ceiling_top1": 1.0}
    assert "the same-model cells find it trivially," in verdicts(whole, "new→old", "new/new", "procrustes", "item")[0]


def test_a_backfill_whose_middle_serves_worse_than_today_says_so() -> None:
    """The merged ranking of a partial backfill put new/new scores beside the layer's; where those run on
    other scales, 80-90% backfilled served below old/old (nDCG@10 0.087 and 0.069 against 0.119), and
    neither the report nor the plan said so."""
    from embridge.core.report.sections import backfill_dip
    from embridge.core.report.wording import verdict_tone

    def curves(values: list[float], floor: float, metric: str = "ndcg@10") -> dict[str, Any]:
        betas = [i / (len(values) - 1) for i in range(len(values))]
        return {"policies": {"random": {"betas": betas, "values": {metric: values, "top1": values}},
                             "least_confident": {"betas": betas, "values": {metric: [v + 0.05 for v in values],
                                                                            "top1": values}}},
                "old_old": {"metrics": {metric: floor, "top1": floor}}, "metric": metric}

    passing = {"old_old_ndcg@10": 0.119, "ndcg@10": 0.221, "ceiling_ndcg@10": 0.370, "compatible_ndcg@10": True,
               "old_old_top1": 0.119, "upgraded_top1": 0.221, "ceiling_top1": 0.370, "compatible": True}
    dipping = curves([0.221, 0.18, 0.12, 0.087, 0.069, 0.370], 0.119)
    line = backfill_dip(dipping, passing)
    assert line.startswith("Part of the way through a backfill the gallery serves worse than today's system: "
                           "at β = 0.80 (random order) nDCG@10 is 0.069, below old/old 0.119")
    assert line.endswith("serve through the layer while the backfill runs, and switch to the new vectors once it is "
                         "complete.")
    assert verdict_tone(line) == "caution"
    assert backfill_dip(curves([0.221, 0.25, 0.3, 0.33, 0.35, 0.370], 0.119), passing) == ""  # rising all the way
    assert backfill_dip(curves([0.221, 0.115, 0.3, 0.33, 0.35, 0.370], 0.119), passing) == ""  # within the noise
    top1 = {k: v for k, v in passing.items() if "ndcg" not in k}
    assert "top-1 is 0.069" in backfill_dip(curves([0.221, 0.18, 0.12, 0.087, 0.069, 0.370], 0.119, "top1"), top1)
    # a layer that fails the criterion is no way to serve meanwhile; a new model no better leaves no backfill to run
    failing = {**passing, "ndcg@10": 0.10, "compatible_ndcg@10": False}
    assert backfill_dip(dipping, failing).endswith("serve the old model (old queries against the old gallery) while "
                                                   "the backfill runs, and switch to the new vectors once it is complete.")
    worse = {**passing, "ceiling_ndcg@10": 0.09}
    assert backfill_dip(dipping, worse) == ""


def test_a_drop_the_test_queries_cannot_tell_from_none_is_not_called_worse_than_today() -> None:
    head = {"old_old_top1": 0.743, "upgraded_top1": 0.740, "new_new_top1": 0.80, "compatible": False,
            "gain_retained": -0.05, "improvement_ci": {"top1": [-0.020, 0.010]}}
    line = " ".join(verdicts(head, "new→old", "new/new", "cascade", "label"))
    assert "scores below today's system, though within noise (the 95% interval of the improvement over old/old " \
           "is -0.020 to +0.010)" in line and "makes search worse" not in line
    clear = {**head, "improvement_ci": {"top1": [-0.05, -0.01]}}
    assert "makes search worse than today" in " ".join(verdicts(clear, "new→old", "new/new", "cascade", "label"))


def test_a_bridge_above_the_full_backfill_says_a_backfill_would_lose_quality() -> None:
    head = {"old_old_top1": 0.2, "upgraded_top1": 0.672, "new_new_top1": 0.565, "compatible": True,
            "gain_retained": 1.295}
    line = " ".join(verdicts(head, "new→old", "new/new", "fusion", "label"))
    assert "keeps 129.5% of the full-backfill gain (more than the full backfill itself: this bridge scores above " \
           "it, so re-embedding would lose quality)" in line
    below = " ".join(verdicts({**head, "gain_retained": 0.95, "upgraded_top1": 0.55}, "new→old", "new/new",
                              "fusion", "label"))
    assert "more than the full backfill" not in below


def test_a_head_whose_new_model_is_no_better_says_the_gain_is_the_heads() -> None:
    """bt2 on a new model that is a rotation of the old: head/head 0.810 is the ceiling, but new/new 0.740 is
    no better than old/old 0.743, so the layer's gain is the labels' head, not the upgrade."""
    head = {"old_old_top1": 0.743, "upgraded_top1": 0.787, "new_new_top1": 0.740, "ceiling_top1": 0.810,
            "compatible": True, "gain_retained": 0.65}
    lines = verdicts(head, "new→old", "head/head", "bt2", "label")
    assert lines[-1].startswith("The new model by itself is no better than the old one (new/new top-1 74.0% against "
                                "old/old 74.3%): what the bt2 layer gains over today comes from its head")
    assert not any(line.startswith("Bridging alone leaves much of the gain unused") for line in lines)  # not a backfill's
    better = verdicts({**head, "new_new_top1": 0.79}, "new→old", "head/head", "bt2", "label")
    plain = verdicts(head, "new→old", "new/new", "affine", "label")
    assert not any("by itself" in line for line in better + plain)


def test_a_bundle_says_a_drop_within_noise_as_the_report_does() -> None:
    values = {"old_old_top1": 0.825, "upgraded_top1": 0.775, "new_new_top1": 0.9, "compatible": False,
              "gain_retained": -0.6, "improvement_top1_ci_low": -0.175, "improvement_top1_ci_high": 0.075}
    line = verdict_line(manifest(values)) or ""
    assert "scores below today's system, though within noise (the 95% interval of the improvement over old/old is " \
           "-0.175 to +0.075)" in line and "makes search worse" not in line, line
    clear = {**values, "improvement_top1_ci_high": -0.01}
    assert "makes search worse than today" in (verdict_line(manifest(clear)) or "")
