"""The evaluation sample of a report: the test queries, the galleries each cell searches, and relevance.

The tasks come from :func:`embridge.core.evaluation.tasks.upgrade_tasks`, the same ones training's held-out
numbers use:

- Queries are the test queries: query items with ``test`` judgments, else the query items of the
  test fold, else (no query items) the test fold of the gallery.
- Cells that need only old gallery vectors (old/old, new→old, fusion, a forward transform of the
  stored old vectors) search the whole old gallery; cells that need the new model's gallery vectors
  (new/new, head/head, rollback, the partial-backfill curves) search the evaluation sample: gallery
  items embedded by every compared model. ``heldout_gallery`` drops the train-fold items from both.
- Relevance: judgments, else labels (same label), else the query's own item (the queries are then
  added to the galleries and nothing is excluded). A query that is also a gallery item is excluded
  from its own ranking.

Vectors are L2-normalised, and stay so after any adapter (cosine similarity everywhere), so scores
from different spaces can be merged in a partially backfilled gallery.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from embridge.core.evaluation.relevance import JUDGMENTS, LABELS
from embridge.core.evaluation.tasks import UpgradeTasks, upgrade_tasks
from embridge.core.store import Workspace

RELEVANCE_WORD = {LABELS: "label", JUDGMENTS: "judgments", "own item": "item"}


@dataclass
class EvalSample:
    """Ids, keys and relevance of one report's queries and galleries (``gallery_*``: the evaluation
    sample; ``full_*``: the whole old gallery)."""

    tasks: UpgradeTasks
    query_keys: list[str]
    gallery_keys: list[str]
    query_labels: list[str | None]
    gallery_labels: list[str | None]
    full_keys: list[str]
    full_labels: list[str | None]
    gallery_train_fold: int
    gallery_val_fold: int
    queries_added: int = 0  # query items put into the galleries as their own relevant item

    @property
    def query_ids(self) -> np.ndarray:
        return self.tasks.sample.queries.ids

    @property
    def gallery_ids(self) -> np.ndarray:
        return self.tasks.sample.gallery.ids

    @property
    def full_ids(self) -> np.ndarray:
        return self.tasks.full.gallery.ids

    @property
    def relevance(self) -> str:
        """``label``, ``judgments`` or ``item`` (the query's own item)."""
        return RELEVANCE_WORD[self.tasks.sample.rule.source]

    @property
    def query_source(self) -> str:
        return self.tasks.query_source

    @property
    def exclude(self) -> np.ndarray | None:
        return self.tasks.sample.exclude

    def left_out(self) -> tuple[int, int]:
        """(queries that are gallery items, left out of their own rankings; judged queries whose document
        with the same key is left out of theirs, as BEIR's evaluation does) on the evaluation sample."""
        if self.exclude is None:
            return 0, 0
        own = int(np.isin(self.query_ids, self.gallery_ids).sum())
        return own, int((self.exclude >= 0).sum()) - own

    @property
    def gallery_full(self) -> int:
        return self.tasks.gallery_full

    @property
    def removed_train(self) -> int:
        return self.tasks.removed_train

    @property
    def heldout_gallery(self) -> bool:
        return self.tasks.heldout_gallery

    @property
    def query_targets(self) -> np.ndarray:
        return self.tasks.sample.rule.targets(self.query_ids, True)

    @property
    def gallery_targets(self) -> np.ndarray:
        return self.tasks.sample.rule.targets(self.gallery_ids, False)

    def sizes(self) -> dict[str, Any]:
        own, same_key = self.left_out()
        return {"queries": int(self.query_ids.size), "gallery": int(self.gallery_ids.size),
                "gallery_old": int(self.full_ids.size), "gallery_both": self.tasks.gallery_both,
                "gallery_full": self.gallery_full, "gallery_train_fold": self.gallery_train_fold,
                "gallery_val_fold": self.gallery_val_fold, "removed_train": self.removed_train,
                "removed_judged": self.tasks.removed_judged, "heldout_gallery": self.heldout_gallery, "query_source": self.query_source,
                "query_set": self.tasks.full.queries.name, "relevance": self.relevance,
                "queries_added_to_gallery": self.queries_added,
                "queries_in_gallery": own, "same_key_documents_left_out": same_key,
                "galleries": {"old": self.tasks.full.gallery.name, "sample": self.tasks.sample.gallery.name}}

    def protocol(self, chain: bool = False) -> list[str]:
        """Plain sentences stating how this sample was drawn and scored (``chain``: every cell on the sample)."""
        full, sample = self.tasks.full, self.tasks.sample
        lines = [f"Queries: the {self.query_ids.size} {full.queries.name} with vectors under every compared model."]
        items = self.gallery_ids.size - self.queries_added
        if chain:
            added = f" and the {self.queries_added} query items, {self.gallery_ids.size} in all" if self.queries_added \
                else ""
            lines.append(f"Every cell searches {sample.gallery.name}: {items} of the {self.gallery_full} gallery "
                         f"items{added}.")
        else:
            lines.append(f"Cells that need only old gallery vectors (old/old and the upgraded system) search "
                         f"{full.gallery.name}: {self.full_ids.size} items.")
        if chain:
            pass
        elif items == self.gallery_full:
            lines.append(f"Cells that need new gallery vectors (new/new, the head's space, rollback, partial "
                         f"backfill) search all {self.gallery_full} gallery items (every one has vectors under "
                         "every compared model).")
        else:
            lines.append(f"Cells that need new gallery vectors (new/new, the head's space, rollback, partial "
                         f"backfill) search {sample.gallery.name}: {items} of the {self.gallery_full} gallery "
                         "items; costs are extrapolated to the full gallery.")
        layer, layers = ("the layers were", "the layers") if chain else ("the layer was", "the layer")
        if self.heldout_gallery:
            judged = self.tasks.removed_judged
            which = (f"the {self.removed_train} items {layers} may have been fitted on (the train fold and the "
                     f"{judged} documents outside it judged relevant to training queries)" if judged else
                     f"the {self.removed_train} train-fold items {layer} fitted on")
            lines.append(f"Held-out gallery: {which} were removed from the gallery.")
        else:
            lines.append(f"The evaluation sample contains {self.gallery_train_fold} items {layer} fitted on "
                         f"(train fold) and {self.gallery_val_fold} of the validation fold; the queries were "
                         "never fitted on. Use the held-out gallery option to leave the train fold out.")
        if self.relevance == "label":
            lines.append("Relevance: a gallery item is relevant when it has the query's label.")
        elif self.relevance == "judgments":
            lines.append(f"Relevance: {full.rule.describe()}; judged, so nDCG@10 and MRR@10 are reported too.")
        else:
            lines.append(f"Relevance: no labels, so a query's only relevant item is its own item ({self.queries_added} "
                         "queries were added to the gallery for this); same-model cells find it trivially, the "
                         "cross-model cells are the test.")
        own, same_key = self.left_out()
        if own:
            lines.append("1 query is also a gallery item; it is excluded from its own ranking." if own == 1 else
                         f"{own} queries are also gallery items; each is excluded from its own ranking.")
        if same_key:
            which = "1 query has a document with its" if same_key == 1 else \
                f"{same_key} queries have a document with their"
            lines.append(f"{which} own key in the gallery; it is left out of that query's ranking, as BEIR's "
                         "evaluation ignores identical ids.")
        lines.append("All vectors, including adapted ones, are L2-normalised: similarity is the cosine.")
        return lines


def evaluation_sample(ws: Workspace, models: Sequence[str], heldout_gallery: bool = False,
                      seed: int = 0, tasks: UpgradeTasks | None = None) -> EvalSample:
    """Queries, galleries and relevance for a report comparing ``models`` (see the module docstring);
    ``tasks``: those :func:`upgrade_tasks` already gave for these models, settings and seed."""
    tasks = tasks or upgrade_tasks(ws, models, heldout_gallery, seed)
    queries, gallery, full = tasks.sample.queries.ids, tasks.sample.gallery.ids, tasks.full.gallery.ids
    folds = ws.fold_ids()

    def in_fold(name: str) -> int:
        return int(np.isin(gallery, folds.get(name, np.zeros(0, dtype=np.int64))).sum())

    def keys(ids: np.ndarray) -> list[str]:
        return ws.keys_of(ids)

    return EvalSample(tasks=tasks, query_keys=keys(queries), gallery_keys=keys(gallery),
                      query_labels=ws.labels(queries), gallery_labels=ws.labels(gallery),
                      full_keys=keys(full), full_labels=ws.labels(full),
                      gallery_train_fold=in_fold("train"), gallery_val_fold=in_fold("val"),
                      queries_added=int(np.isin(np.unique(queries), ws.query_ids()).sum())
                      if tasks.sample.rule.source == "own item" else 0)
