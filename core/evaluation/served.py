"""What a partially backfilled system serves: the measured quality of the gallery as it stands.

After ``embridge backfill`` the serving gallery is mixed: the items the backfill gave new vectors are
searched by the raw new query, ⟨n_q, n_g⟩, and every other item by the upgraded system's query against
its old vector, ⟨h(n_q), o_g⟩ (a forward layer: the new query against the transformed old vector),
one ranking per query merged by score, as the partial-backfill curves model it. The curves measure a
share β of the evaluation sample in a policy's order; this measures the items the latest backfill
actually wrote, over the whole old gallery, so the number is the system the workspace serves now.

The search is exact and reuses :func:`embridge.core.retrieval.exact_topk`: a query is the pair
[h(n_q), n_q] and a gallery row is [o_g, 0] or [0, n_g], so one inner product is the right one of the two.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from embridge.core.adapters.adapt_arrays import HEAD_KINDS
from embridge.core.adapters.adapter import Adapter
from embridge.core.evaluation.gather import MatrixMaker
from embridge.core.evaluation.scoring import EvalResult, ScoringPlan, score_ranking
from embridge.core.evaluation.search import SearchInfo
from embridge.core.evaluation.task import RetrievalTask
from embridge.core.l2 import l2_normalize
from embridge.core.retrieval import exact_topk
from embridge.core.store import Workspace


@dataclass(frozen=True)
class Backfilled:
    """The latest completed backfill of a model: its run, the vector set it wrote and that set's items."""

    run_id: int
    vector_set: int
    ids: np.ndarray
    order: str = "stored"  # "planner": the plan's partial backfill, in its policy's order

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "vector_set": self.vector_set, "items": int(self.ids.size), "order": self.order}

    def chosen_in(self, ws: Workspace, model: str, sample_ids: np.ndarray) -> int:
        """How many of ``sample_ids`` hold ``model``'s vectors only because this backfill chose them in the
        planner's order (none for a backfill of every item): items the evaluation sample did not draw at random."""
        if self.order != "planner":
            return 0
        backfilled = {(r.get("metrics") or {}).get("vector_set") for r in ws.runs("backfill")}
        others = [ws.vector_set_ids(int(s["id"])) for s in ws.vector_sets(model) if int(s["id"]) not in backfilled]
        chosen = np.setdiff1d(self.ids, np.concatenate(others)) if others else self.ids
        return int(np.isin(sample_ids, chosen).sum())


def latest_backfill(ws: Workspace, model: str) -> Backfilled | None:
    """The backfill the system serves now: :meth:`Workspace.latest_backfill_run`, with its items."""
    run = ws.latest_backfill_run(model)
    if run is None:
        return None
    vector_set = int(run["metrics"]["vector_set"])
    config = run.get("config") if isinstance(run.get("config"), dict) else {}
    return Backfilled(int(run["id"]), vector_set, ws.vector_set_ids(vector_set), str(config.get("order") or "stored"))


def cascade_new_ids(ws: Workspace, new: str, gallery_ids: np.ndarray, backfilled: Backfilled | None) -> np.ndarray:
    """The items of ``gallery_ids`` whose new vectors a cascade re-ranks by: those the served backfill (the
    latest) gave new vectors, as the served gallery counts them; without one, every item when the new model
    embedded them all, else none.

    An evaluation sample smaller than the gallery holds, by construction, the relevant items of every
    query scored (a query whose relevant items it lacks is left out), and a judged sample takes the
    judged documents first: re-ranking by its new vectors would lift exactly the right answers above
    the rest, whose scores come through the layer. A backfill chooses its items without the judgments,
    so its items are what a cascade would really serve with."""
    gallery_ids = np.asarray(gallery_ids, dtype=np.int64)
    if backfilled is not None:
        return gallery_ids[np.isin(gallery_ids, backfilled.ids)]
    if np.isin(gallery_ids, ws.ids_with_vectors(new)).all():
        return gallery_ids
    return gallery_ids[:0]


class _MixedRows:
    """The served gallery as one row-sliceable matrix: [o_g, 0] for an old item, [0, n_g] for a backfilled
    one (both halves L2-normalised), built a slice at a time as :func:`exact_topk` reads it."""

    def __init__(self, old: np.ndarray, new_part: np.ndarray, rows: np.ndarray) -> None:
        self.old, self.new_part = old, new_part
        self.where = np.full(len(old), -1, dtype=np.int64)
        self.where[rows] = np.arange(len(rows))
        self.shape = (len(old), old.shape[1] + new_part.shape[1])

    def __getitem__(self, span: slice) -> np.ndarray:
        d_old = self.old.shape[1]
        out = np.zeros((len(self.where[span]), self.shape[1]), dtype=np.float32)
        out[:, :d_old] = l2_normalize(np.asarray(self.old[span], dtype=np.float32))
        local = self.where[span]
        backfilled = np.flatnonzero(local >= 0)
        out[backfilled, :d_old] = 0.0
        out[backfilled, d_old:] = l2_normalize(np.asarray(self.new_part[local[backfilled]], dtype=np.float32))
        return out


def served_result(task: RetrievalTask, adapter: Adapter, q_up: np.ndarray, q_new: np.ndarray,
                  g_up: np.ndarray, g_new_part: np.ndarray, rows: np.ndarray, plan: ScoringPlan) -> EvalResult:
    """Score the served gallery: rows ``rows`` of ``g_up`` (the upgraded system's gallery) replaced by
    their new vectors ``g_new_part`` (searched by ``q_new``), every other row searched by ``q_up``.

    The backfilled items are searched by the vectors ``backfill`` stored, the new model's own, for a bct or
    bt2 layer too: its head/head ceiling indexes the head's output, which no backfill writes."""
    head = adapter.kind in HEAD_KINDS
    queries = np.hstack([l2_normalize(np.asarray(q_up, dtype=np.float32)),
                         l2_normalize(np.asarray(q_new, dtype=np.float32))])
    ranked, _ = exact_topk(queries, _MixedRows(g_up, g_new_part, rows), plan.depth, task.exclude)
    stored = f" as the backfill stored them, not through the {adapter.kind} head" if head else ""
    words = (f"exact cosine search of the served gallery (backfilled items by their new vectors{stored}, the rest "
             "as the upgraded system searches them), one ranking merged by score")
    result = score_ranking(task, ranked, plan, SearchInfo("exact", {}, True, None), words)
    result.protocol = replace(result.protocol, new_vectors=int(len(rows)))
    return result


def measure_served(backfilled: Backfilled | None, task: RetrievalTask, adapter: Adapter, new: str,
                   q_up: np.ndarray, q_new: np.ndarray, g_up: np.ndarray, plan: ScoringPlan,
                   maker: MatrixMaker) -> tuple[Backfilled, EvalResult] | None:
    """The served gallery's numbers after ``backfilled``, the latest backfill of ``new`` when the report
    began (read then, as its sample is: a backfill finishing meanwhile is not half in the report), or None
    without one, for a cascade, whose own cell already re-ranks by the backfill's new vectors
    (:func:`cascade_new_ids`), or when the backfill covers no gallery item."""
    if adapter.kind == "cascade" or backfilled is None:
        return None
    gallery_ids = task.gallery.ids
    rows = np.flatnonzero(np.isin(gallery_ids, backfilled.ids))
    if not rows.size:
        return None
    g_new_part = maker.matrix(gallery_ids[rows], [new])
    return backfilled, served_result(task, adapter, q_up, q_new, g_up, g_new_part, rows, plan)
