"""A synthetic query/document upgrade shaped like a real text one, shared by the retrieval tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from embridge.core.synthetic import SyntheticRetrieval, query_document_task
from embridge.core.train import PairData
from embridge.core.train.judged_queries import JudgedQueries


@dataclass
class QueryUpgrade:
    """Documents (60% also embedded by the new model), train / dev / test queries, and pair data."""

    task: SyntheticRetrieval
    dev: JudgedQueries
    test: JudgedQueries
    test_full: JudgedQueries  # every document with a new vector: the full backfill
    docs_only: PairData  # fitted on document pairs only
    with_queries: PairData  # plus the train queries, each paired with its relevant document


def query_upgrade(seed: int = 0, coverage: float = 0.6) -> QueryUpgrade:
    t = query_document_task(seed=seed)
    train_q, dev_q, test_q = t.query_splits(seed=seed)
    n = len(t.old_docs)
    embedded = np.sort(np.random.default_rng(seed).permutation(n)[: int(coverage * n)])

    def task(q: SyntheticRetrieval, rows: np.ndarray) -> JudgedQueries:
        return JudgedQueries(q.old_queries, q.new_queries, t.old_docs, q.relevant, t.new_docs[rows], rows)

    fit, val = embedded[: int(0.8 * len(embedded))], embedded[int(0.8 * len(embedded)) :]
    rest = np.setdiff1d(np.arange(n), embedded)
    bank_rows = np.concatenate([fit, val, rest])  # the old gallery bank: old_train, then gallery_old
    position = np.empty(n, dtype=np.int64)
    position[bank_rows] = np.arange(n)
    dev = task(dev_q, embedded)
    common = dict(gallery_old=t.old_docs[np.concatenate([val, rest])], dev=dev)
    docs_only = PairData(t.old_docs[fit], t.new_docs[fit], t.old_docs[val], t.new_docs[val], **common)
    with_queries = PairData(t.old_docs[fit], t.new_docs[fit], t.old_docs[val], t.new_docs[val],
                            query_new_train=train_q.new_queries, query_relevant_train=position[train_q.relevant],
                            **common)
    return QueryUpgrade(t, dev, task(test_q, embedded), task(test_q, np.arange(n)), docs_only, with_queries)
