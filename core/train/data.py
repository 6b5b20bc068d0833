"""Array-level inputs and outputs of training: paired vectors in, a fitted adapter and its record out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from embridge.core.adapters.adapter import Adapter
from embridge.core.adapters.closed_form import PairMoments, pair_moments
from embridge.core.errors import InputError
from embridge.core.train.judged_queries import JudgedQueries

STATUSES = ("completed", "cancelled", "failed")


def _matrix(name: str, value: Any, rows: int | None = None, dim: int | None = None) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(name, f"expected a non-empty 2-D array of vectors, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise InputError(name, f"expected numbers, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if rows is not None and arr.shape[0] != rows:
        raise InputError(name, f"has {arr.shape[0]} rows but its paired array has {rows}")
    if dim is not None and arr.shape[1] != dim:
        raise InputError(name, f"has dim {arr.shape[1]} but the training split has dim {dim}")
    if not np.isfinite(arr).all():
        raise InputError(name, f"contains {int((~np.isfinite(arr)).sum())} NaN or infinite values")
    return arr


def _labels(name: str, value: Any, rows: int) -> np.ndarray | None:
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.ndim != 1 or arr.shape[0] != rows:
        raise InputError(name, f"expected {rows} labels (one per pair), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise InputError(name, f"labels must be integers (-1 = unknown), got dtype {arr.dtype}")
    return arr.astype(np.int64)


@dataclass
class PairData:
    """Vectors of the same items under both models, split into train and validation.

    Labels are int64 class ids with -1 for unknown. ``old_classifier`` (optional) holds the old
    model's classifier weights, row c for class id c. ``side_*`` is optional side information for
    ``fct`` (one row per item). ``validator`` (a :class:`embridge.core.evaluation.selection.Validator`) is what
    candidates, epochs, λ, whitening and α are chosen on; by default the validation items retrieve
    among their own old vectors (:func:`embridge.core.evaluation.selection.array_validator`), while a
    workspace run passes its dev queries against the whole old gallery.

    Retrieval training and choice (optional): ``query_new_train`` are new vectors of training
    queries and ``query_relevant_train`` the row of each one's relevant document in the old
    gallery bank, which is ``old_train`` followed by ``gallery_old`` (old vectors of further
    gallery items, e.g. those the new model has not embedded). ``dev`` (a
    :class:`embridge.core.train.judged_queries.JudgedQueries`) holds dev queries with their judged documents as
    arrays; given without a ``validator``, it is the validator.
    """

    old_train: np.ndarray
    new_train: np.ndarray
    old_val: np.ndarray
    new_val: np.ndarray
    labels_train: np.ndarray | None = None
    labels_val: np.ndarray | None = None
    old_classifier: np.ndarray | None = None
    side_train: np.ndarray | None = None
    side_val: np.ndarray | None = None
    query_new_train: np.ndarray | None = None
    query_relevant_train: np.ndarray | None = None
    gallery_old: np.ndarray | None = None
    dev: JudgedQueries | None = None
    validator: Any = None
    _moments: PairMoments | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.old_train = _matrix("old_train", self.old_train)
        self.new_train = _matrix("new_train", self.new_train, rows=len(self.old_train))
        self.old_val = _matrix("old_val", self.old_val, dim=self.old_dim)
        self.new_val = _matrix("new_val", self.new_val, rows=len(self.old_val), dim=self.new_dim)
        if len(self.old_train) < 2 or len(self.old_val) < 2:
            raise InputError("pair data", "need at least 2 training and 2 validation pairs")
        self.labels_train = _labels("labels_train", self.labels_train, len(self.old_train))
        self.labels_val = _labels("labels_val", self.labels_val, len(self.old_val))
        if self.old_classifier is not None:
            self.old_classifier = _matrix("old_classifier", self.old_classifier, dim=self.old_dim)
        if (self.side_train is None) != (self.side_val is None):
            raise InputError("side information", "give it for both the training and the validation split")
        if self.side_train is not None:
            self.side_train = _matrix("side_train", self.side_train, rows=len(self.old_train))
            self.side_val = _matrix("side_val", self.side_val, rows=len(self.old_val), dim=self.side_dim)
        if self.gallery_old is not None:
            self.gallery_old = _matrix("gallery_old", self.gallery_old, dim=self.old_dim)
        if (self.query_new_train is None) != (self.query_relevant_train is None):
            raise InputError("query pairs", "give both the new query vectors and their relevant gallery rows")
        if self.query_new_train is not None:
            self.query_new_train = _matrix("query_new_train", self.query_new_train, dim=self.new_dim)
            rel = np.asarray(self.query_relevant_train)
            if rel.shape != (len(self.query_new_train),) or not np.issubdtype(rel.dtype, np.integer) or (
                    rel.min() < 0 or rel.max() >= self.bank_size):
                raise InputError("query_relevant_train", f"expected one gallery row in [0, {self.bank_size}) "
                                                         "per training query")
            self.query_relevant_train = rel.astype(np.int64)
        if self.dev is not None and (self.dev.old_gallery.shape[1] != self.old_dim
                                     or self.dev.new_queries.shape[1] != self.new_dim):
            raise InputError("dev queries", "their dims do not match the training pairs'")

    @property
    def bank_size(self) -> int:
        """Rows of the old gallery bank: the training items, then ``gallery_old``."""
        return len(self.old_train) + (0 if self.gallery_old is None else len(self.gallery_old))

    def old_bank(self) -> np.ndarray:
        """The old gallery vectors retrieval training ranks against (see the class doc)."""
        if self.gallery_old is None:
            return self.old_train
        return np.concatenate([self.old_train, self.gallery_old])

    def moments(self, gram_out: bool = True) -> PairMoments:
        """Centred second moments of the training pairs, new -> old, with the input Gram matrix and,
        with ``gram_out``, the target's (whitened Procrustes needs it; ridge fits and starts do not).

        Computed in one pass on first use and shared by every closed-form fit of the run
        (Procrustes and its whitenings, every ridge λ, the closed-form starts of the trainable
        layers), so ``auto``, which fits Procrustes first, reads the pairs once for all of them; a
        fit on its own computes only what it needs."""
        if self._moments is None or (gram_out and self._moments.gram_out is None and not self._moments.thin):
            self._moments = pair_moments(self.new_train, self.old_train, with_gram=True, with_gram_out=gram_out)
        return self._moments

    def validation(self) -> Any:
        """The validator candidates are scored with (built on first use when none was given)."""
        if self.validator is None and self.dev is not None:
            self.validator = self.dev
        if self.validator is None:
            from embridge.core.evaluation.selection import array_validator

            self.validator = array_validator(self.old_val, self.new_val, self.labels_val, self.side_val)
        return self.validator

    @property
    def old_dim(self) -> int:
        return int(self.old_train.shape[1])

    @property
    def new_dim(self) -> int:
        return int(self.new_train.shape[1])

    @property
    def side_dim(self) -> int:
        return 0 if self.side_train is None else int(self.side_train.shape[1])

    @property
    def has_labels(self) -> bool:
        """True when the training split has at least two known classes."""
        return count_classes(self.labels_train) >= 2


def count_classes(labels: np.ndarray | None) -> int:
    """Number of distinct known (>= 0) labels."""
    return 0 if labels is None else int(np.unique(labels[labels >= 0]).size)


@dataclass
class FitResult:
    """Outcome of one fit. ``status``: completed, cancelled (best state so far kept) or failed
    (e.g. the loss became NaN; ``adapter`` then holds the last good state and ``reason`` says why)."""

    kind: str
    adapter: Adapter | None
    status: str = "completed"
    reason: str = ""
    metrics: list[dict[str, float]] = field(default_factory=list)
    best_val_metric: float | None = None
    best_epoch: int | None = None
    val_metric_name: str = ""
    val_protocol: str = ""  # where the validation number was measured, in words
    device: str = "cpu"
    duration_s: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)
    candidates: list[dict[str, Any]] = field(default_factory=list)
    choice: dict[str, Any] | None = None  # how the final state was chosen (see embridge.core.evaluation.choice)
    budget: dict[str, Any] | None = None  # auto with a time budget: seconds allowed, spent, what was cut

    @property
    def epochs_run(self) -> int:
        """Training epochs this fit ran (epoch 0, the closed-form start, and closed-form or bridge
        settings tried are evaluations, not epochs); ``best_epoch`` is one of 0..epochs_run."""
        return sum(1 for m in self.metrics if float(m.get("epoch", 0.0)) > 0)

    def to_dict(self) -> dict[str, Any]:
        """Everything but the module, as plain JSON-able values (for the runs table and --json)."""
        return {
            "kind": self.kind,
            "status": self.status,
            "reason": self.reason,
            "metrics": self.metrics,
            "best_val_metric": self.best_val_metric,
            "best_epoch": self.best_epoch,
            "val_metric_name": self.val_metric_name,
            "val_protocol": self.val_protocol,
            "device": self.device,
            "duration_s": self.duration_s,
            "config": self.config,
            "candidates": self.candidates,
            "choice": self.choice,
            "budget": self.budget,
            "adapter_config": None if self.adapter is None else self.adapter.config(),
        }
