"""Engine choice and the Ray session a job runs in.

A job either attaches to an existing cluster (``--ray-address`` or ``RAY_ADDRESS``) or starts a local
Ray for itself; it shuts down only what it started, so a shared cluster or a session the caller already
opened (a test fixture, a notebook) is left running.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from embridge.core.errors import EmbridgeError, InputError

ENGINES = ("local", "ray")


class EngineError(EmbridgeError):
    """The chosen engine cannot run here (Ray missing, cluster unreachable)."""


@dataclass(frozen=True)
class RaySession:
    """Which cluster a job runs on and whether the job started it (and so must stop it)."""

    address: str | None
    started: bool
    cpus: int


def check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise InputError("--engine", f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    return engine


def import_ray() -> Any:
    """Ray itself, or one line saying how to get it."""
    try:
        import ray
    except ImportError as exc:
        raise EngineError("--engine ray needs Ray: pip install 'embridge[ray]'") from exc
    return ray


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[RaySession]:
    """Attach to ``address`` (else ``RAY_ADDRESS``), reuse an open session, or start a local Ray."""
    ray = import_ray()
    if ray.is_initialized():
        yield RaySession(None, False, int(ray.cluster_resources().get("CPU", 1)))
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    try:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    except Exception as exc:  # ConnectionError, RuntimeError, ValueError depending on the failure
        raise EngineError(f"--ray-address {address or 'local'}: cannot start or reach Ray: {exc}") from exc
    try:
        yield RaySession(address, True, int(ray.cluster_resources().get("CPU", 1)))
    finally:
        ray.shutdown()
