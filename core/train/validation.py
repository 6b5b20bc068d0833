"""Retrieval numbers for early stopping, model choice and held-out reports (exact search).

Protocol (METHODS.md): queries are the split's items, the gallery is the same items, so each
query's own item is left out of its ranking; relevance is "same label". Without labels, the
pair metric asks whether an adapted query retrieves its own item's vector instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core.adapters.apply import HEAD_KINDS, adapt_gallery, adapt_queries, new_space_vectors
from core.adapters.base import Adapter
from core.errors import InputError
from core.report.compat import gain_retained
from core.retrieval import exact_topk, l2_normalize, top1_accuracy
from core.train.data import count_classes
from core.train.retrieval_task import RetrievalTask


def label_top1(queries: np.ndarray, gallery: np.ndarray, labels: np.ndarray) -> float:
    """Leave-one-out top-1 by label; queries with unknown label (-1) are skipped."""
    idx = np.flatnonzero(labels >= 0)
    return top1_accuracy(queries[idx], gallery, labels[idx], labels, exclude=idx)


def pair_top1(queries: np.ndarray, gallery: np.ndarray) -> float:
    """Share of queries whose nearest gallery row is their own item (row i for query i)."""
    idx, _ = exact_topk(l2_normalize(queries), l2_normalize(gallery), 1)
    return float((idx[:, 0] == np.arange(len(queries))).mean())


DEV_METRIC = "dev_success_at_1"


def dev_metric(adapter: Adapter, task: RetrievalTask) -> float:
    """Success@1 of the upgraded system's queries (mapped, or fused for fusion) against the old gallery."""
    return task.score_queries(adapt_queries(adapter, task.new_queries, task.old_queries))


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
    return retrieval_metric(adapt_queries(adapter, new, old), adapt_gallery(adapter, old, side), labels)


def retrieval_metric(queries: np.ndarray, gallery: np.ndarray, labels: np.ndarray | None) -> tuple[float, str]:
    """(value, name) of top-1 for already adapted queries and gallery rows (see upgrade_metric)."""
    if metric_name(labels) == "label_top1":
        return label_top1(queries, gallery, labels), "label_top1"
    return pair_top1(queries, gallery), "pair_top1"


def evaluate_heldout(
    adapter: Adapter,
    old_test: np.ndarray,
    new_test: np.ndarray,
    labels_test: np.ndarray,
    side_test: np.ndarray | None = None,
) -> dict[str, Any]:
    """Held-out compatibility numbers of one adapter on a split no fit has seen.

    ``upgraded_top1`` is always the upgraded system's query side against its gallery side (see
    :mod:`core.adapters.apply`): for ``fct`` that is new queries vs the transformed old gallery,
    also reported as ``new_fct_top1``. ``head_new_new_top1`` (bct, bt2) is new/new with the head's
    own output, i.e. after a full backfill with the head.
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
        "compatible": bool(up > oo),
        "upgraded_pair_top1": pair_top1(queries, gallery),
    }
    if adapter.kind in HEAD_KINDS:
        head = new_space_vectors(adapter, new_test)
        out["head_new_new_top1"] = label_top1(head, head, labels)
    if adapter.direction == "forward":
        out["new_fct_top1"] = up
    return out
