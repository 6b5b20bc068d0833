"""Where a number comes from: the query set and gallery it was measured on, in one phrase.

A training run's numbers are measured on the held-out test fold (new queries of the fold against
the fold's old vectors); a report's on its query set against its gallery. Every page of the app
and the CLI print "0.845 (120 queries of the test fold; gallery 120 items)" through
:func:`with_source`, so numbers from different protocols never look alike. When a record carries
an explicit ``protocol`` mapping (query_set, n_queries, gallery, n_gallery) that is used as is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class NumberSource:
    query_set: str
    n_queries: int | None
    gallery: str
    n_gallery: int | None

    def label(self) -> str:
        """'120 queries of the held-out test fold; gallery: 120 items of the test fold'."""
        queries = f"{self.n_queries} queries of the {self.query_set}" if self.n_queries is not None \
            else f"queries of the {self.query_set}"
        gallery = f"{self.n_gallery} items of the {self.gallery}" if self.n_gallery is not None else self.gallery
        return f"{queries}; gallery: {gallery}"

    def short(self) -> str:
        """'test fold, 120 q / 120 g' for narrow places such as run pickers."""
        q = "" if self.n_queries is None else f", {self.n_queries} q"
        g = "" if self.n_gallery is None else f" / {self.n_gallery} g"
        return f"{self.query_set}{q}{g}"


def _explicit(protocol: Any) -> NumberSource | None:
    if isinstance(protocol, dict) and "query_set" in protocol:
        return NumberSource(str(protocol["query_set"]), _int(protocol.get("n_queries")),
                            str(protocol.get("gallery") or "gallery"), _int(protocol.get("n_gallery")))
    return None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) else None


def source_of_run(run: dict[str, Any]) -> NumberSource:
    """The held-out test fold a training run's recorded numbers come from."""
    metrics = run.get("metrics") or {}
    explicit = _explicit(metrics.get("protocol"))
    if explicit is not None:
        return explicit
    n = _int(metrics.get("n_queries"))
    return NumberSource("held-out test fold", n, "test fold (old vectors)", n)


def source_of_report(report: dict[str, Any]) -> NumberSource:
    """The query set and gallery a report's cells were scored on."""
    explicit = _explicit(report.get("evaluation") or report.get("protocol"))
    if explicit is not None:
        return explicit
    sizes = report.get("sizes") or {}
    gallery = "held-out gallery (train fold left out)" if sizes.get("heldout_gallery") else "gallery"
    return NumberSource(str(sizes.get("query_source") or "query split"),
                        _int(sizes.get("queries_scored", sizes.get("queries"))), gallery, _int(sizes.get("gallery")))


def with_source(text: str, source: NumberSource | None) -> str:
    """``text`` followed by where it was measured, in brackets."""
    return text if source is None else f"{text} ({source.label()})"
