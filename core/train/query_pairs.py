"""Judged training queries as retrieval examples: a new query vector and its relevant document.

The retrieval objective (``loss=retrieval``) learns most from the task itself: a training query
(judged in the ``train`` split) must retrieve the *old* vector of its relevant document among the
old gallery. This module gathers those examples for a workspace run: the new vectors of the
queries, and each relevant document's row in the old gallery bank (the training items, then the
relevant documents that are not training items, as ``PairData.gallery_old``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from embridge.core.retrieval import l2_normalize
from embridge.core.store import Workspace


@dataclass
class JudgedQueryPairs:
    """``new_queries`` (one row per judged pair), ``relevant_rows`` in the bank, ``gallery_old`` extra rows."""

    new_queries: np.ndarray
    relevant_rows: np.ndarray
    gallery_old: np.ndarray | None
    n_queries: int


def judged_query_pairs(ws: Workspace, old: str, new: str, train_ids: np.ndarray) -> JudgedQueryPairs | None:
    """Train-split judgments (grade > 0) whose query has a new vector and document an old one; None if none."""
    if not ws.has_judgments():
        return None
    judged = ws.judgments("train")
    relevant = judged.grades > 0
    queries, docs = judged.query_ids[relevant], judged.item_ids[relevant]
    keep = np.isin(queries, ws.ids_with_vectors(new)) & np.isin(docs, ws.ids_with_vectors(old))
    queries, docs = queries[keep], docs[keep]
    if not queries.size:
        return None
    extra = np.setdiff1d(np.unique(docs), train_ids)
    bank_ids = np.concatenate([np.asarray(train_ids, dtype=np.int64), extra])
    order = np.argsort(bank_ids, kind="stable")
    rows = order[np.searchsorted(bank_ids[order], docs)]
    new_vectors = l2_normalize(ws.vectors_for(new, queries))
    gallery_old = l2_normalize(ws.vectors_for(old, extra)) if extra.size else None
    return JudgedQueryPairs(new_vectors, rows.astype(np.int64), gallery_old, int(np.unique(queries).size))
