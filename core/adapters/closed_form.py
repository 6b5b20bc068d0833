"""Closed-form fits in float64: centred (scaled) orthogonal Procrustes and ridge regression.

Real embeddings share a large common mean, so both fits centre the data first and put the means
back through a bias; without that, uncentred Procrustes can collapse retrieval.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass
class LinearSolution:
    """y = x @ weight + bias, with ``weight`` (in_dim x out_dim)."""

    weight: np.ndarray
    bias: np.ndarray


@dataclass
class ProcrustesSolution:
    """y = scale * (x - mean_in) @ weight + mean_out with a semi-orthogonal ``weight``."""

    weight: np.ndarray
    scale: float
    mean_in: np.ndarray
    mean_out: np.ndarray


def _centre(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    return x - mean, mean


def procrustes(source: np.ndarray, target: np.ndarray) -> ProcrustesSolution:
    """Best semi-orthogonal map (plus one scale) from centred source to centred target.

    W = U Vᵀ from the SVD of Sᵀ T; with different dims W has orthonormal columns (in >= out) or
    orthonormal rows (in < out), i.e. the rotation is padded or truncated.
    """
    s, mean_s = _centre(source)
    t, mean_t = _centre(target)
    u, sv, vt = np.linalg.svd(s.T @ t, full_matrices=False)
    weight = u @ vt
    mapped = s @ weight
    denom = float((mapped**2).sum())
    scale = float(sv.sum() / denom) if denom > 0 else 1.0
    return ProcrustesSolution(weight, scale, mean_s, mean_t)


def ridge_path(source: np.ndarray, target: np.ndarray, relative_lambdas: list[float]) -> Iterator[
    tuple[float, LinearSolution]
]:
    """Ridge solutions (with bias) for each λ, given relative to the mean feature variance.

    One eigendecomposition of the Gram matrix serves the whole grid.
    """
    s, mean_s = _centre(source)
    t, mean_t = _centre(target)
    gram = s.T @ s
    evals, evecs = np.linalg.eigh(gram)
    evals = np.clip(evals, 0.0, None)
    rhs = evecs.T @ (s.T @ t)
    base = float(np.trace(gram)) / gram.shape[0] or 1.0
    for rel in relative_lambdas:
        lam = float(rel) * base
        inv = 1.0 / np.maximum(evals + lam, 1e-12 * max(base, 1e-12))
        weight = evecs @ (inv[:, None] * rhs)
        yield float(rel), LinearSolution(weight, mean_t - mean_s @ weight)
