"""Search a task's gallery with its queries and score the ranking: the one place numbers are made.

Training's validation and held-out numbers, every report cell, the plan and the bundle's stated
metrics all come from :func:`score`, so for the same task and vectors they are the same number.
The search is :func:`embridge.core.evaluation.search.search` (faiss: exact up to a size, approximate beyond,
stated); a caller scoring many query sets against one fixed gallery (training's validation after
every epoch) passes a prebuilt index instead of rebuilding it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from embridge.core.evaluation.metrics import CellMetrics, choose_map_mode, evaluate, ranking_depth
from embridge.core.evaluation.search import (
    GalleryIndex,
    SearchConfig,
    SearchInfo,
    build_index,
    build_key,
    choose_method,
    search,
    search_built,
)
from embridge.core.evaluation.task import Protocol, RetrievalTask
from embridge.core.progress import ProgressFn, StopFn
from embridge.core.retrieval import rows_lost_to_exclusion

RECALL_KS = (1, 2, 5, 10, 20, 50, 100)
MAX_FULL_RANKING_ENTRIES = 5_000_000  # queries × gallery beyond which mAP@R replaces full mAP
TOP_SHOWN = 5  # gallery rows kept per query for the flipped-query browser
JUDGED_K = 10  # nDCG@10 and MRR@10


@dataclass(frozen=True)
class ScoringPlan:
    """How a task is searched and scored: search settings, ranking depth and which metrics."""

    config: SearchConfig
    map_mode: str
    map_key: str
    depth: int
    recall_ks: tuple[int, ...]
    recall_k: int  # the recall@k used for ARR and the headline
    topk: tuple[int, ...] = (1, 5)
    r_cap: int = 1000

    def to_dict(self) -> dict[str, Any]:
        return {"map_mode": self.map_mode, "map_key": self.map_key, "ranking_depth": self.depth,
                "recall_ks": list(self.recall_ks), "recall_k": self.recall_k, "r_cap": self.r_cap}


def _max_relevant(task: RetrievalTask) -> int:
    empty = np.zeros((task.queries.ids.size, 0), dtype=np.int64)
    rel, _ = task.rule.relevance(empty, task.queries.ids, task.gallery.ids, task.exclude)
    return int(rel.denominator.max(initial=0))


def scoring_plan(task: RetrievalTask, config: SearchConfig | None = None,
                 like: ScoringPlan | None = None) -> ScoringPlan:
    """The report's plan: full mAP when the exact full ranking is affordable, else mAP@R.

    ``like``: take its metrics (mAP flavour, recall@k list) and only size the ranking depth for this
    task, so cells on the whole gallery and on the evaluation sample report the same metric names.
    """
    config = config or SearchConfig()
    n_q, n_g = int(task.queries.ids.size), int(task.gallery.ids.size)
    map_mode = choose_map_mode(n_g)
    if choose_method(n_g, config) != "exact" or n_q * n_g > MAX_FULL_RANKING_ENTRIES:
        map_mode = "at_r"
    if like is not None:
        map_mode = like.map_mode
    depth = ranking_depth(map_mode, n_g, _max_relevant(task), (max(RECALL_KS),))
    depth = min(depth, n_g - rows_lost_to_exclusion(task.exclude))
    if like is not None:
        return replace(like, depth=depth)
    recall_ks = tuple(k for k in RECALL_KS if k <= depth) or (depth,)
    recall_k = max(k for k in recall_ks if k <= 10)
    config = replace(config, recall_k=config.recall_k or recall_k)
    return ScoringPlan(config, map_mode, "mAP" if map_mode == "full" else "mAP@R", depth, recall_ks, recall_k)


def selection_plan(task: RetrievalTask, config: SearchConfig | None = None) -> ScoringPlan:
    """The cheap plan of model selection: top-1 (and nDCG@10/MRR@10 with judgments) only."""
    config = config or SearchConfig()
    n_g = int(task.gallery.ids.size) - rows_lost_to_exclusion(task.exclude)
    depth = max(1, min(JUDGED_K if task.rule.graded() else 1, n_g))
    return ScoringPlan(replace(config, measure_recall=False), "none", "", depth, (), 1, topk=(1,))


@dataclass
class EvalResult:
    """Metric means over the scorable queries, per-query values, the first results, and the protocol."""

    protocol: Protocol
    metrics: dict[str, float]
    cell: CellMetrics
    top: np.ndarray  # (n_queries, <= TOP_SHOWN) gallery rows, -1 where nothing was found
    search: SearchInfo

    def value(self, name: str = "top1") -> float:
        return self.metrics[name]

    def to_dict(self) -> dict[str, Any]:
        return {"metrics": dict(self.metrics), "protocol": self.protocol.to_dict(),
                "n_scored": self.cell.n_queries, "n_without_relevant": self.cell.n_without_relevant}


def search_words(info: SearchInfo) -> str:
    if info.exact:
        return "exact cosine search"  # every vector is L2-normalised before it is searched
    return f"approximate search ({info.method}, recall vs exact {info.recall_vs_exact})"


def score(task: RetrievalTask, queries: Any, gallery: Any, plan: ScoringPlan | None = None, *,
          index: GalleryIndex | None = None, on_progress: ProgressFn | None = None,
          should_stop: StopFn | None = None) -> EvalResult:
    """Rank ``gallery`` rows (aligned with ``task.gallery.ids``) for each ``queries`` row (aligned with
    ``task.queries.ids``) and score the ranking under the task's relevance rule.

    Rows should be L2-normalised (cosine similarity); ``index``, when given, must hold ``gallery``.
    """
    plan = plan or scoring_plan(task)
    exclude = task.exclude
    if index is None:
        ranked, _, info = search(queries, gallery, plan.depth, exclude, plan.config,
                                 on_progress=on_progress, should_stop=should_stop)
    else:
        ranked, _, info = search_built(index, queries, gallery, plan.depth, exclude, plan.config,
                                       on_progress=on_progress, should_stop=should_stop)
    return score_ranking(task, ranked, plan, info)


def score_ranking(task: RetrievalTask, ranked: np.ndarray, plan: ScoringPlan, info: SearchInfo,
                  search: str | None = None) -> EvalResult:
    """Score an existing ranking (gallery rows best first, -1 padding) under the task's relevance;
    ``search`` describes how it was made when that is not a plain search (e.g. a cascade)."""
    exclude = task.exclude
    rel, grades = task.rule.relevance(ranked, task.queries.ids, task.gallery.ids, exclude)
    cell = evaluate(rel, topk=plan.topk, recall_ks=plan.recall_ks, map_mode=plan.map_mode, r_cap=plan.r_cap)
    if grades is not None:
        cell.per_query.update(judged_metrics(rel.hits, grades, task.rule.ideal_dcg(task.queries.ids, JUDGED_K)))
    protocol = task.protocol(search or search_words(info)).scored(cell.n_queries)
    return EvalResult(protocol, cell.summary(), cell, ranked[:, :TOP_SHOWN].copy(), info)


def judged_metrics(hits: np.ndarray, grades: np.ndarray, ideal: np.ndarray, k: int = JUDGED_K) -> dict[str, np.ndarray]:
    """Per query nDCG@k (gain = grade, log2 discount, ideal from all judgments) and MRR@k."""
    width = min(k, hits.shape[1])
    disc = 1.0 / np.log2(np.arange(2, width + 2))
    dcg = grades[:, :width] @ disc
    with np.errstate(divide="ignore", invalid="ignore"):
        ndcg = np.where(ideal > 0, dcg / ideal, 0.0)
    first = np.where(hits[:, :width].any(axis=1), hits[:, :width].argmax(axis=1), -1)
    mrr = 1.0 / np.where(first >= 0, first + 1.0, np.inf)
    return {f"ndcg@{k}": ndcg, f"mrr@{k}": mrr}


def gallery_index(gallery: Any, plan: ScoringPlan, cache: IndexCache | None = None) -> GalleryIndex:
    """An index of ``gallery`` to pass to :func:`score` when one gallery serves many query sets."""
    return cache.get(gallery, plan) if cache is not None else build_index(gallery, plan.config)


class IndexCache:
    """Built indexes by gallery matrix, so every task searching one gallery matrix (training's dev
    queries after every epoch, the held-out old/old and new->old cells, a report's two whole-gallery
    cells) builds its index once. Keyed on the matrix object itself (kept alive here) and on what
    the build depends on (:func:`embridge.core.evaluation.search.build_key`); the local engine only."""

    def __init__(self) -> None:
        self._built: dict[tuple[Any, ...], tuple[Any, GalleryIndex]] = {}
        self.builds = 0

    def usable(self, plan: ScoringPlan) -> bool:
        return plan.config.engine == "local"

    def get(self, gallery: Any, plan: ScoringPlan) -> GalleryIndex:
        key = (id(gallery), build_key(int(gallery.shape[0]), plan.config))
        hit = self._built.get(key)
        if hit is None or hit[0] is not gallery:
            hit = (gallery, build_index(gallery, plan.config))
            self._built[key] = hit
            self.builds += 1
        return hit[1]
