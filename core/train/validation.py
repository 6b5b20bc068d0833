"""Array-level retrieval numbers for paired vectors without a workspace (tests, benchmarks, scripts).

Everything is measured through :mod:`embridge.core.evaluation` (the same search and scoring as reports):
the items retrieve among the same items' vectors, leaving each query's own item out, with
relevance "same label"; without labels the pair metric asks whether an adapted query retrieves its
own item's vector. A workspace run validates and reports on its dev and test queries instead
(:mod:`embridge.core.train.runs`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from embridge.core.adapters.adapt_arrays import HEAD_KINDS, adapt_gallery, adapt_queries, new_space_vectors
from embridge.core.adapters.adapter import Adapter
from embridge.core.errors import InputError
from embridge.core.evaluation.compat import criterion, gain_note, gain_retained
from embridge.core.evaluation.scoring import score, selection_plan
from embridge.core.evaluation.selection import array_validator
from embridge.core.l2 import l2_normalize
from embridge.core.train.data import count_classes


def _top1(queries: np.ndarray, gallery: np.ndarray, labels: np.ndarray | None) -> float:
    """Top-1 of ``queries`` (row i = item i) among ``gallery`` under the array validation task."""
    task = array_validator(gallery, queries, labels).task
    rows = task.queries.ids
    return float(score(task, l2_normalize(queries[rows]), l2_normalize(gallery), selection_plan(task)).metrics["top1"])


def label_top1(queries: np.ndarray, gallery: np.ndarray, labels: np.ndarray) -> float:
    """Leave-one-out top-1 by label; queries with unknown label (-1) are skipped."""
    return _top1(queries, gallery, labels)


def pair_top1(queries: np.ndarray, gallery: np.ndarray) -> float:
    """Share of queries whose nearest gallery row is their own item (row i for query i)."""
    return _top1(queries, gallery, None)


def metric_name(labels: np.ndarray | None) -> str:
    """``label_top1`` when the split has labels of at least two classes, else ``pair_top1``."""
    return "label_top1" if labels is not None and count_classes(labels) >= 2 else "pair_top1"


def upgrade_metric(
    adapter: Adapter,
    old: np.ndarray,
    new: np.ndarray,
    labels: np.ndarray | None = None,
    side: np.ndarray | None = None,
) -> tuple[float, str]:
    """(value, name) of the upgraded system's top-1: by label when labels exist, else by pair."""
    return array_validator(old, new, labels, side).value(adapter), metric_name(labels)


def evaluate_heldout(
    adapter: Adapter,
    old_test: np.ndarray,
    new_test: np.ndarray,
    labels_test: np.ndarray,
    side_test: np.ndarray | None = None,
) -> dict[str, Any]:
    """Held-out compatibility numbers of one adapter on paired test arrays (leave-one-out by label).

    ``upgraded_top1`` is the upgraded system's query side against its gallery side (see
    :mod:`embridge.core.adapters.adapt_arrays`); ``head_new_new_top1`` (bct, bt2) is new/new with the head's own
    output. ``gain_retained`` is None when the new model is not better (``gain_retained_note`` says so).
    """
    old_test = np.asarray(old_test, dtype=np.float32)
    new_test = np.asarray(new_test, dtype=np.float32)
    labels = np.asarray(labels_test, dtype=np.int64) if labels_test is not None else None
    if labels is None or labels.shape != (len(old_test),) or count_classes(labels) < 2:
        raise InputError("labels_test", "held-out evaluation needs one label per pair and at least two classes")
    if len(new_test) != len(old_test):
        raise InputError("new_test", f"has {len(new_test)} rows but old_test has {len(old_test)}")
    queries = adapt_queries(adapter, new_test, old_test)
    gallery = adapt_gallery(adapter, old_test, side_test)
    oo = label_top1(old_test, old_test, labels)
    nn = label_top1(new_test, new_test, labels)
    up = label_top1(queries, gallery, labels)
    out: dict[str, Any] = {
        "kind": adapter.kind,
        "n_queries": int((labels >= 0).sum()),
        "old_old_top1": oo,
        "new_new_top1": nn,
        "upgraded_top1": up,
        "gain_retained": gain_retained(up, oo, nn),
        "gain_retained_note": gain_note(oo, nn),
        "compatible": criterion(up, oo),
        "upgraded_pair_top1": pair_top1(queries, gallery),
    }
    if adapter.kind in HEAD_KINDS:
        head = new_space_vectors(adapter, new_test)
        out["head_new_new_top1"] = label_top1(head, head, labels)
    if adapter.direction == "forward":
        out["new_fct_top1"] = up
    return out
