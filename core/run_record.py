"""A run as read from the workspace (training, report, …): typed attributes over its stored row.

Reports, bundles, the command line and the app's pages read a training run's numbers through
:class:`RunRecord`, so which of them are the headline is decided once
(:mod:`embridge.core.evaluation.headline`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from embridge.core.evaluation.headline import HEADLINE, RUN_SUMMARY, pick
from embridge.core.json_values import json_safe

_COLUMNS = ("id", "kind", "method", "status", "config", "metrics", "epochs", "device", "started", "finished",
            "duration_s", "error", "pid", "host")


@dataclass(frozen=True)
class RunRecord:
    """One recorded run: what was asked (``config``), what came out (``metrics``, ``epochs``), how it ended."""

    SCHEMA_VERSION: ClassVar[int] = 1

    id: int
    kind: str
    method: str | None = None
    status: str = "completed"
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    device: str | None = None
    started: str | None = None
    finished: str | None = None
    duration_s: float | None = None
    error: str | None = None
    pid: int | None = None
    host: str | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> RunRecord:
        """From a workspace row (JSON columns already decoded; absent columns take their defaults)."""
        values = {k: row[k] for k in _COLUMNS if k in row}
        for key, empty in (("config", dict), ("metrics", dict), ("epochs", list)):
            values[key] = values.get(key) or empty()
        return cls(**values)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunRecord:
        version = int(data.get("schema_version", cls.SCHEMA_VERSION))
        if version > cls.SCHEMA_VERSION:
            from embridge.core.errors import InputError

            raise InputError("run record", f"has schema version {version}; this embridge reads up to "
                             f"{cls.SCHEMA_VERSION}")
        return cls.from_row(data)

    def to_json(self) -> dict[str, Any]:
        return json_safe({"schema_version": self.SCHEMA_VERSION, **{k: getattr(self, k) for k in _COLUMNS}})

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    @property
    def seed(self) -> int:
        """The seed the run was fitted with (0 when not recorded)."""
        return int(((self.config or {}).get("settings") or {}).get("seed", 0))

    @property
    def headline(self) -> dict[str, Any]:
        """The headline numbers the run measured (absent ones left out)."""
        return pick(self.metrics, HEADLINE)

    @property
    def summary(self) -> dict[str, Any]:
        """The run's scalar summary numbers (what a bundle carries for it)."""
        return pick(self.metrics, RUN_SUMMARY, scalar_only=True)

    def has_headline(self) -> bool:
        return any(isinstance(v, int | float) and not isinstance(v, bool) for v in self.headline.values())


OLD_OLD, NEW_NEW, UPGRADED, HEAD_HEAD = "old/old", "new/new", "upgraded", "head/head"
UPGRADED_CELLS = ("new→old", "new/fct(old)")  # backward layers search the old gallery; FCT its transform
CELL_NUMBERS: dict[str, tuple[str, ...]] = {  # the held-out numbers each cell measured
    OLD_OLD: ("old_old_top1", "old_old_ndcg@10"),
    UPGRADED: ("upgraded_top1", "gain_retained", "ndcg@10", "mrr@10"),
    NEW_NEW: ("new_new_top1", "old_old_sample_top1", "upgraded_sample_top1", "new_new_ndcg@10", "old_old_sample_ndcg@10",
              "upgraded_sample_ndcg@10"),
    HEAD_HEAD: ("ceiling_top1", "ceiling_ndcg@10"),  # a bct / bt2 head's own space: the ceiling of its runs
}


def cell_protocols(metrics: dict[str, Any]) -> dict[str, str | None]:
    """The protocol sentence each held-out cell (old/old, upgraded, new/new) was measured on.

    new/new needs new gallery vectors, so it may search a smaller evaluation sample than old/old
    and the upgraded system; a record without per-cell protocols falls back to ``heldout_protocol``
    for the cells that share it (None where nothing was recorded).
    """
    stored = metrics.get("protocols") if isinstance(metrics.get("protocols"), dict) else {}

    def text(cell: str) -> str | None:
        found = stored.get(cell)
        return str(found["text"]) if isinstance(found, dict) and found.get("text") else None

    fallback = metrics.get("heldout_protocol") or None
    upgraded = next((t for t in map(text, UPGRADED_CELLS) if t), None) or fallback
    out = {OLD_OLD: text(OLD_OLD) or fallback, UPGRADED: upgraded, NEW_NEW: text(NEW_NEW)}
    if text(HEAD_HEAD):  # a head's ceiling (bct, bt2): listed beside the others, so its gallery is named too
        out[HEAD_HEAD] = text(HEAD_HEAD)
    return out


def protocol_groups(metrics: dict[str, Any]) -> list[tuple[list[str], str | None]]:
    """The cells grouped by the protocol they share, old/old's group first: [(cells, sentence)]."""
    groups: dict[str | None, list[str]] = {}
    for cell, sentence in cell_protocols(metrics).items():
        if sentence is None and cell == NEW_NEW and groups:
            continue  # an older record: new/new's protocol is unknown, not another one
        groups.setdefault(sentence, []).append(cell)
    return [(cells, sentence) for sentence, cells in groups.items()]


def measured_on_lines(metrics: dict[str, Any]) -> list[str]:
    """Where the held-out numbers were measured, one line per protocol, as ``embridge train`` prints it:
    'measured on <old gallery> (old/old and upgraded)', 'new/new measured on <evaluation sample>'."""
    groups = [(cells, sentence) for cells, sentence in protocol_groups(metrics) if sentence]
    if len(groups) == 1:
        return [f"measured on {groups[0][1]}"]
    return [f"measured on {sentence} ({' and '.join(cells)})" if i == 0 else
            f"{' and '.join(cells)} measured on {sentence}" for i, (cells, sentence) in enumerate(groups)]


SAMPLE_NUMBERS = "the _sample numbers"  # how sample_numbers_note's list starts (bundles match on it)


def sample_numbers_note(metrics: dict[str, Any]) -> str:
    """' (and the _sample numbers, gain_retained and arr)': what else was measured on new/new's gallery
    where that is an evaluation sample apart from the upgraded cell's (gain retained and ARR compare the
    upgraded system with new/new there, beside old/old's own numbers on it); '' where no sample was searched."""
    if not any(k.startswith("old_old_sample_") and v is not None for k, v in metrics.items()):
        return ""
    names = [SAMPLE_NUMBERS]
    if any(k.startswith("gain_retained") and isinstance(v, int | float) for k, v in metrics.items()):
        names.append("gain_retained")
    if isinstance(metrics.get("arr"), int | float):
        names.append("arr")
    return f" (and {', '.join(names[:-1])} and {names[-1]})" if len(names) > 1 else f" (and {names[0]})"


def other_cells_note(metrics: dict[str, Any], lead: str | None = None) -> str:
    """'; new/new on <evaluation sample …>' for the cells not measured on ``lead`` (default: old/old's
    protocol), appended to that one-protocol sentence, so no number sits under another's gallery.

    When ``lead`` is not old/old's protocol (a cascade's upgraded cell searches its own way), it is
    labelled with its cells and old/old's protocol is named after it.
    """
    groups = [(cells, sentence) for cells, sentence in protocol_groups(metrics) if sentence]
    if not groups:
        return ""
    lead = groups[0][1] if lead is None else lead
    mine = next((cells for cells, sentence in groups if sentence == lead), None)
    label = f" ({' and '.join(mine)})" if mine is not None and groups[0][1] != lead and len(groups) > 1 else ""
    sampled = sample_numbers_note(metrics) if len(groups) > 1 else ""
    return label + "".join(f"; {' and '.join(cells)}{sampled if NEW_NEW in cells else ''} on {sentence}"
                           for cells, sentence in groups if sentence != lead)


def stated_protocol(metrics: dict[str, Any]) -> str | None:
    """A run's ``heldout_protocol`` as every output states it: the upgraded cell's test queries and gallery,
    then the other cells' where they searched elsewhere (new/new on the evaluation sample); the record
    keeps the upgraded cell's sentence alone, which the per-cell protocols complete."""
    stated = metrics.get("heldout_protocol")
    return stated + other_cells_note(metrics, stated) if isinstance(stated, str) and stated else None


PAIR_WORDS = {"documents": "document", "queries": "query", "both": "document and query"}


def fitted_text(out: dict[str, Any]) -> str:
    """What a run was fitted on, in the units the record counts: ``pairs["train"]`` is the number of
    (old, new) vector pairs fitted on (train-fold items of the chosen kind), while the other folds
    count every item embedded by both models, queries included; none of those are pairs fitted on."""
    counts = out.get("pairs") if isinstance(out.get("pairs"), dict) else {}
    kind = PAIR_WORDS.get(str(out.get("pairs_used")))
    what = f"{kind} pairs" if kind else "pairs"
    fitted = (f"fitted on {counts['train']} {what} of the train fold" if isinstance(counts.get("train"), int)
              else f"fitted on {what}")
    others = [f"{fold} {n}" for fold, n in counts.items() if fold not in ("train", "pairs")]
    if others:
        fitted += f"; items per fold embedded by both models (queries included): {', '.join(others)}"
    return fitted
