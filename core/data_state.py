"""What a measurement was made on: the relevance judgments and which items each model has vectors for.

A number depends on the items that carry the compared models' vectors (the gallery, the queries,
the evaluation sample) and on the judgments; both only grow (an import with vectors, ``embed``,
``backfill``, a qrels file), so a count of each tells whether what a recorded number was measured
on is still the workspace's. Items imported without vectors, a copy of vectors a model already
held, an export or a report change nothing here. Training and report runs store this state when
they start; every surface that shows a recorded number asks :func:`stale_note` and says the
number describes an earlier state instead of showing it as current.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from embridge.core.cascade_rerank import reranks_by_new_vectors
from embridge.core.errors import EmbridgeError

DATA_STATE = "data_state"  # the key of a run's metrics that holds the state it was measured on
MEASURED_KINDS = ("train", "report")  # the run kinds whose numbers depend on the workspace's data


@dataclass(frozen=True)
class DataState:
    """Counts that change whenever data that numbers depend on is added or removed."""

    judgments: int = 0
    with_vectors: dict[str, int] = field(default_factory=dict)  # model id (as text) -> items holding its vectors
    model_names: dict[str, str] = field(default_factory=dict)  # model id (as text) -> its name then
    # model id (as text) -> its latest completed backfill run (0: none), which a report's served gallery
    # measures; None in a state recorded before backfills were kept
    backfills: dict[str, int] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"judgments": self.judgments, "with_vectors": self.with_vectors,
                               "model_names": self.model_names}
        if self.backfills is not None:
            out["backfills"] = self.backfills
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DataState:
        counts = data.get("with_vectors") if isinstance(data.get("with_vectors"), Mapping) else {}
        names = data.get("model_names") if isinstance(data.get("model_names"), Mapping) else {}
        runs = data.get("backfills")
        return cls(int(data.get("judgments") or 0), {str(k): int(v) for k, v in counts.items()},
                   {str(k): str(v) for k, v in names.items()},
                   {str(k): int(v) for k, v in runs.items()} if isinstance(runs, Mapping) else None)


def data_state(ws: Any) -> DataState:
    """The workspace's state now (each model's item ids read once, from its vector sets' id files)."""
    return DataState.from_json(ws.data_counts())


def changes_since(then: DataState, now: DataState, models: Iterable[str] | None = None,
                  backfilled: str | None = None) -> list[str]:
    """What changed from ``then`` to ``now``, in words; vectors only of ``models`` (names at either
    time; None or a name not found: every model measured then); ``backfilled``: a model whose latest
    backfill counts too (a report's new model: its served gallery is the latest backfill's)."""
    lines: list[str] = []
    if now.judgments != then.judgments:
        added = now.judgments - then.judgments
        lines.append(f"{added} relevance judgment{'s' * (added != 1)} added" if added > 0
                     else f"relevance judgments changed ({then.judgments} then, {now.judgments} now)")
    wanted = set(models) if models is not None else None
    for model_id, before in sorted(then.with_vectors.items(), key=lambda kv: int(kv[0])):
        names = {then.model_names.get(model_id), now.model_names.get(model_id)} - {None}
        if wanted is not None and names and not names & wanted and _known(wanted, then, now):
            continue
        after = now.with_vectors.get(model_id, 0)
        if after != before:
            name = now.model_names.get(model_id) or then.model_names.get(model_id) or f"#{model_id}"
            lines.append(f"model '{name}' has vectors of {after - before} more item{'s' * (after - before != 1)} "
                         f"({before} then, {after} now)" if after > before
                         else f"model '{name}' has vectors of fewer items ({before} then, {after} now)")
    if backfilled is not None and then.backfills is not None and now.backfills is not None:
        for model_id, name in now.model_names.items():
            if backfilled in (name, then.model_names.get(model_id)):
                before, after = then.backfills.get(model_id, 0), now.backfills.get(model_id, 0)
                if after != before:
                    lines.append(f"model '{name}' was backfilled (run {after}), which changes the gallery served"
                                 if after else f"the backfill of model '{name}' (run {before}) is no longer complete")
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
    models = run_models(ws, run)
    new = models[1] if models is not None and _measures_served(ws, run) else None
    return changes_since(DataState.from_json(recorded), now or data_state(ws), models, backfilled=new)


def _measures_served(ws: Any, run: Mapping[str, Any]) -> bool:
    """Whether a run's numbers stand on the latest backfill: a report's served gallery, and a cascade's
    re-ranking by the backfill's new vectors, in its training run as in its report."""
    if run.get("kind") == "report":
        return True
    metrics = run.get("metrics") if isinstance(run.get("metrics"), Mapping) else {}
    if metrics.get("kind") != "cascade" or not isinstance(metrics.get("adapter_id"), int):
        return False
    try:
        config = ws.adapter(metrics["adapter_id"]).get("config")
    except EmbridgeError:  # removed since: its numbers are the run's alone
        return False
    return reranks_by_new_vectors(config if isinstance(config, Mapping) else None)


def changed_words(changes: list[str]) -> str:
    return f"measured before the workspace changed ({'; '.join(changes)})"


def stale_note(ws: Any, run: Mapping[str, Any], now: DataState | None = None,
               latest: Mapping[Any, Mapping[str, Any]] | None = None) -> str | None:
    """'measured before …: … measures it as it is now' for a run whose numbers were measured on data
    the workspace has changed since (naming a report of its layer that is current, if there is one);
    None when they are current. ``latest``: each training run's latest report run (read when None)."""
    now = now or data_state(ws)
    changes = run_changes(ws, run, now)
    if not changes:
        return None
    config = run.get("config") if isinstance(run.get("config"), Mapping) else {}
    if run.get("method") == "chain" and isinstance(config.get("models"), list):  # a chain report: measured again
        return (f"{changed_words(changes)}: these numbers describe its data as it was; 'embridge chain --models "
                f"{','.join(map(str, config['models']))} --runs {','.join(map(str, config.get('runs') or []))}' "
                "measures it as it is now")
    layer_run = config.get("train_run", run.get("id"))
    report = (latest_reports(ws) if latest is None else latest).get(layer_run)
    current = report is not None and report is not run and not run_changes(ws, report, now)
    then = f"report {report['metrics']['report_id']} measures it as it is now" if current and report else \
        f"'embridge report --run {layer_run}' measures it as it is now"
    return f"{changed_words(changes)}: these numbers describe its data as it was; {then}"


def latest_reports(ws: Any, runs: Iterable[Mapping[str, Any]] | None = None) -> dict[Any, Mapping[str, Any]]:
    """Training run id -> the run that wrote its latest report (completed runs only)."""
    out: dict[Any, Mapping[str, Any]] = {}
    for run in ws.runs("report") if runs is None else runs:
        metrics = run.get("metrics") if isinstance(run.get("metrics"), Mapping) else {}
        if run.get("kind") == "report" and run.get("status") == "completed" and metrics.get("report_id") is not None:
            out[(run.get("config") or {}).get("train_run")] = run
    return out


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
    now, latest = data_state(ws), latest_reports(ws)
    return [{**run, "stale": stale_note(ws, run, now, latest)} for run in runs]
