"""faiss's import and thread count, shared by every search (local, sharded on Ray, benchmarks)."""

from __future__ import annotations

import os
from typing import Any


def load_faiss(threads: int | None = None) -> Any:
    """Import faiss after torch (one OpenMP load order for the process) and set its thread count.

    Without ``threads``, a valid ``OMP_NUM_THREADS`` is honoured (a user or scheduler pinning the
    process expects it); otherwise the CPUs this process may use, since OpenMP's own default counts
    every CPU of the machine, not the container's or the affinity mask's share.
    """
    try:
        import torch  # noqa: F401  (torch's OpenMP runtime first, then faiss's)
    except ImportError:  # pragma: no cover - torch is a dependency, kept optional here
        pass
    import faiss

    faiss.omp_set_num_threads(max(1, threads or _threads_from_environment() or _usable_cpus()))
    return faiss


def _threads_from_environment() -> int | None:
    """OMP_NUM_THREADS as a positive count (its first entry, as OpenMP reads a list); None if unset or bad."""
    first = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return int(first) if first.isdigit() and int(first) > 0 else None


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
