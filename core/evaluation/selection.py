"""Scoring candidate layers during training: dev queries retrieving among a fixed gallery.

A :class:`Validator` holds one task (for a workspace: :func:`embridge.core.evaluation.tasks.dev_task`, the dev
queries against the whole old gallery) with its vectors, and scores any adapter on it through
:func:`embridge.core.evaluation.scoring.score`. The old gallery does not change while new->old layers train,
so its index is built once and reused after every epoch. Arrays without a workspace get
:func:`array_validator`: the validation items retrieve among the validation items' old vectors
(leave-one-out by label, or their own item without labels).

Candidates compete on top-1, except on graded relevance judgments, where they compete on nDCG@10
(:data:`JUDGED_SELECTION_METRIC`): a ranking of several judged documents is what such a system is
judged by, and the plan weighs its options by the same number.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from embridge.core.adapters.adapt_arrays import adapt_gallery, adapt_queries
from embridge.core.adapters.adapter import Adapter
from embridge.core.adapters.cascade import cascade_rank, old_recall
from embridge.core.evaluation.gather import MatrixMaker
from embridge.core.evaluation.headline import metric_label
from embridge.core.evaluation.metrics import evaluate
from embridge.core.evaluation.relevance import LABELS, OWN_ITEM, RelevanceRule
from embridge.core.evaluation.scoring import (
    JUDGED_K,
    EvalResult,
    IndexCache,
    ScoringPlan,
    gallery_index,
    judged_metrics,
    score,
    selection_plan,
)
from embridge.core.evaluation.search import GalleryIndex
from embridge.core.evaluation.served import cascade_new_ids, latest_backfill
from embridge.core.evaluation.task import GallerySet, QuerySet, RetrievalTask
from embridge.core.evaluation.tasks import dev_task
from embridge.core.retrieval import l2_normalize
from embridge.core.store import Workspace

SELECTION_METRIC = "top1"
DUPLICATE_TOLERANCE = 1e-6  # cosine this close to 1 between L2-normalised float32 rows: the same vector
JUDGED_SELECTION_METRIC = "ndcg@10"


class Validator:
    """One validation task with its vectors; ``value(adapter)`` is the number candidates compete on."""

    def __init__(self, task: RetrievalTask, q_old: np.ndarray, q_new: np.ndarray, g_old: np.ndarray,
                 g_side: np.ndarray | None = None, metric: str = SELECTION_METRIC,
                 indexes: IndexCache | None = None) -> None:
        self.task, self.metric, self.indexes = task, metric, indexes
        self.q_old, self.q_new, self.g_old, self.g_side = q_old, q_new, g_old, g_side  # rows L2-normalised
        self.plan: ScoringPlan = selection_plan(task)
        self._index: GalleryIndex | None = None
        self.g_new: np.ndarray | None = None
        self.g_new_rows: np.ndarray | None = None
        self._recall: tuple[np.ndarray, np.ndarray] | None = None  # the cascade's stage one, deepest K so far
        self._recall_k = 0
        self._old_old: EvalResult | None = None
        self._protocol: str | None = None

    @property
    def protocol(self) -> str:
        """The protocol in words, e.g. '40 dev queries (judged) against the whole old gallery (...)', with
        how many of them can be scored when some have no relevant item in the gallery (as held-out ones)."""
        if self._protocol is None:  # asked for by every candidate and epoch: counted once
            t = self.task
            scored = int(np.count_nonzero(t.rule.relevant_counts(t.queries.ids, t.gallery.ids, t.exclude) > 0))
            self._protocol = t.protocol().scored(scored).describe()
        return self._protocol

    @property
    def metric_name(self) -> str:
        """``judged_ndcg@10`` (or ``judged_top1``), ``label_top1`` or ``pair_top1`` (own item), after the relevance
        rule and the metric."""
        if self.task.rule.graded():
            return f"judged_{self.metric}"
        return {LABELS: "label_top1", OWN_ITEM: "pair_top1"}[self.task.rule.source]

    @property
    def metric_label(self) -> str:
        """The metric as the choice's sentence names it ('top-1', 'nDCG@10')."""
        return metric_label(self.metric)

    def result(self, adapter: Adapter) -> EvalResult:
        queries = l2_normalize(adapt_queries(adapter, self.q_new, self.q_old))
        if adapter.direction == "forward":
            return score(self.task, queries, l2_normalize(adapt_gallery(adapter, self.g_old, self.g_side)), self.plan)
        if self._index is None:
            self._index = gallery_index(self.g_old, self.plan, self.indexes)
        return score(self.task, queries, self.g_old, self.plan, index=self._index)

    def value(self, adapter: Adapter) -> float:
        return float(self.result(adapter).metrics[self.metric])

    def old_old(self) -> EvalResult:
        """Today's system on the same task: old queries against the old gallery (searched once)."""
        if self._old_old is None:
            if self._index is None:
                self._index = gallery_index(self.g_old, self.plan, self.indexes)
            self._old_old = score(self.task, self.q_old, self.g_old, self.plan, index=self._index)
        return self._old_old

    def old_old_value(self) -> float:
        return float(self.old_old().metrics[self.metric])

    def exact_duplicates(self) -> int:
        """Dev queries that are gallery items whose old vector the gallery holds again under another id:
        old queries find such a copy first, so validation flatters the old query (fusion's α, old/old).
        Own-item validation searches the query's own vector on purpose and counts none; a query that is
        not a gallery item (a judged query) counts none either, since a document equal to it is a match.
        """
        exclude = self.task.exclude  # a query that is itself a gallery item: a copy is another item like it
        if self.task.rule.source == OWN_ITEM or not len(self.q_old) or exclude is None:
            return 0
        first = self.old_old().top[:, 0]
        found = np.flatnonzero((first >= 0) & (exclude >= 0))
        cosines = np.einsum("ij,ij->i", self.q_old[found], np.asarray(self.g_old[first[found]], dtype=np.float32))
        return int(np.count_nonzero(cosines >= 1.0 - DUPLICATE_TOLERANCE))

    def with_new_gallery(self, g_new: np.ndarray, rows: np.ndarray) -> Validator:
        """Add the new vectors of gallery rows ``rows`` (L2-normalised), which a cascade re-ranks with."""
        self.g_new, self.g_new_rows = g_new, np.asarray(rows, dtype=np.int64)
        return self

    @property
    def has_new_gallery(self) -> bool:
        return getattr(self, "g_new", None) is not None and len(self.g_new) > 0

    @property
    def gallery_size(self) -> int:
        return int(len(self.g_old))

    @property
    def new_gallery_share(self) -> float:
        return len(self.g_new) / max(len(self.g_old), 1) if self.has_new_gallery else 0.0

    def cascade_value(self, base: Adapter, k: int, new_vectors: bool = True) -> float:
        """The task's metric for a cascade: the old index recalls ``k``, the new model re-ranks them (by
        stored new vectors where ``new_vectors`` allows, else through ``base``)."""
        if self._recall is None or self._recall_k < k:  # one stage-one search shared by every K up to k
            self._recall, self._recall_k = old_recall(self.q_old, self.g_old, k, self.task.exclude), k
        g_new, rows = (self.g_new, self.g_new_rows) if new_vectors and self.has_new_gallery else (None, None)
        ranking = cascade_rank(self.q_old, self.g_old, self.q_new, g_new, rows, k,
                               lambda x: adapt_queries(base, x), exclude=self.task.exclude, recall=self._recall)
        rel, grades = self.task.rule.relevance(ranking.ids, self.task.queries.ids, self.task.gallery.ids,
                                               self.task.exclude)
        cell = evaluate(rel, topk=self.plan.topk, recall_ks=(1,), map_mode="none")
        if grades is not None:  # scored as every other candidate is (see scoring.score_ranking)
            cell.per_query.update(judged_metrics(rel.hits, grades, self.task.rule.ideal_dcg(self.task.queries.ids,
                                                                                            JUDGED_K)))
        return float(cell.summary()[self.metric])

    def describe(self) -> dict[str, Any]:
        return {"metric": self.metric, **self.task.protocol().to_dict()}


def array_validator(old_val: np.ndarray, new_val: np.ndarray, labels_val: np.ndarray | None,
                    side_val: np.ndarray | None = None) -> Validator:
    """Validation on paired arrays alone (see the module docstring)."""
    n = len(old_val)
    ids = np.arange(n, dtype=np.int64)
    labelled = labels_val is not None and np.unique(labels_val[labels_val >= 0]).size >= 2
    if labelled:
        labels = {i: (str(int(v)) if v >= 0 else None) for i, v in enumerate(labels_val.tolist())}
        rule = RelevanceRule(LABELS, labels=labels)
        queries = QuerySet("labelled validation items", ids[labels_val >= 0])
    else:
        rule = RelevanceRule(OWN_ITEM)
        queries = QuerySet("validation items", ids)
    task = RetrievalTask(queries, GallerySet("the validation items' old vectors", ids), rule)
    old_val, new_val = l2_normalize(old_val), l2_normalize(new_val)
    q_rows = queries.ids
    validator = Validator(task, old_val[q_rows], new_val[q_rows], old_val, side_val)
    return validator.with_new_gallery(new_val, ids)  # every validation item has its new vector


def workspace_validator(ws: Workspace, old: str, new: str, seed: int = 0, maker: MatrixMaker | None = None,
                        indexes: IndexCache | None = None) -> Validator:
    """The dev queries of :func:`embridge.core.evaluation.tasks.dev_task` with their vectors, ready to score layers
    (``maker`` and ``indexes`` shared with the held-out numbers let both use one gallery matrix and index)."""
    task = dev_task(ws, old, new, seed)
    maker = maker or MatrixMaker(ws)
    q = task.queries.ids
    metric = JUDGED_SELECTION_METRIC if task.rule.graded() else SELECTION_METRIC
    validator = Validator(task, maker.matrix(q, [old]), maker.matrix(q, [new]), maker.matrix(task.gallery.ids, [old]),
                          metric=metric, indexes=indexes)
    served = cascade_new_ids(ws, new, task.gallery.ids, latest_backfill(ws, new))
    with_new = np.flatnonzero(np.isin(task.gallery.ids, served))
    if with_new.size:  # what a cascade re-ranks with: every item's new vector, or the served backfill's
        validator.with_new_gallery(maker.matrix(task.gallery.ids[with_new], [new]), with_new)
    return validator
