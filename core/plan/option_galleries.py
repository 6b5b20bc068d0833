"""Which gallery each plan option's quality was measured on, for its row in a table of options.

old/old and a layer search the whole gallery; new/new and the partial-backfill curves may search
the smaller evaluation sample, so the numbers in one table are not all of one gallery.
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
