"""Fitting compatibility layers on paired vectors: one entry point, one loop, held-out numbers.

Typical use::

    data = PairData(old_train, new_train, old_val, new_val, labels_train, labels_val)
    result = fit_adapter("mlp", data, {"epochs": 30}, on_progress, should_stop)
    if result.status == "completed":
        numbers = evaluate_heldout(result.adapter, old_test, new_test, labels_test)
"""

from embridge.core.train.config import COMMON_DEFAULTS, LOSSES, FitConfig, allowed_settings, resolve_config
from embridge.core.train.data import FitResult, PairData
from embridge.core.train.fit import fit_adapter
from embridge.core.train.validation import (
    evaluate_heldout,
    gain_retained,
    label_top1,
    pair_top1,
    upgrade_metric,
)

__all__ = [
    "COMMON_DEFAULTS",
    "LOSSES",
    "FitConfig",
    "FitResult",
    "PairData",
    "allowed_settings",
    "evaluate_heldout",
    "fit_adapter",
    "gain_retained",
    "label_top1",
    "pair_top1",
    "resolve_config",
    "upgrade_metric",
]
