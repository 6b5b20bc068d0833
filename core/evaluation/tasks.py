"""The workspace's retrieval tasks: which queries, which gallery, which relevance, for each purpose.

- **Test queries** (held-out numbers of a training run, report cells, plan, bundle): query items
  with ``test`` judgments when the workspace has judgments; else the query items of the test fold
  (every query item without judgments is held out); else, with no query items at all, the test
  fold of the gallery ("held-out items").
- **Dev queries** (early stopping, ``auto``'s choice, λ, whitening, fusion α): query items with
  ``dev`` judgments; else the validation fold ("labelled queries" with labels, "validation items"
  retrieving their own item without), at most ``MAX_DEV_QUERIES`` of them, seeded.
- **Galleries** (:meth:`Workspace.gallery_ids` is the one definition of the gallery): cells that need
  only old gallery vectors search the whole old gallery (every gallery item the old model embedded);
  cells that need the new model's gallery vectors search the evaluation sample (gallery items every
  compared model embedded). ``heldout_gallery`` removes the train-fold items from both.
- **Comparable cells**: a test query whose relevant items are outside the evaluation sample is
  scored against the whole old gallery but not (or handicapped) by new/new, so old/old, the upgraded
  system and new/new would average over different queries and gain retained would mean nothing.
  Such queries are left out of every cell, and the query set's name says how many and why: with
  judgments, a query needs in the sample every document judged relevant to it that some compared
  model embedded (one no model embedded is a miss for every cell alike); with labels, one item of
  its label.
- **Relevance**: judgments of the query set's split, else labels, else the query's own item
  (the query items are then added to the gallery).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from embridge.core.errors import InputError
from embridge.core.evaluation.folds import assign_folds
from embridge.core.evaluation.relevance import choose_rule, judgments_of
from embridge.core.evaluation.task import GallerySet, QuerySet, RetrievalTask, own_item_gallery
from embridge.core.store import Workspace
from embridge.core.store.id_sets import intersect_ids

MAX_DEV_QUERIES = 1000


@dataclass(frozen=True)
class UpgradeTasks:
    """The test task on the whole old gallery and the same queries on the evaluation sample."""

    full: RetrievalTask
    sample: RetrievalTask
    query_source: str  # "judged test queries", "query split" or "test fold"
    gallery_full: int  # size of the whole gallery (every non-query item)
    removed_train: int = 0
    heldout_gallery: bool = False
    left_out: int = 0  # test queries left out: relevant items only outside the evaluation sample
    gallery_both: int = 0  # gallery items every compared model embedded, the train fold included
    removed_judged: int = 0  # of removed_train: documents judged relevant to training queries, outside the fold


def ids_under_all(ws: Workspace, models: Sequence[str]) -> np.ndarray:
    """Sorted ids of items with vectors under every model in ``models``."""
    ids = ws.ids_with_vectors(models[0])
    for name in models[1:]:
        ids = intersect_ids(ids, ws.ids_with_vectors(name))
    return ids


def _judged_queries(ws: Workspace, split: str, have: np.ndarray) -> np.ndarray:
    judgments = judgments_of(ws, split)
    if judgments is None:
        return np.zeros(0, dtype=np.int64)
    return intersect_ids(judgments.query_ids_unique(), have)


def _judged_query_set(ws: Workspace, split: str, have: np.ndarray) -> QuerySet:
    """The judged ``split`` queries among ``have`` (those embedded by every compared model), named with
    how many judged queries were left out for lacking a vector, so no count shrinks unannounced."""
    judged = _judged_queries(ws, split, have)
    every = _judged_queries(ws, split, ws.query_ids()).size
    if judged.size and every > judged.size:
        return QuerySet(f"{split} queries (judged; {every - judged.size} of {every} left out: not embedded by "
                        "every compared model)", judged)
    return QuerySet(f"{split} queries (judged)", judged)


def _judged_but_unembedded(ws: Workspace, split: str) -> str:
    """'; none of the 20 judged dev queries is embedded by every compared model' when judged queries of
    ``split`` exist and a fallback protocol replaces them (else ''), so the switch is never silent."""
    every = _judged_queries(ws, split, ws.query_ids()).size
    return (f"; none of the {every} judged {split} queries is embedded by every compared model" if every else "")


def heldout_queries(ws: Workspace, models: Sequence[str], seed: int = 0) -> tuple[QuerySet, str]:
    """(the test query set, its source) for ``models`` (see the module docstring)."""
    label = "models " + ", ".join(f"'{m}'" for m in models)
    both = ids_under_all(ws, models)
    assign_folds(ws, models[0], models[1], seed)  # assigns (and keeps) folds for these items
    test = ws.fold_ids().get("test", np.zeros(0, dtype=np.int64))
    judged = _judged_query_set(ws, "test", intersect_ids(both, ws.query_ids()))
    if judged.ids.size:
        return judged, "judged test queries"
    queries = intersect_ids(intersect_ids(both, ws.query_ids()), test).astype(np.int64, copy=False)
    if queries.size:
        return QuerySet(f"test queries (query split{_judged_but_unembedded(ws, 'test')})", queries), "query split"
    queries = intersect_ids(ws.gallery_among(both), test).astype(np.int64, copy=False)
    if queries.size == 0:
        raise InputError(label, "no query items and no test fold with vectors under every model; "
                         "import queries with --split query and embed them with each model")
    return QuerySet(f"held-out items (test fold{_judged_but_unembedded(ws, 'test')})", queries), "test fold"


def fitted_items(ws: Workspace) -> tuple[np.ndarray, np.ndarray]:
    """(train fold, documents judged relevant to training queries outside it): every item a layer may have
    been fitted on. The retrieval loss fits a query's new vector to its relevant documents' old ones, so
    those documents were fitting targets too, wherever their fold."""
    train = ws.fold_ids().get("train", np.zeros(0, dtype=np.int64))
    if not ws.has_judgments():
        return train, np.zeros(0, dtype=np.int64)
    judged = ws.judgments("train")
    return train, np.setdiff1d(judged.item_ids[judged.grades > 0], train)


def _without_train(ids: np.ndarray, fitted: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, int]:
    keep = ~(np.isin(ids, fitted[0]) | np.isin(ids, fitted[1]))
    return ids[keep], int((~keep).sum())


def upgrade_tasks(ws: Workspace, models: Sequence[str], heldout_gallery: bool = False,
                  seed: int = 0) -> UpgradeTasks:
    """The test tasks comparing ``models`` (old first): whole old gallery and evaluation sample.

    The folds this assigns are kept only when the tasks can be made: a refusal (no test query can
    be scored, too small a sample) rolls them back, so a refused command leaves the workspace as it was.
    """
    with ws.transaction():
        return _upgrade_tasks(ws, models, heldout_gallery, seed)


def _upgrade_tasks(ws: Workspace, models: Sequence[str], heldout_gallery: bool, seed: int) -> UpgradeTasks:
    label = "models " + ", ".join(f"'{m}'" for m in models)
    queries, source = heldout_queries(ws, models, seed)
    full_ids = ws.gallery_ids(models[0])
    old_embedded = int(full_ids.size)  # before --heldout-gallery takes the train fold out
    sample_ids = ws.gallery_among(ids_under_all(ws, models))
    both = int(sample_ids.size)
    sample_all = both == ws.gallery_count()  # every compared model embedded every gallery item
    removed, removed_judged = 0, 0
    fitted = fitted_items(ws) if heldout_gallery else None
    if fitted is not None:
        removed_judged = int(np.isin(full_ids, fitted[1]).sum())
        full_ids, removed = _without_train(full_ids, fitted)
        sample_ids, _ = _without_train(sample_ids, fitted)
    rule = choose_rule(ws, queries.ids, np.union1d(full_ids, sample_ids),
                       "test" if source == "judged test queries" else None)
    gallery_full = ws.gallery_count()
    suffix = (" without the train fold" + (" and the documents judged relevant to training queries"
                                           if removed_judged else "")) if heldout_gallery else ""
    full = GallerySet(old_gallery_name(old_embedded, gallery_full, suffix), full_ids)
    if sample_all:
        sample = GallerySet(f"the whole gallery{suffix}", sample_ids)
    else:
        sample = GallerySet(f"the evaluation sample{suffix} (gallery items embedded by every compared model)",
                            sample_ids)
    full, sample = own_item_gallery(queries, full, rule), own_item_gallery(queries, sample, rule)
    if sample.ids.size < 2:
        raise InputError(label, f"the gallery holds {sample.ids.size} items with vectors under every model; "
                         "embed more gallery items with each model")
    reach = _embedded_by_any(ws, models, fitted) if rule.graded() else None
    queries, left_out = comparable_queries(RetrievalTask(queries, full, rule), RetrievalTask(queries, sample, rule),
                                           label, heldout_gallery, reach)
    return UpgradeTasks(RetrievalTask(queries, full, rule), RetrievalTask(queries, sample, rule), source,
                        gallery_full, removed, heldout_gallery, left_out, both, removed_judged)


def _embedded_by_any(ws: Workspace, models: Sequence[str],
                     fitted: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    """Gallery items some compared model embedded (without the ``fitted`` items when given)."""
    ids = np.zeros(0, dtype=np.int64)
    for name in models:
        ids = np.union1d(ids, ws.ids_with_vectors(name))
    ids = ws.gallery_among(ids)
    return _without_train(ids, fitted)[0] if fitted is not None else ids


def comparable_queries(full: RetrievalTask, sample: RetrievalTask, label: str, heldout_gallery: bool = False,
                       reach: np.ndarray | None = None) -> tuple[QuerySet, int]:
    """The test queries every cell can score, and how many were left out: those with relevant items in
    the whole gallery that the evaluation sample lacks (see the module docstring). With judgments,
    ``reach`` (gallery items some compared model embedded) widens the whole gallery: a document judged
    relevant that only the new model embedded is missing from the sample as much as one only the old did."""
    queries = full.queries
    n_full = full.rule.relevant_counts(queries.ids, full.gallery.ids, full.exclude)
    n_sample = sample.rule.relevant_counts(queries.ids, sample.gallery.ids, sample.exclude)
    n_reach = n_full if reach is None else np.maximum(n_full, full.rule.relevant_counts(queries.ids, reach, None))
    in_sample = n_sample > 0
    if not (n_full > 0).any():
        fix = ("--heldout-gallery left the train fold out of the gallery, and with it every relevant item; report "
               "without it" if heldout_gallery else
               "judge test queries (a BEIR folder's qrels/test.tsv) or give the items labels")
        raise InputError(label, f"none of the {queries.ids.size} {queries.name} has a relevant item in the gallery "
                         f"(relevance: {full.rule.describe()}), so no upgrade can be measured; {fix}")
    # judged documents are few and graded (nDCG's ideal counts every one): new/new is comparable only
    # with all of them in the sample; a label has many members, of which the sample holds a share
    left_out = (n_sample < n_reach) if full.rule.graded() else (n_full > 0) & ~in_sample
    in_sample &= ~left_out
    n = int(left_out.sum())
    if not n:
        return queries, 0
    if not in_sample.any():
        raise InputError(label, f"none of the {queries.ids.size} {queries.name} has its relevant items among the "
                         f"{sample.gallery.ids.size} gallery items every model embedded, so the new model cannot be "
                         "scored; embed the relevant (judged) gallery items with the new model")
    which = "every document judged relevant" if full.rule.graded() else "a relevant item"
    # queries with no relevant item anywhere stay in the set (counted, scored by no cell): named, not hidden
    none = " or none in the gallery" if (n_reach == 0).any() else ""
    cause = "not every compared model has embedded" if full.rule.graded() else "the new model has not embedded"
    name = (f"{queries.name} with {which} in the evaluation sample{none} ({n} of {queries.ids.size} left out: "
            f"{cause} their relevant items)")
    return QuerySet(name, queries.ids[~left_out]), n


def old_gallery_name(embedded: int, gallery: int, suffix: str = "") -> str:
    """'the whole gallery', or what the old model's gallery is when it did not embed every gallery item
    (``embedded`` of ``gallery``); ``suffix`` says what was taken out of it (the train fold)."""
    if embedded == gallery:
        return f"the whole gallery{suffix}"
    return f"the old gallery{suffix} (of the gallery items the old model embedded)" if suffix else \
        "the old gallery (every gallery item the old model embedded)"


def dev_task(ws: Workspace, old: str, new: str, seed: int = 0,
             max_queries: int = MAX_DEV_QUERIES, folds: dict[str, np.ndarray] | None = None) -> RetrievalTask:
    """Validation queries retrieving among the whole old gallery (see the module docstring); ``folds``: the
    models' ids per fold when the caller drew them (drawn, and kept, here otherwise)."""
    pairs = ids_under_all(ws, [old, new])
    folds = folds if folds is not None else assign_folds(ws, old, new, seed)
    judged = _judged_query_set(ws, "dev", intersect_ids(pairs, ws.query_ids()))
    gallery_ids = ws.gallery_ids(old)
    if judged.ids.size:
        queries = judged
        rule = choose_rule(ws, judged.ids, gallery_ids, "dev")
    else:
        val = folds["val"]
        rule = choose_rule(ws, val, gallery_ids, use_judgments=False)
        name = ("labelled queries (validation fold" if rule.source == "labels" else "validation items (own item") \
            + _judged_but_unembedded(ws, "dev") + ")"
        if rule.source == "labels":
            val = np.array([i for i, v in zip(val, ws.labels(val), strict=True) if v is not None], dtype=np.int64)
        queries = QuerySet(name, val)
    if queries.ids.size > max_queries:
        pick = np.sort(np.random.default_rng(seed).choice(queries.ids, max_queries, replace=False))
        queries = QuerySet(f"{queries.name}, a seeded sample of {max_queries}", pick)
    gallery = own_item_gallery(queries, GallerySet(old_gallery_name(gallery_ids.size, ws.gallery_count()), gallery_ids),
                               rule)
    return RetrievalTask(queries, gallery, rule)

