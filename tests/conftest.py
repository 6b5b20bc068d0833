"""Shared fixtures: one demo workspace built per test session, copied for tests that write.

Property tests draw the same examples on every run (``derandomize``), so a run's result depends
on the code alone; ``HYPOTHESIS_PROFILE=explore`` searches fresh random examples instead.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

settings.register_profile("repeatable", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never read or write the user's real settings or cache from a test."""
    monkeypatch.setenv("EMBRIDGE_CONFIG_DIR", str(tmp_path_factory.mktemp("config")))
    monkeypatch.setenv("EMBRIDGE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(autouse=True)
def _stop_signals_left_as_found() -> Iterator[None]:
    """A test (a command run in-process) must leave Ctrl-C and SIGTERM as it found them: one that left them
    ignored made every later test's child process deaf to its interrupts."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    after = {sig: signal.getsignal(sig) for sig in before}
    for sig, handler in before.items():
        signal.signal(sig, handler)
    # Embridge's own handlers and "ignore" must not outlive a command (Ray's driver installs its own SIGTERM)
    left = {sig: h for sig, h in after.items() if h != before[sig] and (
        h == signal.SIG_IGN or getattr(h, "__module__", "").startswith("embridge"))}
    assert not left, f"the test left the stop signals' handlers changed: {left} (they were {before})"


@pytest.fixture(scope="session")
def demo_workspace_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo workspace, built once; treat as read-only (use ``demo_copy`` to write)."""
    from embridge.core.demo import build_demo

    path = tmp_path_factory.mktemp("demo") / "ws"
    build_demo(path, seed=0).close()
    return path


@pytest.fixture
def demo_copy(demo_workspace_path: Path, tmp_path: Path) -> Path:
    """A private copy of the demo workspace that a test may change."""
    target = tmp_path / "ws"
    shutil.copytree(demo_workspace_path, target)
    return target


@pytest.fixture(scope="session")
def pg_server():  # noqa: ANN201 - yields the server's base URI
    """A real PostgreSQL server with pgvector for the session (pgserver ships both); removed afterwards.

    Run as root, pgserver starts the server as its own unprivileged user, which must be able to reach
    the data folder: so it lives in a folder of its own outside pytest's private (0700) temp tree.
    """
    import tempfile

    import pgserver

    root = Path(tempfile.mkdtemp(prefix="embridge-pg-"))
    root.chmod(0o711)
    try:
        server = pgserver.get_server(root / "data", cleanup_mode="delete")
    except subprocess.TimeoutExpired:  # pgserver gives pg_ctl 10 s, which a loaded machine can exceed
        server = pgserver.get_server(root / "data", cleanup_mode="delete")
    try:
        server.psql("CREATE EXTENSION IF NOT EXISTS vector;")
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


from qt_hygiene import qt_hygiene  # noqa: E402,F401  (fails Qt tests that leave widgets, timers or threads)

# The offscreen platform's default screen (800x800) is smaller than the window's minimum size, so
# restored geometry would be clamped; tests get a desktop-sized screen instead.
if os.environ.get("QT_QPA_PLATFORM") == "offscreen":
    os.environ["QT_QPA_PLATFORM"] = f"offscreen:configfile={Path(__file__).with_name('offscreen_screen.json')}"


@pytest.fixture(scope="session")
def ray_cluster() -> object:
    """One local Ray for the whole test session (2 CPUs, as on CI), shut down at the end."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()
