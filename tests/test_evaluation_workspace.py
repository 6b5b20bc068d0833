"""One evaluation path on a judged retrieval task in a workspace: training's numbers are the report's,
query pairs may be fitted on (test queries never), and cells that need only old vectors search the
whole old gallery."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from judged_fixtures import build_judged_workspace
from train_fixtures import one_torch_thread  # noqa: F401 (autouse fixture)

from embridge.core.errors import InputError
from embridge.core.evaluation.tasks import dev_task, upgrade_tasks
from embridge.core.report.build import ReportOptions, build_report
from embridge.core.store import Workspace
from embridge.core.train.pair_choice import pair_setup
from embridge.core.train.runs import train_run

HEADLINE = ("old_old_top1", "new_new_top1", "upgraded_top1", "gain_retained", "compatible", "n_queries",
            "ndcg@10", "mrr@10", "old_old_ndcg@10", "new_new_ndcg@10")


@pytest.fixture(scope="module")
def judged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A judged workspace where the new model embedded half of the documents, with three runs."""
    case = build_judged_workspace(tmp_path_factory.mktemp("judged") / "ws", new_docs_share=0.5)
    with Workspace.open(case["path"]) as ws:
        case["documents"] = train_run(ws, "affine", device="cpu", pairs="documents")
        case["both"] = train_run(ws, "affine", device="cpu")
        case["report"] = build_report(ws, case["both"]["run_id"], ReportOptions(n_boot=50, backfill_steps=3))
    return case


def test_training_reports_the_reports_numbers_on_judged_queries(judged: dict[str, Any]) -> None:
    run, head = judged["both"], judged["report"].headline
    for key in HEADLINE:
        assert run[key] == head[key], key
    # the upgraded cell's queries and gallery, then new/new's own (it searched the evaluation sample)
    assert run["heldout_protocol"] == (f"{head['protocols']['new→old']['text']}; new/new (and the _sample numbers "
                                       "and gain_retained) on "
                                       f"{head['protocols']['new/new']['text']}")
    n = _comparable(judged)
    assert run["heldout_protocol"].startswith(
        f"{n} test queries (judged) with every document judged relevant in the evaluation sample ({150 - n} of 150 left out: "
        "not every compared model has embedded their relevant items) against the whole gallery (800 items), "
        "relevance: relevance judgments (test split)")
    assert run["val_protocol"].startswith("100 dev queries (judged) against the whole gallery (800 items)")
    assert run["val_metric_name"] == "judged_ndcg@10"  # graded judgments: candidates compete on nDCG@10
    # the new model is better on queries, and the layer fitted with query pairs passes on every metric
    assert run["new_new_top1"] > run["old_old_top1"] + 0.2 and run["compatible"]
    assert run["ndcg@10"] > run["old_old_ndcg@10"] and run["compatible_ndcg@10"]
    from embridge.core.report.report_export import report_figures

    figure = report_figures(judged["report"])["training"]  # the report's curves name the metric chosen on
    labels = [axis.get_ylabel() for axis in figure.axes]
    assert "nDCG@10 (judged)" in labels and "top-1" not in labels, labels


def test_cells_needing_only_old_vectors_search_the_whole_old_gallery(judged: dict[str, Any]) -> None:
    report = judged["report"]
    cells = report.cells
    assert cells["old/old"]["gallery"] == cells["new→old"]["gallery"] == "old"
    assert cells["old/old"]["protocol"]["n_gallery"] == cells["new→old"]["protocol"]["n_gallery"] == 800
    assert cells["new/new"]["gallery"] == "sample" and cells["new/new"]["protocol"]["n_gallery"] == 400
    assert report.sizes["gallery_old"] == 800 and report.sizes["gallery"] == 400
    text = " ".join(report.protocol)
    assert "search the whole gallery: 800 items" in text and "400 of the 800 gallery items" in text
    # every cell scores the same queries: those whose judged document the new model embedded, so gain
    # retained compares the three systems on one query set (the others are left out, and said so)
    n = _comparable(judged)
    assert 0 < n < 150
    assert cells["new/new"]["n_queries"] == cells["old/old"]["n_queries"] == cells["new→old"]["n_queries"] == n
    assert report.headline["n_queries"] == report.sizes["queries"] == n
    assert {c["protocol"]["query_set"] for c in cells.values()} == {
        f"test queries (judged) with every document judged relevant in the evaluation sample ({150 - n} of 150 left out: "
        "not every compared model has embedded their relevant items)"}


def _comparable(judged: dict[str, Any]) -> int:
    """Test queries whose relevant document is among the 400 the new model embedded (the first half)."""
    return int(((judged["splits"] == "test") & (judged["relevant"] < 400)).sum())


def test_query_pairs_are_fitted_on_and_test_queries_never(judged: dict[str, Any]) -> None:
    docs, both = judged["documents"], judged["both"]
    assert docs["pairs_used"] == "documents" and both["pairs_used"] == "both"  # default: both, query pairs exist
    assert both["pairs"]["train"] == docs["pairs"]["train"] + 250  # the 250 queries judged in train
    assert judged["report"].run["config"]["fitted_on"].startswith("both pairs of the train fold")
    with Workspace.open(judged["path"]) as ws:
        folds = ws.folds()
        for qid, split in zip(judged["query_ids"], judged["splits"], strict=True):
            assert folds[int(qid)] == {"train": "train", "dev": "val", "test": "test"}[split]
        # the Train page's choices come from the same rule: both by default, 250 train queries
        setup = pair_setup(ws, "old", "new")
        assert setup.kinds == ("both", "documents", "queries") and setup.train_queries == 250
        assert setup.validation == both["val_protocol"]  # the protocol training then validates on
        tasks = upgrade_tasks(ws, ["old", "new"])
        comparable = (judged["splits"] == "test") & (judged["relevant"] < 400)
        assert set(tasks.full.queries.ids.tolist()) == set(judged["query_ids"][comparable].tolist())
        assert tasks.left_out == int((judged["splits"] == "test").sum()) - int(comparable.sum())
        dev = dev_task(ws, "old", "new")
        assert set(dev.queries.ids.tolist()) == set(judged["query_ids"][judged["splits"] == "dev"].tolist())
        with pytest.raises(InputError, match="--pairs"):
            train_run(ws, "affine", device="cpu", pairs="sideways")


def test_query_pairs_teach_the_map_where_new_queries_go(tmp_path: Path) -> None:
    """Every document embedded by both models, so all 150 test queries are scored."""
    case = build_judged_workspace(tmp_path / "ws")
    with Workspace.open(case["path"]) as ws:
        docs = train_run(ws, "affine", device="cpu", pairs="documents")
        both = train_run(ws, "affine", device="cpu")
    assert docs["n_queries"] == both["n_queries"] == 150
    # measured 0.900 with query pairs vs 0.813 with documents only (old/old 0.473)
    assert both["upgraded_top1"] > docs["upgraded_top1"] + 0.03


def test_validation_without_an_embedded_judged_dev_query_says_why_it_left_them(tmp_path: Path) -> None:
    """The new model embedded no dev query: validation falls back to own-item pairs and says that the judged
    dev queries were all left out, instead of a protocol that reads as if there were none."""
    case = build_judged_workspace(tmp_path / "ws", n_docs=200, n_queries=60, new_skips="dev")
    n_dev = int((case["splits"] == "dev").sum())
    with Workspace.open(case["path"]) as ws:
        run = train_run(ws, "procrustes", device="cpu")
    assert run["val_metric_name"] != "judged_ndcg@10"
    assert f"none of the {n_dev} judged dev queries is embedded by every compared model" in run["val_protocol"]


def test_query_pairs_alone_need_queries_judged_in_train(tmp_path: Path) -> None:
    case = build_judged_workspace(tmp_path / "ws", n_docs=200, n_queries=60)
    with Workspace.open(case["path"]) as ws:
        run = train_run(ws, "procrustes", device="cpu", pairs="queries")
        assert run["pairs_used"] == "queries" and run["pairs"]["train"] == 30  # the queries judged in train
        assert run["judged_query_pairs"] == 30  # the number the docs name, in train --json and runs --json
    case = build_judged_workspace(tmp_path / "ws2", n_docs=200, n_queries=60)
    with Workspace.open(case["path"]) as ws:
        with ws.transaction():
            ws.db.execute("delete from judgments where split = 'train'")
        with pytest.raises(InputError, match="query pairs"):
            train_run(ws, "procrustes", device="cpu", pairs="queries")
        run = train_run(ws, "procrustes", device="cpu")
        assert run["pairs_used"] == "documents" and run["judged_query_pairs"] == 0
        both = train_run(ws, "procrustes", device="cpu", pairs="both")  # asked for, but only documents exist
        assert both["pairs_used"] == "documents" and both["pairs"] == run["pairs"]
        folds = ws.folds()  # queries without judgments are held out, never fitted on
        assert {folds[int(q)] for q in case["query_ids"][case["splits"] == "train"]} == {"test"}


def test_command_line_train_and_report_agree_on_a_judged_task(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from embridge.core.cli.main import main

    case = build_judged_workspace(tmp_path / "ws", n_docs=300, n_queries=120)
    ws = str(case["path"])
    assert main(["train", "--workspace", ws, "--method", "affine", "--pairs", "both", "--device", "cpu",
                 "--json"]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert main(["report", "--workspace", ws, "--bootstrap", "50", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert trained["pairs_used"] == "both" and "test queries (judged)" in trained["heldout_protocol"]
    for key in ("old_old_top1", "new_new_top1", "upgraded_top1", "gain_retained", "compatible", "ndcg@10", "mrr@10"):
        assert trained[key] == report[key], key
    assert report["protocols"]["new→old"]["query_set"] == "test queries (judged)"


def test_no_comparable_test_query_is_refused_naming_what_to_embed(tmp_path: Path) -> None:
    """Every test query judged only against documents the new model has not embedded: one clear error."""
    case = build_judged_workspace(tmp_path / "ws", n_docs=200, n_queries=60, new_docs_share=0.5)
    outside = int(case["doc_ids"][150])  # the new model embedded the first 100 documents
    with Workspace.open(case["path"]) as ws:
        with ws.transaction():
            ws.db.execute("update judgments set item_id = ? where split = 'test'", [outside])
        with pytest.raises(InputError, match="embed the relevant \\(judged\\) gallery items with the new model"):
            upgrade_tasks(ws, ["old", "new"])


def test_an_evaluation_sample_takes_the_judged_queries_and_their_documents_first(judged: dict[str, Any]) -> None:
    from embridge.core.embed import Whole, judged_first, sample_ids

    with Workspace.open(judged["path"]) as ws:
        groups = judged_first(ws)
        docs, queries = judged["doc_ids"], judged["query_ids"]
    wholes, rest = [g for g in groups if isinstance(g, Whole)], [g for g in groups if not isinstance(g, Whole)]
    relevant = {int(q): int(d) for q, d in zip(queries, docs[judged["relevant"]], strict=True)}
    test_dev = queries[np.isin(judged["splits"], ("test", "dev"))]
    # one whole group per judged test and dev query (its one relevant document and itself), test first
    assert [sorted(w.ids.tolist()) for w in wholes] == [sorted([relevant[int(q)], int(q)]) for q in
                                                        queries[judged["splits"] == "test"].tolist() +
                                                        queries[judged["splits"] == "dev"].tolist()]
    assert len(wholes) == len(test_dev)
    for i, split in enumerate(("test", "dev", "train")):  # then each split's queries and relevant documents
        assert rest[2 * i].tolist() == sorted(queries[judged["splits"] == split].tolist())
        assert rest[2 * i + 1].tolist() == sorted(docs[judged["relevant"][judged["splits"] == split]].tolist())
    pick = sample_ids(docs, 200, seed=1, first=groups)
    everything = np.union1d(docs, queries)
    mixed = sample_ids(everything, 400, seed=1, first=groups)  # queries and documents drawn together
    assert pick.size == 200 and np.all(np.diff(pick) > 0)
    assert set(rest[1].tolist()) <= set(pick.tolist())  # all 150 test documents, then 50 of the dev ones
    assert len(set(rest[3].tolist()) & set(pick.tolist())) == 50
    assert sample_ids(docs, 200, seed=1).tolist() != pick.tolist()  # without judgments: a plain random draw
    # every judged test query and its documents, then whole dev queries with theirs, before any random item
    assert set(rest[0].tolist()) | set(rest[1].tolist()) <= set(mixed.tolist())
    dev_whole = [q for q in rest[2].tolist() if {q, relevant[q]} <= set(mixed.tolist())]
    assert mixed.size == 400 and len(dev_whole) == (400 - 2 * len(rest[0])) // 2 > 0


def test_a_sample_too_small_for_every_judged_query_completes_as_many_as_fit(tmp_path: Path) -> None:
    """Test queries with 1 to 8 relevant documents each and a sample with room for a third of them:
    the sample holds whole queries (each with all its relevant documents), as many as fit, rather than
    part of every query's documents (which scored 2 of 40 queries before)."""
    from embridge.core.embed import judged_first, sample_ids
    from embridge.core.store.judgments import Judgments

    rng = np.random.default_rng(3)
    ws = Workspace.create(tmp_path / "ws")
    docs = np.asarray(ws.add_items([{"key": f"d{i}", "split": "gallery"} for i in range(400)]), dtype=np.int64)
    queries = np.asarray(ws.add_items([{"key": f"q{i}", "split": "query"} for i in range(50)]), dtype=np.int64)
    sizes = rng.integers(1, 9, size=50)
    owned = np.split(rng.permutation(docs)[:sizes.sum()], np.cumsum(sizes)[:-1])  # disjoint relevant sets
    splits = np.where(np.arange(50) < 40, "test", "dev")
    ws.add_judgments(Judgments(np.repeat(queries, sizes), np.concatenate(owned), np.ones(sizes.sum(), np.int32),
                               np.repeat(splits, sizes).astype("<U5")))
    groups = judged_first(ws)
    ws.close()
    size = 120
    chosen = set(sample_ids(np.union1d(docs, queries), size, seed=0, first=groups).tolist())
    complete = [i for i in range(40) if int(queries[i]) in chosen and set(owned[i].tolist()) <= chosen]
    best = int(np.searchsorted(np.cumsum(np.sort(sizes[:40]) + 1), size, side="right"))  # smallest queries first
    assert len(chosen) == size and len(complete) == best and best >= 20, (len(complete), best)


def test_test_queries_without_any_relevant_item_are_refused_before_a_run(tmp_path: Path) -> None:
    """Judgments of train and dev only: nothing can be measured, so train and report refuse at once."""
    case = build_judged_workspace(tmp_path / "ws", n_docs=200, n_queries=60)
    with Workspace.open(case["path"]) as ws:
        trained = train_run(ws, "procrustes", device="cpu")
        with ws.transaction():
            ws.db.execute("delete from judgments where split = 'test'")
        runs_before = len(ws.runs())
        for attempt in (lambda: train_run(ws, "procrustes", device="cpu"),
                        lambda: build_report(ws, trained["run_id"], ReportOptions(n_boot=20, backfill_steps=3))):
            with pytest.raises(InputError, match="has a relevant item in the gallery .* so no upgrade can be measured"):
                attempt()
        assert len(ws.runs()) == runs_before  # no failed run rows left behind


def test_a_refused_train_or_report_keeps_no_folds_it_assigned(tmp_path: Path) -> None:
    """Folds are assigned while the test tasks are made; when those are refused, nothing is kept."""
    import sqlite3

    case = build_judged_workspace(tmp_path / "ws", n_docs=200, n_queries=60)
    with Workspace.open(case["path"]) as ws:
        with ws.transaction():
            ws.db.execute("update judgments set grade = 0 where split = 'test'")
    db = case["path"] / "embridge.db"
    before = "\n".join(sqlite3.connect(db).iterdump())
    with Workspace.open(case["path"]) as ws:
        with pytest.raises(InputError, match="has a relevant item in the gallery"):
            train_run(ws, "procrustes", device="cpu")
        with pytest.raises(InputError, match="has a relevant item in the gallery"):
            upgrade_tasks(ws, [ws.model_by_role("old")["name"], ws.model_by_role("new")["name"]])
        assert ws.folds() == {}
    assert "\n".join(sqlite3.connect(db).iterdump()) == before


def test_a_judged_report_measures_backfill_curves_that_end_at_the_full_backfill_cell(judged: dict[str, Any]) -> None:
    report = judged["report"]
    ceiling = report.cells[report.ceiling_cell]["metrics"]
    assert set(report.backfill["policies"]) == {"random", "least_confident", "largest_residual"}
    for policy, curve in report.backfill["policies"].items():
        assert set(curve["values"]) == {"top1", "top5", "ndcg@10", "mrr@10"}
        for name in ("top1", "top5", "ndcg@10", "mrr@10"):  # β = 1: the new/new cell on the same sample
            assert curve["values"][name][-1] == pytest.approx(ceiling[name], abs=1e-9), (policy, name)
    html = Path(report.html_file).read_text(encoding="utf-8")
    section = html.split("<h2>Partial backfill</h2>", 1)[1].split("<h2>", 1)[0]
    assert "success@1" in section and "Best policy by area" in section and "not computed" not in section
    # graded judgments decide on nDCG@10: the curves' figure, table and best policy use it (they used top-1)
    from embridge.core.report.report_export import report_figures

    policies = report.backfill["policies"]
    assert report.backfill["metric"] == "ndcg@10"
    assert report.backfill["best_policy"] == max(policies, key=lambda p: policies[p]["areas"]["ndcg@10"])
    assert "Best policy by area under the nDCG@10 curve" in section and "area nDCG@10" in section
    (ax,) = report_figures(report)["backfill"].axes
    assert ax.get_ylabel() == "nDCG@10"
    assert ax.get_title() == "Partial backfill: nDCG@10\non the evaluation sample (400 items)"  # not the gallery's 800
    first = policies["random"]["values"]["ndcg@10"]
    assert list(ax.get_lines()[0].get_ydata()) == pytest.approx(first)
    from embridge.core.cli.report_cmds import _report_text  # the command line names the area's metric too

    text = _report_text(report)
    area = policies["random"]["areas"]["ndcg@10"]
    assert f"partial backfill (random): area under the nDCG@10 curve {area:.3f}, area under the top-1 curve" in text
    assert f"best policy by area under the nDCG@10 curve (on the evaluation sample): {report.backfill['best_policy']}" in text


def test_the_cells_figure_shows_the_judged_metrics_and_names_the_sample_new_new_searched(
        judged: dict[str, Any]) -> None:
    """Its bars had top-1, top-5, recall@10 and mAP only, and new/new's bar on the 400-item sample beside bars
    on the 800-item gallery, under the same kind of name."""
    from embridge.core.report.report_export import report_figures

    report = judged["report"]
    (ax,) = report_figures(report)["cells"].axes
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks[-2:] == ["nDCG@10", "MRR@10"] and ticks[0] == "top-1"
    names = [t.get_text() for t in report_figures(report)["cells"].legends[0].get_texts()]
    assert names == ["old/old", "new/new (on the sample, 400 items)", "new→old"]
    from matplotlib.container import BarContainer

    bars = [c for c in ax.containers if isinstance(c, BarContainer)][2]  # new→old's, the report's own values
    ndcg = bars[ticks.index("nDCG@10")].get_height()
    assert ndcg == pytest.approx(report.cells["new→old"]["metrics"]["ndcg@10"])
    for cell in report.cells.values():  # the judged bars get intervals like the others (they had none)
        for name in ("ndcg@10", "mrr@10"):
            low, high = cell["ci"][name]
            assert low < cell["metrics"][name] < high, (name, cell["ci"][name])


def test_every_number_of_a_judged_report_is_one_a_release_gate_accepts(judged: dict[str, Any]) -> None:
    """The gate refuses unknown names before building a report: the names must cover what reports carry."""
    from embridge.core.cli.report_cmds import report_data
    from embridge.core.evaluation.headline import report_number_names
    from embridge.core.report.gate import NOT_METRICS

    data = report_data(judged["report"])
    numbers = {k for k, v in data.items() if isinstance(v, int | float) and k not in NOT_METRICS}
    assert {"ndcg@10", "gain_retained_mrr@10", "compatible_ndcg@10"} <= numbers <= report_number_names()


def test_a_judged_report_page_shows_ndcg_and_mrr(judged: dict[str, Any]) -> None:
    report = judged["report"]
    html = Path(report.html_file).read_text(encoding="utf-8")
    verdict = html.split("<h2>Verdict</h2>", 1)[1].split("<h2>", 1)[0]
    cells = html.split("<h2>Cells</h2>", 1)[1].split("<h2>", 1)[0]
    for name in ("old/old nDCG@10", "new/new nDCG@10", "gain retained (nDCG@10)", "old/old MRR@10"):
        assert name in verdict, name
    assert "ndcg@10" in cells and "mrr@10" in cells
    # the Compatibility table lists the metric the judged criterion is decided on, as report.json does
    head, rows = report.headline, report.comparison
    assert {"ndcg@10", "mrr@10"} <= rows.keys()
    assert (rows["ndcg@10"]["upgraded"], rows["ndcg@10"]["old_old"]) == (head["ndcg@10"], head["old_old_ndcg@10"])
    assert rows["ndcg@10"]["gain_retained"] == head["gain_retained_ndcg@10"]
    stored = json.loads(Path(report.json_file).read_text(encoding="utf-8"))["comparison"]
    assert stored["ndcg@10"]["passes"] == head["compatible_ndcg@10"]
    table = html.split("<h2>Compatibility</h2>", 1)[1].split("<h2>", 1)[0]
    assert "<td>ndcg@10</td>" in table and "<td>mrr@10</td>" in table


def test_report_and_plan_text_name_ndcg_and_the_protocol(judged: dict[str, Any],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from embridge.core.cli.main import main

    ws = str(judged["path"])
    assert main(["report", "-w", ws, "--run", str(judged["both"]["run_id"]), "--bootstrap", "20"]) == 0
    text = capsys.readouterr().out
    assert "nDCG@10: old/old" in text and "MRR@10: old/old" in text
    upgraded = judged["report"].headline["protocols"]["new→old"]["text"]
    assert "measured on " + upgraded + " (old/old and upgraded)" in text
    sample = judged["report"].cells["new/new"]["protocol"]["text"]
    assert "evaluation sample" in sample and f"new/new measured on {sample}" in text  # not under the whole gallery's
    assert text.splitlines()[0].endswith("queries; evaluation sample 400 of the 800 gallery items")
    assert main(["plan", "-w", ws, "--run", str(judged["both"]["run_id"])]) == 0
    text = capsys.readouterr().out
    assert "nDCG@10" in text and "new→old measured on " + upgraded in text


def test_judged_queries_a_model_has_not_embedded_are_counted_as_left_out(tmp_path: Path) -> None:
    """A model that embedded only some judged queries: the query sets say how many were left out."""
    from embridge.core.evaluation.tasks import heldout_queries

    case = build_judged_workspace(tmp_path / "ws", n_docs=200, n_queries=60)
    splits, queries, docs = case["splits"], case["query_ids"], case["doc_ids"]
    test_q, dev_q = queries[splits == "test"], queries[splits == "dev"]
    dropped = np.concatenate([test_q[::2], dev_q[::3]])
    kept = np.setdiff1d(queries, dropped)
    with Workspace.open(case["path"]) as ws:
        spec = {"name": "partial", "kind": "vectors", "modality": "vector", "dim": 24, "sha256": "7" * 64, "path": ""}
        ws.add_model("partial", "new", spec, None)
        ids = np.concatenate([docs, kept])
        ws.add_vector_set("partial", ids, np.random.default_rng(3).standard_normal((len(ids), 24)).astype(np.float32))
        test_set, source = heldout_queries(ws, ["old", "partial"])
        dev = dev_task(ws, "old", "partial")
        complete, _ = heldout_queries(ws, ["old", "new"])
    n_test, n_dev = len(test_q[::2]), len(dev_q[::3])
    assert source == "judged test queries" and test_set.ids.size == len(test_q) - n_test
    assert test_set.name == (f"test queries (judged; {n_test} of {len(test_q)} left out: not embedded by every "
                             "compared model)")
    assert dev.queries.ids.size == len(dev_q) - n_dev
    assert dev.queries.name.startswith(f"dev queries (judged; {n_dev} of {len(dev_q)} left out")
    assert complete.name == "test queries (judged)"  # nothing left out, nothing said


def test_a_bundle_names_the_sample_new_new_was_measured_on(judged: dict[str, Any], tmp_path: Path) -> None:
    """The new model embedded half the documents: the bundle's numbers say new/new searched that sample."""
    from embridge.core.bundle import export_bundle
    from embridge.core.bundle.summary import bundle_text, inspect_bundle

    with Workspace.open(judged["path"]) as ws:
        export_bundle(ws, tmp_path / "b.zip", [judged["both"]["run_id"]], report_id=judged["report"].report_id)
    manifest = inspect_bundle(tmp_path / "b.zip")["manifest"]
    sample = judged["report"].cells["new/new"]["protocol"]["text"]
    *measured, curves = manifest["metrics"]["also_measured"]
    protocols = [manifest["metrics"]["protocol"], *(m["protocol"] for m in measured)]
    # gain retained and ARR compare with new/new on its sample: named there, not under the whole gallery
    assert protocols[0].endswith(f"; new/new (and the _sample numbers, gain_retained and arr) on {sample}")
    assert protocols[1].endswith(f"; new/new (and the _sample numbers and gain_retained) on {sample}"), protocols
    assert curves["protocol"].endswith(f"backfilled share β) on {sample}")  # the curves ran on that sample
    assert f"; new/new (and the _sample numbers, gain_retained and arr) on {sample}" in bundle_text(manifest)
    # judged: the best policy is chosen on nDCG@10, so its areas travel beside top-1's (only top-1's did)
    for policy, curve in judged["report"].backfill["policies"].items():
        assert curves["values"][f"backfill_area_{policy}"] == pytest.approx(curve["areas"]["top1"])
        assert curves["values"][f"backfill_area_ndcg@10_{policy}"] == pytest.approx(curve["areas"]["ndcg@10"])
    assert "nDCG@10 (backfill_area_ndcg@10_<policy>)" in curves["protocol"]


def test_labels_that_read_as_one_number_stay_distinct_classes(tmp_path: Path) -> None:
    """'1' and '01' are two labels (reports count them apart); training read both as the number 1: two
    classes became ['1', '1'], items labelled '01' got no class, and bct refused 'only one class'."""
    from embridge.core.evaluation.folds import label_codes, workspace_classes
    from embridge.core.synthetic import class_structured_pair

    pair = class_structured_pair(240, 4, old_dim=12, new_dim=16, old_seen_classes=4, seed=2)
    names = ["1", "01", "2", "02"]
    ws = Workspace.create(tmp_path / "ws")
    ids = ws.add_items([{"key": f"i{i}", "label": names[int(c)], "split": "query" if i < 40 else "gallery"}
                        for i, c in enumerate(pair.labels)])
    for name, vectors in (("old", pair.old), ("new", pair.new)):
        ws.add_model(name, name, {"name": name, "kind": "vectors", "dim": vectors.shape[1],
                                  "sha256": name[0] * 64}, None)
        ws.add_vector_set(name, ids, vectors)
    classes = workspace_classes(ws)
    assert classes == ["01", "1", "02", "2"]
    assert (label_codes(ws.labels(ids), classes) >= 0).all()
    run = train_run(ws, "bct", device="cpu", config={"epochs": 2})
    assert run["status"] == "completed" and run["upgraded_top1"] is not None
    ws.close()
