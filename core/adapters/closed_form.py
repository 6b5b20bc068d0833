"""Closed-form fits in float64: centred (scaled) orthogonal Procrustes, its whitened form, ridge.

Real embeddings share a large common mean, so every fit centres the data first and puts the means
back through a bias; without that, uncentred Procrustes can collapse retrieval.

Whitened Procrustes follows Artetxe et al. (AAAI 2018, the VecMap framework): whiten both centred
spaces, solve the orthogonal problem between the whitened spaces (its singular values are the
canonical correlations), then de-whiten into the target space so mapped queries carry the target's
covariance. When the old model only learned part of the classes its space is anisotropic in ways
a rotation cannot match; whitening fixes the scales, the orthogonal step still only rotates. A
shrinkage ``s`` whitens with (C + s·mean(eig C)·I)^(-1/2): large ``s`` tends to the plain map.
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


def _matrix_power(cov: np.ndarray, shrinkage: float, power: float) -> np.ndarray:
    """(C + s·mean(eig C)·I)^power for a symmetric PSD ``cov`` (eigenvalues floored at 0)."""
    evals, evecs = np.linalg.eigh(cov)
    evals = np.clip(evals, 0.0, None)
    ridge = float(shrinkage) * (float(evals.mean()) or 1.0)
    return (evecs * np.maximum(evals + ridge, 1e-12) ** power) @ evecs.T


def whitened_procrustes(source: np.ndarray, target: np.ndarray, shrinkage: float) -> ProcrustesSolution:
    """Whiten, rotate, de-whiten (see the module doc): W = Cs^(-1/2) U Vᵀ Ct^(1/2), scale 1.

    U Vᵀ is the orthogonal Procrustes solution between the whitened centred spaces; W itself is a
    general linear map, so ``weight`` is not semi-orthogonal here.
    """
    if shrinkage <= 0:
        raise ValueError(f"whitening shrinkage must be positive, got {shrinkage}")
    s, mean_s = _centre(source)
    t, mean_t = _centre(target)
    n = max(len(s), 1)
    white_s = _matrix_power(s.T @ s / n, shrinkage, -0.5)
    cov_t = t.T @ t / n
    u, _, vt = np.linalg.svd((s @ white_s).T @ (t @ _matrix_power(cov_t, shrinkage, -0.5)), full_matrices=False)
    weight = white_s @ u @ vt @ _matrix_power(cov_t, shrinkage, 0.5)
    return ProcrustesSolution(weight, 1.0, mean_s, mean_t)


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
