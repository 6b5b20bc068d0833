"""How a plan chooses among its options: which are acceptable, the bridge kept for the transition when
no option that re-embeds nothing keeps enough of the gain, and the cheapest acceptable one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from embridge.core.plan.option_row import target_value, within_noise
from embridge.core.plan.plan_reason import LAYER_OPTIONS

BOTH_ENCODERS = ("fusion", "cascade")  # keep the old query in the loop: two encoders during the transition
# what the two targets mean, as `plan --help` and the Plan page's tooltips say it
GAIN_THRESHOLD_HELP = ("share of the full-backfill gain a layer must keep to be enough on its own (one that "
                       "reaches the target share is enough too)")
TARGET_SHARE_HELP = ("share of the full backfill's number (nDCG@10 with relevance judgments, else top-1) a "
                     "partial backfill must reach; a layer that reaches it is enough whatever gain it keeps")


def acceptable(opt: Mapping[str, Any], new_better: bool, gain_threshold: float, target: float, metric: str) -> bool:
    if opt.get("comparable") is False:  # measured on other galleries: not weighed against these numbers
        return False
    if opt["name"] == "stay":
        return not new_better
    if not new_better:  # no backfill gains; a layer that beats today's system without re-embedding still does,
        # by more than noise: a second encoder for a gain that is only which queries were drawn does not pay
        return (opt["name"] in LAYER_OPTIONS and opt["items_embedded"] == 0 and bool(opt["passes_criterion"])
                and not within_noise(opt))
    value = opt["quality"].get(metric)
    if opt["name"] == "full_backfill":
        return True
    if opt["name"] == "partial_backfill":
        return value is not None and value >= target - 1e-12
    gr = opt.get("gain_retained")
    value = target_value(opt, metric)
    reaches = value is not None and value >= target - 1e-12
    if opt["passes_criterion"] is None:  # no labels: own-item retrieval is all there is to judge
        return reaches
    return bool(opt["passes_criterion"]) and ((gr is not None and gr >= gain_threshold) or reaches)


def best_passing_bridge(options: list[dict[str, Any]], metric: str) -> dict[str, Any] | None:
    """A fusion or cascade option that is the best of those passing the criterion without re-embedding,
    when none of them reaches the gain threshold.

    Such an option keeps part of the gain from day one; it is recommended (for the transition)
    even below the gain threshold, because nothing else that re-embeds nothing does better. A weaker
    layer passing too does not change that (the choice once depended on how many passed, and so on
    which runs the plan was given). Options are ranked on the gallery their gains were measured on.
    """
    free = [o for o in options if o["name"] in LAYER_OPTIONS and o["items_embedded"] == 0
            and o.get("comparable") is not False]
    passing = [o for o in free if o["passes_criterion"] and o["quality"].get(metric) is not None]
    if any(o["acceptable"] for o in free) or not passing:
        return None
    # ranked where their gains are measured: on the evaluation sample when every one has its number there
    sample = all(isinstance((o.get("quality_sample") or {}).get(metric), int | float) for o in passing)
    def rank(o: dict[str, Any]) -> tuple[float, float, bool]:  # a tie: the whole gallery's number, then one encoder
        where = float((o["quality_sample"] if sample else o["quality"])[metric])
        return where, float(o["quality"][metric]), o["name"] not in BOTH_ENCODERS

    best = max(passing, key=rank)
    if best["name"] not in BOTH_ENCODERS:
        return None
    best["best_passing_bridge"] = {"with": [o["title"] for o in passing if o is not best], "on_sample": sample}
    return best


def choose(options: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    """The acceptable option that re-embeds least, then takes least time, then scores best; on a tie the one
    needing one encoder (a cascade re-ranking by every item's new vector is a full backfill with a second
    encoder and a re-rank: at the same cost and number the full backfill is chosen)."""
    ok = [o for o in options if o["acceptable"]]
    return min(ok, key=lambda o: (o["items_embedded"], o["time_s"] or 0.0, -(o["quality"].get(metric) or 0.0),
                                  o["name"] in BOTH_ENCODERS))
