"""Report cells M(query side, gallery side): the vectors each side uses and their retrieval metrics.

Cells of an upgrade report (METHODS.md "Retrieval protocol"):

- ``old/old``: old queries against the old gallery (today's system, the floor);
- ``new/new``: new queries against the new gallery (full backfill, the ceiling);
- ``new→old``: queries of the upgraded system (h(new), bt2's old-compatible part, or fusion's mixed
  query) against the untouched old gallery; ``new/fct(old)`` instead for a forward layer: new queries
  against the transformed old gallery;
- ``head/head`` for bct and bt2: the head's own output on both sides, what a full backfill with the
  head would index (then the ceiling);
- ``old/new`` on request: the rollback direction, old queries against a backfilled gallery served
  in the old space (h(new) of each item), or old queries through a forward layer against new vectors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from embridge.core.adapters import adapt_gallery, adapt_queries, new_space_vectors
from embridge.core.adapters.adapt_arrays import HEAD_KINDS, query_inputs
from embridge.core.adapters.adapter import Adapter
from embridge.core.evaluation.gather import MatrixMaker
from embridge.core.evaluation.metrics import CellMetrics
from embridge.core.evaluation.scoring import TOP_SHOWN, EvalResult, ScoringPlan, score, scoring_plan
from embridge.core.evaluation.search import SearchInfo
from embridge.core.evaluation.task import Protocol, RetrievalTask
from embridge.core.evaluation.upgrade import (
    HEAD_HEAD,
    NEW_FCT,
    NEW_NEW,
    NEW_OLD,
    OLD_NEW,
    OLD_OLD,
    ceiling_cell,
    upgraded_cell,
)
from embridge.core.progress import ProgressFn, StopFn
from embridge.core.report.sample import EvalSample

__all__ = ["HEAD_HEAD", "NEW_FCT", "NEW_NEW", "NEW_OLD", "OLD_NEW", "OLD_OLD", "TOP_SHOWN", "CellResult", "ScoringPlan",
           "Sides", "cell_specs", "ceiling_cell", "score_cell", "scoring_plan", "search_summary", "upgrade_sides",
           "upgraded_cell"]


@dataclass
class CellResult:
    """One scored cell: per-query metrics, the first results of each query, how it searched and where."""

    name: str
    query_side: str
    gallery_side: str
    metrics: CellMetrics
    top: np.ndarray  # (n_queries, <= TOP_SHOWN) gallery rows, -1 where nothing was found
    search: SearchInfo
    protocol: Protocol | None = None
    gallery: str = "sample"  # "old" (the whole old gallery) or "sample" (the evaluation sample)

    @classmethod
    def of(cls, name: str, query_side: str, gallery_side: str, result: EvalResult, gallery: str) -> CellResult:
        return cls(name, query_side, gallery_side, result.cell, result.top, result.search, result.protocol, gallery)


def score_cell(name: str, query_side: str, gallery_side: str, queries: np.ndarray, gallery: np.ndarray,
               task: RetrievalTask, plan: ScoringPlan, on_progress: ProgressFn | None = None,
               should_stop: StopFn | None = None, which: str = "sample") -> CellResult:
    """Search ``queries`` in ``gallery`` and score the ranking under the task's relevance."""
    result = score(task, queries, gallery, plan, on_progress=on_progress, should_stop=should_stop)
    return CellResult.of(name, query_side, gallery_side, result, which)


@dataclass
class Sides:
    """Every query-side and gallery-side matrix an upgrade report needs (shared where identical)."""

    q_old: np.ndarray
    q_new: np.ndarray
    q_up: np.ndarray
    q_head: np.ndarray
    g_old: np.ndarray
    g_new: np.ndarray
    g_up: np.ndarray
    g_head: np.ndarray
    g_adapted: np.ndarray  # the bridged counterpart of each item, used by the informed backfill policies
    q_roll: np.ndarray | None = None  # rollback cell, when asked for
    g_roll: np.ndarray | None = None


def upgrade_sides(maker: MatrixMaker, sample: EvalSample, adapter: Adapter, old: str, new: str,
                  rollback: bool = False) -> Sides:
    """Gather and adapt the vectors of both sides (see :mod:`embridge.core.adapters.adapt_arrays` for each kind)."""
    q_ids, g_ids = sample.query_ids, sample.gallery_ids
    forward = adapter.direction == "forward"
    head = adapter.kind in HEAD_KINDS
    q_old, q_new = maker.matrix(q_ids, [old]), maker.matrix(q_ids, [new])
    g_old, g_new = maker.matrix(g_ids, [old]), maker.matrix(g_ids, [new])
    reads = query_inputs(adapter, new, old)  # the new vectors, and the old ones only where the layer reads them

    def upgraded(n: np.ndarray, o: np.ndarray | None = None) -> np.ndarray:
        return adapt_queries(adapter, n, o)

    q_up = q_new if forward else maker.matrix(q_ids, reads, upgraded)
    g_up = maker.matrix(g_ids, [old], lambda o: adapt_gallery(adapter, o)) if forward else g_old
    q_head = maker.matrix(q_ids, [new], lambda n: new_space_vectors(adapter, n)) if head else q_new
    g_head = maker.matrix(g_ids, [new], lambda n: new_space_vectors(adapter, n)) if head else g_new
    g_adapted = g_new if forward else maker.matrix(g_ids, reads, upgraded)
    sides = Sides(q_old, q_new, q_up, q_head, g_old, g_new, g_up, g_head, g_adapted)
    if rollback and forward:
        sides.q_roll, sides.g_roll = maker.matrix(q_ids, [old], lambda o: adapt_gallery(adapter, o)), g_new
    elif rollback:
        sides.q_roll, sides.g_roll = q_old, g_adapted
    return sides


def cell_specs(adapter: Adapter, sides: Sides) -> list[tuple[str, str, str, np.ndarray, np.ndarray]]:
    """(name, query side, gallery side, queries, gallery) of every cell this adapter's report has
    (the matrices are the evaluation sample's; the main cells are scored by
    :func:`embridge.core.evaluation.upgrade.score_upgrade`, on the whole old gallery where they can be)."""
    kind = adapter.kind
    forward = adapter.direction == "forward"
    up_query = {"fusion": f"fusion of the old query and h(new query), α = {float(getattr(adapter, 'alpha', 0)):g}",
                "cascade": f"cascade: old query recalls K = {int(getattr(adapter, 'k', 0))}, new query re-ranks"
                           + ("" if getattr(adapter, "new_vectors", True) else " through the layer"),
                "bt2": "bt2 head, old-compatible part"}.get(kind, "new query" if forward else f"{kind}(new query)")
    specs = [(OLD_OLD, "old model", "old gallery", sides.q_old, sides.g_old),
             (NEW_NEW, "new model", "new gallery (full backfill)", sides.q_new, sides.g_new)]
    if forward:
        specs.append((NEW_FCT, up_query, f"{kind}(old gallery)", sides.q_up, sides.g_up))
    elif kind == "cascade" and getattr(adapter, "new_vectors", True):  # stored new vectors re-rank: not free
        specs.append((NEW_OLD, up_query, "old gallery, recalled items re-ranked by their new vectors where stored",
                      sides.q_up, sides.g_up))
    else:
        specs.append((NEW_OLD, up_query, "old gallery (no backfill)", sides.q_up, sides.g_up))
    if kind in HEAD_KINDS:
        specs.append((HEAD_HEAD, f"{kind} head(new query)", f"{kind} head(new gallery)", sides.q_head, sides.g_head))
    if sides.q_roll is not None and sides.g_roll is not None:
        roll = ((f"{kind}(old query)", "new gallery") if forward
                else ("old model", f"{kind}(new gallery), in the old space"))
        specs.append((OLD_NEW, *roll, sides.q_roll, sides.g_roll))
    return specs



def search_summary(cells: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One statement for all cells: the method, its parameters and the worst measured recall."""
    first = next(iter(cells.values()))
    recalls = [c["recall_vs_exact"] for c in cells.values() if c.get("recall_vs_exact") is not None]
    exact = all(c["exact"] for c in cells.values())
    params = {k: v for k, v in first["params"].items() if k not in ("dim",)}
    if exact:
        sizes = sorted({c["params"].get("gallery_size") for c in cells.values() if c["params"].get("gallery_size")},
                       reverse=True)
        over = (f"{sizes[0]} gallery vectors" if len(sizes) == 1 else
                "galleries of " + " and ".join(f"{n} ({', '.join(name for name, c in cells.items() if c['params'].get('gallery_size') == n)})"
                                               for n in sizes) + " vectors")
        text = f"Exact cosine search (faiss IndexFlatIP over L2-normalised vectors) over {over}."
    else:
        shown = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in params.items()
                          if k not in ("recall_k", "recall_sample") and v is not None)
        text = (f"Approximate search ({first['method']}: {shown}); recall@{params.get('recall_k')} against exact "
                f"search, measured on {params.get('recall_sample')} queries: "
                + ", ".join(f"{n} {c['recall_vs_exact']:.4f}" for n, c in cells.items()
                            if c.get("recall_vs_exact") is not None) + ".")
    return {"method": first["method"], "exact": exact, "params": params,
            "recall_vs_exact": min(recalls) if recalls else None, "cells": cells, "statement": text}
