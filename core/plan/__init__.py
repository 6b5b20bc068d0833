"""The upgrade planner: options with time, storage and expected quality, and a recommendation.

:func:`plan_upgrade` works on a workspace; :func:`plan_from_report` is the pure rule set behind it.
"""

from core.plan.options import plan_from_report
from core.plan.planner import plan_upgrade
from core.plan.throughput import Throughput, measure_throughput

__all__ = ["Throughput", "measure_throughput", "plan_from_report", "plan_upgrade"]
