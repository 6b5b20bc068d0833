"""Training pairs from a workspace: items embedded by both models, in the stored folds.

The folds themselves (train / validation / test, drawn once and stored) are defined in
:mod:`embridge.core.evaluation.folds`, shared with reports; this module reads a fold's vectors and labels.
"""

from __future__ import annotations

import numpy as np

from embridge.core.evaluation.folds import (
    FOLDS,
    MIN_PAIRS,
    PairSplit,
    label_codes,
    paired_ids,
    split_pairs,
    workspace_classes,
)
from embridge.core.l2 import l2_normalize
from embridge.core.store import Workspace
from embridge.core.store.workspace import QUERY_SPLIT

__all__ = ["FOLDS", "MIN_PAIRS", "QUERY_SPLIT", "PairSplit", "fold_arrays", "fold_labels", "label_codes",
           "paired_ids", "split_pairs", "workspace_classes"]


def fold_arrays(ws: Workspace, model: str, split: PairSplit, fold: str, normalise: bool = True) -> np.ndarray:
    vecs = ws.vectors_for(model, split.ids[fold])
    return l2_normalize(vecs) if normalise else vecs


def fold_labels(ws: Workspace, split: PairSplit, fold: str) -> np.ndarray:
    return label_codes(ws.labels(split.ids[fold]), split.classes)
