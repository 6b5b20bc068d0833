"""Seeded synthetic upgrade pairs with known truth, for tests and benchmarks.

Real model pairs are not available in unit tests, so these generators mimic what matters for
compatibility: a shared linear (or mildly non-linear) relation between the two spaces, a large
common mean (anisotropy, which breaks uncentred fits) and an old model that separates only the
classes it was trained on while the new model separates all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.l2 import l2_normalize


@dataclass
class SyntheticPair:
    """Paired vectors of the same items: ``old`` (n x d_old), ``new`` (n x d_new), optional labels."""

    old: np.ndarray
    new: np.ndarray
    labels: np.ndarray | None = None
    truth: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.old.shape[0])

    def subset(self, idx: np.ndarray) -> SyntheticPair:
        """The rows ``idx`` of every array (truth is shared)."""
        labels = None if self.labels is None else self.labels[idx]
        return SyntheticPair(self.old[idx], self.new[idx], labels, self.truth)

    def splits(self, fractions: tuple[float, ...] = (0.6, 0.2, 0.2), seed: int = 0) -> list[SyntheticPair]:
        """Disjoint random splits of the items in the given proportions (e.g. train, val, test)."""
        order = np.random.default_rng(seed).permutation(len(self))
        cuts = np.cumsum([int(round(f * len(self))) for f in fractions[:-1]])
        return [self.subset(np.sort(part)) for part in np.split(order, cuts)]


def random_semi_orthogonal(rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """A rows x cols matrix with orthonormal columns (rows >= cols) or orthonormal rows."""
    q, r = np.linalg.qr(rng.standard_normal((max(rows, cols), min(rows, cols))))
    q = q * np.sign(np.diag(r))
    return q if rows >= cols else q.T


def rotation_pair(
    n: int, d_new: int, d_old: int, noise: float = 0.01, seed: int = 0, mean_norm: float = 0.0
) -> SyntheticPair:
    """old = new @ W + noise with W semi-orthogonal (d_new x d_old); truth holds ``W``.

    ``mean_norm`` adds a common offset to both spaces (the truth map then carries a bias).
    """
    rng = np.random.default_rng(seed)
    w = random_semi_orthogonal(d_new, d_old, rng)
    new = rng.standard_normal((n, d_new)) / np.sqrt(d_new)
    new += mean_norm * _unit(rng, d_new)
    mean_old = mean_norm * _unit(rng, d_old)
    centred = new - new.mean(axis=0) if mean_norm else new
    old = centred @ w + mean_old + noise * rng.standard_normal((n, d_old)) / np.sqrt(d_old)
    return SyntheticPair(old.astype(np.float32), new.astype(np.float32), None, {"W": w})


def affine_pair(n: int, d_new: int, d_old: int, noise: float = 0.01, seed: int = 0) -> SyntheticPair:
    """old = new @ A + c + noise with a general (non-orthogonal) A; truth holds ``A`` and ``c``."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((d_new, d_old)) / np.sqrt(d_new)
    c = rng.standard_normal(d_old)
    new = rng.standard_normal((n, d_new))
    old = new @ a + c + noise * rng.standard_normal((n, d_old))
    return SyntheticPair(old.astype(np.float32), new.astype(np.float32), None, {"A": a, "c": c})


def class_structured_pair(
    n: int,
    n_classes: int,
    old_dim: int,
    new_dim: int,
    old_seen_classes: int,
    seed: int = 0,
    latent_dim: int = 32,
    spread: float = 0.9,
    unseen_shrink: float = 0.5,
    old_noise: float = 0.35,
    new_noise: float = 0.1,
    mean_norm: float = 5.0,
    nonlinearity: float = 0.5,
) -> SyntheticPair:
    """Labelled pairs where the old model separates only its first ``old_seen_classes`` classes.

    Items are latent points z = centre[y] + spread * noise. The new space is a linear view of z
    (all classes separated); the old space is a noisier, mildly non-linear view in which the class
    part of z is shrunk by ``unseen_shrink`` for classes the old model never saw, so those classes
    overlap. Both spaces carry a large shared mean (``mean_norm``) before L2 normalisation, as real
    embeddings do. Truth records which classes are seen.
    """
    if not 0 <= old_seen_classes <= n_classes:
        raise ValueError("old_seen_classes must lie between 0 and n_classes")
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, latent_dim))
    labels = rng.integers(0, n_classes, size=n)
    jitter = spread * rng.standard_normal((n, latent_dim))
    z_new = centres[labels] + jitter
    seen = labels < old_seen_classes
    shrink = np.where(seen, 1.0, unseen_shrink)[:, None]
    z_old = centres[labels] * shrink + jitter
    g_new = rng.standard_normal((latent_dim, new_dim)) / np.sqrt(latent_dim)
    g_old = rng.standard_normal((latent_dim, old_dim)) / np.sqrt(latent_dim)
    new = z_new @ g_new + new_noise * rng.standard_normal((n, new_dim))
    lin_old = z_old @ g_old
    old = lin_old + nonlinearity * np.tanh(lin_old) + old_noise * rng.standard_normal((n, old_dim))
    new = l2_normalize(new + mean_norm * _unit(rng, new_dim))
    old = l2_normalize(old + mean_norm * _unit(rng, old_dim))
    truth = {"seen_classes": np.arange(old_seen_classes), "n_classes": n_classes}
    return SyntheticPair(old.astype(np.float32), new.astype(np.float32), labels.astype(np.int64), truth)


def _unit(rng: np.random.Generator, dim: int) -> np.ndarray:
    v = rng.standard_normal(dim)
    return v / np.linalg.norm(v)


