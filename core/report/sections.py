"""Report sections from scored cells: metrics with CIs, comparison, flips, per-label rows, verdicts.

Everything returned is plain Python (floats, ints, strings, lists, dicts), ready for JSON; undefined
numbers are None or NaN (written as null).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from embridge.core.adapters.registry import METHODS
from embridge.core.cascade_rerank import reranks_by_new_vectors
from embridge.core.evaluation.compat import NOT_BETTER, arr, compare, criterion, gain_retained
from embridge.core.evaluation.headline import (
    JUDGED_METRICS,
    drop_words,
    exceeds,
    metric_label,
    noise_words,
    weighed,
)
from embridge.core.evaluation.headline import headline_metrics as plan_headline_metrics
from embridge.core.evaluation.metrics import (
    bootstrap_ci,
    bootstrap_statistics,
    defined_share,
    per_label,
    percentile_ci,
)
from embridge.core.evaluation.scoring import EvalResult
from embridge.core.evaluation.served import Backfilled
from embridge.core.formatting import beyond_backfill, format_share, sample_words
from embridge.core.report.cells import NEW_NEW, OLD_OLD, CellResult, ScoringPlan
from embridge.core.report.flips import FlipCIs, cell_flips, flip_cis
from embridge.core.report.report_record import curve_metric
from embridge.core.report.sample import EvalSample
from embridge.core.upgrade_advice import bridge_alternatives, head_gain_words

MAX_LISTED_FLIPS = 500


def headline_metrics(plan: ScoringPlan) -> list[str]:
    """The plan's per-cell headline metrics (:func:`embridge.core.evaluation.headline.headline_metrics`)."""
    return plan_headline_metrics(plan.recall_k, plan.map_key)


def cell_section(cell: CellResult, plan: ScoringPlan, n_boot: int, seed: int) -> dict[str, Any]:
    """Means of every metric, bootstrap CIs of the headline ones, the recall@k curve, search facts."""
    m = cell.metrics
    summary = m.summary()
    cis = {}
    judged = [name for name in JUDGED_METRICS if name in m.per_query]  # their bars get whiskers too
    for name in [*headline_metrics(plan), *judged]:
        lo, hi = bootstrap_ci(m.per_query[name][m.valid], n_boot, seed=seed)
        cis[name] = [lo, hi]
    return {"query_side": cell.query_side, "gallery_side": cell.gallery_side, "gallery": cell.gallery,
            "protocol": None if cell.protocol is None else cell.protocol.to_dict(), "n_queries": m.n_queries,
            "n_without_relevant": m.n_without_relevant, "metrics": summary, "ci": cis,
            "recall_curve": {str(k): summary[f"recall@{k}"] for k in plan.recall_ks},
            "search": cell.search.to_dict()}


def _gain_stat(oo: np.ndarray, nn: np.ndarray, up: np.ndarray) -> float:
    value = gain_retained(float(up.mean()), float(oo.mean()), float(nn.mean()))
    return float("nan") if value is None else value


def quiet_flip_cis(correct_old: np.ndarray, correct_new: np.ndarray, n_boot: int, seed: int) -> FlipCIs:
    """Flip CIs without numpy's all-NaN warnings (relative NFR is undefined when nothing can flip)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return flip_cis(correct_old, correct_new, n_boot, seed=seed)


def headline(cells: dict[str, CellResult], upgraded: str, ceiling: str, plan: ScoringPlan,
             n_boot: int, seed: int, relevance: str = "label",
             on_sample: tuple[CellResult, CellResult] | None = None) -> dict[str, Any]:
    """The numbers a reader looks at first: top-1 of the three systems, gain retained, ARR, flips.

    With relevance by item (no labels) the same-model cells are trivially perfect, so the
    criterion is undefined (``compatible`` is None) and the upgraded top-1 is own-item retrieval.
    ``on_sample``: (old/old, upgraded) on the ceiling's gallery when that is smaller than old/old's:
    gain retained, its bootstrap and ARR are measured there, with the ceiling, as the value is computed.
    """
    oo, up, cc = cells[OLD_OLD].metrics, cells[upgraded].metrics, cells[ceiling].metrics
    valid = oo.valid
    s_oo, s_up, s_cc = oo.summary(), up.summary(), cc.summary()
    rk = f"recall@{plan.recall_k}"
    flips = cell_flips(oo, up)
    correct_old, correct_up = oo.correct()[valid], up.correct()[valid]
    fci = quiet_flip_cis(correct_old, correct_up, n_boot, seed)
    bf, us = (oo, up) if on_sample is None else (on_sample[0].metrics, on_sample[1].metrics)
    top1 = [c.per_query["top1"][valid] for c in (bf, cc, us)]
    gr_ci: tuple[Any, Any] = (None, None)
    gr_defined: float | None = None
    defined = not np.isnan(_gain_stat(*top1))  # the point itself is defined (the new model is better)
    if relevance != "item" and valid.any() and defined:  # else resamples where it happens to be would give one
        stats = bootstrap_statistics(_gain_stat, top1, n_boot, seed=seed)
        gr_ci, gr_defined = percentile_ci(stats, 0.95), defined_share(stats)
    return {
        "old_old_top1": s_oo["top1"], "new_new_top1": cells[NEW_NEW].metrics.summary()["top1"],
        "ceiling_top1": s_cc["top1"], "upgraded_top1": s_up["top1"],
        "gain_retained_ci": list(gr_ci), "gain_retained_ci_defined": gr_defined, "arr": arr(us.summary()[rk], s_cc[rk]), "arr_k": plan.recall_k,
        "compatible": criterion(s_up["top1"], s_oo["top1"]) if relevance != "item" else None,
        "negative_flip_rate": flips.negative_rate, "positive_flip_rate": flips.positive_rate,
        "relative_nfr": flips.relative_nfr,
        "negative_flip_rate_ci": list(fci.intervals["negative_flip_rate"]),
        "positive_flip_rate_ci": list(fci.intervals["positive_flip_rate"]),
        "relative_nfr_ci": list(fci.intervals["relative_nfr"]), "relative_nfr_ci_defined": fci.relative_nfr_defined,
        "n_queries": oo.n_queries,
    }


def comparison(cells: dict[str, CellResult], upgraded: str, ceiling: str, plan: ScoringPlan,
               on_sample: tuple[CellResult, CellResult] | None = None, relevance: str = "label") -> dict[str, Any]:
    """Per metric: criterion pass/fail, gain retained and (recall@k) ARR of the upgraded cell (the last
    two on the ceiling's gallery: ``on_sample`` holds old/old and the upgraded cell there).

    With relevance by item the same-model cells find each query's own item trivially, so, as in the
    headline, neither the criterion nor the gain is defined: every row leaves them empty."""
    keep = set(headline_metrics(plan)) | {f"recall@{k}" for k in plan.recall_ks}
    sample = None if on_sample is None else (on_sample[1].metrics.summary(), on_sample[0].metrics.summary())
    rows = compare(cells[upgraded].metrics.summary(), cells[OLD_OLD].metrics.summary(),
                   cells[ceiling].metrics.summary(), sample)
    if relevance == "item":
        for row in rows.values():
            row.pop("gain_retained_note", None)
            row.update(passes=None, gain_retained=None)
    return {name: row for name, row in rows.items() if name in keep}


def flips_section(cells: dict[str, CellResult], n_boot: int, seed: int,
                  sample_floor: CellResult | None = None) -> dict[str, Any]:
    """Top-1 flips of every cell against old/old (counts, rates, CIs; keys are in ``flipped_queries``).

    A cell that searched the evaluation sample is compared with old/old on that sample
    (``sample_floor``, when old/old searched a larger gallery): a query's top-1 in one gallery is no
    measure of a flip in another. Each row says which old/old it is against (``against``).
    """
    out = {}
    for name, cell in cells.items():
        if name == OLD_OLD:
            continue
        on_sample = sample_floor is not None and cell.gallery == "sample"
        base = (sample_floor if on_sample else cells[OLD_OLD]).metrics
        f = cell_flips(base, cell.metrics)
        row = f.to_dict(max_listed=0)
        row.pop("negative"), row.pop("positive")
        both = base.valid & cell.metrics.valid
        cis = quiet_flip_cis(base.correct()[both], cell.metrics.correct()[both], n_boot, seed)
        row["ci"] = {k: list(v) for k, v in cis.intervals.items()}
        row["relative_nfr_ci_defined"] = cis.relative_nfr_defined
        row["against"] = "old/old on the evaluation sample" if on_sample else "old/old"
        out[name] = row
    return out


def flipped_records(cells: dict[str, CellResult], upgraded: str, sample: EvalSample,
                    max_listed: int = MAX_LISTED_FLIPS) -> dict[str, Any]:
    """The flipped queries of the upgraded cell with their first results under both systems (each cell's
    rows index the gallery it searched: the whole old gallery or the evaluation sample)."""
    f = cell_flips(cells[OLD_OLD].metrics, cells[upgraded].metrics)
    old_top, up_top = cells[OLD_OLD].top, cells[upgraded].top

    def gallery_of(cell: CellResult) -> tuple[list[str], list[str | None]]:
        if cell.gallery == "old":
            return sample.full_keys, sample.full_labels
        return sample.gallery_keys, sample.gallery_labels

    (old_keys, old_labels), (up_keys, up_labels) = gallery_of(cells[OLD_OLD]), gallery_of(cells[upgraded])
    old_ids, up_ids = (sample.full_ids if c.gallery == "old" else sample.gallery_ids
                       for c in (cells[OLD_OLD], cells[upgraded]))

    def record(i: int) -> dict[str, Any]:
        return {"query_key": sample.query_keys[i], "label": sample.query_labels[i],
                "old_top": [old_keys[r] for r in old_top[i] if r >= 0],
                "old_top_labels": [old_labels[r] for r in old_top[i] if r >= 0],
                "old_top_grades": listed_grades(sample, i, old_ids, old_top[i]),
                "upgraded_top": [up_keys[r] for r in up_top[i] if r >= 0],
                "upgraded_top_labels": [up_labels[r] for r in up_top[i] if r >= 0],
                "upgraded_top_grades": listed_grades(sample, i, up_ids, up_top[i])}

    return {"cell": upgraded, "n_negative": int(f.negative.size), "n_positive": int(f.positive.size),
            "max_listed": max_listed,
            "negative": [record(int(i)) for i in f.negative[:max_listed]],
            "positive": [record(int(i)) for i in f.positive[:max_listed]]}


def listed_grades(sample: EvalSample, query: int, gallery_ids: np.ndarray, rows: np.ndarray) -> list[int]:
    """How relevant each listed result is to query ``query``, by the rule the metrics use: its judged
    grade with relevance judgments, else 1 for the query's own item or an item of its label, 0 otherwise."""
    rule = sample.tasks.full.rule
    items = np.asarray(gallery_ids, dtype=np.int64)[[int(r) for r in rows if r >= 0]]
    q = np.asarray(sample.query_ids[query:query + 1], dtype=np.int64)
    if rule.graded():
        judged = rule.judged.get(int(q[0])) or {}
        return [int(judged.get(int(item), 0)) for item in items]
    return (rule.targets(items, False) == rule.targets(q, True)[0]).astype(int).tolist()


def per_label_section(cells: dict[str, CellResult], sample: EvalSample, plan: ScoringPlan) -> dict[str, Any]:
    """Per-label means of top-1, top-5 and mAP for each cell (label relevance only)."""
    if sample.relevance != "label":
        return {}
    labels = np.array(["" if v is None else v for v in sample.query_labels], dtype=str)
    out = {}
    for name, cell in cells.items():
        values = {k: cell.metrics.per_query[k] for k in ("top1", "top5", plan.map_key)}
        out[name] = per_label(values, labels, cell.metrics.valid)
    return out


def verdicts(head: dict[str, Any], upgraded: str, ceiling: str, kind: str, relevance: str = "label",
             method: dict[str, Any] | None = None, every_item_new: bool = False) -> list[str]:
    """Plain sentences: is the new model better, does the layer pass, what to do otherwise.

    ``method`` is the adapter's config: fusion's α and a cascade's K are stated; fusion at α = 1 is
    said to add nothing (it is the old query alone), and neither is told to "consider" itself.
    ``every_item_new``: a cascade re-ranked every gallery item by its stored new vector, so re-embedding
    more buys nothing; what it leaves unused is the old index's recall.
    """
    method = method or {}
    serving = _serving_words(kind, method)
    w = weighed(head, relevance == "judgments" and head.get("ndcg@10") is not None)
    name, oo, cc, up, gr, compatible = w.name, w.old_old, w.ceiling, w.upgraded, w.gain_retained, w.compatible
    if relevance == "item":
        target = (f"the {kind}-transformed old vector of their own item" if METHODS.get(kind) is not None
                  and METHODS[kind].direction == "forward" else "their own item's old vector")
        found = "find it trivially" if all(v is None or v >= 1 for v in (oo, cc)) else (
            f"find it unless another item's vector is the same as its own (old/old {format_share(oo)}, {ceiling} "
            f"{format_share(cc)}: tied items rank by gallery row, and the earlier one is taken)")
        return [*([serving] if serving else []),
                f"Without labels, a query's relevant item is its own item: the same-model cells {found}, "
                "so neither whether the new model is better nor the compatibility criterion can be measured here.",
                f"Through the {kind} layer, {format_share(up)} of new queries find {target} first "
                f"({upgraded} top-1); add labels or ground truth to measure retrieval quality."]
    lines = [serving] if serving else []
    better = w.new_better is not False
    head_note = head_gain_words(head, kind, w.name == "nDCG@10", w.new_floor) if better else ""
    if not better:
        lines.append(f"The new model is not better than the old one on {sample_words(w.ceiling_floor)}: {ceiling} "
                     f"{name} {format_share(cc)} against old/old {format_share(w.new_floor)}. Upgrading does not pay here.")
    if compatible:
        where = ("" if w.ceiling_floor is None or w.upgraded_sample is None else
                 f" (measured on the evaluation sample: old/old {format_share(w.ceiling_floor)}, {upgraded} "
                 f"{format_share(w.upgraded_sample)}, {ceiling} {format_share(cc)})")
        kept = (f"it keeps {format_share(gr)} of the full-backfill gain{beyond_backfill(gr)}{where}" if gr is not None
                else f"gain retained is undefined: {NOT_BETTER}")
        lines.append(f"The {kind} layer passes the compatibility criterion{noise_words(head)}: {upgraded} {name} "
                     f"{format_share(up)} > old/old {format_share(oo)}; {kept}.")
        if gr is not None and gr < 0.9 and kind == "cascade" and every_item_new:
            lines.append("Every gallery item already has its new-model vector, so what the cascade leaves unused is "
                         f"lost in the old index's recall of {int(method.get('k') or 0) or 'its K'} candidates: a "
                         "larger K, or searching the new vectors themselves (the full backfill, already "
                         "embedded), keeps more.")
        elif gr is not None and gr < 0.9 and not head_note:  # a head's gain is no backfill's to take further
            curves = "the partial-backfill curves and " if relevance != "judgments" else ""
            lines.append(f"Bridging alone leaves much of the gain unused; see {curves}the plan for what re-embedding "
                         "part or all of the gallery buys.")
    else:
        instead = bridge_alternatives(kind)
        ci = (head.get("improvement_ci") or {}).get("ndcg@10" if w.name == "nDCG@10" else "top1")
        worse = (drop_words(ci) if exceeds(oo, up) else
                 "finds no more than today's system does" + (
                     ", which already scores the maximum: no layer can be above it here"
                     if isinstance(oo, int | float) and not exceeds(1.0, float(oo)) else ""))
        advice = (f"Bridging alone is not enough here: consider {instead}." if better else
                  "With the new model itself no better, stay on the old model.")
        lines.append(f"The {kind} layer FAILS the compatibility criterion: {upgraded} {name} {format_share(up)} is not "
                     f"above old/old {format_share(oo)}, so serving new queries through it {worse}. {advice}")
    return lines + ([head_note] if head_note else [])


def _serving_words(kind: str, method: dict[str, Any]) -> str:
    """What a fusion or cascade actually serves, from its α or K ('' for other kinds)."""
    if kind == "fusion" and method.get("alpha") is not None:
        alpha = float(method["alpha"])
        if alpha >= 1.0:
            return ("α = 1: fusion adds nothing here; the fused query is the old query alone, so this is "
                    "today's system, not a fusion layer.")
        if alpha <= 0.0:
            return ("α = 0: the old query adds nothing here; the fused query is the mapped new query alone, so this "
                    "scores as the base layer alone, which serves the same with one encoder.")
        return (f"Fusion with α = {alpha:g}: each query scores with {alpha:g} × the old query + {1 - alpha:g} × the "
                "mapped new query; both encoders are needed during the transition.")
    if kind == "cascade" and method.get("k") is not None:
        rerank = ("the new model re-ranks them" if reranks_by_new_vectors(method) else
                  "the new model re-ranks them through the layer (no gallery item re-embedded)")
        return (f"Cascade with K = {int(method['k'])}: the old index recalls {int(method['k'])} items per query and "
                f"{rerank}; both encoders are needed during the transition.")
    return ""


def served_section(backfilled: Backfilled, result: EvalResult, plan: ScoringPlan, n_boot: int,
                   seed: int) -> dict[str, Any]:
    """The served gallery after the latest backfill: the backfill it reflects and the cell's numbers."""
    cell = CellResult.of("served", "new (mixed)", "served gallery", result, "old")
    return {"backfill": backfilled.to_dict(), "new_vectors": int(result.protocol.new_vectors or 0),
            **cell_section(cell, plan, n_boot, seed)}


DIP_MARGIN = 0.01  # a dip below old/old smaller than this is within a curve's sampling noise


def backfill_dip(backfill: dict[str, Any], head: dict[str, Any]) -> str:
    """A sentence when part of the way through a backfill the gallery serves worse than today's system: the
    merged ranking puts backfilled items' new/new scores beside the layer's scores of the rest, and where the
    two run on different scales the backfilled items sink (or crowd out the rest) until nearly all are done.
    None where the new model is no better (the verdict is to stay: no backfill to run); where the layer fails
    the criterion, the old system, not the layer, serves while the backfill runs."""
    decided = weighed(head)
    if decided.new_better is not True:
        return ""
    policies = backfill.get("policies") or {}
    metric = curve_metric(backfill)
    base = ((backfill.get("old_old") or {}).get("metrics") or {}).get(metric)
    if not isinstance(base, int | float):
        return ""
    worst = min(((float(v), float(b), name) for name, c in policies.items()
                 for b, v in zip(c.get("betas") or [], (c.get("values") or {}).get(metric) or [], strict=False)
                 if 0 < b < 1 and isinstance(v, int | float)), default=None)
    if worst is None or worst[0] > base - DIP_MARGIN:
        return ""
    value, beta, name = worst
    serve = "through the layer" if decided.compatible else "the old model (old queries against the old gallery)"
    return (f"Part of the way through a backfill the gallery serves worse than today's system: at β = {beta:.2f} "
            f"({name.replace('_', ' ')} order) {metric_label(metric)} is {value:.3f}, below old/old {base:.3f} on the evaluation "
            "sample. Backfilled items are ranked by their new-model scores and the rest by the layer's, and here the "
            f"two do not run on one scale: serve {serve} while the backfill runs, and switch to the new vectors once "
            "it is complete.")

