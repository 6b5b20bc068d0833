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

from embridge.core.l2 import l2_normalize


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


@dataclass
class SyntheticRetrieval:
    """A query/document retrieval task embedded by both models, with one relevant document per query.

    ``old_docs``/``new_docs`` (n_docs rows) and ``old_queries``/``new_queries`` (n_queries rows) are
    L2-normalised; ``relevant[i]`` is the document row relevant to query i.
    """

    old_docs: np.ndarray
    new_docs: np.ndarray
    old_queries: np.ndarray
    new_queries: np.ndarray
    relevant: np.ndarray

    def query_subset(self, idx: np.ndarray) -> SyntheticRetrieval:
        """The queries ``idx`` (all documents kept)."""
        return SyntheticRetrieval(self.old_docs, self.new_docs, self.old_queries[idx], self.new_queries[idx],
                                  self.relevant[idx])

    def query_splits(self, fractions: tuple[float, ...] = (0.4, 0.2, 0.4), seed: int = 0) -> list[SyntheticRetrieval]:
        """Disjoint random splits of the queries (e.g. train, dev, test); documents are shared."""
        order = np.random.default_rng(seed).permutation(len(self.relevant))
        cuts = np.cumsum([int(round(f * len(order))) for f in fractions[:-1]])
        return [self.query_subset(np.sort(part)) for part in np.split(order, cuts)]


def query_document_task(
    n_docs: int = 1500,
    n_queries: int = 900,
    old_dim: int = 48,
    new_dim: int = 64,
    latent_dim: int = 24,
    seed: int = 0,
    old_query_noise: float = 0.9,
    new_query_noise: float = 0.8,
    query_shift: float = 1.2,
    nuisance_dims: int = 4,
    nuisance_scale: float = 1.0,
    mean_norm: float = 4.0,
) -> SyntheticRetrieval:
    """Queries and documents that each model embeds differently, as asymmetric text encoders do.

    Documents are latent points; a query is a noisy view of its relevant document (noisier under the
    old model, so the new model is better on queries). Each model embeds queries with its own
    query-side map (a perturbed copy of its document map plus a query offset, like a "query:"
    prefix), so a map fitted on document pairs alone is off for queries. The old space also has a
    few high-variance nuisance directions that carry nothing about the document, which a vector
    fit (MSE) spends itself on and a retrieval objective learns to ignore; and both spaces share a
    large common mean before L2 normalisation.
    """
    rng = np.random.default_rng(seed)
    z_docs = rng.standard_normal((n_docs, latent_dim))
    relevant = rng.integers(0, n_docs, size=n_queries)
    eps = rng.standard_normal((n_queries, latent_dim))

    def model(dim: int, extra: int, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        doc_map = rng.standard_normal((latent_dim, dim)) / np.sqrt(latent_dim)
        query_map = doc_map + query_shift * rng.standard_normal((latent_dim, dim)) / np.sqrt(latent_dim)
        basis = random_semi_orthogonal(dim, extra, rng) if extra else np.zeros((dim, 0))
        return doc_map, query_map, query_shift * _unit(rng, dim), basis * scale

    o_doc, o_query, o_off, o_nuis = model(old_dim, nuisance_dims, nuisance_scale)
    n_doc, n_query, n_off, _ = model(new_dim, 0, 0.0)
    mean_old, mean_new = mean_norm * _unit(rng, old_dim), mean_norm * _unit(rng, new_dim)

    def nuisance(rows: int) -> np.ndarray:
        return rng.standard_normal((rows, o_nuis.shape[1])) @ o_nuis.T if o_nuis.shape[1] else 0.0

    old_docs = z_docs @ o_doc + nuisance(n_docs) + 0.1 * rng.standard_normal((n_docs, old_dim)) + mean_old
    new_docs = z_docs @ n_doc + 0.1 * rng.standard_normal((n_docs, new_dim)) + mean_new
    z_old_q = z_docs[relevant] + old_query_noise * eps
    z_new_q = z_docs[relevant] + new_query_noise * eps
    old_queries = z_old_q @ o_query + o_off + nuisance(n_queries) + mean_old
    new_queries = z_new_q @ n_query + n_off + mean_new
    return SyntheticRetrieval(l2_normalize(old_docs).astype(np.float32), l2_normalize(new_docs).astype(np.float32),
                              l2_normalize(old_queries).astype(np.float32), l2_normalize(new_queries).astype(np.float32),
                              relevant.astype(np.int64))
