"""Upgrade options from a report and measured throughput: time, storage, quality, and a recommendation.

Pure functions of plain data, so every rule can be checked on a hand-made report. Rules:

- Every rule weighs one number, the plan's ``metric``: nDCG@10 when relevance comes from graded
  judgments, top-1 otherwise (:mod:`embridge.core.plan.decision`); "M" below.
- **stay** is recommended when the new model is not better than the old one on this gallery
  (full-backfill M not above old/old M): upgrading costs without a gain.
- A layer (adapter only, forward transform, fusion) is *acceptable* when it passes the compatibility
  criterion (M above old/old) and keeps at least ``gain_threshold`` of the full-backfill gain,
  or reaches ``target_share`` of the full-backfill M.
- **partial backfill** re-embeds the fraction β of the gallery; by default the smallest β on the curve
  whose M reaches ``target_share`` of the full backfill's. Policies are compared by cost: random
  needs no new vector to order the items, the informed policies need every item's new vector first
  (a full re-embedding pass), so they cost as much as a full backfill and are reported as notes only.
- **full backfill** re-embeds everything and is always acceptable when the new model is better.
- When it is not, no backfill is acceptable, but a layer that re-embeds nothing and passes the
  criterion still serves new queries better than today: it is acceptable beside **stay**.
- The recommendation is the acceptable option that re-embeds the fewest items, then the fastest,
  then the best M. Costs are extrapolated to the full gallery, not the evaluation sample.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from embridge.core.cascade_rerank import reranks_by_new_vectors
from embridge.core.errors import InputError
from embridge.core.evaluation.compat import criterion
from embridge.core.evaluation.headline import metric_label
from embridge.core.formatting import format_beta, format_share, sample_words
from embridge.core.plan.decision import decision_metric
from embridge.core.plan.option_choice import BOTH_ENCODERS, acceptable, best_passing_bridge, choose
from embridge.core.plan.option_galleries import gallery_words, incomparable_note, name_galleries
from embridge.core.plan.option_row import ceiling_floor, curve_floor, draws_note, option_row, sample_numbers
from embridge.core.plan.plan_reason import LAYER_OPTIONS, other_metrics_fall, plan_reason
from embridge.core.plan.plan_record import Plan
from embridge.core.plan.throughput import Throughput
from embridge.core.report.report_record import Report, as_report
from embridge.core.upgrade_advice import bridge_alternatives, head_backfill_words, head_gain_words

ORDERING_IS_FREE = ("random",)


def _metrics_of(report: Report, cell: str) -> dict[str, float]:
    """A cell's headline metrics (those it has)."""
    values = report.cell_metrics(cell, [*report.headline_metrics, "ndcg@10", "mrr@10"])
    return {k: v for k, v in values.items() if v is not None}


def _time(items: float, rate: float | None) -> float | None:
    if items == 0:
        return 0.0
    return None if not rate else float(items / rate)


NOT_MEASURED = ("Partial-backfill quality was not measured for this report's relevance protocol (it has no "
                "backfill curves)")


def curve_point(betas: Sequence[float], values: Sequence[float], beta: float) -> float:
    """A curve's value at β, linear between measured points (exact at them)."""
    return float(np.interp(beta, np.asarray(betas, float), np.asarray(values, float)))


def first_reaching(betas: Sequence[float], values: Sequence[float], target: float) -> float | None:
    """The smallest measured β whose value reaches ``target`` (None when none does)."""
    for b, v in zip(betas, values, strict=True):
        if v is not None and v >= target - 1e-12:
            return float(b)
    return None


class _Sizes:
    """Gallery size, dims and bytes per value that storage and time are computed from."""

    def __init__(self, report: Report) -> None:
        models, adapter = report.models, report.adapter
        self.n = int(report.sizes["gallery_full"])
        # the old vectors stored: gallery items the old model embedded (the train fold counted back in where
        # --heldout-gallery took it out of the search); every item where a report did not record it
        old = report.sizes.get("gallery_old")
        self.n_old = self.n if old is None else int(old) + int(report.sizes.get("removed_train") or 0)
        self.n_sample = int(report.sizes["gallery"])
        # gallery items holding both models' vectors, the train fold included where --heldout-gallery left it out
        self.n_held = int(report.sizes.get("gallery_both") or self.n_sample)
        self.d_old, self.d_new = int(models["old"]["dim"]), int(models["new"]["dim"])
        self.b_old = int(models["old"].get("bytes_per_value", 4))
        self.b_new = int(models["new"].get("bytes_per_value", 4))
        self.head = head = report.ceiling_cell == "head/head"  # the full backfill serves the head's outputs
        self.d_full = int(adapter["out_dim"]) if head else self.d_new
        self.forward = adapter.get("direction") == "forward"
        self.d_rest = int(adapter["out_dim"]) if self.forward else self.d_old  # non-backfilled items' dims
        self.b_rest = 4 if self.forward else self.b_old
        self.adapter_bytes = int(adapter.get("file_bytes") or 0)

    def old_index(self) -> int:
        return self.n_old * self.d_old * self.b_old

    def mixed(self, beta: float) -> int:
        """Backfilled items' new vectors beside the old (or transformed) vectors of the rest that have one."""
        backfilled = int(round(beta * self.n))
        rest = max(min(self.n_old, self.n - backfilled), 0)
        return backfilled * self.d_full * self.b_new + rest * self.d_rest * self.b_rest


def layer_option(name: str, kind: str, quality: dict[str, float], rate: float | None, sizes: _Sizes,
                 floor: float, ceiling: float, source: str, out_dim: int | None = None,
                 adapter_bytes: int | None = None, rerank_k: int | None = None,
                 measured_on: Mapping[str, Any] | None = None, embed_rate: float | None = None,
                 metric: str = "top1", rerank_new_vectors: bool = True,
                 on_sample: tuple[float, Mapping[str, float]] | None = None) -> dict[str, Any]:
    """Adapter only / fusion (query side, nothing re-embedded) or a forward transform of the gallery.

    ``measured_on``: the protocol of the quality; a cascade's records how many of the gallery items it
    searched were re-ranked by their new-model vectors (``new_vectors``). That share of this gallery is
    part of what the cascade costs: embedded, and stored beside the old index. ``rerank_new_vectors``
    False: the cascade re-ranks through its layer alone, as it was measured, even where new vectors exist.
    """
    extra_bytes = sizes.adapter_bytes if adapter_bytes is None else adapter_bytes
    per_query = None if not rate else 1e6 / rate
    if name == "forward_transform":
        dim = out_dim or sizes.d_new
        notes = [f"Transforms all {sizes.n_old} stored old vectors with the {kind} layer (no backbone run); new "
                 "queries then search the transformed gallery as they are.", source]
        return option_row(name, f"Forward transform ({kind})", _time(sizes.n_old, rate),
                          sizes.n_old * dim * 4 + extra_bytes, 0, quality, floor, ceiling, notes, metric, on_sample)
    notes = [f"Nothing is re-embedded; each new query passes through the {kind} layer "
             + (f"(about {per_query:.1f} µs per query in batches) " if per_query else "")
             + "and searches the old gallery as it is.", source]
    cost: dict[str, Any] = {"encoders_at_query_time": 1, "reranks_per_query": 0}
    if kind == "fusion" or name == "fusion":
        notes.append("Fusion needs both encoders at query time: every query is also embedded by the old model.")
        cost["encoders_at_query_time"] = 2
    title = "Fusion (old + mapped new query)" if name == "fusion" else f"Adapter only ({kind})"
    if name == "cascade":
        k = int(rerank_k or 0)
        rerank = ("with the new query (new vectors where an item has one, else through the layer)"
                  if rerank_new_vectors else "by layer(new query) against their old vectors (no gallery item's "
                  "new vector is used, as measured)")
        notes = [f"Nothing is re-embedded; the old index recalls the top {k} for the old query and the new model "
                 f"re-ranks those {k} {rerank}.", "Serving cost: both encoders during the transition (every query "
                 f"is embedded by both models) and {k} re-ranked item{'s' if k != 1 else ''} per query.", source]
        cost = {"encoders_at_query_time": 2, "reranks_per_query": k, "rerank_new_vectors": rerank_new_vectors}
        title = f"Cascade (old recall of {k}, new re-rank)"
        new_items, searched = _cascade_new_items(measured_on, sizes.n)
        if new_items:  # measured with new vectors of part of the gallery: they are what it stands on
            share = (f"{new_items} of the {sizes.n} gallery items" if searched == sizes.n else
                     f"{measured_on['new_vectors']} of the {searched} gallery items it searched; here "
                     f"{new_items} of the {sizes.n}")
            rest = "; the rest through the layer" if new_items < sizes.n else ""
            notes[0] = (f"Measured with new-model vectors of {share} (re-ranked by them{rest}): its quality needs those items embedded and stored beside the old index, which "
                        f"time and storage count. The old index recalls the top {k} for the old query and the new "
                        "model re-ranks them.")
            return option_row(name, title, _time(new_items, embed_rate), sizes.old_index() + extra_bytes
                              + new_items * sizes.d_new * sizes.b_new, int(new_items), quality, floor, ceiling, notes,
                              metric, on_sample, query_latency_us=per_query, serving_cost=cost)
    return option_row(name, title, 0.0, sizes.old_index() + extra_bytes, 0, quality, floor, ceiling, notes, metric,
                      on_sample, query_latency_us=per_query, serving_cost=cost)


def _cascade_new_items(measured_on: Mapping[str, Any] | None, n: int) -> tuple[int, int]:
    """(items of a gallery of ``n`` a cascade needs new vectors of, the gallery size it was measured on)."""
    if not isinstance(measured_on, Mapping) or not measured_on.get("new_vectors"):
        return 0, n
    searched = int(measured_on.get("n_gallery") or n)
    return int(round(int(measured_on["new_vectors"]) * n / max(searched, 1))), searched


def partial_option(report: Report, tp: Throughput, sizes: _Sizes, floor: float, ceiling: float,
                   target: float, fraction: float | None, metric: str = "top1") -> tuple[dict[str, Any] | None, list[str]]:
    """The cheapest partial backfill whose ``metric`` reaches ``target`` (or at ``fraction``), with notes on the others."""
    label = metric_label(metric)
    policies = report.backfill.get("policies") or {}
    if fraction is not None and not 0 < fraction < 1:
        return None, [f"A partial backfill at β = {fraction:g} is the {'layer alone' if fraction <= 0 else 'full backfill'}"
                      "; see that option."]
    items = None if fraction is None else int(round(fraction * sizes.n))
    if items in (0, sizes.n):
        return None, [f"A partial backfill at β = {fraction:g} re-embeds {items} of the {sizes.n} gallery items (rounded "
                      f"to whole items): that is the {'layer alone' if items == 0 else 'full backfill'}; see that "
                      "option."]
    if not policies:
        return None, [NOT_MEASURED + "; the plan offers the layers and the full backfill only."]
    notes: list[str] = []
    candidates = []
    for policy, curve in policies.items():
        betas, values = curve["betas"], curve["values"].get(metric)
        if values is None:
            notes.append(f"The {policy} curve has no {label}; the plan cannot read a partial backfill off it.")
            continue
        beta = fraction if fraction is not None else first_reaching(betas, values, target)
        if beta is None or beta >= 1:
            continue
        if beta <= 0:
            return None, [f"The layer alone already reaches the target {target:.3f} {label}: "
                          f"{curve_point(betas, values, 0.0):.3f} at β = 0 on the curves' sample."]
        free = policy in ORDERING_IS_FREE
        embedded = int(round(beta * sizes.n)) if free else sizes.n
        quality = {name: curve_point(betas, curve["values"][name], beta)
                   for name in ("top1", "top5", "ndcg@10", "mrr@10") if name in curve["values"]}
        if embedded >= sizes.n:
            notes.append(f"{policy} order reaches {quality[metric]:.3f} {label} at β = {format_beta(beta)}, but ordering the "
                         "items by it needs every item's new vector first (a full re-embedding pass), so it costs "
                         "as much as the full backfill.")
            continue
        candidates.append((embedded, -quality[metric], beta, policy, quality))
    if not candidates:
        points = sorted({round(float(b), 4) for c in policies.values() for b in c["betas"]})
        where = (f"β = {', '.join(f'{b:g}' for b in points)}" if len(points) <= 12 else
                 f"{len(points)} points from β = {points[0]:g} to {points[-1]:g}")
        finer = "; 'embridge report --backfill-steps N' measures more points" if len(points) <= 21 else ""
        notes.append(f"No backfill order that is free to compute reaches {target:.3f} {label} at a measured point "
                     f"before the whole gallery is re-embedded (the curves were measured at {where}{finer}): a "
                     "partial backfill is no cheaper than the full one.")
        return None, notes
    embedded, _, beta, policy, quality = min(candidates)
    backfilled = int(round(beta * sizes.n))
    base = curve_floor(report, sizes.n_sample, sizes.n, floor, metric)
    opt_notes = [f"Re-embeds {backfilled} of {sizes.n} gallery items (β = {format_beta(beta)}) in {policy} order; the rest "
                 "stay behind the layer until they are re-embedded.",
                 "Quality is read off the partial-backfill curve measured on the evaluation sample"
                 + (f"; its gain and criterion are measured from old/old on the same sample ({label} {base:.3f})."
                    if base is not None else "; this report has no old/old on that sample, so its gain retained and "
                    "criterion are not given (make the report again to measure them).")]
    betas = [float(b) for b in policies[policy]["betas"]]
    # --fraction between two measured points (one re-embedding the same whole items as β counts as measured)
    interpolated = not any(round(beta * sizes.n) == round(b * sizes.n) for b in betas)
    if interpolated:
        below, above = max(b for b in betas if b < beta), min(b for b in betas if b > beta)
        opt_notes.append(f"β = {beta:g} was not measured: its quality is interpolated linearly between the curve's "
                         f"points at β = {below:g} and {above:g} ('embridge report --backfill-steps N' measures "
                         "more points).")
    if (spread := draws_note(policies[policy], metric, beta)) is not None:
        opt_notes.append(spread)
    head = head_backfill_words(str((report.adapter or {}).get("kind")), report.headline, metric,
                               "The curve scores backfilled items through the {kind} head, as the full backfill does")
    if head:
        opt_notes.append(head.lstrip())
    if (report.adapter or {}).get("kind") == "cascade":  # the curve searches one mixed gallery: no re-rank in it
        opt_notes.append("The curve scores the items not yet re-embedded through the cascade's layer alone, "
                         "without its re-rank of the old index's recall, so it can sit below the cascade's own "
                         "number; serving the cascade during the backfill is not what it measures.")
    # the curves rank the full-backfill cell's queries against its gallery (the evaluation sample)
    protocol = ((report.cells.get(str(report.ceiling_cell)) or {}).get("protocol") or {}).get("text")
    title = f"Partial backfill to β = {format_beta(beta)} ({policy} order{', interpolated' if interpolated else ''})"
    option = option_row("partial_backfill", title,
                        _time(embedded, tp.embed_items_per_s), sizes.mixed(beta) + sizes.adapter_bytes, embedded,
                        quality, base, ceiling, opt_notes, metric, fraction=beta, policy=policy, measured_on=protocol)
    option["interpolated"] = interpolated
    return option, notes


def plan_from_report(source: Report | Mapping[str, Any], throughput: Throughput, *, fraction: float | None = None,
                     gain_threshold: float = 0.9, target_share: float = 0.95,
                     alternatives: Sequence[Mapping[str, Any]] = ()) -> Plan:
    """Options with time, storage and expected quality, and the recommended one with its reason.

    ``alternatives``: other layers of the same model pair (e.g. a forward transform or a fusion run),
    each ``{"name", "kind", "quality", "items_per_s", "source"}`` (+ ``out_dim``, ``adapter_bytes``).
    """
    if fraction is not None and not 0 <= fraction <= 1:
        raise InputError("--fraction", f"must lie between 0 and 1, got {fraction}")
    if not 0 <= gain_threshold <= 1:  # the command line's parser says the same; the app and callers come here
        raise InputError("--gain-threshold", f"must lie between 0 and 1, got {gain_threshold}")
    if not 0 < target_share <= 1:  # a share of 0 would call any option enough
        raise InputError("--target-share", f"must be above 0 and at most 1, got {target_share}")
    report = as_report(source)
    sizes = _Sizes(report)
    up_cell, ceil_cell = str(report.upgraded_cell), str(report.ceiling_cell)
    floor_q, up_q, ceil_q = (_metrics_of(report, c) for c in ("old/old", up_cell, ceil_cell))
    metric = decision_metric(report, ("old/old", up_cell, ceil_cell))
    label = metric_label(metric)
    floor, ceiling = floor_q[metric], ceil_q[metric]
    on_sample = ceiling_floor(report, sizes.n_sample, sizes.n, floor, metric)  # old/old where new/new searched
    new_floor = floor if on_sample is None else on_sample

    def sampled(quality: Mapping[str, float]) -> tuple[float, Mapping[str, float]] | None:
        """(old/old, an option's numbers) on new/new's gallery, where gain retained is measured; None where
        new/new searched the whole gallery."""
        return None if on_sample is None else (on_sample, quality)

    target = target_share * ceiling
    kind = report.adapter["kind"]
    options = [option_row("stay", "Stay on the old model", 0.0, sizes.old_index(), 0, floor_q, floor, ceiling,
                          ["Today's system: the old model keeps serving queries and gallery; the new model is unused."],
                          metric, sampled(sample_numbers(report.headline, "old_old_sample")))]
    own = "forward_transform" if sizes.forward else (kind if kind in BOTH_ENCODERS else "adapter_only")
    options.append(layer_option(own, kind, up_q, throughput.adapter_items_per_s, sizes, floor, ceiling,
                                f"Quality: the {up_cell} cell of this report.",
                                rerank_k=(report.adapter.get("config") or {}).get("k"),
                                rerank_new_vectors=reranks_by_new_vectors(report.adapter.get("config")),
                                measured_on=(report.cells.get(up_cell) or {}).get("protocol"),
                                embed_rate=throughput.embed_items_per_s, metric=metric,
                                on_sample=sampled(sample_numbers(report.headline, "upgraded_sample"))))
    options[-1]["improvement_ci"] = (report.headline.get("improvement_ci") or {}).get(metric)
    if kind == "fusion" and float((report.adapter.get("config") or {}).get("alpha", 1.0)) <= 0.0:
        options[-1]["notes"].append("α = 0: the fused query is the mapped new query alone, so the base layer trained "
                                    "on its own scores the same and serves with one encoder.")
    floor_protocol = (report.cells.get("old/old") or {}).get("protocol")
    sample_protocol = (report.cells.get("new/new") or {}).get("protocol")
    for alt in alternatives:
        if alt["name"] not in {o["name"] for o in options} and alt.get("quality", {}).get(metric) is not None:
            refusal = incomparable_note(alt, floor_protocol, sample_protocol if on_sample is not None else None)
            same = refusal is None
            own_ceiling = (alt.get("ceiling") or {}).get(metric, ceiling)  # its own full backfill (new/new, a head)
            option = layer_option(alt["name"], alt["kind"], dict(alt["quality"]), alt.get("items_per_s"), sizes,
                                  floor if same else None, own_ceiling, alt.get("source", ""), alt.get("out_dim"),
                                  alt.get("adapter_bytes"), alt.get("k"), alt.get("measured_on"),
                                  throughput.embed_items_per_s, metric, reranks_by_new_vectors(alt),
                                  sampled(alt.get("quality_sample") or {}))
            where = (alt.get("measured_on") or {}).get("text") or "queries and a gallery it did not record"
            option["quality_from"] = {"source": alt.get("from") or alt.get("source", ""), "protocol": where,
                                      "comparable": same, **({"why_not": refusal[1]} if refusal else {})}
            option["measured_gallery"], option["ceiling"] = gallery_words(alt.get("measured_on")), own_ceiling
            option["improvement_ci"] = (alt.get("improvement_ci") or {}).get(metric)
            if refusal is not None:
                option["comparable"] = False
                option["notes"].append(refusal[0])
            options.append(option)
    partial, partial_notes = partial_option(report, throughput, sizes, floor, ceiling, target, fraction, metric)
    if partial is not None:
        options.append(partial)
    options.append(option_row("full_backfill", "Full backfill", _time(sizes.n, throughput.embed_items_per_s),
                              sizes.n * sizes.d_full * sizes.b_new + (sizes.adapter_bytes if sizes.head else 0),
                              sizes.n, ceil_q, new_floor, ceiling,
                              [f"Re-embeds all {sizes.n} gallery items with the new model; quality is the {ceil_cell} "
                               "cell of this report." + head_backfill_words(kind, report.headline, metric)], metric))
    name_galleries(options, report, up_cell, ceil_cell)
    by_item = report.sizes.get("relevance") == "item"
    new_better = True if by_item else criterion(ceiling, new_floor)  # without labels: the premise of the upgrade
    for opt in options:
        if by_item:
            opt["passes_criterion"] = opt["gain_retained"] = opt["gain_retained_note"] = None
        opt["bytes_per_item"] = opt["storage_bytes"] / max(sizes.n, 1)
        own_target = target if "ceiling" not in opt else target_share * opt["ceiling"]  # a share of its own ceiling
        opt["acceptable"] = acceptable(opt, new_better, gain_threshold, own_target, metric)
    if not new_better and any(o["acceptable"] for o in options if o["name"] in LAYER_OPTIONS):
        options[0]["acceptable"] = False  # a layer beats today's system: staying would give that up
    bridge = best_passing_bridge(options, metric) if new_better and not by_item else None
    if bridge is not None:
        bridge["acceptable"] = True
    choice = choose(options, metric)
    plan = {"recommendation": choice["name"], "options": options, "new_better": None if by_item else new_better,
            "protocols": report.headline.get("protocols"),
            "pairs": (report.run.get("config") or {}).get("fitted_on"),
            "adapter_passes": None if by_item else bool(up_q[metric] > floor), "metric": metric,
            "targets": {"gain_threshold": gain_threshold, "target_share": target_share, f"target_{metric}": target},
            "gallery_full": sizes.n, "gallery_sample": sizes.n_sample, "throughput": throughput.to_dict(),
            "notes": [*throughput.notes, *(partial_notes if new_better else [])]}  # no backfill to weigh otherwise
    plan["reason"] = plan_reason(plan, choice, report, floor, ceiling, gain_threshold, target_share, fraction, on_sample)
    other = "top1" if metric != "top1" else None
    other_floor = None if other is None else ceiling_floor(report, sizes.n_sample, sizes.n, floor_q[other], other)
    other_floor = floor_q.get(other) if other_floor is None and other else other_floor
    if other and new_better and ceil_q.get(other) is not None and ceil_q[other] <= other_floor:
        plan["notes"].insert(0, f"Decided on {label}, the measure of relevance judgments: top-1 ({ceil_cell} "
                             f"{ceil_q[other]:.3f} vs old/old {other_floor:.3f}) does not rise with it.")
    elif other and not new_better and ceil_q.get(other) is not None and ceil_q[other] > other_floor:
        plan["notes"].insert(0, f"Decided on {label}, the measure of relevance judgments: top-1 rises ({ceil_cell} "
                             f"{ceil_q[other]:.3f} vs old/old {other_floor:.3f}) while {label} falls, so the "
                             "new model ranks the judged documents worse.")
    if other and choice is not options[0] and (disagree := other_metrics_fall(choice, options[0], metric)):
        plan["notes"].insert(0, disagree)
    if 0 < sizes.n_held <= sizes.n and new_better:  # also when it holds them all: nothing is embedded again
        plan["notes"].append(f"Items re-embedded count every gallery item an option needs, the {sizes.n_held} whose "
                             "new vectors this workspace holds (the evaluation sample, and any earlier backfill) "
                             "included: their vectors are in this workspace, not in the serving index (`backfill` "
                             "copies them from the workspace rather than embedding them again).")
    if by_item:
        plan["notes"].insert(0, "Without labels the report cannot tell whether the new model is better or whether "
                             "the layer passes the compatibility criterion. This plan assumes the new model is better "
                             f"and asks every option to reach {format_share(target_share, 0)} of own-item retrieval (top-1 "
                             f"{target:.3f}: each new query finds its own item first).")
    if plan["adapter_passes"] is False and new_better:
        plan["notes"].insert(0, f"The {kind} layer FAILS the compatibility criterion ({up_cell} {label} "
                             f"{up_q[metric]:.3f} ≤ old/old {floor:.3f}). Offer instead: "
                             f"{bridge_alternatives(kind, partial is not None, short=True)}.")
    elif plan["adapter_passes"] is False:  # nothing to bridge to: the new model itself is no better
        plan["notes"].insert(0, f"The {kind} layer FAILS the compatibility criterion too ({up_cell} {label} "
                             f"{up_q[metric]:.3f} ≤ old/old {floor:.3f}).")
    if new_better and (head_note := head_gain_words(report.headline, kind, metric != "top1", new_floor)):
        plan["notes"].insert(0, head_note)
    if not new_better:
        gains = "a backfill would not gain" if choice["name"] in LAYER_OPTIONS else \
            "neither a layer nor a backfill would gain"
        plan["notes"].insert(0, f"The new model is not better than the old one on {sample_words(on_sample)} "
                             f"({ceil_cell} {label} {ceiling:.3f} vs old/old {new_floor:.3f}): {gains}.")
    return Plan(**plan)

