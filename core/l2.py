"""One overflow-safe L2 row normalisation for every numpy caller.

Squaring a float32 value above about 1.8e19 overflows, so a naive ``x / norm(x)`` turns rows of
huge but finite values into zeros, and squaring denormals underflows to zero norms. Rows whose
naive norm is not usable are rescaled by their largest magnitude first, which is exact in
direction. Rows holding NaN or inf are refused with an error naming where they came from; all-zero
rows have no direction and stay zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from embridge.core.errors import VectorFileError

# Below this the float32 sum of squares may have lost (underflowed) parts of the row.
_SAFE_MIN_NORM = 1e-18
# The key of a layer's stored input policy: True when it was fitted on L2-normalised vectors.
INPUT_POLICY_KEY = "input_normalised"


def l2_normalize(x: np.ndarray, source: str | None = None, *, in_place: bool = False) -> np.ndarray:
    """Rows of ``x`` scaled to unit length as a new float32 array (all-zero rows stay zero).

    ``in_place``: ``x`` is the caller's own fresh array, scaled where it is when it is a writable
    float32 matrix (a gallery's worth of copying saved); otherwise a copy is made as usual.
    Raises :class:`VectorFileError` naming ``source`` (the file or model the rows came from) when
    a row holds NaN or inf.
    """
    own = in_place and type(x) is np.ndarray and x.dtype == np.float32 and x.flags.writeable
    x = x if own else np.array(x, dtype=np.float32)  # normalised in place below
    if x.ndim != 2:
        raise VectorFileError(source, f"expected a 2-D matrix of vectors, got shape {x.shape}")
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    odd = np.flatnonzero(~(np.isfinite(norms) & (norms >= _SAFE_MIN_NORM)))
    if len(odd):
        _check_rows_finite(x, odd, source)
        sub = x[odd]
        scale = np.abs(sub).max(axis=1)
        live = scale > 0
        sub[live] /= scale[live, None]
        x[odd] = sub
        norms[odd] = np.where(live, np.sqrt(np.einsum("ij,ij->i", sub, sub)), 0.0)
    norms[norms == 0] = 1.0  # all-zero rows stay zero
    x /= norms[:, None]
    return x


def _check_rows_finite(x: np.ndarray, rows: np.ndarray, source: str | None) -> None:
    bad = rows[~np.isfinite(x[rows]).all(axis=1)]
    if len(bad):
        raise VectorFileError(source, f"row {int(bad[0])} holds NaN or inf values ({len(bad)} such rows); "
                              "they cannot be normalised")


def layer_input_normalised(row: Mapping[str, Any]) -> bool:
    """A stored layer's input policy: whether vectors are L2-normalised before it (its adapter row).

    The workspace records the policy with every layer (``config.input_normalised``); a row without it
    predates the record and was fitted the way every workspace layer is, on normalised vectors.
    """
    return bool((row.get("config") or {}).get(INPUT_POLICY_KEY, True))


def prepare_input(x: np.ndarray, normalised: bool, source: str | None = None, *, in_place: bool = False) -> np.ndarray:
    """Vectors as a layer with input policy ``normalised`` expects them: L2-normalised, or as stored.

    Reports, plans and bundles all feed layers through this, so a layer sees the same inputs
    wherever it runs. ``in_place``: ``x`` is the caller's own fresh array (see :func:`l2_normalize`).
    """
    if normalised:
        return l2_normalize(x, source, in_place=in_place)
    return np.asarray(x, dtype=np.float32)


def zero_vectors_sentence(count: int, example: object) -> str:
    """What ``embed`` and an import say of the all-zero vectors they stored (see :func:`zero_rows`)."""
    return (f"{count} items got an all-zero vector (e.g. {example!r}): no direction, so no search finds them "
            "and bundles and migrations refuse them")


def zero_rows(x: np.ndarray) -> np.ndarray:
    """Indices of all-zero rows: no direction, so L2 normalisation leaves them zero and a layer on
    normalised inputs maps them to its bias alone; every writer of vectors refuses them by this test."""
    return np.flatnonzero(~np.asarray(x).any(axis=1))
