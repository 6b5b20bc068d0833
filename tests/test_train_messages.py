"""What training says when the data leaves it little to do: too few items, one class, no better epoch."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from embridge.core.errors import InputError
from embridge.core.retrieval import l2_normalize
from embridge.core.store import Workspace
from embridge.core.train.runs import train_run


def _workspace(path: Path, n: int, classes: int, seed: int = 0, labels: np.ndarray | None = None) -> Workspace:
    """``n`` labelled items (a fifth of them queries) whose new vectors are a noisy rotation of the old."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=n) if labels is None else labels
    centres = rng.standard_normal((int(labels.max()) + 1, 16))
    old = centres[labels] + 1.5 * rng.standard_normal((n, 16))
    new = old @ np.linalg.qr(rng.standard_normal((16, 16)))[0] + 0.3 * rng.standard_normal((n, 16))
    ws = Workspace.create(path)
    ids = ws.add_items([{"key": f"i{i}", "label": f"c{labels[i]}", "split": "query" if i % 5 == 0 else "gallery"}
                        for i in range(n)])
    for k, (name, vectors) in enumerate((("old", old), ("new", new))):
        ws.add_model(name, name, {"name": name, "kind": "vectors", "modality": "vector", "dim": 16,
                                  "sha256": f"{k:064d}", "path": ""}, None)
        ws.add_vector_set(name, ids, l2_normalize(vectors.astype(np.float32)))
    return ws


def test_a_workspace_too_small_is_told_to_import_more_not_to_embed(tmp_path: Path) -> None:
    with _workspace(tmp_path / "ws", 8, 2) as ws, pytest.raises(InputError) as refused:
        train_run(ws, "procrustes", "old", "new", device="cpu")
    assert "only 8 items have vectors under both; the workspace holds only 8 items: import at least 20" in str(refused.value)


@pytest.mark.parametrize("lacking", ["old", "new"])
def test_too_few_pairs_advise_embedding_with_the_model_that_lacks_vectors(tmp_path: Path, lacking: str) -> None:
    """The advice named the new model whichever one lacked vectors (the old one's may be the damaged ones)."""
    with _workspace(tmp_path / "ws", 200, 2) as ws:
        keep = ws.add_items([{"key": f"x{i}", "split": "gallery"} for i in range(10)])
        other = "new" if lacking == "old" else "old"
        ws.add_model("third", "other", {"name": "third", "kind": "vectors", "modality": "vector", "dim": 16,
                                        "sha256": f"{7:064d}", "path": ""}, None)
        ws.add_vector_set("third", keep, l2_normalize(np.random.default_rng(3).standard_normal((10, 16)).astype(np.float32)))
        pair = ("third", other) if lacking == "old" else (other, "third")
        with pytest.raises(InputError) as refused:
            train_run(ws, "procrustes", *pair, device="cpu")
    assert "only 0 items have vectors under both" in str(refused.value)
    assert "e.g. 'embridge embed --model third --sample 2000'" in str(refused.value)


def test_one_class_is_named_as_one_class(tmp_path: Path) -> None:
    with _workspace(tmp_path / "ws", 200, 1) as ws:
        with pytest.raises(InputError) as refused:
            train_run(ws, "bct", "old", "new", device="cpu")
        assert ws.runs() == []  # refused before a run was recorded
    assert "BCT head trains a classifier and needs at least two classes; every labelled item of this workspace " \
           "has the same label" in str(refused.value)


def test_a_layer_no_epoch_improved_says_it_is_the_closed_form_start(tmp_path: Path) -> None:
    """A learning rate far too high makes every epoch worse than the closed-form start: the run keeps
    the start and says so, rather than reading as a trained layer."""
    with _workspace(tmp_path / "ws", 400, 20) as ws:
        out = train_run(ws, "mlp", "old", "new", device="cpu", config={"epochs": 3, "lr": 50.0})
    assert out["status"] == "completed" and out["best_epoch"] == 0 and out["epochs_run"] == 3, out
    assert out["reason"].startswith("no trained epoch scored above the closed-form start on top-1 (epoch 0: ")
    start, best = (float(x) for x in re.findall(r"(?:epoch 0: |at most )([0-9.]+)", out["reason"]))
    assert best < start and out["reason"].endswith("so the layer kept is that start, not a trained one")
    assert ", epochs 1-3: at most " in out["reason"]
    with _workspace(tmp_path / "ws1", 400, 20) as ws:  # one trained epoch is 'epoch 1', not 'epochs 1-1'
        one = train_run(ws, "mlp", "old", "new", device="cpu", config={"epochs": 1, "lr": 50.0})
    assert ", epoch 1: at most " in one["reason"], one["reason"]


def test_validation_with_nothing_to_find_is_said_and_never_printed_as_nan(tmp_path: Path) -> None:
    """Every gallery item its own class and each query one gallery item's: no validation query (a
    validation-fold document, its own item left out) has anything to find. Fusion and cascade cannot
    choose their setting and are refused; auto skips them and says nothing could be scored."""
    labels = np.arange(300)
    labels[::5] = labels[1::5]  # each query (every fifth item) shares the label of the gallery item after it
    with _workspace(tmp_path / "ws", 300, 0, labels=labels) as ws:
        for method, setting in (("fusion", "α"), ("cascade", "K")):
            with pytest.raises(InputError) as refused:
                train_run(ws, method, "old", "new", device="cpu", config={"epochs": 1})
            assert f"choosing {setting} needs validation queries with a relevant item in the gallery, and none of " \
                   in str(refused.value)
        out = train_run(ws, "auto", "old", "new", device="cpu", config={"epochs": 1})
    assert out["status"] == "completed" and "nan" not in out["reason"]
    assert "no validation query has a relevant item in the gallery, so neither the winner nor today's system " \
           "(old/old) could be scored there" in out["reason"]
    rows = {c["kind"]: c for c in out["candidates"]}
    assert rows["fusion"]["status"] == rows["cascade"]["status"] == "skipped"
    assert rows["procrustes"]["val_metric"] is None or not np.isfinite(rows["procrustes"]["val_metric"])
    assert 0.0 <= out["upgraded_top1"] <= 1.0  # the test queries do have their one relevant item
