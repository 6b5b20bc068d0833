"""One row of the plan's table, and the old/old numbers its gain retained and criterion are measured from.

old/old and a layer's number search the whole old gallery; new/new and the partial-backfill curves
search the evaluation sample (the items both models embedded). A gallery's size moves every number,
so whether the new model is better is measured against old/old on that sample (:func:`ceiling_floor`),
and a layer's gain retained from its number on the sample too (``quality_sample``), all three on one
gallery; its criterion (beating old/old) stays on the whole gallery.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from embridge.core.evaluation.compat import criterion, gain_note, gain_retained
from embridge.core.evaluation.headline import metric_label, reaches_zero
from embridge.core.report.report_record import Report

SAMPLED = ("top1", "top5", "ndcg@10", "mrr@10")  # metrics a report records on the evaluation sample


def sample_numbers(values: Mapping[str, Any], prefix: str) -> dict[str, float]:
    """The ``prefix``_* numbers a report headline or run record holds on the evaluation sample, by metric
    (``prefix``: ``old_old_sample`` or ``upgraded_sample``)."""
    return {m: float(v) for m in SAMPLED if isinstance(v := values.get(f"{prefix}_{m}"), int | float)}


def target_value(option: Mapping[str, Any], metric: str) -> float | None:
    """The number an option's target share is weighed on: its number on the evaluation sample where it has
    one (the target is a share of new/new there), else its own."""
    return (option["quality_sample"] if "quality_sample" in option else option["quality"]).get(metric)


def option_row(name: str, title: str, time_s: float | None, storage: int, embedded: int, quality: dict[str, float],
               floor: float | None, ceiling: float, notes: list[str], metric: str = "top1",
               on_sample: tuple[float, Mapping[str, float]] | None = None, **extra: Any) -> dict[str, Any]:
    """One option; its gain retained and criterion are measured on ``metric`` (``floor``: old/old on the
    option's own gallery). ``on_sample``: (old/old, the option's quality) on the ceiling's gallery where
    that is another one than the option's: gain retained is measured there (None without the option's
    number on it), and the option row keeps that number as ``quality_sample``."""
    value = quality.get(metric)
    unmeasured = value is None or floor is None
    row: dict[str, Any] = {"name": name, "title": title, "time_s": time_s, "storage_bytes": int(storage),
                           "items_embedded": embedded, "quality": quality}
    if on_sample is None:
        row["gain_retained"] = None if unmeasured else gain_retained(value, floor, ceiling)
        row["gain_retained_note"] = gain_note(floor, ceiling)
    else:
        sample_floor, sample_quality = on_sample
        row["quality_sample"] = dict(sample_quality)
        measured = sample_quality.get(metric)
        row["gain_retained"] = None if unmeasured or measured is None else gain_retained(measured, sample_floor, ceiling)
        row["gain_retained_note"] = gain_note(sample_floor, ceiling)
    return {**row, "passes_criterion": None if unmeasured else criterion(value, floor), "notes": notes, **extra}


def curve_floor(report: Report, n_sample: int, n: int, floor: float, metric: str = "top1") -> float | None:
    """old/old ``metric`` on the evaluation sample (the partial-backfill curves' and new/new's gallery).

    Read from the report's headline (``old_old_sample_*``), else from its curves' floor
    (``backfill.old_old``); a report that recorded neither (made before they were measured) has it only
    when the sample is the whole gallery.
    """
    recorded = report.headline.get(f"old_old_sample_{metric}")
    if recorded is None:
        recorded = ((report.backfill.get("old_old") or {}).get("metrics") or {}).get(metric)
    if recorded is not None:
        return float(recorded)
    return floor if n_sample == n else None


def ceiling_floor(report: Report, n_sample: int, n: int, floor: float, metric: str = "top1") -> float | None:
    """old/old on the ceiling's gallery where that is not old/old's own (None where they are the same, or
    the report did not measure it: then the whole gallery's old/old stands in, as it always did)."""
    if n_sample == int(report.sizes.get("gallery_old") or n):  # new/new searched old/old's own gallery
        return None
    return curve_floor(report, n_sample, n, floor, metric)


def within_noise(opt: Mapping[str, Any]) -> bool:
    """Whether an option's improvement over old/old has a 95% interval reaching zero (False when unknown: a
    number recorded before intervals were kept)."""
    return reaches_zero(opt.get("improvement_ci"))


def draws_note(curve: Mapping[str, Any], metric: str, beta: float) -> str | None:
    """For a curve averaged over several random orders: what single random backfills of share ``beta``
    scored on the sample (the lowest and highest draw, read as the curve is at ``beta``), None otherwise."""
    spread = (curve.get("spread") or {}).get(metric)
    betas = [float(b) for b in curve.get("betas") or []]
    if not spread or len(spread) != len(betas):
        return None
    low = float(np.interp(beta, betas, [float(s[0]) for s in spread]))
    high = float(np.interp(beta, betas, [float(s[1]) for s in spread]))
    return (f"The random curve is the mean of {curve.get('draws')} random draws of that share of the sample: single "
            f"draws scored {metric_label(metric)} {low:.3f} to {high:.3f} there, so one random backfill may land "
            "anywhere in that range.")
