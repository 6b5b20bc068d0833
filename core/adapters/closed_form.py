"""Closed-form fits in float64 from streamed second moments: scaled orthogonal Procrustes, its
whitened form, and ridge regression.

Real embeddings share a large common mean, so every fit is centred and puts the means back
through a bias; without that, uncentred Procrustes can collapse retrieval.

Every fit needs only the centred moments Sᵀ T, Sᵀ S and Tᵀ T (S the source rows, T the target
rows). They are accumulated in float64 over row blocks, so a fit costs one pass of GEMMs over the
data and O(d²) extra memory whatever N is, and the arrays may be memmaps. Blocks are shifted by
the first block's mean before accumulating, so a large common mean costs no precision when the
moments are centred at the end. All candidates of one fit (the plain rotation, every whitening
shrinkage, every ridge λ) come from the same moments.

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

BLOCK_ROWS = 16_384


@dataclass
class LinearSolution:
    """y = x @ weight + bias, with ``weight`` (in_dim x out_dim)."""

    weight: np.ndarray
    bias: np.ndarray


@dataclass
class ProcrustesSolution:
    """y = scale * (x - mean_in) @ weight + mean_out (``weight`` semi-orthogonal unless whitened)."""

    weight: np.ndarray
    scale: float
    mean_in: np.ndarray
    mean_out: np.ndarray


@dataclass
class PairMoments:
    """Centred moments of paired rows x (source) and y (target), all float64."""

    count: int
    mean_in: np.ndarray
    mean_out: np.ndarray
    cross: np.ndarray  # Σ (x − μx)ᵀ (y − μy), in_dim x out_dim
    sq_norm_in: float  # Σ ||x − μx||²
    gram: np.ndarray | None = None  # Σ (x − μx)ᵀ (x − μx), when asked for
    gram_out: np.ndarray | None = None  # Σ (y − μy)ᵀ (y − μy), when asked for (whitening)


def pair_moments(source: np.ndarray, target: np.ndarray, with_gram: bool = False,
                 block: int = BLOCK_ROWS, with_gram_out: bool = False) -> PairMoments:
    """Accumulate the centred moments over row blocks (arrays or memmaps of any float dtype).

    Each block is cast and shifted in one pass into reused float64 buffers; the sums and squared
    norms are BLAS products over those buffers, so the only full-cost step is the GEMM.
    """
    n = int(source.shape[0])
    if n == 0 or target.shape[0] != n:
        raise ValueError(f"need the same non-zero number of rows, got {source.shape} and {target.shape}")
    rows = min(block, n)
    shift_x = np.asarray(source[:rows], dtype=np.float64).mean(axis=0)
    shift_y = np.asarray(target[:rows], dtype=np.float64).mean(axis=0)
    xbuf, ybuf, ones = np.empty((rows, shift_x.size)), np.empty((rows, shift_y.size)), np.ones(rows)
    sum_x = np.zeros_like(shift_x)
    sum_y = np.zeros_like(shift_y)
    cross = np.zeros((shift_x.size, shift_y.size))
    gram = np.zeros((shift_x.size, shift_x.size)) if with_gram else None
    gram_out = np.zeros((shift_y.size, shift_y.size)) if with_gram_out else None
    sq = 0.0
    for start in range(0, n, block):
        m = min(block, n - start)
        x, y = xbuf[:m], ybuf[:m]
        np.subtract(source[start : start + m], shift_x, out=x)
        np.subtract(target[start : start + m], shift_y, out=y)
        sum_x += ones[:m] @ x
        sum_y += ones[:m] @ y
        cross += x.T @ y
        if gram is not None:
            gram += x.T @ x
        else:
            flat = x.reshape(-1)
            sq += float(flat @ flat)
        if gram_out is not None:
            gram_out += y.T @ y
    dx, dy = sum_x / n, sum_y / n
    cross -= n * np.outer(dx, dy)
    if gram_out is not None:
        gram_out -= n * np.outer(dy, dy)
    if gram is not None:
        gram -= n * np.outer(dx, dx)
        sq = float(np.trace(gram))
    else:
        sq -= n * float(dx @ dx)
    return PairMoments(n, shift_x + dx, shift_y + dy, cross, max(sq, 0.0), gram, gram_out)


def procrustes_from_moments(m: PairMoments) -> ProcrustesSolution:
    """W = U Vᵀ from the SVD of Sᵀ T, with the least-squares scale Σσ / ||S W||².

    With different dims W has orthonormal columns (in >= out) or orthonormal rows (in < out),
    i.e. the rotation is padded or truncated. With orthonormal rows ||S W||² = ||S||², an O(N d)
    sum; only a truncating map (in_dim > out_dim) needs the Gram matrix for it.
    """
    u, sv, vt = np.linalg.svd(m.cross, full_matrices=False)
    weight = u @ vt
    if weight.shape[0] > weight.shape[1]:
        if m.gram is None:
            raise ValueError("a truncating Procrustes map (in_dim > out_dim) needs the Gram matrix")
        denom = float(np.einsum("ij,ij->", weight, m.gram @ weight))
    else:
        denom = m.sq_norm_in
    scale = float(sv.sum() / denom) if denom > 0 else 1.0
    return ProcrustesSolution(weight, scale, m.mean_in, m.mean_out)


class _Powers:
    """(C + s·mean(eig C)·I)^p from one eigendecomposition of a symmetric PSD C, for any
    shrinkage s and power p (eigenvalues floored at 0)."""

    def __init__(self, cov: np.ndarray) -> None:
        evals, self.evecs = np.linalg.eigh(cov)
        self.evals = np.clip(evals, 0.0, None)
        self.mean = float(self.evals.mean()) or 1.0

    def __call__(self, shrinkage: float, power: float) -> np.ndarray:
        return (self.evecs * np.maximum(self.evals + float(shrinkage) * self.mean, 1e-12) ** power) @ self.evecs.T


def candidates_from_moments(m: PairMoments, whiten: bool | str, shrink_grid: list[float]) -> Iterator[
    tuple[float, ProcrustesSolution]
]:
    """(shrinkage, solution): 0 = the plain rotation (unless ``whiten`` is True), then one
    whitened fit W = Cs^(-1/2) U Vᵀ Ct^(1/2), scale 1, per shrinkage (unless ``whiten`` is False)."""
    if whiten is not True:
        yield 0.0, procrustes_from_moments(m)
    if whiten is False or not shrink_grid:
        return
    if m.gram is None or m.gram_out is None:
        raise ValueError("whitened Procrustes needs both Gram matrices (with_gram and with_gram_out)")
    cov_s, cov_t = _Powers(m.gram / m.count), _Powers(m.gram_out / m.count)
    for shrink in shrink_grid:
        if shrink <= 0:
            raise ValueError(f"whitening shrinkage must be positive, got {shrink}")
        white_s = cov_s(shrink, -0.5)
        u, _, vt = np.linalg.svd(white_s @ m.cross @ cov_t(shrink, -0.5), full_matrices=False)
        weight = white_s @ u @ vt @ cov_t(shrink, 0.5)
        yield float(shrink), ProcrustesSolution(weight, 1.0, m.mean_in, m.mean_out)


def procrustes_candidates(source: np.ndarray, target: np.ndarray, whiten: bool | str,
                          shrink_grid: list[float], block: int = BLOCK_ROWS) -> list[tuple[float, ProcrustesSolution]]:
    """Every Procrustes candidate ``embridge.core.train.fit`` compares, from one pass over the data."""
    whitened = whiten is not False and bool(shrink_grid)
    with_gram = whitened or source.shape[1] > target.shape[1]
    m = pair_moments(source, target, with_gram, block, with_gram_out=whitened)
    return list(candidates_from_moments(m, whiten, shrink_grid))


def procrustes(source: np.ndarray, target: np.ndarray, block: int = BLOCK_ROWS) -> ProcrustesSolution:
    """Best semi-orthogonal map (plus one scale) from centred source to centred target."""
    return procrustes_candidates(source, target, False, [], block)[0][1]


def whitened_procrustes(source: np.ndarray, target: np.ndarray, shrinkage: float,
                        block: int = BLOCK_ROWS) -> ProcrustesSolution:
    """Whiten, rotate, de-whiten (see the module doc); ``weight`` is a general linear map here."""
    if shrinkage <= 0:
        raise ValueError(f"whitening shrinkage must be positive, got {shrinkage}")
    return procrustes_candidates(source, target, True, [shrinkage], block)[0][1]


def ridge_from_moments(m: PairMoments, relative_lambdas: list[float]) -> Iterator[tuple[float, LinearSolution]]:
    """Ridge solutions (with bias) per λ relative to the mean feature variance; one
    eigendecomposition of the Gram matrix serves the whole grid."""
    if m.gram is None:
        raise ValueError("ridge regression needs the Gram matrix; use pair_moments(..., with_gram=True)")
    evals, evecs = np.linalg.eigh(m.gram)
    evals = np.clip(evals, 0.0, None)
    rhs = evecs.T @ m.cross
    base = float(np.trace(m.gram)) / m.gram.shape[0] or 1.0
    for rel in relative_lambdas:
        lam = float(rel) * base
        inv = 1.0 / np.maximum(evals + lam, 1e-12 * max(base, 1e-12))
        weight = evecs @ (inv[:, None] * rhs)
        yield float(rel), LinearSolution(weight, m.mean_out - m.mean_in @ weight)


def ridge_path(source: np.ndarray, target: np.ndarray, relative_lambdas: list[float],
               block: int = BLOCK_ROWS) -> Iterator[tuple[float, LinearSolution]]:
    """Ridge solutions (with bias) for each λ, given relative to the mean feature variance."""
    return ridge_from_moments(pair_moments(source, target, True, block), relative_lambdas)
