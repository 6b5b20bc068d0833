"""The one conversion of numpy values to plain JSON, with one rule for undefined numbers.

Reports, plans, run records and the command line's ``--json`` output all go through
:func:`json_safe`: numpy scalars and arrays become Python numbers and lists, paths become text,
mapping keys become text, and NaN or an infinity becomes ``null`` (JSON has no such numbers).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np


def json_safe(value: Any) -> Any:
    """Plain JSON values: numpy scalars and arrays unwrapped, NaN and infinities as None, keys as text."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [json_safe(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def dumps(value: Any, **options: Any) -> str:
    """``json.dumps`` of :func:`json_safe`'s form (never writes NaN, which is not JSON)."""
    return json.dumps(json_safe(value), allow_nan=False, **options)
