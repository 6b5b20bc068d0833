"""Approximate search in a report: forced IVF on the demo, its stated recall checked independently."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from report_fixtures import DemoCase, demo_case, old_gallery_ids

from embridge.core.evaluation.search import SearchConfig, build_index, search_index
from embridge.core.report.build import ReportOptions, build_report
from embridge.core.retrieval import l2_normalize
from embridge.core.store import Workspace


@pytest.fixture(scope="module")
def case(demo_workspace_path: Path, tmp_path_factory: pytest.TempPathFactory) -> DemoCase:
    return demo_case(demo_workspace_path, tmp_path_factory)


def test_forced_ivf_states_parameters_and_true_recall(case: DemoCase) -> None:
    config = SearchConfig(method="ivf", nprobe=1, recall_sample=1000)
    with Workspace.open(case.path) as ws:
        report = build_report(ws, case.run_id, ReportOptions(search=config, backfill_steps=3, n_boot=50), write=False)
        queries = ws.item_ids("query")
        gallery = old_gallery_ids(ws, case.train["old"])  # old/old searches the whole old gallery
        q_old = l2_normalize(ws.vectors_for(case.train["old"], queries))
        g_old = l2_normalize(ws.vectors_for(case.train["old"], gallery))
    s = report.search
    assert s["method"] == "ivf" and not s["exact"] and report.scoring["map_key"] == "mAP@R"
    cell = s["cells"]["old/old"]
    params = cell["params"]
    assert params["nprobe"] == 1 and params["nlist"] > 1 and params["recall_k"] == 10
    assert params["recall_sample"] == 200  # every query
    # recompute: the same index searched for the top 10, against exact top 10 by numpy
    index = build_index(g_old, config)
    found, _ = search_index(index, q_old, 10)
    exact = np.argsort(-(q_old @ g_old.T), axis=1, kind="stable")[:, :10]
    recall = np.mean([len(set(f[f >= 0]) & set(e)) / 10 for f, e in zip(found, exact, strict=True)])
    assert cell["recall_vs_exact"] == pytest.approx(recall, abs=1e-12)
    assert recall < 0.95  # one list of many probed: approximate, and the report says so
    assert f"{cell['recall_vs_exact']:.4f}" in s["statement"] and "ivf" in s["statement"]
    assert "Approximate search (ivf: " in s["statement"] and "nprobe 1, " in s["statement"]
    assert "{" not in s["statement"] and "'" not in s["statement"]  # words, not a Python dict
    assert s["recall_vs_exact"] == min(c["recall_vs_exact"] for c in s["cells"].values())
