"""Seeded synthetic vectors for the benchmarks, written in chunks so that no size needs 2x its RAM.

``pair_arrays`` mirrors :func:`embridge.core.synthetic.rotation_pair` (old = centred new @ W + offset +
noise, with a large shared mean) but builds float32 rows chunk by chunk, so 1M x 768 pairs fit in
memory. ``gallery_files`` writes a clustered, L2-normalised gallery and query set as ``.npy`` files
that the search benchmark opens as memmaps (clusters make approximate-search recall meaningful;
uniform random vectors in 384 dims have no near neighbours).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from embridge.core.synthetic import random_semi_orthogonal

CHUNK = 65_536


def pair_arrays(n: int, d_new: int, d_old: int, seed: int = 0, mean_norm: float = 1.0,
                noise: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """(old, new) float32 arrays of ``n`` rows related by a rotation, a shared mean and noise."""
    rng = np.random.default_rng(seed)
    w = random_semi_orthogonal(d_new, d_old, rng).astype(np.float32)
    mean_new = (mean_norm * _unit(rng, d_new)).astype(np.float32)
    mean_old = (mean_norm * _unit(rng, d_old)).astype(np.float32)
    old = np.empty((n, d_old), dtype=np.float32)
    new = np.empty((n, d_new), dtype=np.float32)
    for start in range(0, n, CHUNK):
        stop = min(start + CHUNK, n)
        part = rng.standard_normal((stop - start, d_new), dtype=np.float32) / np.float32(np.sqrt(d_new))
        new[start:stop] = part + mean_new
        noise_part = rng.standard_normal((stop - start, d_old), dtype=np.float32)
        old[start:stop] = part @ w + mean_old + np.float32(noise / np.sqrt(d_old)) * noise_part
    return old, new


def clustered_rows(rng: np.random.Generator, centres: np.ndarray, n: int, spread: float) -> np.ndarray:
    """``n`` unit rows scattered around random centres."""
    d = centres.shape[1]
    labels = rng.integers(0, len(centres), size=n)
    rows = centres[labels] + np.float32(spread / np.sqrt(d)) * rng.standard_normal((n, d), dtype=np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows.astype(np.float32, copy=False)


def gallery_files(folder: Path, n_gallery: int, n_queries: int, dim: int, seed: int = 0,
                  n_centres: int = 2000, spread: float = 1.0) -> tuple[Path, Path]:
    """Write (or reuse) ``gallery_<n>x<d>.npy`` and ``queries_<n>x<d>.npy``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    tag = f"{n_gallery}x{dim}_s{seed}"
    g_path, q_path = folder / f"gallery_{tag}.npy", folder / f"queries_{n_queries}_{tag}.npy"
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_centres, dim)).astype(np.float32) / np.float32(np.sqrt(dim))
    if not g_path.exists():
        _write_rows(g_path, n_gallery, dim, lambda m: clustered_rows(rng, centres, m, spread))
    if not q_path.exists():
        q_rng = np.random.default_rng(seed + 1)
        _write_rows(q_path, n_queries, dim, lambda m: clustered_rows(q_rng, centres, m, spread))
    return g_path, q_path


def _write_rows(path: Path, n: int, dim: int, make: Callable[[int], np.ndarray]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, dim))
    for start in range(0, n, CHUNK):
        stop = min(start + CHUNK, n)
        out[start:stop] = make(stop - start)
    out.flush()
    del out
    tmp.replace(path)


def _unit(rng: np.random.Generator, dim: int) -> np.ndarray:
    v = rng.standard_normal(dim)
    return v / np.linalg.norm(v)
