"""Numbers read from environment variables: one clear line naming the variable for a bad value.

A variable set by hand (``EMBRIDGE_MAX_IMAGE_PIXELS=lots``) must fail like a bad option does, not
with a Python conversion error, and NaN or infinity must not slip through a range check.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import TypeVar

from embridge.core.errors import InputError

N = TypeVar("N", int, float)


def env_number(name: str, default: N, parse: Callable[[str], N], minimum: N, what: str) -> N:
    """``name``'s value parsed by ``parse`` (``int`` or ``float``), at least ``minimum``; ``default`` when
    unset or blank. ``what`` says the unit ("a whole number of pixels") for the refusal."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = parse(raw)
    except ValueError:
        raise InputError(name, f"must be {what}, got {raw!r}") from None
    if not math.isfinite(value) or value < minimum:
        raise InputError(name, f"must be {what}, finite and at least {minimum:g}, got {raw!r}")
    return value
