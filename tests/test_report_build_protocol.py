"""The evaluation protocol without a query split (test fold, self excluded) and without labels (own item)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from report_fixtures import brute_force

from embridge.core.adapters import adapt_queries, load_adapter
from embridge.core.report.build import ReportOptions, build_report
from embridge.core.store import Workspace
from embridge.core.synthetic import class_structured_pair
from embridge.core.train.runs import train_run


def _workspace(path: Path, labelled: bool, query_split: bool) -> Workspace:
    pair = class_structured_pair(300, 6, 16, 24, 3, seed=1)
    ws = Workspace.create(path)
    ids = ws.add_items([{"key": f"k{i:03d}", "label": str(int(pair.labels[i])) if labelled else None,
                         "split": "query" if (query_split and i < 50) else "gallery"} for i in range(300)])
    for name, dim, role, vectors in (("o", 16, "old", pair.old), ("n", 24, "new", pair.new)):
        spec = {"name": name, "kind": "vectors", "modality": "vector", "dim": dim, "sha256": "0" * 64, "path": ""}
        ws.add_model(name, role, spec, None)
        ws.add_vector_set(name, ids, vectors)
    train_run(ws, "procrustes", device="cpu")
    return ws


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_test_fold_queries_are_excluded_from_their_own_ranking(tmp_path: Path) -> None:
    with _workspace(tmp_path / "ws", labelled=True, query_split=False) as ws:
        report = build_report(ws, None, ReportOptions(backfill_steps=3, n_boot=50), write=False)
        folds = ws.folds()
        test = np.array(sorted(i for i, f in folds.items() if f == "test"), dtype=np.int64)
        gallery = ws.item_ids()
        labels = np.array(ws.labels(gallery))
        old = _unit(ws.vectors_for("o", gallery))
    s = report.sizes
    assert s["query_source"] == "test fold" and s["queries"] == len(test) == s["queries_in_gallery"]
    assert s["gallery"] == 300
    # brute force with the query's own row masked out of its ranking
    rows = np.searchsorted(gallery, test)
    scores = old[rows] @ old.T
    scores[np.arange(len(rows)), rows] = -np.inf
    top1 = labels[scores.argmax(axis=1)] == labels[rows]
    assert report.cells["old/old"]["metrics"]["top1"] == pytest.approx(top1.mean(), abs=1e-6)


def test_without_labels_a_query_finds_its_own_item(tmp_path: Path) -> None:
    with _workspace(tmp_path / "ws", labelled=False, query_split=True) as ws:
        report = build_report(ws, None, ReportOptions(backfill_steps=3, n_boot=50), write=False)
        queries = ws.item_ids("query")
        everything = ws.item_ids()
        adapter = load_adapter(ws.adapter_path(ws.adapter_for_run(ws.latest_run("train")["id"])["id"]))
        q_up = adapt_queries(adapter, _unit(ws.vectors_for("n", queries)))
        g_old = ws.vectors_for("o", everything)
        keys_q, keys_g = np.array([r["key"] for r in ws.items(ids=queries)]), np.array(
            [r["key"] for r in ws.items(ids=everything)])
    s = report.sizes
    assert s["relevance"] == "item" and s["queries_added_to_gallery"] == 50 and s["gallery"] == 300
    assert report.cells["old/old"]["metrics"]["top1"] == 1.0  # the same vector: found trivially
    own = brute_force(q_up, g_old, keys_q, keys_g)["top1"]
    assert report.cells["new→old"]["metrics"]["top1"] == pytest.approx(own, abs=1e-6)
    head = report.headline
    assert head["compatible"] is None and head["gain_retained"] is None and report.per_label == {}
    assert "Without labels" in report.verdicts[0]
    # the per-metric rows say the same: no pass or fail, no gain, no "the new model is not better" (they
    # said "fail" and "not better" beside a verdict saying neither can be judged)
    assert report.comparison and all(row["passes"] is None and row["gain_retained"] is None
                                     and "gain_retained_note" not in row for row in report.comparison.values())


def test_a_stopped_report_is_recorded_as_cancelled_and_leaves_nothing(tmp_path: Path) -> None:
    from embridge.core.errors import Cancelled

    calls = {"n": 0}

    def stop_on_third_check() -> bool:
        calls["n"] += 1
        return calls["n"] >= 3

    with _workspace(tmp_path / "ws", labelled=True, query_split=True) as ws:
        with pytest.raises(Cancelled):
            build_report(ws, should_stop=stop_on_third_check)
        run = ws.runs("report")[-1]
        assert run["status"] == "cancelled" and ws.reports() == []
        assert not [p for p in (ws.root / "reports").iterdir()]  # no scratch, no half report


def test_spilled_matrices_give_the_same_report(tmp_path: Path) -> None:
    with _workspace(tmp_path / "ws", labelled=True, query_split=True) as ws:
        in_memory = build_report(ws, None, ReportOptions(backfill_steps=5, n_boot=50), write=False)
        spilled = build_report(ws, None, ReportOptions(backfill_steps=5, n_boot=50, memory_budget=0), write=False)
    for name, cell in in_memory.cells.items():
        assert spilled.cells[name]["metrics"] == cell["metrics"]
    assert spilled.backfill["policies"] == in_memory.backfill["policies"]
    assert spilled.compatibility_rate == in_memory.compatibility_rate


def test_training_with_its_gallery_spilled_to_a_scratch_file_gives_the_same_numbers(tmp_path: Path,
                                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A training run gathers a gallery above the maker's memory budget into a scratch file (flushed and
    released block by block); its validation and held-out numbers are those of the in-memory run, and
    the scratch file is gone afterwards."""
    import functools

    from embridge.core.evaluation import gather

    with _workspace(tmp_path / "ws", labelled=True, query_split=True) as ws:
        in_memory = train_run(ws, "affine", device="cpu")
        spilled_makers: list[gather.MatrixMaker] = []
        real_init = gather.MatrixMaker.__init__

        def tiny_budget(self: gather.MatrixMaker, *args: object, **kwargs: object) -> None:
            real_init(self, *args, **kwargs)
            self.budget = 0
            spilled_makers.append(self)

        monkeypatch.setattr(gather.MatrixMaker, "__init__", functools.wraps(real_init)(tiny_budget))
        spilled = train_run(ws, "affine", device="cpu")
        assert spilled_makers and spilled_makers[0].scratch is not None and spilled_makers[0]._count >= 1
        for key in ("val_metric", "old_old_top1", "new_new_top1", "upgraded_top1", "gain_retained"):
            assert spilled[key] == in_memory[key], key
        assert not [p for p in (ws.root / "adapters").iterdir() if p.name.startswith(".tmp-")]


def test_the_random_backfill_order_is_not_the_fold_order(tmp_path: Path) -> None:
    """The folds and the random backfill order are both seeded permutations of the same paired items;
    drawn from one stream they coincided and every test-fold item (each own-item query's target) came
    last, so the random curve stayed flat until β = 0.8. Drawn apart, it rises with β."""
    with _workspace(tmp_path / "ws", labelled=False, query_split=False) as ws:
        report = build_report(ws, None, ReportOptions(backfill_steps=5, n_boot=50), write=False)
        test = np.array(sorted(i for i, f in ws.folds().items() if f == "test"), dtype=np.int64)
        gallery = ws.item_ids()
    from embridge.core.report.backfill_curve import backfill_order

    order = gallery[backfill_order("random", len(gallery), seed=0)]
    first_half = np.isin(test, order[: len(order) // 2]).mean()
    assert 0.3 < first_half < 0.7  # about half of the test items are re-embedded by β = 0.5
    top1 = report.backfill["policies"]["random"]["values"]["top1"]  # β = 0, 0.25, 0.5, 0.75, 1
    assert top1[0] < top1[4] - 0.2  # the full backfill finds far more own items than the layer alone
    assert top1[0] < top1[1] < top1[2] < top1[3] < top1[4]


def test_own_item_relevance_refuses_fusion_and_names_what_a_forward_layer_finds(tmp_path: Path) -> None:
    """Without labels or judgments the old query is the target itself: a fusion would choose α = 1 and
    be measured finding its own vector (100%), so it is refused, as auto skips it. A forward layer's
    own-item sentence names the transformed old vector its queries find."""
    from embridge.core.cli.main import main
    from embridge.core.errors import InputError

    with _workspace(tmp_path / "ws", labelled=False, query_split=False) as ws:
        runs_before = len(ws.runs("train"))
        with pytest.raises(InputError, match="on own-item validation the old vectors are the targets themselves"):
            train_run(ws, "fusion", device="cpu", config={"base": "affine"})
        assert len(ws.runs("train")) == runs_before  # refused before a run was recorded
        fct = train_run(ws, "fct", device="cpu", config={"epochs": 2})
        report = build_report(ws, fct["run_id"], ReportOptions(backfill_steps=3, n_boot=20), write=False)
        completed = [r for r in ws.runs("train") if r["status"] == "completed"]
    assert len(completed) == runs_before + 1  # the refused fusion stored no layer
    assert "of new queries find the fct-transformed old vector of their own item first" in report.verdicts[-1]
    assert main(["train", "-w", str(tmp_path / "ws"), "--method", "fusion", "--device", "cpu"]) == 1
    with Workspace.open(tmp_path / "ws") as ws:
        auto = train_run(ws, "auto", device="cpu", config={"candidates": ["procrustes", "affine", "fusion"]})
    # old/old finds its own vectors (1.000) on own-item validation: not a bar the winner "is NOT above"
    assert "which is no bar on own-item validation" in auto["reason"] and "NOT above" not in auto["reason"]


def _sampled_workspace(path: Path, seed: int = 0, n: int = 2000, classes: int = 50, n_queries: int = 300,
                       share: float = 0.1) -> Workspace:
    """Labelled queries and a gallery of ``n`` items; the new model (a rotation of the old space, a little
    less noisy) embedded only a ``share`` of the gallery, so new/new searches a sample 10x smaller."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n + n_queries)
    centres = rng.standard_normal((classes, 16))
    old = centres[labels] + 0.9 * rng.standard_normal((n + n_queries, 16))
    new = (centres @ np.linalg.qr(rng.standard_normal((16, 16)))[0])[labels] + 0.85 * rng.standard_normal(old.shape)
    ws = Workspace.create(path)
    ids = np.asarray(ws.add_items([{"key": f"k{i}", "label": str(labels[i]), "split": "query" if i >= n else "gallery"}
                                   for i in range(n + n_queries)]))
    embedded = np.sort(np.r_[rng.choice(n, int(share * n), replace=False), np.arange(n, n + n_queries)])
    for name, role, vectors, rows in (("o", "old", old, np.arange(n + n_queries)), ("n", "new", new, embedded)):
        spec = {"name": name, "kind": "vectors", "modality": "vector", "dim": 16, "sha256": "0" * 64, "path": ""}
        ws.add_model(name, role, spec, None)
        ws.add_vector_set(name, ids[rows], vectors[rows].astype(np.float32))
    return ws


def test_the_new_model_is_compared_with_old_old_on_its_own_gallery(tmp_path: Path) -> None:
    """new/new can only search the 200-item sample; old/old searched all 2,000 items, where more items
    of each class lift top-1 (0.780 against 0.634 on the sample). new/new's 0.739 was compared with the
    whole gallery's 0.780: "not better, stay", for a new model that is better on the gallery both
    searched. Whether it is better, and the backfill's gain, are now measured on the sample."""
    from embridge.core.plan.throughput import Throughput
    from embridge.core.plan.upgrade_options import plan_from_report

    with _sampled_workspace(tmp_path / "ws") as ws:
        train_run(ws, "affine", device="cpu")
        report = build_report(ws, None, ReportOptions(backfill_steps=5, n_boot=50), write=False)
    h = report.headline
    oo, oo_sample, cc = h["old_old_top1"], h["old_old_sample_top1"], h["ceiling_top1"]
    up_sample = h["upgraded_sample_top1"]
    assert oo_sample < cc < oo  # the trap: the ceiling sits below the whole gallery's old/old
    assert report.backfill["old_old"]["metrics"]["top1"] == oo_sample  # one number for old/old on the sample
    assert report.comparison["top1"]["old_old_sample"] == oo_sample
    assert report.comparison["top1"]["upgraded_sample"] == up_sample
    # the curves start (β = 0) at the upgraded system on the sample: the same number
    assert report.backfill["policies"]["random"]["values"]["top1"][0] == pytest.approx(up_sample)
    assert h["gain_retained"] == pytest.approx((up_sample - oo_sample) / (cc - oo_sample))
    assert h["gain_retained_note"] is None
    assert not any("not better" in line for line in report.verdicts)
    plan = plan_from_report(report, Throughput(embed_items_per_s=100.0, adapter_items_per_s=1e5, device="cpu"))
    assert plan.new_better is True and plan.recommendation != "stay"
    full = next(o for o in plan.options if o["name"] == "full_backfill")
    assert full["passes_criterion"] is True and full["gain_retained"] == pytest.approx(1.0)
    layer = next(o for o in plan.options if o["name"] == "adapter_only")
    assert layer["quality_sample"]["top1"] == up_sample and layer["gain_retained"] == pytest.approx(h["gain_retained"])


def test_a_cascade_with_nothing_backfilled_re_ranks_the_sample_through_its_layer(tmp_path: Path) -> None:
    """Every sample item has its new vector: re-ranked by all of them, the cascade's sample number was a
    backfill of the sample (top-1 0.827 above new/new's 0.739, gain retained 2.0). With nothing backfilled
    it re-ranks through its layer, on the sample as on the whole gallery."""
    with _sampled_workspace(tmp_path / "ws") as ws:
        train_run(ws, "cascade", device="cpu")
        report = build_report(ws, None, ReportOptions(backfill_steps=5, n_boot=50), write=False)
    h = report.headline
    assert report.adapter["config"]["new_vectors"] is True
    assert report.cells["new→old"]["protocol"]["new_vectors"] == 0
    assert h["upgraded_sample_top1"] < h["ceiling_top1"]  # measured: 0.651 against 0.739
    assert h["gain_retained"] < 1
