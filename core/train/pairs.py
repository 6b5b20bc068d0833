"""Training pairs from a workspace: items embedded by both models, with a stored, reused split.

The train / validation / test assignment is drawn once (seeded) and saved in the ``folds`` table,
and items of the ``query`` split always go to the test fold, since reports search with them;
so every later run and every report uses the same held-out items; items embedded later get a fold
on first use without moving anyone else. Labels are strings in the store and become integer codes
here (sorted label order, -1 for unlabelled).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.errors import InputError
from core.l2 import l2_normalize
from core.store import Workspace

FOLDS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.6, 0.2, 0.2)
MIN_PAIRS = 20
QUERY_SPLIT = "query"  # items of this split are never fitted on: they are always held out


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
    """Every label in the workspace, ordered numerically when all labels are integers."""
    labels = [r[0] for r in ws.db.execute("select distinct label from items where label is not null")]
    try:
        return [str(v) for v in sorted(int(x) for x in labels)]
    except ValueError:
        return sorted(labels)


def paired_ids(ws: Workspace, old: str, new: str) -> np.ndarray:
    """Sorted ids of items that have vectors under both models."""
    return np.intersect1d(ws.ids_with_vectors(old), ws.ids_with_vectors(new))


def split_pairs(ws: Workspace, old: str, new: str, seed: int = 0,
                fractions: tuple[float, float, float] = DEFAULT_FRACTIONS) -> PairSplit:
    """Assign (and persist) folds for the paired items; returns ids per fold."""
    ids = paired_ids(ws, old, new)
    if len(ids) < MIN_PAIRS:
        raise InputError(f"models '{old}' and '{new}'",
                         f"only {len(ids)} items have vectors under both; embed at least {MIN_PAIRS} "
                         f"items with both models (e.g. 'embridge embed --model {new} --sample 2000')")
    stored = ws.folds()
    missing = np.array([i for i in ids if int(i) not in stored], dtype=np.int64)
    if len(missing):
        queries = set(ws.item_ids(QUERY_SPLIT).tolist())
        fresh = {int(i): "test" for i in missing if int(i) in queries}
        order = np.random.default_rng(seed).permutation([i for i in missing if int(i) not in queries])
        cuts = np.round(np.cumsum(fractions)[:-1] * len(order)).astype(int)
        fresh.update({int(i): fold for fold, part in zip(FOLDS, np.split(order, cuts), strict=True) for i in part})
        ws.set_folds(fresh, seed)
        stored.update(fresh)
    by_fold = {f: np.array(sorted(int(i) for i in ids if stored[int(i)] == f), dtype=np.int64) for f in FOLDS}
    for fold in FOLDS:
        if len(by_fold[fold]) < 2:
            raise InputError(f"models '{old}' and '{new}'", f"the {fold} split has {len(by_fold[fold])} pairs; "
                             "embed more items with both models")
    return PairSplit(by_fold, workspace_classes(ws))


def fold_arrays(ws: Workspace, model: str, split: PairSplit, fold: str, normalise: bool = True) -> np.ndarray:
    vecs = ws.vectors_for(model, split.ids[fold])
    return l2_normalize(vecs) if normalise else vecs


def fold_labels(ws: Workspace, split: PairSplit, fold: str) -> np.ndarray:
    return label_codes(ws.labels(split.ids[fold]), split.classes)
