"""The upgrade plan as a typed object: what ``plan_upgrade`` returns and ``embridge plan --json`` prints.

:class:`Plan` owns its JSON form (:meth:`Plan.to_json`, :meth:`Plan.from_json`: the keys the
command line has always printed, plus ``schema``) and its headline: each option's ``quality`` holds
the report's per-cell headline metrics (:mod:`embridge.core.evaluation.headline`). Options stay plain dicts
of JSON values; pages and commands read the plan's attributes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

from embridge.core.errors import InputError
from embridge.core.json_values import json_safe

SCHEMA_VERSION = 1
SCHEMA = f"embridge.plan/{SCHEMA_VERSION}"


@dataclass(frozen=True)
class Plan:
    """Options with time, storage and expected quality, the recommended one and why."""

    SCHEMA_VERSION: ClassVar[int] = SCHEMA_VERSION

    recommendation: str
    options: list[dict[str, Any]]
    reason: str = ""
    new_better: bool | None = None
    protocols: dict[str, Any] | None = None
    pairs: str | None = None
    adapter_passes: bool | None = None
    metric: str = "top1"  # the number the options are weighed by (nDCG@10 with graded judgments)
    targets: dict[str, float] = field(default_factory=dict)
    gallery_full: int = 0
    gallery_sample: int = 0
    throughput: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    run_id: int | None = None
    report_id: int | None = None
    adapter_id: int | None = None
    adapter_kind: str | None = None
    old_model: str | None = None
    new_model: str | None = None
    schema: str = SCHEMA

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Plan:
        schema = str(data.get("schema") or SCHEMA)
        prefix, _, version = schema.rpartition("/")
        if prefix != "embridge.plan" or not version.isdigit() or int(version) > SCHEMA_VERSION:
            raise InputError("plan", f"has schema '{schema}'; this embridge reads '{SCHEMA}'")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_json(self) -> dict[str, Any]:
        """The command line's JSON object (plain values; NaN as null)."""
        return json_safe(asdict(self))

    @property
    def schema_version(self) -> int:
        return int(self.schema.rpartition("/")[2])

    def option(self, name: str) -> dict[str, Any] | None:
        return next((o for o in self.options if o["name"] == name), None)

    def measured_on(self) -> list[str]:
        """One line per cell: the protocol its quality numbers were measured with (new/new may
        search the evaluation sample while the upgraded cell searches the whole gallery)."""
        lines = [f"{cell} measured on {protocol['text']}" for cell, protocol in (self.protocols or {}).items()
                 if isinstance(protocol, dict) and protocol.get("text")]
        partial = self.option("partial_backfill")
        if partial is not None and partial.get("measured_on"):
            lines.append(f"partial backfill read off the curves measured on {partial['measured_on']}")
        for option in self.options:  # another run's layer: where its numbers come from, and whether they compare
            came = option.get("quality_from")
            if isinstance(came, dict):
                lines.append(f"{option['title']}: from {came.get('source') or 'another run'}, measured on "
                             f"{came.get('protocol')}"
                             + ("" if came.get("comparable") else "; " + str(came.get("why_not") or "not this "
                                "report's queries and gallery, so not weighed against them")))
        return lines

    def backfill_note_lines(self) -> list[str]:
        """The backfill options' own notes ('Partial backfill ...: note'): what their numbers assume (random
        draws of a share, a head's output indexed) and what a backfill command writes, beside the plan's notes."""
        return [f"{o['title']}: {note}" for o in self.options if o["name"] in ("partial_backfill", "full_backfill")
                for note in o.get("notes") or []]

    @property
    def recommended(self) -> dict[str, Any]:
        """The recommended option."""
        found = self.option(self.recommendation)
        assert found is not None
        return found
