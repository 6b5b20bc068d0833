"""Which pairs a training run may fit on, which it fits on by default, and where it is validated.

The Train page and ``embridge train --pairs`` share this rule: query pairs exist when at least two
query items of the train fold (queries judged in ``train``) have vectors under both models; the
default is then ``both``, else ``documents``.
"""

from __future__ import annotations

from dataclasses import dataclass

from embridge.core.evaluation.folds import assign_folds
from embridge.core.evaluation.tasks import dev_task
from embridge.core.store import Workspace
from embridge.core.store.id_sets import intersect_ids

PAIR_KINDS = ("documents", "queries", "both")


@dataclass(frozen=True)
class PairSetup:
    kinds: tuple[str, ...]  # the choices that leave enough pairs (the default first)
    default: str
    train_queries: int  # query items in the train fold
    validation: str  # the validation protocol, in words


def default_pairs(train_queries: int) -> str:
    """``both`` when the train fold has query pairs to fit on, else ``documents``."""
    return "both" if train_queries >= 2 else "documents"


def pair_setup(ws: Workspace, old: str, new: str, seed: int = 0, persist: bool = True) -> PairSetup:
    """The pair choices for ``old`` → ``new`` and the protocol validation will use; with ``persist=False``
    nothing is stored (folds not yet drawn are drawn here only to describe them)."""
    folds = assign_folds(ws, old, new, seed, persist=persist)
    n = int(intersect_ids(folds["train"], ws.query_ids()).size)
    default = default_pairs(n)
    kinds = (default, *[k for k in PAIR_KINDS if k != default]) if n >= 2 else ("documents",)
    return PairSetup(kinds, default, n, dev_task(ws, old, new, seed, folds=folds).protocol().describe())
