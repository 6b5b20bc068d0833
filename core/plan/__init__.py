"""The upgrade planner: options with time, storage and expected quality, and a recommendation.

:func:`plan_upgrade` works on a workspace; :func:`plan_from_report` is the pure rule set behind it;
:class:`Plan` is what both return. The names load on first use, so that importing
:mod:`embridge.core.plan.plan_record` (as the app's pages do) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {"Plan": "embridge.core.plan.plan_record", "plan_from_report": "embridge.core.plan.upgrade_options", "plan_upgrade": "embridge.core.plan.planner",
          "Throughput": "embridge.core.plan.throughput", "measure_throughput": "embridge.core.plan.throughput"}

__all__ = ["Plan", "Throughput", "measure_throughput", "plan_from_report", "plan_upgrade"]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'embridge.core.plan' has no attribute {name!r}")
