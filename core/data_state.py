"""What a measurement was made on: the workspace's items, judgments and each model's vector sets.

Items, judgments and vector sets are only ever added (an import, ``embed`` or ``backfill``), so a
few counts and ids tell whether the gallery, the queries or the evaluation sample a recorded number
was measured on are still the workspace's. Training and report runs store this state when they
start; every surface that shows a recorded number asks :func:`stale_note` and says the number
describes an earlier state instead of showing it as current.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from embridge.core.errors import EmbridgeError

DATA_STATE = "data_state"  # the key of a run's metrics that holds the state it was measured on
MEASURED_KINDS = ("train", "report")  # the run kinds whose numbers depend on the workspace's data


@dataclass(frozen=True)
class DataState:
    """Counts and ids that change whenever data that numbers depend on is added or removed."""

    items: int = 0
    last_item: int = 0
    judgments: int = 0
    vector_sets: dict[str, list[int]] = field(default_factory=dict)  # model id (as text) -> its vector set ids
    model_names: dict[str, str] = field(default_factory=dict)  # model id (as text) -> its name then

    def to_json(self) -> dict[str, Any]:
        return {"items": self.items, "last_item": self.last_item, "judgments": self.judgments,
                "vector_sets": self.vector_sets, "model_names": self.model_names}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DataState:
        sets = data.get("vector_sets") if isinstance(data.get("vector_sets"), Mapping) else {}
        names = data.get("model_names") if isinstance(data.get("model_names"), Mapping) else {}
        return cls(int(data.get("items") or 0), int(data.get("last_item") or 0), int(data.get("judgments") or 0),
                   {str(k): sorted(int(i) for i in v) for k, v in sets.items() if isinstance(v, list)},
                   {str(k): str(v) for k, v in names.items()})


def data_state(ws: Any) -> DataState:
    """The workspace's state now: a few indexed queries, whatever the size of the gallery."""
    return DataState.from_json(ws.data_counts())


def changes_since(then: DataState, now: DataState, models: Iterable[str] | None = None) -> list[str]:
    """What changed from ``then`` to ``now``, in words; vector sets only of ``models`` (names at either
    time; None or a name not found: every model measured then)."""
    lines: list[str] = []
    if (now.items, now.last_item) != (then.items, then.last_item):
        added = now.items - then.items
        lines.append(f"{added} item{'s' * (added != 1)} added" if added > 0 and now.last_item > then.last_item
                     else f"items changed ({then.items} then, {now.items} now)")
    if now.judgments != then.judgments:
        added = now.judgments - then.judgments
        lines.append(f"{added} relevance judgment{'s' * (added != 1)} added" if added > 0
                     else f"relevance judgments changed ({then.judgments} then, {now.judgments} now)")
    wanted = set(models) if models is not None else None
    for model_id, sets in sorted(then.vector_sets.items(), key=lambda kv: int(kv[0])):
        names = {then.model_names.get(model_id), now.model_names.get(model_id)} - {None}
        if wanted is not None and names and not names & wanted and _known(wanted, then, now):
            continue
        current = now.vector_sets.get(model_id, [])
        if current != sets:
            name = now.model_names.get(model_id) or then.model_names.get(model_id) or f"#{model_id}"
            fresh = [i for i in current if i not in sets]
            lines.append(f"model '{name}' has vectors added (vector set{'s' * (len(fresh) != 1)} "
                         f"{', '.join(map(str, fresh))})" if fresh and set(sets) <= set(current)
                         else f"model '{name}''s vector sets changed")
    return lines


def _known(wanted: set[str], then: DataState, now: DataState) -> bool:
    """Whether every asked model is named in either state (a name neither knows restricts nothing)."""
    return wanted <= set(then.model_names.values()) | set(now.model_names.values())


def run_models(ws: Any, run: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The models a run's numbers depend on: a training run's old and new, a report's through its layer."""
    config = run.get("config") if isinstance(run.get("config"), Mapping) else {}
    if isinstance(config.get("old"), str) and isinstance(config.get("new"), str):
        return (config["old"], config["new"])
    adapter_id = config.get("adapter_id")
    if isinstance(adapter_id, int):
        try:
            row = ws.adapter(adapter_id)
        except EmbridgeError:  # removed since: every model measured then counts
            return None
        return (str(row["old_model"]), str(row["new_model"]))
    return None


def run_changes(ws: Any, run: Mapping[str, Any] | None, now: DataState | None = None) -> list[str]:
    """What changed since a measured run recorded its state, in words; [] when nothing did or it recorded
    none (a run from before states were kept, or one that measures nothing)."""
    metrics = run.get("metrics") if run is not None and isinstance(run.get("metrics"), Mapping) else {}
    recorded = metrics.get(DATA_STATE)
    if run is None or run.get("kind") not in MEASURED_KINDS or not isinstance(recorded, Mapping):
        return []
    return changes_since(DataState.from_json(recorded), now or data_state(ws), run_models(ws, run))


def changed_words(changes: list[str]) -> str:
    return f"measured before the workspace changed ({'; '.join(changes)})"


def stale_note(ws: Any, run: Mapping[str, Any], now: DataState | None = None) -> str | None:
    """'measured before …: run …' for a run whose numbers were measured on data the workspace has
    changed since; None when they are current."""
    changes = run_changes(ws, run, now)
    if not changes:
        return None
    config = run.get("config") if isinstance(run.get("config"), Mapping) else {}
    layer_run = config.get("train_run", run.get("id"))
    return (f"{changed_words(changes)}: these numbers describe its data as it was; "
            f"'embridge report --run {layer_run}' measures it as it is now")


def report_run(ws: Any, report_id: int) -> dict[str, Any] | None:
    """The run that wrote report ``report_id``."""
    return next((r for r in reversed(ws.runs("report"))
                 if isinstance(r.get("metrics"), Mapping) and r["metrics"].get("report_id") == report_id), None)


def report_stale_note(ws: Any, report_id: int) -> str | None:
    """:func:`stale_note` of the run that wrote report ``report_id`` (None when it is current)."""
    run = report_run(ws, report_id)
    return stale_note(ws, run) if run is not None else None


def with_stale_notes(ws: Any, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs, each with ``stale``: its :func:`stale_note` (None when current), the state read once."""
    now = data_state(ws)
    return [{**run, "stale": stale_note(ws, run, now)} for run in runs]
