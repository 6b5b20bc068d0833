"""What an automatic-choice run chose, from its run record: the winner, each candidate, and why.

``train_run`` records the candidates' validation scores (``candidates``, fusion and cascade
included), the ``choice`` (winner, whether the scores decided it, why) and the validation protocol
(``val_protocol``) in the run's metrics; the
CLI (``embridge runs``/``train``), the app's tables and run pickers, and bundle summaries all read
them through :func:`run_choice` so they say the same thing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# methods whose layer maps old vectors into the new space (the registry's "forward" direction, which
# imports torch; tests/test_cli_checks_sweep.py checks the two agree)
FORWARD_METHODS = frozenset({"fct"})


def pair_arrow(old: Any, new: Any, kind: Any) -> str:
    """'new→old' for a layer that brings new queries to the old gallery; 'old→new' for a forward layer
    (fct), which brings the stored old gallery into the new space: the way every page names a run's pair."""
    return f"{old}→{new}" if kind in FORWARD_METHODS else f"{new}→{old}"


@dataclass(frozen=True)
class Candidate:
    kind: str
    status: str
    score: float | None  # the validation metric the choice compared
    note: str
    seconds: float | None = None  # how long the candidate took (None: not recorded, or skipped)
    epochs: int | None = None  # epochs trained (trainable candidates)


@dataclass(frozen=True)
class RunChoice:
    method: str  # what the user asked for ("auto" or a kind)
    kind: str | None  # what was fitted (the winner for "auto")
    metric: str  # the validation metric candidates were compared on
    reason: str
    candidates: tuple[Candidate, ...]
    decided: bool = True  # False when every candidate tied and a stated default was kept
    protocol: str = ""  # where the candidates were validated (the record's val_protocol)
    order: tuple[str, ...] = ()  # the candidates' kinds in the order they ran

    @property
    def is_auto(self) -> bool:
        return self.method == "auto"

    def method_text(self) -> str:
        """'auto → lowrank' for an automatic choice, else the kind."""
        if self.is_auto:
            if not self.kind:
                return "auto (nothing chosen)"
            return f"auto → {self.kind}" + ("" if self.decided else " (tie: default kept)")
        return self.kind or self.method

    def candidates_text(self) -> str:
        """'lowrank 0.812 (chosen), procrustes 0.790, bct skipped: needs labels'."""
        parts = []
        for c in self.candidates:
            if c.score is not None and math.isfinite(c.score):
                part = f"{c.kind} {c.score:.3f}"
            elif c.score is not None:  # its validation could score no query
                part = f"{c.kind} not scored"
            else:
                part = f"{c.kind} {c.status}" + (f": {c.note}" if c.note else "")
            if c.score is not None and math.isfinite(c.score) and c.status not in ("completed", ""):
                part += f" ({c.status})"
            parts.append(part + (" (chosen)" if c.kind == self.kind else ""))
        return ", ".join(parts)

    def times_text(self) -> str:
        """Where an automatic choice spent its time, in run order: 'procrustes 0.4 s, lowrank 12.0 s (3 epochs)'."""
        parts = []
        for c in sorted((c for c in self.candidates if c.seconds is not None and c.status != "skipped"),
                        key=lambda c: self.order.index(c.kind) if c.kind in self.order else len(self.order)):
            parts.append(f"{c.kind} {c.seconds:.1f} s" + (f" ({c.epochs} epochs)" if c.epochs else ""))
        return ", ".join(parts)


def run_choice(run: dict[str, Any]) -> RunChoice:
    """The choice a training run record states (works for any method; candidates only for auto)."""
    metrics = run.get("metrics") or {}
    method = str(run.get("method") or metrics.get("method") or "")
    recorded = metrics.get("choice") if isinstance(metrics.get("choice"), dict) else {}
    kind = recorded.get("kind") or metrics.get("kind") or (None if method == "auto" else method)
    metric = metrics.get("val_metric_name") or "validation top-1"
    metric = {"label_top1": "validation label top-1", "pair_top1": "validation own-item top-1",
              "judged_top1": "validation judged top-1", "judged_ndcg@10": "validation judged nDCG@10"}.get(metric, metric)
    candidates = tuple(Candidate(str(c.get("kind")), str(c.get("status") or ""),
                                 float(c["val_metric"]) if isinstance(c.get("val_metric"), int | float) else None,
                                 str(c.get("reason") or ""),
                                 float(c["duration_s"]) if isinstance(c.get("duration_s"), int | float) else None,
                                 int(c["epochs"]) if isinstance(c.get("epochs"), int) else None)
                       for c in metrics.get("candidates") or [])
    ranked = tuple(sorted(candidates, key=lambda c: (c.score is None, -(c.score or 0.0))))
    return RunChoice(method, kind, metric, str(metrics.get("reason") or recorded.get("reason") or ""), ranked,
                     bool(recorded.get("decided", True)), str(metrics.get("val_protocol") or ""),
                     tuple(c.kind for c in candidates))
