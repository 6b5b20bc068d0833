"""Folds of the paired items: which items may be fitted on, selected on, or only measured on.

The train / validation / test assignment is drawn once (seeded) and saved in the ``folds`` table,
so every later run and every report uses the same held-out items; items embedded later get a fold
on first use without moving anyone else. Query items (split ``query``) are held out (test fold)
unless relevance judgments put them in the train or dev split: a query judged in ``test`` is
always held out, one judged only in ``dev`` goes to the validation fold, one judged only in
``train`` to the train fold. Labels are strings in the store and become integer codes here (sorted
label order, -1 for unlabelled).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from embridge.core.errors import InputError
from embridge.core.evaluation.relevance import judgments_of
from embridge.core.formatting import counted
from embridge.core.store import Workspace
from embridge.core.store.id_sets import intersect_ids
from embridge.core.store.workspace import QUERY_SPLIT

FOLDS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.6, 0.2, 0.2)
MIN_PAIRS = 20
JUDGED_FOLD = {"test": "test", "dev": "val", "train": "train"}  # judgment split -> fold


@dataclass
class PairSplit:
    """Ids per fold plus the label code table shared by all folds."""

    ids: dict[str, np.ndarray]
    classes: list[str]

    def count(self) -> dict[str, int]:
        return {k: int(len(v)) for k, v in self.ids.items()}


def label_codes(labels: list[str | None], classes: list[str]) -> np.ndarray:
    """Integer codes of ``labels`` in ``classes`` order; None or unknown labels become -1."""
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index.get(lab, -1) if lab is not None else -1 for lab in labels], dtype=np.int64)


def workspace_classes(ws: Workspace) -> list[str]:
    """Every label in the workspace as stored, ordered numerically when all labels are integers ("01" and
    "1" stay two classes, as reports count them; read as numbers they became one, and "01" no class)."""
    labels = ws.distinct_labels()
    try:
        return sorted(labels, key=lambda x: (int(x), x))
    except ValueError:
        return sorted(labels)


def paired_ids(ws: Workspace, old: str, new: str) -> np.ndarray:
    """Sorted ids of items that have vectors under both models."""
    return intersect_ids(ws.ids_with_vectors(old), ws.ids_with_vectors(new))


def query_folds(ws: Workspace, query_ids: np.ndarray) -> dict[int, str]:
    """The fold of each query item: from its judgments' split when it has any, else test."""
    judged: dict[int, str] = {}
    judgments = judgments_of(ws)
    if judgments is not None:
        rank = {"train": 0, "val": 1, "test": 2}
        for q, split in zip(judgments.query_ids.tolist(), judgments.splits.tolist(), strict=True):
            fold, prev = JUDGED_FOLD.get(str(split), "test"), judged.get(int(q))
            if prev is None or rank[fold] > rank[prev]:
                judged[int(q)] = fold
    return {int(i): judged.get(int(i), "test") for i in query_ids}


def split_pairs(ws: Workspace, old: str, new: str, seed: int = 0,
                fractions: tuple[float, float, float] = DEFAULT_FRACTIONS, persist: bool = True) -> PairSplit:
    """:func:`assign_folds` with the workspace's label code table, for training."""
    return PairSplit(assign_folds(ws, old, new, seed, fractions, persist), workspace_classes(ws))


def assign_folds(ws: Workspace, old: str, new: str, seed: int = 0,
                 fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
                 persist: bool = True) -> dict[str, np.ndarray]:
    """Assign folds for the paired items; returns ids per fold. Folds are drawn once and kept (``persist``),
    so every run is measured on the same test items; a view that only describes the split (the Train
    page) passes ``persist=False`` and leaves the drawing to the first training, under its seed. Reading
    the label table is left to :func:`split_pairs`: over a million items it costs as much as the folds."""
    ids = paired_ids(ws, old, new)
    if len(ids) < MIN_PAIRS:
        total = ws.item_count()
        # the model holding fewer vectors is the one to embed with (the old one's may be the damaged ones)
        fewer = min((new, old), key=lambda m: ws.ids_with_vectors(m).size)
        advice = (f"embed at least {MIN_PAIRS} items with both models (e.g. 'embridge embed --model {fewer} --sample "
                  "2000')" if total >= MIN_PAIRS else f"the workspace holds only {total} items: import at least "
                  f"{MIN_PAIRS} and embed them with both models")
        raise InputError(f"models '{old}' and '{new}'", f"only {len(ids)} items have vectors under both; {advice}")
    stored = ws.fold_ids()
    missing = np.setdiff1d(ids, np.concatenate([np.zeros(0, np.int64), *stored.values()]))
    if len(missing):
        queries = intersect_ids(missing, ws.query_ids())
        fresh = query_folds(ws, queries)
        order = np.random.default_rng(seed).permutation(np.setdiff1d(missing, queries))
        cuts = np.round(np.cumsum(fractions)[:-1] * len(order)).astype(int)
        fresh.update({int(i): fold for fold, part in zip(FOLDS, np.split(order, cuts), strict=True) for i in part})
    else:
        fresh = {}
    by_fold = {f: np.union1d(intersect_ids(ids, stored.get(f, np.zeros(0, np.int64))),
                             np.array([i for i, fold in fresh.items() if fold == f], dtype=np.int64))
               for f in FOLDS}
    for fold in FOLDS:
        if len(by_fold[fold]) < 2:
            raise InputError(f"models '{old}' and '{new}'", f"the {fold} split has {counted(len(by_fold[fold]), 'pair')}; "
                             "embed more items with both models")
    if fresh and persist:  # kept only for a split that can be used: a refusal leaves the workspace as it was
        ws.set_folds(fresh, seed)
    return by_fold


__all__ = ["FOLDS", "MIN_PAIRS", "QUERY_SPLIT", "PairSplit", "assign_folds", "label_codes", "paired_ids", "split_pairs",
           "workspace_classes"]
