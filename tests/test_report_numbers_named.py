"""A report's numbers say which metric and gallery they belong to, wherever they are read.

With judgments the partial-backfill policies are ranked by nDCG@10; ``report --json`` gave only the top-1
areas, unnamed, so a script reading it picked another best policy than the text and HTML named. The HTML
headline named the evaluation sample for ARR only, not for the gain retained beside it. ``recall_frac@k``,
which the docs name as the information-retrieval recall, was left out of the JSON cells. Two equal means
summed in different orders (2e-16 apart) read as a gain and passed the strict criterion.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from judged_fixtures import build_judged_workspace

from embridge.core.cli.main import main
from embridge.core.evaluation.compat import criterion, gain_retained


def _run(*argv: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert main(list(argv)) == 0
    return out.getvalue()


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, str]:
    """A judged workspace whose new model embeds 60% of the documents (an evaluation sample), reported."""
    ws = tmp_path_factory.mktemp("named") / "ws"
    build_judged_workspace(ws, n_docs=300, n_queries=200, new_docs_share=0.6)
    _run("train", "-w", str(ws), "--method", "affine", "--device", "cpu")
    data = json.loads(_run("report", "-w", str(ws), "--json", "--bootstrap", "50"))
    text = _run("report", "-w", str(ws), "--bootstrap", "50")
    return ws, data, text


def test_the_json_names_the_metric_that_ranks_the_backfill_policies(reported: tuple[Path, dict, str]) -> None:
    _, data, text = reported
    by_metric = data["backfill_areas_by_metric"]
    metric = data["backfill_metric"]
    assert metric == "ndcg@10" and set(by_metric) >= {"top1", "ndcg@10"}
    assert data["backfill_areas"] == by_metric["top1"]  # the top-1 areas, as before
    areas = by_metric[metric]
    assert data["backfill_best_policy"] == max(areas, key=areas.__getitem__)
    assert ("best policy by area under the nDCG@10 curve (on the evaluation sample): "
            f"{data['backfill_best_policy']}") in text
    stored = json.loads(Path(data["report_json"]).read_text())
    for policy, curve in stored["backfill"]["policies"].items():
        assert by_metric[metric][policy] == curve["areas"][metric]


def test_the_json_cells_carry_the_information_retrieval_recall(reported: tuple[Path, dict, str]) -> None:
    _, data, _ = reported
    stored = json.loads(Path(data["report_json"]).read_text())["cells"]
    for name, cell in data["cells"].items():
        fractions = {k: v for k, v in stored[name]["metrics"].items() if k.startswith("recall_frac@")}
        assert fractions and all(cell[k] == v for k, v in fractions.items())


def test_gains_measured_on_the_sample_say_so_in_the_html_and_the_text(reported: tuple[Path, dict, str]) -> None:
    _, data, text = reported
    assert data["old_old_sample_top1"] is not None and data["old_old_sample_ndcg@10"] is not None
    html = Path(data["report_html"]).read_text()
    assert "gain retained (top-1) on the evaluation sample" in html
    assert "gain retained (nDCG@10) on the evaluation sample" in html
    (line,) = [ln for ln in text.splitlines() if ln.startswith("nDCG@10: old/old")]
    assert line.endswith("(on the evaluation sample)")


def test_means_equal_but_for_their_summation_order_are_no_gain_and_do_not_pass() -> None:
    old = 0.2575963718820861
    same = 0.2575963718820862  # the same mean summed in another order
    assert same > old  # what the strict comparison saw
    assert gain_retained(same, old, 0.4) == 0.0
    assert criterion(same, old) is False
    assert criterion(old + 0.005, old) is True  # one query in two hundred better is a gain
    # the plan's rows, a chain's pairs and the verdicts' "equal" apply the same margin as the report
    from embridge.core.evaluation.compat import matrix_scores
    from embridge.core.evaluation.headline import ties
    from embridge.core.plan.option_row import option_row

    row = option_row("layer", "Layer", 0.0, 0, 0, {"top1": same}, old, 0.4, [])
    assert (row["passes_criterion"], row["gain_retained"]) == (False, 0.0)
    assert matrix_scores(np.array([[old, np.nan], [same, 0.4]]))["ac"] == 0
    assert ties({"upgraded_top1": same, "old_old_top1": old, "compatible": False})
    from embridge.core.evaluation.headline import weighed
    from embridge.core.report.wording import comparison_word

    assert weighed({"ceiling_top1": same, "old_old_top1": old}).new_better is False  # the verdicts' "new is better"
    assert comparison_word({"upgraded": old + 1e-10, "old_old": old, "passes": False}) == "equal"
