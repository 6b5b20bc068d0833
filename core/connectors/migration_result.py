"""What a store migration reports: its verification and its result, as plain fields for JSON and the app."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Verification:
    source_count: int
    target_count: int
    spaces: dict[str, int]
    sample: int
    max_abs_diff: float
    bundle_probes: dict[str, Any] | None
    sample_new: int = 0  # of the sample, points holding attached new vectors (checked against those)
    lengths_note: str | None = None  # what unit-length outputs change in a store ranking by length too

    @property
    def ok(self) -> bool:
        return self.source_count == self.target_count and sum(self.spaces.values()) == self.target_count and \
            "" not in self.spaces

    @property
    def summary(self) -> str:
        """The check in one sentence, shared by the command line and the app."""
        spaces = ", ".join(f"{k}: {n}" for k, n in sorted(self.spaces.items())) or "none (no points)"
        against = [f"{n} against {what}" for n, what in ((self.sample - self.sample_new, "the bundle's transform"),
                                                        (self.sample_new, "the new vectors given")) if n]
        checked = (f"{self.sample} sampled vectors match ({'; '.join(against)}; max abs difference "
                   f"{self.max_abs_diff:.2g})" if self.sample else "no sampled vectors (the store is empty)")
        return f"counts match, spaces {spaces}; {checked}"


@dataclass
class MigrationResult:
    source: str
    target: str
    collection: str
    status: str  # completed | already complete
    total: int
    written: int
    resumed_from: int
    backfilled: int
    seconds: float  # streaming: read, transform, write, checkpoint
    verification: Verification
    verify_seconds: float = 0.0
    switched: bool = False
    alias: str | None = None
    previous: str | None = None
    spaces: dict[str, str] = field(default_factory=dict)
    warning: str | None = None  # the bundle's warning when its layer fails the compatibility criterion

    @property
    def rows_per_s(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["rows_per_s"] = self.rows_per_s
        out["verification"]["ok"] = self.verification.ok
        out["verification"]["summary"] = self.verification.summary
        out["text"] = self.text()
        return out

    def text(self) -> str:
        """What the command line prints and the app shows: the bundle's warning first, when it has one."""
        v = self.verification
        lines = [self.warning] if self.warning else []
        lines.append(f"Migration {self.status}: {v.target_count} points in {self.target} ({self.written} written now, "
                     f"{self.rows_per_s:,.0f} points/s, resumed from {self.resumed_from}); verified: {v.summary}")
        if self.switched and self.previous == self.collection:  # a rerun of a finished --switch
            lines.append(f"alias '{self.alias}' already serves '{self.collection}'")
        elif self.switched:
            was = f"was '{self.previous}'" if self.previous else "a new alias"
            lines.append(f"alias '{self.alias}' now serves '{self.collection}' ({was})")
        return "\n".join(lines)
