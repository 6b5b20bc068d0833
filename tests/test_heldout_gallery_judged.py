"""``--heldout-gallery`` leaves out every item a layer may have been fitted on. With relevance judgments the
retrieval loss fits each training query's new vector to its relevant documents' old ones, wherever those
documents' fold: they were fitting targets, and stayed in the "held-out" gallery."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from judged_fixtures import build_judged_workspace

from embridge.core.evaluation.tasks import upgrade_tasks
from embridge.core.report.sample import evaluation_sample
from embridge.core.store import Workspace


def test_the_held_out_gallery_leaves_out_the_documents_judged_for_training_queries(tmp_path: Path) -> None:
    info = build_judged_workspace(tmp_path / "ws", n_docs=400, n_queries=200)
    trained_on = info["doc_ids"][info["relevant"][info["splits"] == "train"]]
    tested_on = info["doc_ids"][info["relevant"][info["splits"] == "test"]]
    with Workspace.open(info["path"]) as ws:
        kept = upgrade_tasks(ws, ["old", "new"])
        held = upgrade_tasks(ws, ["old", "new"], heldout_gallery=True)
        train_fold = ws.fold_ids()["train"]
        outside = np.setdiff1d(trained_on, train_fold)
        assert outside.size > 10  # judged training documents the train fold does not hold
        for task in (held.full, held.sample):
            assert not np.isin(task.gallery.ids, trained_on).any()
            assert not np.isin(task.gallery.ids, train_fold).any()
        gone = np.setdiff1d(kept.full.gallery.ids, held.full.gallery.ids)
        np.testing.assert_array_equal(gone, np.union1d(np.intersect1d(kept.full.gallery.ids, train_fold), outside))
        assert held.removed_train == gone.size and held.removed_judged == outside.size
        assert np.isin(np.setdiff1d(tested_on, train_fold), held.full.gallery.ids).all()  # the test answers stay
        assert "without the train fold and the documents judged relevant to training queries" in held.full.gallery.name
        said = " ".join(evaluation_sample(ws, ["old", "new"], heldout_gallery=True).protocol())
        assert f"the {outside.size} documents outside it judged relevant to training queries" in said
