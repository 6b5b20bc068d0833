"""What one retrieval number is measured on: a query set, a gallery, a relevance rule.

Every number that training, reports, plans and bundles show is measured on a
:class:`RetrievalTask` and comes back with its :class:`Protocol`, the plain statement of which
queries searched which gallery under which relevance, so two numbers for one layer can always be
told apart.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from embridge.core.evaluation.relevance import RelevanceRule


@dataclass(frozen=True)
class QuerySet:
    """Named query items, e.g. "test queries (judged)" or "labelled queries (validation fold)"."""

    name: str
    ids: np.ndarray


@dataclass(frozen=True)
class GallerySet:
    """Named gallery items, e.g. "the whole old gallery" or "the evaluation sample"."""

    name: str
    ids: np.ndarray


@dataclass(frozen=True)
class Protocol:
    """Where a number was measured, in words and sizes."""

    query_set: str
    n_queries: int
    gallery: str
    n_gallery: int
    relevance: str
    search: str = "exact cosine search"
    n_scored: int | None = None  # queries with a relevant item in the gallery, when fewer than n_queries
    new_vectors: int | None = None  # gallery items scored by their new-model vectors (a cascade's re-rank)
    n_unlabelled: int | None = None  # queries with no label (or no judged relevant item) at all

    def describe(self) -> str:
        one = self.query_set.replace("queries", "query", 1) if self.n_queries == 1 else self.query_set
        queries = f"{self.n_queries} {one}"  # '1 test query (query split)', not '1 test queries'
        if self.n_scored is not None and self.n_scored < self.n_queries:
            queries = f"{self.n_scored} of {self.n_queries} {self.query_set} ({self.unscored_reason()})"
        rest = ", the rest through the layer" if self.new_vectors is not None and self.new_vectors < self.n_gallery else ""
        used = ("" if self.new_vectors is None else
                f"; new-model vectors of {self.new_vectors} of the {self.n_gallery} gallery items{rest}")
        return (f"{queries} against {self.gallery} ({self.n_gallery} items), "
                f"relevance: {self.relevance}; {self.search}{used}")

    def unscored_reason(self) -> str:
        """Why the queries left out could not be scored: no relevant item in this gallery, or none at all
        (a query without a label, or without a relevant judgment, is not a property of the gallery)."""
        missing = self.n_queries - (self.n_scored or 0)
        lacking = min(self.n_unlabelled or 0, missing)
        what = "label" if self.relevance == "same label" else "relevant judgment"
        if not lacking:
            return "the others have no relevant item in this gallery"
        if lacking == missing:
            return f"the others have no {what}"
        return f"{lacking} {'has' if lacking == 1 else 'have'} no {what}, the others no relevant item in this gallery"

    def scored(self, n_scored: int) -> Protocol:
        """This protocol with the number of queries that could be scored (stated when fewer)."""
        return replace(self, n_scored=int(n_scored) if n_scored < self.n_queries else None)

    def to_dict(self) -> dict[str, Any]:
        out = {"query_set": self.query_set, "n_queries": self.n_queries, "gallery": self.gallery,
               "n_gallery": self.n_gallery, "relevance": self.relevance, "search": self.search,
               "text": self.describe()}
        if self.n_scored is not None:
            out["n_scored"] = self.n_scored
        if self.new_vectors is not None:
            out["new_vectors"] = self.new_vectors
        if self.n_unlabelled:
            out["n_unlabelled"] = self.n_unlabelled
        return out


@dataclass(frozen=True)
class RetrievalTask:
    """Queries, gallery and relevance; ``exclude[i]`` is the gallery row query i may not retrieve
    (itself, when it is also a gallery item and relevance is not by its own item; with judgments, the
    document with its key), or -1."""

    queries: QuerySet
    gallery: GallerySet
    rule: RelevanceRule

    @property
    def exclude(self) -> np.ndarray | None:
        if self.rule.source == "own item":
            return None
        g, own = self.gallery.ids, self.queries.ids
        if self.rule.twins:
            own = np.fromiter((self.rule.twins.get(q, -1) for q in own.tolist()), np.int64, own.size)
        pos = np.clip(np.searchsorted(g, own), 0, max(g.size - 1, 0))
        rows = np.where(g[pos] == own, pos, -1) if g.size else np.full(own.size, -1)
        return rows if (rows >= 0).any() else None

    def with_gallery(self, gallery: GallerySet) -> RetrievalTask:
        """The same queries and relevance against another gallery (e.g. the evaluation sample)."""
        return replace(self, gallery=gallery)

    def with_queries(self, queries: QuerySet) -> RetrievalTask:
        return replace(self, queries=queries)

    def protocol(self, search: str = "exact cosine search") -> Protocol:
        return Protocol(self.queries.name, int(self.queries.ids.size), self.gallery.name,
                        int(self.gallery.ids.size), self.rule.describe(), search,
                        n_unlabelled=self.rule.unrelated(self.queries.ids) or None)


def own_item_gallery(task_queries: QuerySet, gallery: GallerySet, rule: RelevanceRule) -> GallerySet:
    """With own-item relevance each query's own item must be in the gallery: add the missing ones."""
    if rule.source != "own item":
        return gallery
    extra = np.setdiff1d(task_queries.ids, gallery.ids)
    if not extra.size:
        return gallery
    return GallerySet(f"{gallery.name} plus the {extra.size} query items", np.union1d(gallery.ids, task_queries.ids))
