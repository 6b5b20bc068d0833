"""The report as a typed object: what ``build_report``/``chain_report`` return and ``report.json`` holds.

:class:`Report` owns its JSON form (:meth:`Report.to_json`, :meth:`Report.from_json`, the same keys
``report.json`` always had, with the schema ``embridge.report/<version>``), its headline metrics
(:mod:`embridge.core.evaluation.headline`) and the summary stored with its row. Sections stay plain dicts of
JSON values (cells, comparison, flips…); pages and commands read the top-level attributes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from embridge.core.errors import InputError
from embridge.core.evaluation.headline import (
    BACKFILL_AREA,
    JUDGED_METRICS,
    JUDGED_SUMMARY,
    REPORT_SUMMARY,
    headline_metrics,
    pick,
    table_metrics,
)
from embridge.core.json_values import json_safe

SCHEMA_VERSION = 1
SCHEMA_PREFIX = "embridge.report/"
SCHEMA = f"{SCHEMA_PREFIX}{SCHEMA_VERSION}"
_OPTIONAL = ("chain", "report_run_id", "files")  # written only when set
_CHAIN_KEYS = ("schema", "kind", "created", "embridge_version", "report_id", "chain", "protocol", "sizes", "scoring",
               "search", "report_run_id", "files")


# a cascade's partial-backfill curves, as every surface that shows their areas words them
CASCADE_CURVES = ("items not yet backfilled are served through the cascade's base layer alone, without its re-rank "
                  "of the old index's recall, so β = 0 is that layer, not the cascade")


def run_heldout(run: dict[str, Any]) -> dict[str, Any]:
    """A report's run section's held-out numbers and validation metric (reports before 2026 named the key
    ``heldout_test_fold``)."""
    held = run.get("heldout") or run.get("heldout_test_fold") or {}
    return held if isinstance(held, dict) else {}


@dataclass
class Report:
    """One compatibility report (``kind`` "upgrade") or chain report (``kind`` "chain").

    ``report_id`` and ``files`` are set when it is written; everything else when it is built.
    """

    SCHEMA_VERSION: ClassVar[int] = SCHEMA_VERSION

    schema: str = SCHEMA
    kind: str = "upgrade"
    created: str | None = None
    embridge_version: str | None = None
    report_id: int | None = None
    run: dict[str, Any] = field(default_factory=dict)
    adapter: dict[str, Any] = field(default_factory=dict)
    models: dict[str, Any] = field(default_factory=dict)
    protocol: list[str] = field(default_factory=list)
    sizes: dict[str, Any] = field(default_factory=dict)
    scoring: dict[str, Any] = field(default_factory=dict)
    search: dict[str, Any] = field(default_factory=dict)
    cells: dict[str, Any] = field(default_factory=dict)
    upgraded_cell: str | None = None
    ceiling_cell: str | None = None
    headline: dict[str, Any] = field(default_factory=dict)
    comparison: dict[str, Any] = field(default_factory=dict)
    flips: dict[str, Any] = field(default_factory=dict)
    flipped_queries: dict[str, Any] = field(default_factory=dict)
    per_label: dict[str, Any] = field(default_factory=dict)
    compatibility_rate: dict[str, Any] | None = None
    verdicts: list[str] = field(default_factory=list)
    backfill: dict[str, Any] = field(default_factory=dict)
    served: dict[str, Any] | None = None  # the gallery as the latest backfill left it (see evaluation.served)
    chain: dict[str, Any] | None = None
    report_run_id: int | None = None
    files: dict[str, str] | None = None

    # -- JSON ------------------------------------------------------------------------------
    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Report:
        """From ``report.json``'s content (absent sections take empty defaults); a newer schema is refused."""
        schema = str(data.get("schema") or SCHEMA)
        version = _schema_version(schema)
        if version > SCHEMA_VERSION:
            raise InputError("report", f"has schema '{schema}'; this embridge reads up to '{SCHEMA}'")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known and v is not None}
        values["compatibility_rate"] = data.get("compatibility_rate")
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        """The JSON object of ``report.json`` (plain values; NaN as null)."""
        keys = _CHAIN_KEYS if self.is_chain else [f.name for f in fields(self) if f.name != "chain"]
        out = {k: getattr(self, k) for k in keys}
        for key in _OPTIONAL:
            if key in out and out[key] is None:
                del out[key]
        return json_safe(out)

    @property
    def schema_version(self) -> int:
        return _schema_version(self.schema)

    # -- what callers read -----------------------------------------------------------------
    @property
    def is_chain(self) -> bool:
        return self.kind == "chain"

    @property
    def run_id(self) -> int | None:
        """The training run whose layer this report measures (None for a chain)."""
        return None if self.is_chain else self.run.get("id")

    @property
    def adapter_id(self) -> int | None:
        return None if self.is_chain else self.adapter.get("id")

    @property
    def method(self) -> str | None:
        """The layer's kind (affine, fusion, …)."""
        return self.adapter.get("kind")

    @property
    def json_file(self) -> str | None:
        return (self.files or {}).get("json")

    @property
    def html_file(self) -> str | None:
        return (self.files or {}).get("html")

    @property
    def recall_k(self) -> int:
        return int(self.scoring.get("recall_k", 10))

    @property
    def map_key(self) -> str:
        return str(self.scoring.get("map_key", "mAP"))

    @property
    def headline_metrics(self) -> list[str]:
        """Per-cell headline metrics: CIs, figures, chain matrices, plan quality."""
        return headline_metrics(self.recall_k, self.map_key)

    def table_metrics(self, cell: Mapping[str, Any] | None = None) -> list[str]:
        """Per-cell table columns (the command line's ``cells``, the app's metrics table)."""
        present = (cell or {}).get("metrics") or {}
        return table_metrics(self.scoring.get("recall_ks") or [], self.recall_k, self.map_key, present)

    def cell_metrics(self, name: str, metrics: list[str] | None = None) -> dict[str, Any]:
        """One cell's values of ``metrics`` (default: its table metrics); InputError for an unknown cell."""
        try:
            cell = self.cells[name]
        except KeyError as exc:
            raise InputError("report", f"has no cell '{name}'") from exc
        values = cell.get("metrics") or {}
        return {m: values.get(m) for m in (metrics or self.table_metrics(cell))}

    def table(self) -> dict[str, dict[str, Any]]:
        """Each cell's table metrics, as the command line and the app list them."""
        return {name: {m: c["metrics"].get(m) for m in self.table_metrics(c)} for name, c in self.cells.items()}

    def recall_fractions(self, name: str) -> dict[str, Any]:
        """One cell's information-retrieval recall, ``recall_frac@k`` for each k the cell has (its table keeps
        the re-identification ``recall@k``)."""
        values = self.cells[name].get("metrics") or {}
        return {m: v for m, v in values.items() if m.startswith("recall_frac@")}

    @property
    def backfill_areas(self) -> dict[str, float]:
        """Area under each partial-backfill policy's top-1 curve."""
        return {p: c["areas"]["top1"] for p, c in (self.backfill.get("policies") or {}).items()}

    @property
    def backfill_areas_by_metric(self) -> dict[str, dict[str, float]]:
        """{metric: {policy: area under its curve}} for every metric the curves were measured on; the best
        policy is chosen on :func:`curve_metric`'s."""
        out: dict[str, dict[str, float]] = {}
        for policy, curve in (self.backfill.get("policies") or {}).items():
            for metric, area in (curve.get("areas") or {}).items():
                out.setdefault(metric, {})[policy] = area
        return out

    def summary(self) -> dict[str, Any]:
        """The scalar numbers stored with the report's row (and carried by bundles)."""
        if self.is_chain:
            chain = self.chain or {}
            return json_safe({"kind": "chain", "versions": chain.get("versions"), "ac": chain.get("ac"),
                              "am": chain.get("am"), "metric": chain.get("metric")})
        out = {k: self.headline.get(k) for k in REPORT_SUMMARY}
        out.update({k: self.headline[k] for k in JUDGED_SUMMARY if k in self.headline})
        out.update({k: v for k, v in self.headline.items() if k.startswith(BACKFILL_AREA)})
        out.update(self.served_summary())
        out["kind"] = "upgrade"
        return json_safe(out)

    def served_summary(self) -> dict[str, Any]:
        """The served gallery's numbers after the latest backfill, flat (``served_top1``, ...), so ``runs`` lists
        them with the report's other numbers; empty without a backfill."""
        if not self.served:
            return {}
        metrics = self.served.get("metrics") or {}
        out = {f"served_{k}": metrics[k] for k in ("top1", *JUDGED_METRICS) if k in metrics}
        out.update(served_backfill_run=(self.served.get("backfill") or {}).get("run_id"),
                   served_new_vectors=self.served.get("new_vectors"),
                   served_protocol=(self.served.get("protocol") or {}).get("text"))
        return out

    def headline_numbers(self) -> dict[str, Any]:
        """The headline dict's scalar numbers (what the command line prints at top level)."""
        return pick(self.headline, [k for k in self.headline if not k.startswith(BACKFILL_AREA)])

    def flipped_list(self) -> list[dict[str, Any]]:
        """Flipped queries of the upgraded cell, negative ones first, each tagged with its direction."""
        section = self.flipped_queries or {}
        return ([{**r, "flip": "negative"} for r in section.get("negative", [])]
                + [{**r, "flip": "positive"} for r in section.get("positive", [])])


def as_report(report: Report | Mapping[str, Any]) -> Report:
    """A :class:`Report` from either a report or its JSON form."""
    return report if isinstance(report, Report) else Report.from_json(report)


def _schema_version(schema: str) -> int:
    if not schema.startswith(SCHEMA_PREFIX) or not schema[len(SCHEMA_PREFIX):].isdigit():
        raise InputError("report", f"has schema '{schema}', not an embridge report ('{SCHEMA}')")
    return int(schema[len(SCHEMA_PREFIX):])


def curve_metric(backfill: Mapping[str, Any]) -> str:
    """The metric the partial-backfill curves are shown and ranked by: nDCG@10 with graded judgments, as
    the verdicts decide (reports made before it was recorded show top-1)."""
    metric = backfill.get("metric")
    return metric if isinstance(metric, str) else "top1"
