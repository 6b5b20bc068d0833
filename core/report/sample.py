"""The evaluation sample of a report: which items are queries, which form the gallery, and relevance.

Protocol (METHODS.md, ARCHITECTURE.md "Evaluation sample"):

- Queries are the items of split ``query`` that have vectors under every compared model. Without
  such items the test fold (held out from every fit) serves as the queries.
- The gallery is every non-query item with vectors under every compared model: the whole gallery
  when all of it was embedded by each model, else the evaluation sample. ``heldout_gallery`` drops
  the items of the train fold, which the compatibility layer was fitted on.
- Relevance is by label (same label) when the items carry labels. Without labels a query's only
  relevant item is its own item, so the queries are added to the gallery and nothing is excluded.
- When a query is also a gallery item (relevance by label, queries from the test fold), that gallery
  row is excluded from its ranking.

Vectors are L2-normalised, and stay so after any adapter (cosine similarity everywhere), so scores
from different spaces can be merged in a partially backfilled gallery. Large gallery matrices are
gathered chunk by chunk into a memmap under a scratch folder, so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import InputError
from core.l2 import l2_normalize
from core.store import Workspace
from core.train.pairs import QUERY_SPLIT, split_pairs

_NO_LABEL_QUERY = "\x00unlabelled-query"
_NO_LABEL_ITEM = "\x00unlabelled-item"


@dataclass
class EvalSample:
    """Ids, keys and relevance targets of one report's queries and gallery."""

    query_ids: np.ndarray
    gallery_ids: np.ndarray
    query_keys: list[str]
    gallery_keys: list[str]
    query_labels: list[str | None]
    gallery_labels: list[str | None]
    relevance: str  # "label" or "item"
    query_source: str  # "query split" or "test fold"
    exclude: np.ndarray | None  # gallery row each query must not retrieve (-1: none)
    gallery_full: int
    gallery_train_fold: int
    gallery_val_fold: int
    removed_train: int
    heldout_gallery: bool
    queries_added: int = 0  # queries put into the gallery as their own relevant item (no labels)

    @property
    def query_targets(self) -> np.ndarray:
        if self.relevance == "item":
            return np.array(self.query_keys, dtype=str)
        return np.array([_NO_LABEL_QUERY if v is None else v for v in self.query_labels], dtype=str)

    @property
    def gallery_targets(self) -> np.ndarray:
        if self.relevance == "item":
            return np.array(self.gallery_keys, dtype=str)
        return np.array([_NO_LABEL_ITEM if v is None else v for v in self.gallery_labels], dtype=str)

    def sizes(self) -> dict[str, Any]:
        return {"queries": int(self.query_ids.size), "gallery": int(self.gallery_ids.size),
                "gallery_full": self.gallery_full, "gallery_train_fold": self.gallery_train_fold,
                "gallery_val_fold": self.gallery_val_fold, "removed_train": self.removed_train,
                "heldout_gallery": self.heldout_gallery, "query_source": self.query_source,
                "relevance": self.relevance, "queries_added_to_gallery": self.queries_added,
                "queries_in_gallery": int(0 if self.exclude is None else (self.exclude >= 0).sum())}

    def protocol(self) -> list[str]:
        """Plain sentences stating how this sample was drawn and scored."""
        lines = [f"Queries: {self.query_ids.size} items of the {self.query_source} with vectors under every compared model."]
        items = self.gallery_ids.size - self.queries_added
        if items == self.gallery_full:
            lines.append(f"Gallery: all {self.gallery_full} gallery items (every one has vectors under every compared model).")
        else:
            lines.append(f"Gallery: an evaluation sample of {items} of the {self.gallery_full} "
                         "gallery items (those embedded by every compared model); costs are extrapolated to the full gallery.")
        if self.heldout_gallery:
            lines.append(f"Held-out gallery: the {self.removed_train} train-fold items the layer was fitted on "
                         "were removed from the gallery.")
        else:
            lines.append(f"The gallery contains {self.gallery_train_fold} items the layer was fitted on (train fold) "
                         f"and {self.gallery_val_fold} it was selected on (validation fold); the queries were "
                         "never fitted on. Use the held-out gallery option to leave the train fold out.")
        if self.relevance == "label":
            lines.append("Relevance: a gallery item is relevant when it has the query's label.")
        else:
            lines.append(f"Relevance: no labels, so a query's only relevant item is its own item ({self.queries_added} "
                         "queries were added to the gallery for this); same-model cells find it trivially, the "
                         "cross-model cells are the test.")
        if self.exclude is not None:
            lines.append(f"{int((self.exclude >= 0).sum())} queries are also gallery items; each is excluded "
                         "from its own ranking.")
        lines.append("All vectors, including adapted ones, are L2-normalised: similarity is the cosine.")
        return lines


def ids_under_all(ws: Workspace, models: Sequence[str]) -> np.ndarray:
    """Sorted ids of items with vectors under every model in ``models``."""
    ids = ws.ids_with_vectors(models[0])
    for name in models[1:]:
        ids = np.intersect1d(ids, ws.ids_with_vectors(name))
    return ids


def evaluation_sample(ws: Workspace, models: Sequence[str], heldout_gallery: bool = False,
                      seed: int = 0) -> EvalSample:
    """Queries, gallery and relevance for a report comparing ``models`` (see the module docstring)."""
    label = "models " + ", ".join(f"'{m}'" for m in models)
    both = ids_under_all(ws, models)
    query_split = ws.item_ids(QUERY_SPLIT)
    queries = np.intersect1d(both, query_split)
    gallery = np.setdiff1d(both, query_split)
    source = "query split"
    if queries.size == 0:
        split_pairs(ws, models[0], models[1], seed)  # assigns (and keeps) folds for these items
        folds = ws.folds()
        queries = np.array([i for i in gallery if folds.get(int(i)) == "test"], dtype=np.int64)
        source = "test fold"
    if queries.size == 0:
        raise InputError(label, "no query items and no test fold with vectors under every model; "
                         "import queries with --split query and embed them with each model")
    folds = ws.folds()
    fold_of = np.array([folds.get(int(i), "") for i in gallery], dtype=object)
    train_count = int((fold_of == "train").sum())
    val_count = int((fold_of == "val").sum())
    removed = 0
    if heldout_gallery:
        gallery, removed = gallery[fold_of != "train"], train_count
        train_count = 0
    query_labels, gallery_labels = ws.labels(queries), ws.labels(gallery)
    relevance = "label" if any(v is not None for v in query_labels) and any(
        v is not None for v in gallery_labels) else "item"
    added = 0
    if relevance == "item":
        added = int(np.setdiff1d(queries, gallery).size)
        gallery = np.union1d(gallery, queries)
        gallery_labels = ws.labels(gallery)
    if gallery.size < 2:
        raise InputError(label, f"the gallery holds {gallery.size} items with vectors under every model; "
                         "embed more gallery items with each model")
    exclude = None
    if relevance == "label":
        pos = np.clip(np.searchsorted(gallery, queries), 0, gallery.size - 1)
        rows = np.where(gallery[pos] == queries, pos, -1)
        exclude = rows if (rows >= 0).any() else None
    full = int(ws.db.execute("select count(*) from items where coalesce(split, '') != ?",
                             [QUERY_SPLIT]).fetchone()[0])
    return EvalSample(query_ids=queries, gallery_ids=gallery, query_keys=_keys(ws, queries),
                      gallery_keys=_keys(ws, gallery), query_labels=query_labels, gallery_labels=gallery_labels,
                      relevance=relevance, query_source=source, exclude=exclude, gallery_full=full,
                      gallery_train_fold=train_count, gallery_val_fold=val_count, removed_train=removed,
                      heldout_gallery=heldout_gallery, queries_added=added)


def _keys(ws: Workspace, ids: np.ndarray) -> list[str]:
    lookup = dict(ws.db.execute("select id, key from items").fetchall())
    return [str(lookup[int(i)]) for i in ids]


Transform = Callable[..., np.ndarray]


class MatrixMaker:
    """Gathers (optionally transformed) normalised vectors chunk by chunk, spilling large ones to disk.

    A matrix larger than ``budget_bytes`` is written into a float32 memmap under ``scratch``; smaller
    ones stay in memory. ``transform`` receives one normalised block per model named, in order.
    """

    def __init__(self, ws: Workspace, scratch: Path | None = None, budget_bytes: int = 512 << 20,
                 chunk: int = 65_536) -> None:
        self.ws, self.scratch, self.budget, self.chunk = ws, scratch, budget_bytes, chunk
        self._count = 0

    def matrix(self, ids: np.ndarray, models: Sequence[str], transform: Transform | None = None) -> np.ndarray:
        out: np.ndarray | None = None
        n = int(ids.size)
        for start in range(0, n, self.chunk):
            part = ids[start:start + self.chunk]
            blocks = [l2_normalize(self.ws.vectors_for(m, part)) for m in models]
            block = l2_normalize(transform(*blocks)) if transform is not None else blocks[0]
            if out is None:
                out = self._allocate(n, block.shape[1])
            out[start:start + len(part)] = block
        if out is None:
            raise InputError("evaluation sample", "no items to gather vectors for")
        return out

    def _allocate(self, rows: int, dim: int) -> np.ndarray:
        if self.scratch is None or rows * dim * 4 <= self.budget:
            return np.empty((rows, dim), dtype=np.float32)
        self.scratch.mkdir(parents=True, exist_ok=True)
        self._count += 1
        path = self.scratch / f"matrix-{self._count}.f32"
        return np.memmap(path, dtype=np.float32, mode="w+", shape=(rows, dim))
