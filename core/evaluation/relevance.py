"""Where relevance comes from: relevance judgments, else labels, else the query's own item.

One rule per query set, applied the same way whatever gallery the queries search (the whole old
gallery or the evaluation sample), so a number measured in training and one in a report differ only
when their query set or gallery differ, and both say which they used.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from embridge.core.evaluation.metrics import Relevance, relevance
from embridge.core.store import Workspace
from embridge.core.store.judgments import Judgments

JUDGMENTS, LABELS, OWN_ITEM = "judgments", "labels", "own item"
_NO_LABEL_QUERY = "\x00unlabelled-query"
_NO_LABEL_ITEM = "\x00unlabelled-item"


def judgments_of(ws: Workspace, split: str | None = None) -> Judgments | None:
    """The workspace's relevance judgments (of ``split``), or None when it holds none."""
    if not ws.has_judgments():
        return None
    found = ws.judgments(split)
    return found if len(found) else None


@dataclass(frozen=True)
class RelevanceRule:
    """Which gallery items are relevant to which query (see the module docstring).

    ``labels``: item id -> label (label relevance); ``judged``: query id -> {item id: grade > 0}
    and ``ideal``: query id -> every positive grade judged for it (the nDCG ideal). ``twins``: query
    id -> the document with the query's key, which that query's ranking leaves out, as BEIR's
    evaluation ignores a document whose id is the query's (ArguAna and Quora queries are also in
    the corpus under their own id: ranked, each would find itself first).
    """

    source: str
    labels: dict[int, str | None] = field(default_factory=dict)
    judged: dict[int, dict[int, int]] = field(default_factory=dict)
    ideal: dict[int, list[int]] = field(default_factory=dict)
    split: str | None = None
    twins: dict[int, int] = field(default_factory=dict)

    def describe(self) -> str:
        if self.source == JUDGMENTS:
            left_out = ("; a document with its query's key is not ranked for that query, as in BEIR's evaluation"
                        if self.twins else "")
            return f"relevance judgments ({self.split or 'all'} split){left_out}"
        if self.source == LABELS:
            return "same label"
        return "the query's own item"

    def unrelated(self, query_ids: np.ndarray) -> int:
        """How many of these queries have nothing relevant in any gallery: no label, or no judged item
        of a positive grade (own-item relevance always has one)."""
        ids = np.asarray(query_ids, dtype=np.int64).tolist()
        if self.source == LABELS:
            return sum(self.labels.get(i) is None for i in ids)
        if self.source == JUDGMENTS:
            return sum(not self.judged.get(i) for i in ids)
        return 0

    def graded(self) -> bool:
        return self.source == JUDGMENTS

    def targets(self, ids: np.ndarray, query: bool) -> np.ndarray:
        """Per item the value relevance compares (label or own id) for label and own-item rules."""
        if self.source == OWN_ITEM:  # compared as integers: strings of a million ids cost ~100 MB and a string sort
            return np.asarray(ids, dtype=np.int64)
        missing = _NO_LABEL_QUERY if query else _NO_LABEL_ITEM
        return np.array([missing if (v := self.labels.get(int(i))) is None else v for i in ids], dtype=str)

    def relevance(self, ranked: np.ndarray, query_ids: np.ndarray, gallery_ids: np.ndarray,
                  exclude: np.ndarray | None) -> tuple[Relevance, np.ndarray | None]:
        """(hits and relevant counts, grades of the ranked items or None) of a ranking of gallery rows."""
        if self.source != JUDGMENTS:
            rel = relevance(ranked, self.targets(query_ids, True), self.targets(gallery_ids, False), exclude)
            return rel, None
        ranked = np.asarray(ranked, dtype=np.int64)
        gallery_ids = np.asarray(gallery_ids, dtype=np.int64)
        ranked_ids = np.where(ranked >= 0, gallery_ids[np.maximum(ranked, 0)], -1)
        grades = np.zeros(ranked.shape, dtype=np.float64)
        in_gallery = self.relevant_counts(query_ids, gallery_ids, exclude)
        n_rel = in_gallery.copy()
        if exclude is not None:  # a query's own gallery row is never ranked, judged relevant to it or not
            for i in np.flatnonzero(np.asarray(exclude) >= 0).tolist():
                n_rel[i] -= int(_excluded_item(gallery_ids, exclude, i) in self.judged.get(int(query_ids[i]), {}))
        judged_total = np.zeros(len(n_rel), dtype=np.int64)
        for i, q in enumerate(np.asarray(query_ids, dtype=np.int64).tolist()):
            judged = self.judged.get(q)
            if not judged:
                continue
            judged_total[i] = len(judged)  # as nDCG's ideal counts them
            row = ranked_ids[i]
            grades[i] = [judged.get(int(g), 0) if g >= 0 else 0 for g in row]
        return Relevance(hits=grades > 0, n_relevant=n_rel, judged_relevant=judged_total,
                         scorable=in_gallery > 0), grades

    def relevant_counts(self, query_ids: np.ndarray, gallery_ids: np.ndarray,
                        exclude: np.ndarray | None) -> np.ndarray:
        """Per query, how many gallery items are relevant to it (no ranking needed); a query is scored
        when it has one. Under labels the query's own item (``exclude``) is not relevant to itself;
        under judgments a document with the query's key that is judged relevant counts, though it is
        never ranked for that query: as in BEIR's evaluation the query is scored, and misses it."""
        if self.source != JUDGMENTS:
            no_ranking = np.empty((len(query_ids), 0), dtype=np.int64)
            return self.relevance(no_ranking, query_ids, gallery_ids, exclude)[0].n_relevant
        rows, items = [], []
        for i, q in enumerate(np.asarray(query_ids, dtype=np.int64).tolist()):
            judged = self.judged.get(q)
            if judged:
                rows.append(np.full(len(judged), i, dtype=np.int64))
                items.append(np.fromiter(judged, dtype=np.int64, count=len(judged)))
        if not rows:
            return np.zeros(len(query_ids), dtype=np.int64)
        found = np.isin(np.concatenate(items), np.asarray(gallery_ids, dtype=np.int64))  # one pass over the gallery
        return np.bincount(np.concatenate(rows)[found], minlength=len(query_ids)).astype(np.int64)

    def ideal_dcg(self, query_ids: np.ndarray, k: int = 10) -> np.ndarray:
        """Ideal DCG@k of each query from every positive grade judged for it (0 when none)."""
        disc = 1.0 / np.log2(np.arange(2, k + 2))
        out = np.zeros(len(query_ids))
        for i, q in enumerate(np.asarray(query_ids, dtype=np.int64).tolist()):
            best = sorted(self.ideal.get(q, []), reverse=True)[:k]
            out[i] = float(np.dot(best, disc[: len(best)]))
        return out


def _excluded_item(gallery_ids: np.ndarray, exclude: np.ndarray | None, row: int) -> int:
    """The item id of query ``row``'s excluded gallery row (its own item), or -1."""
    if exclude is None or exclude[row] < 0:
        return -1
    return int(gallery_ids[int(exclude[row])])


def judged_rule(judgments: Judgments, split: str | None) -> RelevanceRule:
    """A judgments rule from a ``Judgments`` object (see embridge.core.store.judgments)."""
    judged = judgments.relevant_sets()
    ideal = {q: sorted(g.values(), reverse=True) for q, g in judged.items()}
    return RelevanceRule(JUDGMENTS, judged=judged, ideal=ideal, split=split)


def same_key_documents(ws: Workspace, query_ids: np.ndarray, gallery_ids: np.ndarray) -> dict[int, int]:
    """Query id -> the gallery document whose key is the query's, for the queries that have one."""
    from embridge.core.store.schema import DOC_NAMESPACE

    query_ids = np.asarray(query_ids, dtype=np.int64)
    if not query_ids.size:
        return {}
    keys = ws.keys_of(query_ids)
    docs = ws.find_keys(keys, DOC_NAMESPACE)
    if not docs:
        return {}
    pairs = [(int(q), docs[k]) for q, k in zip(query_ids.tolist(), keys, strict=True) if k in docs]
    in_gallery = np.isin(np.fromiter((d for _, d in pairs), np.int64, len(pairs)), np.asarray(gallery_ids, np.int64))
    return {q: d for (q, d), kept in zip(pairs, in_gallery.tolist(), strict=True) if kept}


def choose_rule(ws: Workspace, query_ids: np.ndarray, gallery_ids: np.ndarray,
                split: str | None = None, use_judgments: bool = True) -> RelevanceRule:
    """Judgments of ``split`` when they exist (and ``use_judgments``), else labels when queries and
    gallery carry them, else own item."""
    judgments = judgments_of(ws, split) if use_judgments else None
    if judgments is not None:
        return replace(judged_rule(judgments, split), twins=same_key_documents(ws, query_ids, gallery_ids))
    query_labels, gallery_labels = ws.labels(query_ids), ws.labels(gallery_ids)
    if any(v is not None for v in query_labels) and any(v is not None for v in gallery_labels):
        ids = np.union1d(query_ids, gallery_ids)
        return RelevanceRule(LABELS, labels=dict(zip(ids.tolist(), ws.labels(ids), strict=True)))
    return RelevanceRule(OWN_ITEM)
