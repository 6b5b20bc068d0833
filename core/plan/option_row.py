"""One row of the plan's table, and the old/old numbers its gain retained and criterion are measured from.

old/old and a layer's number search the whole old gallery; new/new and the partial-backfill curves
search the evaluation sample (the items both models embedded). Whether the new model is better, and the
full backfill's gain, are measured against old/old on that sample (:func:`ceiling_floor`), since a
smaller gallery lifts every number; a layer's gain is its own gain over old/old on the whole gallery as
a share of that full-backfill gain (:func:`embridge.core.evaluation.compat.gain_retained`).
"""

from __future__ import annotations

from typing import Any

from embridge.core.evaluation.compat import gain_note, gain_retained
from embridge.core.report.report_record import Report


def option_row(name: str, title: str, time_s: float | None, storage: int, embedded: int, quality: dict[str, float],
               floor: float | None, ceiling: float, notes: list[str], metric: str = "top1",
               ceiling_floor: float | None = None, **extra: Any) -> dict[str, Any]:
    """One option; its gain retained and criterion are measured on ``metric`` (``floor``: old/old on the
    option's own gallery; ``ceiling_floor``: old/old on the ceiling's, where that is another gallery)."""
    value = quality.get(metric)
    unmeasured = value is None or floor is None
    return {"name": name, "title": title, "time_s": time_s, "storage_bytes": int(storage), "items_embedded": embedded,
            "quality": quality,
            "gain_retained": None if unmeasured else gain_retained(value, floor, ceiling, ceiling_floor),
            "gain_retained_note": gain_note(floor if ceiling_floor is None else ceiling_floor, ceiling),
            "passes_criterion": None if unmeasured else bool(value > floor), "notes": notes, **extra}


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
    if n_sample == n:
        return None
    return curve_floor(report, n_sample, n, floor, metric)
