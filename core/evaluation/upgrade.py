"""The numbers of an upgrade: old/old, new/new (the ceiling) and the upgraded system, on the test tasks.

Cells that need only the old gallery's vectors (old/old and the upgraded system: new→old, fusion,
or a forward transform of the stored old vectors) search the whole old gallery; new/new and the
head's own space (bct, bt2) need the new model's gallery vectors and search the evaluation sample.
When that sample is smaller than the old gallery, old/old and the upgraded system are also scored on
the sample (``sample_floor``, ``sample_upgraded``): whether the new model is better (new/new against
old/old) and gain retained ((upgraded − old/old) / (new/new − old/old)) are measured on that one
gallery, never across two, while the criterion (upgraded > old/old) stays on the whole old gallery.
Training's held-out numbers and the report's cells both come from :func:`score_upgrade`, on
vectors gathered by the same :class:`~embridge.core.evaluation.gather.MatrixMaker`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from embridge.core.adapters.adapt_arrays import (
    HEAD_KINDS,
    adapt_gallery,
    adapt_queries,
    new_space_vectors,
    query_inputs,
)
from embridge.core.adapters.adapter import Adapter
from embridge.core.adapters.cascade import cascade_rank
from embridge.core.evaluation.compat import NOT_BETTER, criterion, gain_note, gain_retained, improvement_ci
from embridge.core.evaluation.gather import MatrixMaker
from embridge.core.evaluation.relevance import OWN_ITEM
from embridge.core.evaluation.scoring import (
    EvalResult,
    IndexCache,
    ScoringPlan,
    score,
    score_ranking,
    scoring_plan,
)
from embridge.core.evaluation.search import SearchConfig, SearchInfo
from embridge.core.evaluation.served import Backfilled, cascade_new_ids, latest_backfill
from embridge.core.evaluation.tasks import UpgradeTasks, upgrade_tasks
from embridge.core.progress import StopFn
from embridge.core.store import Workspace

OLD_OLD, NEW_NEW, NEW_OLD, NEW_FCT, HEAD_HEAD, OLD_NEW = (
    "old/old", "new/new", "new→old", "new/fct(old)", "head/head", "old/new")


def upgraded_cell(adapter: Adapter) -> str:
    return NEW_FCT if adapter.direction == "forward" else NEW_OLD


def ceiling_cell(adapter: Adapter) -> str:
    """The full-backfill cell: the head's own space for bct/bt2, else the raw new model."""
    return HEAD_HEAD if adapter.kind in HEAD_KINDS else NEW_NEW


@dataclass
class UpgradeVectors:
    """Query and gallery matrices of the main cells (rows aligned with the tasks' ids)."""

    q_old: np.ndarray
    q_new: np.ndarray
    q_up: np.ndarray
    q_head: np.ndarray
    g_old_full: np.ndarray
    g_up_full: np.ndarray
    g_new: np.ndarray  # the evaluation sample under the new model
    g_head: np.ndarray
    g_new_part: np.ndarray | None = None  # cascade: new vectors of the gallery rows ``g_new_rows``
    g_new_rows: np.ndarray | None = None
    g_new_sample_rows: np.ndarray | None = None  # cascade: rows of the evaluation sample it re-ranks by ``g_new``
    g_old_sample: np.ndarray | None = None  # the evaluation sample under the old model, when it is not the whole gallery
    g_up_sample: np.ndarray | None = None  # that sample as the upgraded system searches it (a forward layer's transform)


def sample_is_smaller(tasks: UpgradeTasks) -> bool:
    """Whether new/new searched fewer items than old/old (the evaluation sample, not the whole old gallery)."""
    return not np.array_equal(tasks.sample.gallery.ids, tasks.full.gallery.ids)


def upgrade_vectors(maker: MatrixMaker, tasks: UpgradeTasks, adapter: Adapter, old: str, new: str,
                    backfilled: Backfilled | None = None) -> UpgradeVectors:
    """Gather (and adapt) every matrix the main cells need; ``backfilled``: the backfill served now, whose
    items' new vectors a cascade re-ranks by (:func:`~embridge.core.evaluation.served.cascade_new_ids`)."""
    q_ids, full_ids, sample_ids = tasks.full.queries.ids, tasks.full.gallery.ids, tasks.sample.gallery.ids
    forward, head = adapter.direction == "forward", adapter.kind in HEAD_KINDS
    q_old, q_new = maker.matrix(q_ids, [old]), maker.matrix(q_ids, [new])
    q_up = q_new if forward else maker.matrix(q_ids, query_inputs(adapter, new, old),  # old vectors: fusion's only
                                              lambda n, o=None: adapt_queries(adapter, n, o))
    g_old_full = maker.matrix(full_ids, [old])
    g_up_full = maker.matrix(full_ids, [old], lambda o: adapt_gallery(adapter, o)) if forward else g_old_full
    g_new = maker.matrix(sample_ids, [new])
    q_head = maker.matrix(q_ids, [new], lambda n: new_space_vectors(adapter, n)) if head else q_new
    g_head = maker.matrix(sample_ids, [new], lambda n: new_space_vectors(adapter, n)) if head else g_new
    vecs = UpgradeVectors(q_old, q_new, q_up, q_head, g_old_full, g_up_full, g_new, g_head)
    if sample_is_smaller(tasks):
        vecs.g_old_sample = maker.matrix(sample_ids, [old])
        vecs.g_up_sample = (maker.matrix(sample_ids, [old], lambda o: adapt_gallery(adapter, o)) if forward
                            else vecs.g_old_sample)
    if adapter.kind == "cascade" and getattr(adapter, "new_vectors", True):  # served items re-rank by their new vectors
        served = cascade_new_ids(maker.ws, new, full_ids, backfilled)
        rows = np.flatnonzero(np.isin(full_ids, served))
        vecs.g_new_rows, vecs.g_new_part = rows, maker.matrix(full_ids[rows], [new]) if rows.size else None
        vecs.g_new_sample_rows = np.flatnonzero(np.isin(sample_ids, served))
    return vecs


def cascade_result(task: Any, adapter: Adapter, vecs: UpgradeVectors, plan: ScoringPlan,
                   on_sample: bool = False) -> EvalResult:
    """The upgraded cell of a cascade: the old index recalls K, the new model re-ranks them.

    ``on_sample``: over the evaluation sample. Every sample item has its new vector, but only those the
    cascade serves with (the items of the whole gallery it re-ranks by their new vectors) re-rank by it;
    the rest go through the layer, as on the whole gallery."""
    k = int(adapter.k)
    if on_sample:
        g_old = vecs.g_old_sample
        rows = vecs.g_new_sample_rows if vecs.g_new_sample_rows is not None else np.zeros(0, dtype=np.int64)
        part = vecs.g_new[rows] if len(rows) else None
    else:
        g_old, rows = vecs.g_old_full, vecs.g_new_rows
        part = vecs.g_new_part if vecs.g_new_rows is not None and len(vecs.g_new_rows) else None
    ranking = cascade_rank(vecs.q_old, g_old, vecs.q_new, part, rows if part is not None else None, k,
                           lambda x: adapt_queries(adapter.base, x), exclude=task.exclude, depth=plan.depth)
    info = SearchInfo("exact", {}, True, None)
    words = (f"cascade: exact old-index recall of {k}, re-ranked by the new model" if part is not None else
             f"cascade: exact old-index recall of {k}, re-ranked through the {adapter.base.kind} layer")
    result = score_ranking(task, ranking.ids, plan, info, words)
    # its number holds only with those new vectors stored: the planner counts them in the cascade's cost
    result.protocol = replace(result.protocol, new_vectors=0 if part is None else len(rows))
    return result


@dataclass
class UpgradeResults:
    """The scored main cells, by name, and which are the upgraded and ceiling cells."""

    tasks: UpgradeTasks
    cells: dict[str, EvalResult]
    upgraded: str
    ceiling: str
    kind: str
    plan: ScoringPlan | None = None
    sample_floor: EvalResult | None = None  # old/old on the evaluation sample, when that is not the whole gallery
    sample_upgraded: EvalResult | None = None  # the upgraded system on that sample

    def headline(self) -> dict[str, Any]:
        """The headline numbers (the command-line contract's keys), each with where it was measured.

        ``old_old_sample_*`` / ``upgraded_sample_*``: old/old and the upgraded system on new/new's gallery
        (None when that is the whole gallery), on which the new model is compared and gain retained measured."""
        oo, nn = self.cells[OLD_OLD].metrics, self.cells[NEW_NEW].metrics
        up, cc = self.cells[self.upgraded].metrics, self.cells[self.ceiling].metrics
        bf = None if self.sample_floor is None else self.sample_floor.metrics
        us = None if self.sample_upgraded is None else self.sample_upgraded.metrics
        by_item = self.tasks.full.rule.source == OWN_ITEM

        def gain(key: str) -> float | None:
            if bf is None or us is None:
                return gain_retained(up[key], oo[key], cc[key])
            return gain_retained(us[key], bf[key], cc[key])

        def note(key: str) -> str | None:
            return gain_note((bf or oo)[key], cc[key])

        out: dict[str, Any] = {
            "old_old_top1": oo["top1"], "new_new_top1": nn["top1"], "ceiling_top1": cc["top1"],
            "old_old_sample_top1": None if bf is None else bf["top1"],
            "upgraded_sample_top1": None if us is None else us["top1"],
            "upgraded_top1": up["top1"], "gain_retained": None if by_item else gain("top1"),
            "gain_retained_note": None if by_item else note("top1"),
            "compatible": None if by_item else criterion(up["top1"], oo["top1"]),
            "n_queries": self.cells[OLD_OLD].cell.n_queries,
            "relevance": self.tasks.full.rule.describe(),
            "protocols": {name: r.protocol.to_dict() for name, r in self.cells.items()},
            # on the whole gallery, where the criterion is: is the upgraded system better by more than noise?
            "improvement_ci": None if by_item else {
                key: improvement_ci(self.cells[OLD_OLD].cell, self.cells[self.upgraded].cell, key)
                for key in ("top1", "ndcg@10") if key in up},
        }
        for key in ("ndcg@10", "mrr@10"):
            if key in up:
                out[key] = up[key]
                out[f"old_old_{key}"], out[f"new_new_{key}"], out[f"ceiling_{key}"] = oo[key], nn[key], cc[key]
                out[f"old_old_sample_{key}"] = None if bf is None else bf[key]
                out[f"upgraded_sample_{key}"] = None if us is None else us[key]
                out[f"compatible_{key}"] = criterion(up[key], oo[key])
                out[f"gain_retained_{key}"] = gain(key)
                if out[f"gain_retained_{key}"] is None and note(key):
                    out[f"gain_retained_{key}_note"] = NOT_BETTER
        return out


def cell_tasks(tasks: UpgradeTasks, adapter: Adapter, vecs: UpgradeVectors) -> list[tuple[str, Any, Any, Any]]:
    """(cell, task, queries, gallery) of the main cells."""
    out = [(OLD_OLD, tasks.full, vecs.q_old, vecs.g_old_full), (NEW_NEW, tasks.sample, vecs.q_new, vecs.g_new),
           (upgraded_cell(adapter), tasks.full, vecs.q_up, vecs.g_up_full)]
    if adapter.kind in HEAD_KINDS:
        out.append((HEAD_HEAD, tasks.sample, vecs.q_head, vecs.g_head))
    return out


def score_upgrade(tasks: UpgradeTasks, adapter: Adapter, vecs: UpgradeVectors, search: SearchConfig | None = None,
                  should_stop: StopFn | None = None, indexes: IndexCache | None = None) -> UpgradeResults:
    """Score the main cells; every cell of one task uses that task's scoring plan. Cells searching
    the same gallery matrix (old/old and new->old search the one old gallery) share one index."""
    full = scoring_plan(tasks.full, search)
    plans = {id(tasks.full): full, id(tasks.sample): scoring_plan(tasks.sample, search, like=full)}
    indexes = indexes if indexes is not None else IndexCache()
    cells = {}
    for name, task, q, g in cell_tasks(tasks, adapter, vecs):
        plan = plans[id(task)]
        index = indexes.get(g, plan) if indexes.usable(plan) else None
        cells[name] = score(task, q, g, plan, index=index, should_stop=should_stop)
    sample_floor = sample_upgraded = None
    if vecs.g_old_sample is not None:
        on = plans[id(tasks.sample)]
        sample_floor = score(tasks.sample, vecs.q_old, vecs.g_old_sample, on, should_stop=should_stop)
        sample_upgraded = (cascade_result(tasks.sample, adapter, vecs, on, on_sample=True) if adapter.kind == "cascade"
                           else score(tasks.sample, vecs.q_up, vecs.g_up_sample, on, should_stop=should_stop))
    if adapter.kind == "cascade":
        cells[upgraded_cell(adapter)] = cascade_result(tasks.full, adapter, vecs, full)
    elif adapter.direction == "forward":  # the gallery it searched is the old one moved by the layer
        moved = cells[upgraded_cell(adapter)]
        moved.protocol = replace(moved.protocol, search=f"gallery's old vectors moved into the new space by the "
                                 f"{adapter.kind} layer, {moved.protocol.search}")
    elif adapter.kind == "fusion":  # its queries are fused vectors: the protocol says how, as the cascade's does
        fused, alpha = cells[upgraded_cell(adapter)], float(adapter.alpha)
        fused.protocol = replace(fused.protocol, search=f"queries fused as {alpha:g} × old + {1 - alpha:g} × "
                                 f"{adapter.base.kind}(new), {fused.protocol.search}")
    return UpgradeResults(tasks, cells, upgraded_cell(adapter), ceiling_cell(adapter), adapter.kind, plan=full,
                          sample_floor=sample_floor, sample_upgraded=sample_upgraded)


def measure_upgrade(ws: Workspace, adapter: Adapter, old: str, new: str, *, heldout_gallery: bool = False,
                    seed: int = 0, search: SearchConfig | None = None, maker: MatrixMaker | None = None,
                    should_stop: StopFn | None = None, indexes: IndexCache | None = None,
                    tasks: UpgradeTasks | None = None) -> UpgradeResults:
    """Held-out numbers of ``adapter`` on the workspace's test queries (see the module docstring);
    ``tasks``: those :func:`upgrade_tasks` already gave for this pair, settings and seed."""
    tasks = tasks or upgrade_tasks(ws, [old, new], heldout_gallery, seed)
    vecs = upgrade_vectors(maker or MatrixMaker(ws), tasks, adapter, old, new, latest_backfill(ws, new))
    return score_upgrade(tasks, adapter, vecs, search, should_stop, indexes)
