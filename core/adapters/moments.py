"""Closed-form fits from streamed second moments: the same solutions as :mod:`closed_form`, at the
cost of the cross-covariance product and in O(d²) extra memory.

The direct fits centre full float64 copies of both arrays (four N x d float64 arrays at the peak:
24 GB for 1M x 768 pairs) and Procrustes maps every training row once more to get its scale. Here
the centred moments Sᵀ T (and Sᵀ S where needed) are accumulated in float64 over row blocks, so
the arithmetic is one pass of GEMMs over the data and memory does not grow with N:

* Procrustes' scale needs ||S W||²: for in_dim <= out_dim W has orthonormal rows and that equals
  ||S||², an O(N d) sum; only a truncating map (in_dim > out_dim) needs the Gram matrix.
* Whitened Procrustes (every shrinkage of the grid) needs only Sᵀ T, Sᵀ S and Tᵀ T and two
  eigendecompositions, where the direct fit recentres and remaps the data once per shrinkage.
* Blocks are shifted by the first block's mean before accumulating, so the large common mean of
  real embeddings does not cost precision when the moments are centred at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from core.adapters.closed_form import LinearSolution, ProcrustesSolution

BLOCK_ROWS = 16_384


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
    """W = U Vᵀ from the SVD of Sᵀ T, with the least-squares scale (see closed_form.procrustes)."""
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
    """(C + s·mean(eig C)·I)^p from one eigendecomposition of C, for any shrinkage s and power p
    (the same matrices as ``closed_form._matrix_power``, without one eigh per call)."""

    def __init__(self, cov: np.ndarray) -> None:
        evals, self.evecs = np.linalg.eigh(cov)
        self.evals = np.clip(evals, 0.0, None)
        self.mean = float(self.evals.mean()) or 1.0

    def __call__(self, shrinkage: float, power: float) -> np.ndarray:
        return (self.evecs * np.maximum(self.evals + float(shrinkage) * self.mean, 1e-12) ** power) @ self.evecs.T


def procrustes_candidates(m: PairMoments, whiten: bool | str, shrink_grid: list[float]) -> Iterator[
    tuple[float, ProcrustesSolution]
]:
    """(shrinkage, solution) as ``core.train.fit`` compares them: 0 = the plain rotation (unless
    ``whiten`` is True), then one whitened fit per shrinkage (unless ``whiten`` is False); see
    ``closed_form.whitened_procrustes``. All come from the same moments."""
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


def procrustes_candidates_streamed(source: np.ndarray, target: np.ndarray, whiten: bool | str,
                                   shrink_grid: list[float], block: int = BLOCK_ROWS) -> list[
    tuple[float, ProcrustesSolution]
]:
    """Drop-in for ``core.train.fit._procrustes_candidates``: one pass over the data for all fits."""
    whitened = whiten is not False and bool(shrink_grid)
    with_gram = whitened or source.shape[1] > target.shape[1]
    m = pair_moments(source, target, with_gram, block, with_gram_out=whitened)
    return list(procrustes_candidates(m, whiten, shrink_grid))


def ridge_path_from_moments(m: PairMoments, relative_lambdas: list[float]) -> Iterator[tuple[float, LinearSolution]]:
    """Ridge solutions (with bias) per λ relative to the mean feature variance (see closed_form)."""
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


def procrustes_streamed(source: np.ndarray, target: np.ndarray, block: int = BLOCK_ROWS) -> ProcrustesSolution:
    """Drop-in for :func:`core.adapters.closed_form.procrustes`."""
    with_gram = source.shape[1] > target.shape[1]
    return procrustes_from_moments(pair_moments(source, target, with_gram, block))


def ridge_path_streamed(source: np.ndarray, target: np.ndarray, relative_lambdas: list[float],
                        block: int = BLOCK_ROWS) -> Iterator[tuple[float, LinearSolution]]:
    """Drop-in for :func:`core.adapters.closed_form.ridge_path`."""
    return ridge_path_from_moments(pair_moments(source, target, True, block), relative_lambdas)
