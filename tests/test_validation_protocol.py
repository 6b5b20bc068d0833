"""The validation protocol counts the dev queries it can score, as the held-out protocol does."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from embridge.core.evaluation.selection import workspace_validator
from embridge.core.l2 import l2_normalize
from embridge.core.store import Workspace
from embridge.core.train.runs import train_run


def test_dev_queries_without_a_relevant_item_are_not_counted_as_scored(tmp_path: Path) -> None:
    """Items of a label no other item has are dev queries with nothing to find: the run's validation
    protocol says how many of the dev queries were scored, and its number is over those alone."""
    rng = np.random.default_rng(3)
    n, singles = 300, 40
    labels = np.concatenate([rng.integers(0, 5, size=n - singles), 100 + np.arange(singles)])
    latent = rng.standard_normal((200, 10))[labels % 200] + 0.7 * rng.standard_normal((n, 10))
    ws = Workspace.create(tmp_path / "ws")
    ids = ws.add_items([{"key": f"i{i:03d}", "label": str(int(labels[i])), "split": "gallery"} for i in range(n)])
    for name, role, dim in (("old", "old", 20), ("new", "new", 24)):
        spec = {"name": name, "kind": "vectors", "modality": "vector", "dim": dim, "sha256": f"{dim:064d}", "path": ""}
        ws.add_model(name, role, spec, None)
        view = latent @ rng.standard_normal((10, dim)) + 0.3 * rng.standard_normal((n, dim))
        ws.add_vector_set(name, ids, l2_normalize(view.astype(np.float32)))
    with ws:
        task = workspace_validator(ws, "old", "new").task
        by_id = dict(zip(ids, labels.tolist(), strict=True))
        gallery_labels = [by_id[int(g)] for g in task.gallery.ids]
        scored = sum(1 for q in task.queries.ids if gallery_labels.count(by_id[int(q)]) > 1)  # another item shares it
        dev = len(task.queries.ids)
        assert 0 < scored < dev
        run = train_run(ws, "affine", "old", "new", device="cpu")
    assert run["val_protocol"].startswith(f"{scored} of {dev} labelled queries (validation fold) (the others have "
                                          "no relevant item in this gallery) against the whole gallery")
    share = run["val_metric"] * scored
    assert abs(share - round(share)) < 1e-6  # a share of the scored queries, not of all the dev queries
