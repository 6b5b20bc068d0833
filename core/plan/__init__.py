"""The upgrade planner: options with time, storage and expected quality, and a recommendation.

:func:`plan_upgrade` works on a workspace; :func:`plan_from_report` is the pure rule set behind it;
:class:`Plan` is what both return. The names load on first use, so that importing
:mod:`core.plan.model` (as the app's pages do) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {"Plan": "core.plan.model", "plan_from_report": "core.plan.options", "plan_upgrade": "core.plan.planner",
          "Throughput": "core.plan.throughput", "measure_throughput": "core.plan.throughput"}

__all__ = ["Plan", "Throughput", "measure_throughput", "plan_from_report", "plan_upgrade"]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'core.plan' has no attribute {name!r}")
