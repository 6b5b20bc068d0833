"""The sentence a plan gives for its recommendation: why this option, and why not the layer alone.

It names what the choice costs (items re-embedded, time) and the measured numbers it rests on; a
layer option whose number needs some items' new vectors (a cascade) says so instead of "nothing
re-embedded".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from embridge.core.evaluation.headline import metric_label
from embridge.core.formatting import beyond_backfill, format_beta, format_duration, format_share, sample_words
from embridge.core.plan.option_row import target_value, within_noise
from embridge.core.report.report_record import Report

LAYER_OPTIONS = ("adapter_only", "forward_transform", "fusion", "cascade")


def _embedding(option: Mapping[str, Any]) -> str:
    """'with nothing re-embedded', or the items whose new vectors the option's number was measured with."""
    items = int(option.get("items_embedded") or 0)
    return "with nothing re-embedded" if not items else f"with the new vectors of {items} items it was measured with"


def _on_sample(option: Mapping[str, Any], metric: str, ceiling_floor: float | None) -> str:
    """' (on the evaluation sample: 0.712 vs old/old 0.651)': where an option's gain retained was measured,
    when that is not the gallery of the numbers beside it ('' otherwise)."""
    value = (option.get("quality_sample") or {}).get(metric)
    if ceiling_floor is None or not isinstance(value, int | float):
        return ""
    return f" (on the evaluation sample: {value:.3f} vs old/old {ceiling_floor:.3f})"


def _noise_words(options: Sequence[Mapping[str, Any]], m: str, metric: str, floor: float) -> str:
    """'; the fusion option's top-1 0.986 beats old/old 0.978 only within noise (…)' for the layers that pass
    the criterion by less than the queries can tell ('' when none does)."""
    noisy = [o for o in options if o["name"] in LAYER_OPTIONS and o.get("passes_criterion") and within_noise(o)]
    return "".join(f"; the {o['title']} option's {m} {o['quality'][metric]:.3f} beats old/old {floor:.3f} only "
                   f"within noise (95% interval of the difference {o['improvement_ci'][0]:+.3f} to "
                   f"{o['improvement_ci'][1]:+.3f}, paired bootstrap over the test queries)" for o in noisy)


def _bridge_noise(choice: Mapping[str, Any], metric: str,
                  gains: str = "the transition may gain nothing before the backfill") -> str:
    """'; its margin over old/old is within noise (…)' for a layer or bridge recommended whose improvement's
    interval reaches zero: it may serve no better than today by anything the test queries can show."""
    if not within_noise(choice):
        return ""
    low, high = (choice.get("improvement_ci") or [0.0, 0.0])[:2]
    return (f"; but its margin over old/old is within noise (95% interval of the difference {low:+.3f} to "
            f"{high:+.3f}, paired bootstrap over the test queries), so {gains}")


def plan_reason(plan: Mapping[str, Any], choice: Mapping[str, Any], report: Report, floor: float,
                ceiling: float, gain_threshold: float, target_share: float, fraction: float | None = None,
                ceiling_floor: float | None = None) -> str:
    """``floor``: old/old on the whole gallery; ``ceiling_floor``: old/old on new/new's gallery when that
    is smaller (what the new model is compared with)."""
    kind, ceil_cell = report.adapter["kind"], report.ceiling_cell
    new_floor = floor if ceiling_floor is None else ceiling_floor
    metric = str(plan.get("metric") or "top1")
    m = metric_label(metric)
    layer = next(o for o in plan["options"] if o["name"] in LAYER_OPTIONS)
    name = choice["name"]
    sampled, layer_sampled = _on_sample(choice, metric, ceiling_floor), _on_sample(layer, metric, ceiling_floor)
    if name == "stay":
        return (f"Stay: the new model is not better than the old one on {sample_words(ceiling_floor)} ({ceil_cell} "
                f"{m} {ceiling:.3f} vs old/old {new_floor:.3f}), so re-embedding or bridging would cost without a "
                f"gain{_noise_words(plan['options'], m, metric, floor)}.")
    if name in LAYER_OPTIONS and choice["passes_criterion"] is None:
        return (f"{choice['title']}: judged by own-item retrieval (no labels), {format_share(choice['quality'][metric])} of "
                f"new queries find their own item first through it, at least {format_share(target_share, 0)}, "
                f"{_embedding(choice)}, in {format_duration(choice['time_s'])}.")
    if name in LAYER_OPTIONS and choice.get("best_passing_bridge"):
        cost = choice["serving_cost"]
        k = cost["reranks_per_query"]
        reranks = f" and {k} re-ranked item{'s' if k != 1 else ''} per query" if k else ""
        ranked = choice["best_passing_bridge"]  # the options it was ranked with, by the ranking's own record
        others, where = ranked["with"], " on the evaluation sample" if ranked["on_sample"] else ""
        which = "the only option" if not others else \
            f"the best{where} of the {len(others) + 1} options (with {', '.join(others)})"
        return (f"{choice['title']}: {which} that passes the compatibility criterion without re-embedding "
                f"({m} {choice['quality'][metric]:.3f} > old/old {floor:.3f}); it keeps "
                f"{format_share(choice['gain_retained'])} of the full-backfill gain{sampled} from day one, at the cost of both "
                f"encoders during the transition{reranks}{_bridge_noise(choice, metric)}. The full backfill "
                f"({ceil_cell} {m} {ceiling:.3f}) remains the way to the whole gain.")
    if name in LAYER_OPTIONS and plan.get("new_better") is False:
        return (f"{choice['title']}: the new model alone is not better than the old one ({ceil_cell} {m} "
                f"{ceiling:.3f} vs old/old {new_floor:.3f} on {sample_words(ceiling_floor)}), but new queries through the layer search better than today "
                f"({m} {choice['quality'][metric]:.3f} > old/old {floor:.3f}) {_embedding(choice)}; a backfill would "
                "give that up.")
    if name in LAYER_OPTIONS:
        gain = choice["gain_retained"]
        reached = ""
        if gain is not None and gain < gain_threshold:  # enough by the target share, not by its gain
            own = float(choice.get("ceiling", ceiling))
            value = target_value(choice, metric)
            # an option measured with its own new model (bt2's head, fct's space) has its own full backfill
            of = f"the full backfill's {own:.3f}" if own == float(ceiling) else \
                f"its own full backfill's {own:.3f} (new/new where this option was measured)"
            reached = (f", under the {format_share(gain_threshold, 0)} threshold, but reaches {m} {value:.3f}, at "
                       f"least {format_share(target_share, 0)} of {of} (the target share)")
        return (f"{choice['title']}: it passes the compatibility criterion ({m} {choice['quality'][metric]:.3f} > "
                f"old/old {floor:.3f}) and keeps {format_share(gain)} of the full-backfill gain{beyond_backfill(gain)}"
                f"{sampled}{reached} "
                f"{_embedding(choice)}, in {format_duration(choice['time_s'])}"
                f"{_bridge_noise(choice, metric, 'new queries may search no better than today until a backfill')}.")
    embedded = int(layer.get("items_embedded") or 0)  # a cascade's number stands on some items' new vectors
    subject = f"the {kind} layer alone" if not embedded else f"the {kind} option (with the new vectors of {embedded} items)"
    if layer.get("acceptable"):  # acceptable too, but the choice re-embeds fewer items
        than = ("more than this" if int(layer["items_embedded"] or 0) > int(choice.get("items_embedded") or 0)
                else "as many as this re-embeds")
        why = (f"the {layer['title']} option is acceptable too ({m} {layer['quality'][metric]:.3f}) but needs the "
               f"new vectors of {layer['items_embedded']} items, {than}")
    elif layer["passes_criterion"] is None:
        why = (f"{subject} lets only {format_share(layer['quality'][metric])} of new queries find their own "
               f"item first (below {format_share(target_share, 0)}; no labels, so own-item retrieval is the measure)")
    elif not layer["passes_criterion"]:
        why = (f"{subject} fails the compatibility criterion ({m} {layer['quality'][metric]:.3f} vs "
               f"old/old {floor:.3f})")
    else:
        why = (f"{subject} keeps only {format_share(layer['gain_retained'])} of the full-backfill gain{layer_sampled} "
               f"(below {format_share(gain_threshold, 0)})")
    if name == "partial_backfill":
        return (f"Partial backfill: {why}; re-embedding {format_share(choice['fraction'], 0)} of the gallery "
                f"({choice['items_embedded']} items, {format_duration(choice['time_s'])}) in {choice['policy']} order "
                f"reaches {m} {choice['quality'][metric]:.3f}"
                + (" (interpolated between two measured points of the curve)" if choice.get("interpolated") else "")
                + f", at least {format_share(target_share, 0)} of the full backfill's {ceiling:.3f}.")
    if not report.backfill.get("policies"):
        return (f"Full backfill: {why}; partial-backfill quality was not measured for this report's relevance "
                f"protocol, so re-embed all {choice['items_embedded']} items ({format_duration(choice['time_s'])}).")
    forced = next((o for o in plan["options"] if o["name"] == "partial_backfill"), None)
    if forced is None and fraction is not None:  # no partial option at that β: nothing was searched either
        return (f"Full backfill: {why}, and the fraction given, {fraction:g}, gives no partial backfill to weigh "
                "(β = 0 is the layer alone, β = 1 the full backfill, and a share under one item re-embeds none); with no "
                f"fraction given the plan looks for the smallest β that reaches {format_share(target_share, 0)} of the "
                f"full backfill's {m} ({ceiling:.3f}). Re-embed all {choice['items_embedded']} items "
                f"({format_duration(choice['time_s'])}).")
    if forced is not None and fraction is not None:  # the user's β, not a search for the smallest one
        return (f"Full backfill: {why}, and the partial backfill at β = {format_beta(fraction)} (the fraction given) "
                f"reaches {m} {forced['quality'][metric]:.3f}, short of {format_share(target_share, 0)} of the full backfill's "
                f"{ceiling:.3f}; with no fraction given the plan looks for the smallest β that reaches it. Re-embed all "
                f"{choice['items_embedded']} items ({format_duration(choice['time_s'])}).")
    return (f"Full backfill: {why}, and no partial backfill reaches {format_share(target_share, 0)} of the full backfill's "
            f"{m} ({ceiling:.3f}) short of re-embedding everything; re-embed all {choice['items_embedded']} items "
            f"({format_duration(choice['time_s'])}).")


def other_metrics_fall(choice: dict[str, Any], stay: dict[str, Any], metric: str) -> str | None:
    """A note when the recommended option, chosen on ``metric`` (nDCG@10 with judgments), finds fewer first
    hits than today's system (top-1, MRR@10 lower than staying): the two measures disagree, and a team
    serving one answer per query should know."""
    ours, today = choice.get("quality") or {}, stay.get("quality") or {}
    falls = [f"{metric_label(m)} {ours[m]:.3f} vs {today[m]:.3f}" for m in ("top1", "mrr@10") if m != metric
             and isinstance(ours.get(m), float | int) and isinstance(today.get(m), float | int) and ours[m] < today[m]]
    if not falls:
        return None
    return (f"{choice['title']} is recommended on {metric_label(metric)} ({ours[metric]:.3f} vs {today[metric]:.3f} "
            f"today), but {' and '.join(falls)} fall against staying: it ranks the judged documents better while "
            "putting a relevant one first less often.")
