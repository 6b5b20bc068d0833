"""Which gallery each plan option's quality was measured on, for its row in a table of options.

old/old and a layer search the whole gallery; new/new and the partial-backfill curves may search
the smaller evaluation sample, so the numbers in one table are not all of one gallery. Another run's
layer is weighed only where it was measured on this report's queries, gallery and sample.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from embridge.core.report.report_record import Report


def gallery_words(protocol: Any) -> str | None:
    """'the whole gallery (20000 items)': the gallery a protocol searched, short enough for a table cell."""
    if not isinstance(protocol, Mapping) or not protocol.get("gallery") or protocol.get("n_gallery") is None:
        return None
    return f"{protocol['gallery']} ({protocol['n_gallery']} items)"


def name_galleries(options: list[dict[str, Any]], report: Report, up_cell: str, ceil_cell: str) -> None:
    """Each option's ``measured_gallery``: its quality may come from the whole gallery (old/old, the layer)
    or from the evaluation sample (new/new, the partial-backfill curves), so a table row says which."""
    cell = {name: (report.cells.get(name) or {}).get("protocol") for name in ("old/old", up_cell, ceil_cell)}
    own = {"stay": cell["old/old"], options[1]["name"]: cell[up_cell], "partial_backfill": cell[ceil_cell],
           "full_backfill": cell[ceil_cell]}
    for option in options:
        if "measured_gallery" not in option:  # another run's layer names its own, where it is added
            option["measured_gallery"] = gallery_words(own.get(option["name"]))


COMPARED_ON = ("query_set", "n_queries", "gallery", "n_gallery", "relevance")


def same_galleries(measured: Any, floor: Any) -> bool:
    """True when a number was measured on the queries and gallery of this report's old/old cell (the
    search method may differ: a cascade searches its own way); unknown protocols are not the same."""
    if not isinstance(measured, Mapping) or not isinstance(floor, Mapping):
        return False
    return all(measured.get(k) == floor.get(k) for k in COMPARED_ON)


def incomparable_note(alt: Mapping[str, Any], floor: Any, sample: Any) -> tuple[str, str] | None:
    """(the option's note, a short reason for its protocol line) when another run's layer cannot be weighed
    against this report's numbers, or None when it can: it must be measured on old/old's queries and
    gallery, where gain retained is measured on new/new's evaluation sample (``sample``) on that very
    sample (the sample grows when more items are embedded), and on the workspace's data as it is now
    (``outgrown`` lists what changed since: added judgments leave the protocol's words as they were)."""
    where = (alt.get("measured_on") or {}).get("text") or "queries and a gallery it did not record"
    not_given = "so its gain retained and criterion are not given and it is not recommended"
    if not same_galleries(alt.get("measured_on"), floor):
        return (f"Measured on {where}, not on this report's old/old queries and gallery, {not_given}; report "
                "that run with this report's settings to compare it.",
                "not this report's queries and gallery, so not weighed against them")
    if sample is not None and not same_galleries(alt.get("sample_on"), sample):
        theirs = (alt.get("sample_on") or {}).get("text") or "an evaluation sample it did not record"
        ours = sample.get("text") if isinstance(sample, Mapping) else "unrecorded"
        sizes = [(x or {}).get("n_gallery") if isinstance(x, Mapping) else None for x in (alt.get("sample_on"), sample)]
        counted = f" ({sizes[0]} items; this report's holds {sizes[1]})" if None not in sizes else ""
        return (f"Its gain retained was measured on {theirs}, not on this report's evaluation sample ({ours}), "
                f"{not_given}; report that run again to compare it.",
                f"its gain retained was measured on another evaluation sample{counted}, so not weighed against "
                "this report's: report that run again")
    if alt.get("outgrown"):  # the same protocol words may stand for other data (judgments added, say)
        changes = "; ".join(alt["outgrown"])
        return (f"Measured before the workspace changed ({changes}), {not_given}; report that run again to "
                "compare it.", f"measured before the workspace changed ({changes}), so not weighed against this "
                "report: report that run again")
    return None
