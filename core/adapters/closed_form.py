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
from functools import cached_property

import numpy as np

BLOCK_ROWS = 16_384
# a singular value of the centred rows below this share of the largest is rounding (the direction the
# centring removes, or a repeated row), not a direction the pairs reach: a float64 SVD resolves singular
# values to about eps of the largest, and real ones this small would be 1e-24 of the largest variance
SPAN_TOLERANCE = 1e-12


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
    # the centred rows themselves, kept when there are fewer pairs than dimensions (then they are smaller
    # than one d x d moment): every factorisation is then one of the data, O(N² d), not O(d³)
    rows_in: np.ndarray | None = None
    rows_out: np.ndarray | None = None

    @property
    def thin(self) -> bool:
        return self.rows_in is not None and self.rows_out is not None

    @cached_property
    def eigen_in(self) -> _Eigen:
        """The input covariance's eigenbasis (over the directions the pairs reach, when thin)."""
        return self._eigen(self.rows_in, self.gram, "input")

    @cached_property
    def eigen_out(self) -> _Eigen:
        """The target covariance's eigenbasis (over the directions the pairs reach, when thin)."""
        return self._eigen(self.rows_out, self.gram_out, "target")

    @cached_property
    def inner(self) -> np.ndarray:
        """Vsᵀ (Sᵀ T) Vt: the cross moment in the two sides' eigenbases."""
        e_in, e_out = self.eigen_in, self.eigen_out
        return e_in.left.T @ e_out.left if e_in.left is not None and e_out.left is not None \
            else e_in.basis.T @ self.cross @ e_out.basis

    def _eigen(self, rows: np.ndarray | None, gram: np.ndarray | None, side: str) -> _Eigen:
        if rows is not None:
            return _Eigen.of_rows(rows)
        if gram is None:
            raise ValueError(f"the {side} side's Gram matrix was not computed")
        return _Eigen.of_cov(gram / self.count)


def pair_moments(source: np.ndarray, target: np.ndarray, with_gram: bool = False,
                 block: int = BLOCK_ROWS, with_gram_out: bool = False) -> PairMoments:
    """Accumulate the centred moments over row blocks (arrays or memmaps of any float dtype).

    Each block is cast and shifted in one pass into reused float64 buffers; the sums and squared
    norms are BLAS products over those buffers, so the only full-cost step is the GEMM.
    """
    n = int(source.shape[0])
    if n == 0 or target.shape[0] != n:
        raise ValueError(f"need the same non-zero number of rows, got {source.shape} and {target.shape}")
    thin = n < min(int(source.shape[1]), int(target.shape[1]))  # factorised from the rows, not the Grams
    with_gram, with_gram_out = with_gram and not thin, with_gram_out and not thin
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
    moments = PairMoments(n, shift_x + dx, shift_y + dy, cross, max(sq, 0.0), gram, gram_out)
    if thin:  # few pairs: keep them, centred, for thin factorisations
        moments.rows_in = np.asarray(source, dtype=np.float64) - moments.mean_in
        moments.rows_out = np.asarray(target, dtype=np.float64) - moments.mean_out
    return moments


def procrustes_from_moments(m: PairMoments) -> ProcrustesSolution:
    """W = U Vᵀ from the SVD of Sᵀ T, with the least-squares scale Σσ / ||S W||².

    With different dims W has orthonormal columns (in >= out) or orthonormal rows (in < out),
    i.e. the rotation is padded or truncated. With orthonormal rows ||S W||² = ||S||², an O(N d)
    sum; only a truncating map (in_dim > out_dim) needs the Gram matrix for it.
    """
    if m.thin:  # Sᵀ T = Vs K Vtᵀ: the SVD of the small K, completed to a semi-orthogonal map
        e_in, e_out = m.eigen_in, m.eigen_out
        u, sv, vt = np.linalg.svd(m.inner, full_matrices=False)
        weight = _semi_orthogonal(e_in.basis @ u, e_out.basis @ vt.T)
        denom = float(np.sum((e_in.left @ (e_in.basis.T @ weight)) ** 2))  # ||S W||², S = Us Σs Vsᵀ
        return ProcrustesSolution(weight, float(sv.sum() / denom) if denom > 0 else 1.0, m.mean_in, m.mean_out)
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


def _semi_orthogonal(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """W = A Bᵀ + C Dᵀ for A (d_in x r) and B (d_out x r) with orthonormal columns: C and D complete them
    to orthonormal bases of min(d_in, d_out) columns, pairing the directions no pair reaches one to one
    (any pairing is a solution; the full d x d SVD pairs them as arbitrarily), so W has orthonormal rows
    or columns like every plain Procrustes map, which layers that start from it (bt2's rotation) need."""
    rank, width = left.shape[1], min(left.shape[0], right.shape[0])
    weight = left @ right.T
    if width > rank:
        complete_l = np.linalg.qr(left, mode="complete")[0][:, rank:width]
        complete_r = np.linalg.qr(right, mode="complete")[0][:, rank:width]
        weight += complete_l @ complete_r.T
    return weight


class _Eigen:
    """A covariance's eigenbasis: ``values`` (of the covariance, Gram / N), ``basis`` (d x r), the mean of
    all d eigenvalues (the shrinkage's unit), and for one taken from the rows, ``left`` = U Σ (N x r).
    From a Gram matrix it holds every direction (r = d); from the rows, only those the rows reach."""

    def __init__(self, values: np.ndarray, basis: np.ndarray, mean: float, left: np.ndarray | None = None) -> None:
        self.values, self.basis, self.mean, self.left = values, basis, mean or 1.0, left

    @classmethod
    def of_cov(cls, cov: np.ndarray) -> _Eigen:
        evals, evecs = np.linalg.eigh(cov)  # every direction: with enough pairs the basis is square anyway
        evals = np.clip(evals, 0.0, None)
        return cls(evals, evecs, float(evals.mean()) if evals.size else 1.0)

    @classmethod
    def of_rows(cls, rows: np.ndarray) -> _Eigen:
        """From the centred rows' thin SVD (rows = U Σ Vᵀ, covariance V Σ²/N Vᵀ)."""
        u, sv, vt = np.linalg.svd(rows, full_matrices=False)
        spanned = sv > SPAN_TOLERANCE * (float(sv.max()) if sv.size else 0.0)
        n, dim = rows.shape
        return cls(sv[spanned] ** 2 / n, vt[spanned].T, float((sv**2).sum()) / n / dim, u[:, spanned] * sv[spanned])

    def diag(self, shrinkage: float, power: float) -> np.ndarray:
        """(values + s·mean)^p: the spanned part of (C + s·mean(eig C)·I)^p in this basis."""
        return np.maximum(self.values + float(shrinkage) * self.mean, 1e-12) ** power


def candidate_count(whiten: bool | str, shrink_grid: list[float]) -> int:
    """How many solutions :func:`candidates_from_moments` yields: the plain rotation unless ``whiten`` is
    True, one whitened fit per shrinkage unless it is False (known before any is solved, for progress)."""
    return (whiten is not True) + (len(shrink_grid) if whiten is not False else 0)


def candidates_from_moments(m: PairMoments, whiten: bool | str, shrink_grid: list[float]) -> Iterator[
    tuple[float, ProcrustesSolution]
]:
    """(shrinkage, solution): 0 = the plain rotation (unless ``whiten`` is True), then one
    whitened fit W = Cs^(-1/2) U Vᵀ Ct^(1/2), scale 1, per shrinkage (unless ``whiten`` is False).

    Worked in the covariances' eigenbases (Cs = Vs Λs Vsᵀ, Ct = Vt Λt Vtᵀ): Sᵀ T lies in the span of
    the directions each side's data reaches, so with K = Vsᵀ (Sᵀ T) Vt over those directions and
    D = (Λ + s·mean(Λ))^(-1/2), the SVD of Ds K Dt = U' Σ V'ᵀ gives W = Vs Ds U' V'ᵀ Dt⁻¹ Vtᵀ. Each
    shrinkage costs one SVD of a (spanned x spanned) matrix and two products, instead of forming and
    multiplying d x d matrix powers; with fewer pairs than dimensions the SVD is as small as the data,
    and directions the data never reaches map to zero (a whitened map is not orthogonal, so nothing
    asks for them to be completed).
    """
    if whiten is not True:
        yield 0.0, procrustes_from_moments(m)
    if whiten is False or not shrink_grid:
        return
    if not m.thin and (m.gram is None or m.gram_out is None):
        raise ValueError("whitened Procrustes needs both Gram matrices (with_gram and with_gram_out)")
    eig_s, eig_t = m.eigen_in, m.eigen_out
    basis_s, basis_t, inner = eig_s.basis, eig_t.basis, m.inner
    for shrink in shrink_grid:
        if shrink <= 0:
            raise ValueError(f"whitening shrinkage must be positive, got {shrink}")
        white_s, white_t = eig_s.diag(shrink, -0.5), eig_t.diag(shrink, -0.5)
        u, _, vt = np.linalg.svd(white_s[:, None] * inner * white_t[None, :], full_matrices=False)
        core = (white_s[:, None] * u) @ (vt / white_t[None, :])
        weight = basis_s @ core @ basis_t.T
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
    if m.gram is None and not m.thin:
        raise ValueError("ridge regression needs the Gram matrix; use pair_moments(..., with_gram=True)")
    eig = m.eigen_in  # Sᵀ T lies in the span of S's rows, where (G + λI)⁻¹ is V (Λ + λ)⁻¹ Vᵀ
    evals = eig.values * m.count  # of the Gram matrix
    rhs = eig.left.T @ m.rows_out if m.thin else eig.basis.T @ m.cross  # type: ignore[union-attr,operator]
    base = eig.mean * m.count
    for rel in relative_lambdas:
        lam = float(rel) * base
        inv = 1.0 / np.maximum(evals + lam, 1e-12 * max(base, 1e-12))
        weight = eig.basis @ (inv[:, None] * rhs)
        yield float(rel), LinearSolution(weight, m.mean_out - m.mean_in @ weight)


def ridge_path(source: np.ndarray, target: np.ndarray, relative_lambdas: list[float],
               block: int = BLOCK_ROWS) -> Iterator[tuple[float, LinearSolution]]:
    """Ridge solutions (with bias) for each λ, given relative to the mean feature variance."""
    return ridge_from_moments(pair_moments(source, target, True, block), relative_lambdas)
