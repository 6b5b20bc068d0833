"""The interval a plan weighs a layer's gain over today's system by: a paired bootstrap over the test queries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from report_fixtures import old_gallery_ids

from embridge.core.adapters import adapt_queries, load_adapter
from embridge.core.report.build import ReportOptions, build_report
from embridge.core.retrieval import l2_normalize
from embridge.core.store import Workspace
from embridge.core.train.runs import train_run


def test_the_improvement_interval_is_the_paired_bootstrap_of_per_query_differences(demo_copy: Path) -> None:
    with Workspace.open(demo_copy) as ws:
        run = train_run(ws, "affine", device="cpu")
        report = build_report(ws, run["run_id"], ReportOptions(backfill_steps=3, n_boot=20), write=False)
        adapter = load_adapter(ws.adapter_path(run["adapter_id"]))
        gallery = old_gallery_ids(ws, "old-mlp")
        queries = np.asarray(ws.item_ids("query"), dtype=np.int64)
        g_old = l2_normalize(ws.vectors_for("old-mlp", gallery))
        q_old = l2_normalize(ws.vectors_for("old-mlp", queries))
        q_up = l2_normalize(adapt_queries(adapter, l2_normalize(ws.vectors_for("new-cnn", queries))))
        g_labels, q_labels = np.array(ws.labels(gallery)), np.array(ws.labels(queries))
    first = {name: g_labels[np.argmax(q @ g_old.T, axis=1)] == q_labels for name, q in (("old", q_old), ("up", q_up))}
    diff = first["up"].astype(np.float64) - first["old"]
    means = diff[np.random.default_rng(0).integers(0, diff.size, size=(1000, diff.size))].mean(axis=1)
    expected = list(np.percentile(means, [2.5, 97.5]))
    # 1,000 seeded resamples, as documented (to the last bits of a mean summed in another order)
    assert report.headline["improvement_ci"]["top1"] == pytest.approx(expected, abs=1e-12)
    assert expected[0] < report.headline["upgraded_top1"] - report.headline["old_old_top1"] < expected[1]
    assert run["improvement_ci"] == report.headline["improvement_ci"]  # training states the same interval
