"""Partial backfill: retrieval quality as a growing share β of the gallery is re-embedded.

During a partial backfill the gallery is mixed. A backfilled item is represented by its new vector
n_g and scored against the raw new query, ⟨n_q, n_g⟩; every other item keeps its old vector o_g and
is scored against the adapted query, ⟨h(n_q), o_g⟩. Each query gets one ranking merged by score.

Ordering policies (which items to re-embed first; the backfilled set at β is a prefix of the order):
- ``random``: a seeded permutation. One draw of β·n items can score a few points above or below
  another, and a plan picking the first β whose curve reaches a target would pick a lucky draw; the
  curve is the mean of ``RANDOM_DRAWS`` draws (``RANDOM_DRAWS_LARGE`` where a draw's pass is large),
  with the lowest and highest of them at each β (``spread``), what one random backfill of that share
  may come to.
- ``least_confident``: smallest self-retrieval margin first. An item's margin is
  ⟨h(n_g), o_g⟩ − max_{g'≠g} ⟨h(n_g), o_g'⟩: how clearly the bridged system finds the item's own old
  vector when the item itself is the query. Items the bridge confuses are backfilled first.
- ``largest_residual``: largest adapter residual ‖h(n_g) − o_g‖ first.
Both informed policies need h(n_g), the adapted new vectors of the gallery items.

The curve at β = 0 is the new→old cell, at β = 1 the new/new cell. In between it need not rise
steadily: new/new and adapted/old scores live on different scales, and when one side scores higher
across the board its items crowd the merged ranking. The curve shows that as measured. Its area (trapezoid over β) is
the backfilling metric of FastFill. The two score matrices are computed per block of queries, and
per policy only top-k candidates are kept: one pass over each prefix (new scores) and suffix (old
scores) of the order gives every β at once, so the cost does not grow with the number of steps.

Relevance is a label or the query's own item (``top1``/``top5``: a relevant item within the first k),
or graded relevance judgments (:class:`JudgedRelevance`): then ``top1``/``top5`` are success@1/@5 and
the curves add ``ndcg@10`` and ``mrr@10``, computed from the merged top 10 by the function the
report's cells use (:func:`embridge.core.evaluation.scoring.judged_metrics`), so β = 0 and β = 1
give the cells' own numbers on the evaluation sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from embridge.core.errors import InputError
from embridge.core.evaluation.relevance import RelevanceRule
from embridge.core.evaluation.scoring import JUDGED_K, judged_metrics
from embridge.core.evaluation.search import SearchConfig, search
from embridge.core.progress import ProgressFn, StopFn, check_stop, no_progress
from embridge.core.retrieval import merge_topk

POLICIES = ("random", "least_confident", "largest_residual")
# the random order draws from a stream of its own: the folds are default_rng(seed) permutations of the
# same paired items, so the same draw here put every test-fold item (the evaluation's queries) last
RANDOM_STREAM = 0x6261636B
# candidates kept beyond the deepest cut-off, so that items tied with the k-th are still there to be
# ranked by gallery row (a running top k keeps whichever tied item it met first)
TIE_SLACK = 8
RANDOM_DRAWS = 8  # random orders the random curve averages (each one more pass of the curve's fold)
RANDOM_DRAWS_LARGE = 3  # where the queries x sample scores pass LARGE_CURVE: each draw costs a full pass
LARGE_CURVE = 50_000_000  # 2,500 queries against a 20,000-item sample


@dataclass
class BackfillCurve:
    """One policy's curve: metric values per β and the area under each."""

    policy: str
    betas: np.ndarray
    values: dict[str, np.ndarray] = field(default_factory=dict)
    # random orders: per metric, the lowest and highest of the averaged draws at each β (n_betas x 2)
    spread: dict[str, np.ndarray] = field(default_factory=dict)
    draws: int = 1

    @property
    def areas(self) -> dict[str, float]:
        return {name: float(np.trapezoid(v, self.betas)) for name, v in self.values.items()}

    def to_dict(self) -> dict[str, Any]:
        out = {
            "policy": self.policy,
            "betas": self.betas.tolist(),
            "values": {name: v.tolist() for name, v in self.values.items()},
            "areas": self.areas,
        }
        if self.spread:
            out.update(draws=self.draws, spread={name: v.tolist() for name, v in self.spread.items()})
        return out


def averaged(policy: str, draws: list[BackfillCurve]) -> BackfillCurve:
    """One curve from several draws of an order: their mean, and their lowest and highest, at each β."""
    names = list(draws[0].values)
    stacked = {name: np.stack([d.values[name] for d in draws]) for name in names}
    return BackfillCurve(policy, draws[0].betas, {name: v.mean(axis=0) for name, v in stacked.items()},
                         {name: np.stack([v.min(axis=0), v.max(axis=0)], axis=1) for name, v in stacked.items()},
                         len(draws))


@dataclass(frozen=True)
class JudgedRelevance:
    """Graded relevance of the curve's queries (``query_ids``) to its gallery rows (``gallery_ids``)."""

    rule: RelevanceRule
    query_ids: np.ndarray
    gallery_ids: np.ndarray
    _column: dict[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_column", {int(g): j for j, g in enumerate(np.asarray(self.gallery_ids).tolist())})

    def grades(self, start: int, stop: int) -> np.ndarray:
        """(stop - start, n_gallery) grades of queries ``start:stop`` (0: unjudged or not relevant)."""
        column = self._column
        out = np.zeros((stop - start, len(column)), dtype=np.float32)
        for i, q in enumerate(np.asarray(self.query_ids[start:stop], dtype=np.int64).tolist()):
            for item, grade in (self.rule.judged.get(q) or {}).items():
                j = column.get(int(item))
                if j is not None:
                    out[i, j] = grade
        return out

    def ideal(self, start: int, stop: int) -> np.ndarray:
        return self.rule.ideal_dcg(np.asarray(self.query_ids[start:stop], dtype=np.int64), JUDGED_K)


def residual_norms(gallery_adapted: np.ndarray, gallery_old: np.ndarray, block: int = 4_096) -> np.ndarray:
    """‖h(n_g) − o_g‖ per gallery item, a block of rows at a time through one reused buffer (the
    whole difference matrix would be as large as the sample's vectors, touched once)."""
    ha, o = np.asarray(gallery_adapted, np.float32), np.asarray(gallery_old, np.float32)
    out = np.empty(len(o), dtype=np.float32)
    buffer = np.empty((min(block, len(o)), o.shape[1]), dtype=np.float32)
    for start in range(0, len(o), block):
        stop = min(start + block, len(o))
        diff = np.subtract(ha[start:stop], o[start:stop], out=buffer[:stop - start])
        out[start:stop] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    return out


# A sample larger than this is ranked for the least-confident order by an approximate search: an exact
# search of the sample against itself grows with its square (65 s of a 200k-item report's 99 s).
MARGIN_EXACT_MAX = 50_000


def self_margins(
    gallery_adapted: np.ndarray, gallery_old: np.ndarray, config: SearchConfig | None = None,
    should_stop: StopFn | None = None,
) -> np.ndarray:
    """⟨h(n_g), o_g⟩ minus the best score of any other old gallery vector for the query h(n_g) (a search
    of the whole sample against itself, stopped between query blocks when asked; approximate beyond
    ``MARGIN_EXACT_MAX`` items unless the search was asked to be exact or to run on Ray)."""
    ha = np.asarray(gallery_adapted, np.float32)
    o = np.asarray(gallery_old, np.float32)
    n = o.shape[0]
    own = (ha * o).sum(axis=1)
    if n < 2:
        return own
    config = config or SearchConfig()
    if config.method == "auto" and config.engine == "local":  # an ordering needs no exact runner-up
        config = replace(config, exact_max=min(config.exact_max, MARGIN_EXACT_MAX), measure_recall=False)
    _, best_other, _ = search(ha, o, 1, exclude=np.arange(n), config=config, should_stop=should_stop)
    return own - best_other[:, 0]


def backfill_order(
    policy: str,
    n_gallery: int,
    seed: int = 0,
    gallery_adapted: np.ndarray | None = None,
    gallery_old: np.ndarray | None = None,
    search_config: SearchConfig | None = None,
    should_stop: StopFn | None = None,
    draw: int = 0,
) -> np.ndarray:
    """Gallery rows in the order a policy re-embeds them (first = backfilled first); ``draw``: another random
    order of the same seed (the random curve averages several; draw 0 is the one a planner backfill takes)."""
    if policy == "random":
        return np.random.default_rng([RANDOM_STREAM, seed, *([draw] if draw else [])]).permutation(n_gallery)
    if policy not in POLICIES:
        raise InputError("backfill policy", f"unknown {policy!r}; choose from {POLICIES}")
    if gallery_adapted is None or gallery_old is None:
        raise InputError("backfill policy", f"{policy!r} needs the adapted new vectors of the gallery items")
    if policy == "largest_residual":
        return np.argsort(-residual_norms(gallery_adapted, gallery_old), kind="stable")
    return np.argsort(self_margins(gallery_adapted, gallery_old, search_config, should_stop), kind="stable")


def _segments(order: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """``order`` with the columns between consecutive cuts each sorted: position ``lo:hi`` of the
    result holds the same columns as ``order[lo:hi]``.

    Which columns a step adds is all that matters to a top k, and columns taken in ascending order
    are read from the score rows sequentially, several times faster than in the order's own.
    """
    marks = sorted({0, len(order), *cuts.tolist()})
    return np.concatenate([np.sort(order[lo:hi]) for lo, hi in zip(marks[:-1], marks[1:], strict=True)])


def _running_top(scores: np.ndarray, rel: np.ndarray, arranged: np.ndarray,
                 cuts: np.ndarray, k: int, suffix: bool) -> list:
    """Top-k (scores, relevance, gallery rows) of the columns ``order[:m]`` (prefix) or ``order[m:]`` (suffix) for
    every m in ``cuts``, in one pass (``arranged``: the order as :func:`_segments` arranges it).

    The score columns are gathered once in that arrangement, so each step's columns are one
    contiguous slice (gathering each step's columns apart read nearly the whole score matrix each
    time), and folded into the running top k with :func:`~embridge.core.retrieval.merge_topk`, which
    only looks at scores above a row's current k-th best. Rows with fewer than k columns so far are
    padded with -inf scores that are never relevant.
    """
    b = scores.shape[0]
    columns = np.take(scores, arranged, axis=1)
    best_score = np.full((b, k), -np.inf, dtype=np.float32)
    best_col = np.full((b, k), -1, dtype=np.int64)
    out: dict[int, tuple] = {}
    prev = scores.shape[1] if suffix else 0
    for m in sorted(set(cuts.tolist()), reverse=suffix):
        lo, hi = (m, prev) if suffix else (prev, m)
        if hi > lo:
            merge_topk(columns[:, lo:hi], 0, best_col, best_score, ids=arranged[lo:hi])
        taken = np.take_along_axis(rel, np.maximum(best_col, 0), 1)
        out[m] = (best_score.copy(), np.where(best_col >= 0, taken, rel.dtype.type(0)), best_col.copy())
        prev = m
    return [out[m] for m in cuts.tolist()]


def _merged(scores: np.ndarray, rel: np.ndarray, cols: np.ndarray, k: int) -> np.ndarray:
    """Relevance (or grades) of the first ``k`` merged candidates: best score first, equal scores by
    lower gallery row, the order the report's searches use, so tied items rank as in the cells."""
    order = np.lexsort((cols, -scores), axis=1)[:, :k]
    return np.take_along_axis(rel, order, 1)


def _first_hit(ranked_rel: np.ndarray) -> np.ndarray:
    hits = ranked_rel > 0
    return np.where(hits.any(1), hits.argmax(1), ranked_rel.shape[1])


def backfill_curves(
    queries_new: np.ndarray,
    queries_adapted: np.ndarray,
    gallery_new: np.ndarray,
    gallery_old: np.ndarray,
    query_targets: Any,
    gallery_targets: Any,
    orders: dict[str, np.ndarray],
    betas: Any = None,
    ks: tuple[int, ...] = (1, 5),
    exclude: Any = None,
    block: int | None = None,
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    judged: JudgedRelevance | None = None,
) -> dict[str, BackfillCurve]:
    """Top-k curves over β for each ordering in ``orders`` (policy name -> gallery row order).

    Values are means over queries with at least one relevant gallery item (as in the metrics).
    ``judged``: graded relevance judgments instead of ``query_targets == gallery_targets``; the
    curves then add nDCG@10 and MRR@10.
    """
    on_progress = on_progress or no_progress
    nq, hq = np.asarray(queries_new, np.float32), np.asarray(queries_adapted, np.float32)
    ng, og = np.asarray(gallery_new, np.float32), np.asarray(gallery_old, np.float32)
    qt, gt = np.asarray(query_targets), np.asarray(gallery_targets)
    n_q, n_g = nq.shape[0], ng.shape[0]
    if hq.shape[0] != n_q or og.shape[0] != n_g or qt.shape != (n_q,) or gt.shape != (n_g,):
        raise InputError("partial backfill", "queries, gallery and their targets differ in length")
    if nq.shape[1] != ng.shape[1] or hq.shape[1] != og.shape[1]:
        raise InputError("partial backfill", "query and gallery dims differ (new vs new, adapted vs old)")
    betas = np.linspace(0.0, 1.0, 11) if betas is None else np.asarray(betas, np.float64)
    if betas.ndim != 1 or betas.size == 0 or betas.min() < 0 or betas.max() > 1:
        raise InputError("partial backfill", "betas must be fractions in [0, 1]")
    cuts = np.rint(betas * n_g).astype(np.int64)
    for policy, order in orders.items():
        if not np.array_equal(np.sort(order), np.arange(n_g)):
            raise InputError("partial backfill", f"order {policy!r} is not a permutation of the gallery rows")
    segments = {policy: _segments(np.asarray(order, dtype=np.intp), cuts) for policy, order in orders.items()}
    ex = None if exclude is None else np.asarray(exclude, np.int64)
    kmax = max(*ks, JUDGED_K) if judged is not None else max(ks)
    keep = kmax + TIE_SLACK
    names = [f"top{k}" for k in ks] + ([f"ndcg@{JUDGED_K}", f"mrr@{JUDGED_K}"] if judged is not None else [])
    sums = {p: np.zeros((betas.size, len(names))) for p in orders}
    n_valid = 0
    block = block or max(1, min(n_q, 4_000_000 // max(n_g, 1)))
    for start in range(0, n_q, block):
        check_stop(should_stop)
        stop = min(start + block, n_q)
        s_new, s_old = nq[start:stop] @ ng.T, hq[start:stop] @ og.T
        rel = judged.grades(start, stop) if judged is not None else gt[None, :] == qt[start:stop, None]
        # under judgments a query judged relevant only to the document with its own key is scored (it misses
        # it, never ranked), as the cells score it; under labels the query's own item is not relevant to it
        judged_valid = (rel > 0).any(axis=1) if judged is not None else None
        if ex is not None:
            rows = np.flatnonzero(ex[start:stop] >= 0)
            cols = ex[start:stop][rows]
            s_new[rows, cols] = s_old[rows, cols] = -np.inf
            rel[rows, cols] = 0
        valid = judged_valid if judged_valid is not None else (rel > 0).any(axis=1)
        n_valid += int(valid.sum())
        ideal = judged.ideal(start, stop) if judged is not None else None
        for policy, parts in segments.items():
            heads = _running_top(s_new, rel, parts, cuts, keep, suffix=False)
            tails = _running_top(s_old, rel, parts, cuts, keep, suffix=True)
            for b, (head, tail) in enumerate(zip(heads, tails, strict=True)):
                ranked = _merged(np.concatenate([head[0], tail[0]], 1), np.concatenate([head[1], tail[1]], 1),
                                 np.concatenate([head[2], tail[2]], 1), kmax)
                first = _first_hit(ranked)
                values = [((first < k) & valid).sum() for k in ks]
                if ideal is not None:
                    scored = judged_metrics(ranked > 0, ranked.astype(np.float64), ideal, JUDGED_K)
                    values += [scored[name][valid].sum() for name in names[len(ks):]]
                sums[policy][b] += values
        on_progress(stop, n_q, {"stage": "backfill"})
    if n_valid == 0:
        raise InputError("partial backfill", "no query has a relevant gallery item")
    return {p: BackfillCurve(p, betas, {name: sums[p][:, i] / n_valid for i, name in enumerate(names)})
            for p in orders}


@dataclass(frozen=True)
class BackfillOptions:
    """Which curves to measure and how: policies, β steps, cut-offs, the seed and the search."""

    policies: tuple[str, ...] = POLICIES
    steps: int = 11  # evenly spaced β from 0 to 1
    ks: tuple[int, ...] = (1, 5)
    seed: int = 0
    search: SearchConfig | None = None


def partial_backfill(
    queries_new: np.ndarray,
    queries_adapted: np.ndarray,
    gallery_new: np.ndarray,
    gallery_old: np.ndarray,
    query_targets: Any,
    gallery_targets: Any,
    options: BackfillOptions | None = None,
    *,
    gallery_adapted: np.ndarray | None = None,
    exclude: Any = None,
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    judged: JudgedRelevance | None = None,
) -> dict[str, BackfillCurve]:
    """Curves for the options' policies over its evenly spaced β from 0 to 1."""
    opts = options or BackfillOptions()
    if opts.steps < 2:
        raise InputError("partial backfill", f"needs at least 2 steps, got {opts.steps}")
    n_g = np.asarray(gallery_old).shape[0]
    orders = {}
    for p in opts.policies:  # the least-confident order searches the whole sample against itself
        check_stop(should_stop)
        orders[p] = backfill_order(p, n_g, opts.seed, gallery_adapted, gallery_old, opts.search, should_stop)
    n_draws = RANDOM_DRAWS if np.asarray(queries_new).shape[0] * n_g <= LARGE_CURVE else RANDOM_DRAWS_LARGE
    draws = [f"random#{j}" for j in range(1, n_draws)] if "random" in orders else []
    for j, name in enumerate(draws, start=1):  # draw 0 is the seed's own order
        orders[name] = backfill_order("random", n_g, opts.seed, draw=j)
    curves = backfill_curves(
        queries_new,
        queries_adapted,
        gallery_new,
        gallery_old,
        query_targets,
        gallery_targets,
        orders,
        np.linspace(0.0, 1.0, opts.steps),
        opts.ks,
        exclude,
        on_progress=on_progress,
        should_stop=should_stop,
        judged=judged,
    )
    if draws:
        curves["random"] = averaged("random", [curves["random"], *(curves.pop(name) for name in draws)])
    return curves
