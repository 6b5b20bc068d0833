"""Which numbers are the headline: one definition read by every report, plan, run, page, command and file.

- :data:`HEADLINE` are the four numbers every surface leads with (the command-line contract's keys
  of ``embridge train`` and ``embridge report``);
- :data:`REPORT_SUMMARY` are the scalar numbers stored with a report (its row's summary, bundle
  metrics), :data:`RUN_SUMMARY` those of a training run (the held-out numbers a bundle carries);
- :func:`headline_metrics` are the per-cell metrics with confidence intervals, in figures, chain
  matrices and plan options; :func:`table_metrics` the per-cell columns of tables (the command
  line's ``cells`` and the app's metrics table): the same, with every recall@k of the report, and the
  judged metrics where a cell has them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

HEADLINE = ("old_old_top1", "new_new_top1", "upgraded_top1", "gain_retained")
METRIC_NOISE = 1e-9  # metric differences below this are float noise (a mean over < 1e9 queries moves by more)
JUDGED_METRICS = ("ndcg@10", "mrr@10")  # present when relevance comes from judgments
METRIC_LABELS = {"top1": "top-1", "ndcg@10": "nDCG@10", "mrr@10": "MRR@10"}  # as sentences name them


def exceeds(value: float, floor: float) -> bool:
    """Whether metric ``value`` is above ``floor`` by more than float noise (:data:`METRIC_NOISE`): two equal means
    summed in another order differ in their last bit. The compatibility criterion, "the new model is better" and
    "worse than today" all ask this."""
    return bool(value - floor >= METRIC_NOISE)


def metric_label(metric: str) -> str:
    """'top-1', 'nDCG@10', ... for a metric key (the key itself when it has no label)."""
    return METRIC_LABELS.get(metric, metric)


REPORT_SUMMARY = ("old_old_top1", "new_new_top1", "ceiling_top1", "old_old_sample_top1", "upgraded_sample_top1",
                  "upgraded_top1", "gain_retained",
                  "gain_retained_note", *JUDGED_METRICS, "arr", "arr_k", "compatible", "negative_flip_rate",
                  "positive_flip_rate", "relative_nfr", "n_queries")
JUDGED_HEADLINE = ("{}", "old_old_{}", "new_new_{}", "ceiling_{}", "old_old_sample_{}", "upgraded_sample_{}",
                   "compatible_{}", "gain_retained_{}")  # per judged metric
# the judged numbers beside the upgraded one: what a verdict on nDCG@10 needs (present only with judgments)
JUDGED_SUMMARY = tuple(form.format(metric) for metric in JUDGED_METRICS for form in JUDGED_HEADLINE[1:])
RUN_SUMMARY = (*HEADLINE, "ceiling_top1", "old_old_sample_top1", "upgraded_sample_top1", "gain_retained_note", "compatible",
               "upgraded_pair_top1", "n_queries", "arr",
               "negative_flip_rate", "positive_flip_rate", *JUDGED_METRICS, *JUDGED_SUMMARY, "pairs_used",
               "heldout_protocol", "relevance")
BACKFILL_AREA = "backfill_area_"  # report summary keys per backfill policy: backfill_area_<policy>


def report_number_names() -> frozenset[str]:
    """Every scalar number a report's headline may carry (the top level of ``embridge report --json``).

    A report has a subset of them (the judged ones only with relevance judgments), so a name outside
    this set is a typo whatever the report, and a release gate can refuse it before any work.
    """
    judged = {form.format(metric) for metric in JUDGED_METRICS for form in JUDGED_HEADLINE}
    return frozenset({name for name in REPORT_SUMMARY if not name.endswith("_note")} | judged)


def headline_metrics(recall_k: int = 10, map_key: str = "mAP") -> list[str]:
    """Per-cell headline metrics of a scoring plan: top-1, top-5, its recall@k and its mAP flavour."""
    return ["top1", "top5", f"recall@{recall_k}", map_key]


def table_metrics(recall_ks: Sequence[int], recall_k: int = 10, map_key: str = "mAP",
                  present: Iterable[str] = ()) -> list[str]:
    """Table columns: the headline metrics with recall@k for every k, plus judged metrics in ``present``."""
    ks = list(recall_ks) or [recall_k]
    out: list[str] = []
    for name in headline_metrics(recall_k, map_key):
        out += [f"recall@{k}" for k in ks] if name == f"recall@{recall_k}" else [name]
    have = set(present)
    return out + [m for m in JUDGED_METRICS if m in have]


def pick(values: Mapping[str, Any], keys: Sequence[str], scalar_only: bool = False) -> dict[str, Any]:
    """``values`` restricted to ``keys`` (in their order), skipping absent keys (and non-scalars if asked)."""
    def scalar(v: Any) -> bool:
        return v is None or isinstance(v, bool | int | float | str)

    return {k: values[k] for k in keys if k in values and (not scalar_only or scalar(values[k]))}


@dataclass(frozen=True)
class Weighed:
    """The numbers a verdict on a layer weighs, under the metric it is decided on (see :func:`weighed`)."""

    name: str  # "nDCG@10" | "top-1", as sentences name it
    old_old: float | None
    upgraded: float | None
    ceiling: float | None  # new/new, on the upgraded cell's gallery where measured there
    gain_retained: float | None
    compatible: bool | None
    ceiling_floor: float | None = None  # old/old on the ceiling's gallery (old_old where they share one)
    upgraded_sample: float | None = None  # the upgraded system on that gallery, where it is not old_old's

    @property
    def new_floor(self) -> float | None:
        """old/old on the ceiling's gallery: what the new model is compared with."""
        return self.old_old if self.ceiling_floor is None else self.ceiling_floor

    @property
    def new_better(self) -> bool | None:
        """Whether the new model beats the old on the ceiling's own gallery (never across two galleries)."""
        floor = self.new_floor
        if not isinstance(self.ceiling, int | float) or not isinstance(floor, int | float):
            return None
        return exceeds(float(self.ceiling), float(floor))


def decides_on_ndcg(values: Mapping[str, Any]) -> bool:
    """Whether a report's or run's numbers are decided on nDCG@10: they have nDCG@10 for the upgraded and
    old/old cells, which only graded relevance judgments give."""
    return all(isinstance(values.get(k), int | float) and not isinstance(values.get(k), bool)
               for k in ("ndcg@10", "old_old_ndcg@10"))


def weighed(values: Mapping[str, Any], judged: bool | None = None) -> Weighed:
    """nDCG@10 when relevance comes from graded judgments (``judged``; by default :func:`decides_on_ndcg`),
    top-1 otherwise: the report's verdicts, its headline, ``train``'s verdict, the release gate and a
    bundle's warning read the same keys of a report or run summary through this."""
    if judged is None:
        judged = decides_on_ndcg(values)
    if judged:
        return Weighed("nDCG@10", values.get("old_old_ndcg@10"), values.get("ndcg@10"),
                       values.get("ceiling_ndcg@10", values.get("new_new_ndcg@10")),
                       values.get("gain_retained_ndcg@10"), values.get("compatible_ndcg@10"),
                       values.get("old_old_sample_ndcg@10"), values.get("upgraded_sample_ndcg@10"))
    return Weighed("top-1", values.get("old_old_top1"), values.get("upgraded_top1"),
                   values.get("ceiling_top1", values.get("new_new_top1")), values.get("gain_retained"),
                   values.get("compatible"), values.get("old_old_sample_top1"), values.get("upgraded_sample_top1"))


def criterion(values: Mapping[str, Any]) -> dict[str, Any] | None:
    """The compatibility criterion a report's or run's numbers meet or miss, on the metric it is decided
    on (:func:`weighed`): ``{"metric": "nDCG@10", "compatible": False}``; None without a verdict
    (own-item relevance, or no held-out numbers). ``runs`` and the Train page's runs table list it."""
    w = weighed(values)
    return {"metric": w.name, "compatible": w.compatible} if isinstance(w.compatible, bool) else None


def criterion_text(values: Mapping[str, Any]) -> str:
    """'passes (top-1)', 'FAILS (nDCG@10)' or 'FAILS (top-1, equal to old/old)' where the layer ties
    today's system (the criterion asks for more; the report's table reads 'equal'); empty without a verdict."""
    c = criterion(values)
    if c is None:
        return ""
    return (f"{'passes' if c['compatible'] else 'FAILS'} ({c['metric']}{', equal to old/old' * ties(values)}"
            f"{', within noise' * (within_noise(values) is not None)})")


def within_noise(values: Mapping[str, Any]) -> tuple[float, float] | None:
    """The 95% interval of the upgraded system's improvement over old/old (paired bootstrap over the test
    queries) on the metric the criterion is decided on, when the layer passes but the interval reaches 0:
    a pass the test queries cannot tell from none. None otherwise (or when no interval was recorded)."""
    w = weighed(values)
    ci = (values.get("improvement_ci") or {}).get("ndcg@10" if w.name == "nDCG@10" else "top1")
    return (float(ci[0]), float(ci[1])) if w.compatible is True and reaches_zero(ci) else None


def reaches_zero(ci: Any) -> bool:
    """Whether an improvement's recorded interval ``[low, high]`` reaches 0 (False when none was recorded)."""
    ok = isinstance(ci, list | tuple) and len(ci) == 2 and all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in ci)
    return ok and ci[0] <= 0


def drop_words(ci: Any) -> str:
    """How serving through a layer below old/old fares: 'makes search worse than today', or where the
    improvement's interval ``[low, high]`` holds 0, a drop the test queries cannot tell from none (the report's
    verdict and a bundle's warning say it alike)."""
    if not reaches_zero(ci) or float(ci[1]) < 0:
        return "makes search worse than today"
    return (f"scores below today's system, though within noise (the 95% interval of the improvement over old/old "
            f"is {float(ci[0]):+.3f} to {float(ci[1]):+.3f})")


def noise_words(values: Mapping[str, Any]) -> str:
    """' (within noise: the 95% interval of the improvement over old/old is -0.022 to +0.043)' for a pass
    that :func:`within_noise` finds; '' otherwise. Train, runs, the report and the plan say it alike."""
    ci = within_noise(values)
    return "" if ci is None else (f" (within noise: the 95% interval of the improvement over old/old is "
                                  f"{ci[0]:+.3f} to {ci[1]:+.3f})")


def ties(values: Mapping[str, Any]) -> bool:
    """Whether the upgraded number equals old/old's on the metric the criterion is decided on."""
    w = weighed(values)
    numbers = (w.upgraded, w.old_old)
    return all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in numbers) \
        and abs(float(w.upgraded) - float(w.old_old)) < METRIC_NOISE  # what the criterion cannot tell apart


def upgraded_text(values: Mapping[str, Any]) -> str:
    """'upgraded nDCG@10 0.642' (graded judgments) or 'upgraded top-1 0.810': the upgraded number the
    criterion is decided on (:func:`weighed`), for one-line summaries of a run; empty without it."""
    w = weighed(values)
    ok = isinstance(w.upgraded, int | float) and not isinstance(w.upgraded, bool)
    return f"upgraded {w.name} {w.upgraded:.3f}" if ok else ""


def with_judged_rows(rows: dict[str, Any], head: dict[str, Any]) -> dict[str, Any]:
    """The comparison rows with a row for each judged metric the headline holds (nDCG@10, MRR@10: the
    number a judged criterion is decided on), so the HTML, the JSON and the app list it like the others;
    rows already there are kept (a report written before these rows existed gets them when read)."""
    out = dict(rows)
    for key in JUDGED_METRICS:
        if key in head and key not in out:
            out[key] = {"upgraded": head.get(key), "old_old": head.get(f"old_old_{key}"),
                        "new_new": head.get(f"new_new_{key}"), "passes": head.get(f"compatible_{key}"),
                        "gain_retained": head.get(f"gain_retained_{key}"),
                        "gain_retained_note": head.get(f"gain_retained_{key}_note")}
            if head.get(f"old_old_sample_{key}") is not None:  # the gain's own numbers, on the sample
                out[key] |= {"old_old_sample": head[f"old_old_sample_{key}"],
                             "upgraded_sample": head.get(f"upgraded_sample_{key}")}
    return out
