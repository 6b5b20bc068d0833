"""A real Ray cluster for detached-job tests: ``ray start --head --block`` on free ports, stopped after.

``--block`` keeps the starting process in the foreground; terminating it stops the cluster's own
processes (GCS, raylet, workers), so teardown never touches any other Ray on the machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

CLIENT_PORTS: dict[str, int] = {}  # a started head's address -> its Ray Client server's port


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen, timeout_s: float) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"the Ray head did not listen on port {port} within {timeout_s:.0f} s")


def wait_for_listener(host: str, port: int, timeout_s: float = 60.0) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listened on {host}:{port} within {timeout_s:.0f} s")


@pytest.fixture(scope="module")
def ray_head() -> Iterator[str]:
    """The address (127.0.0.1:PORT) of a 2-CPU Ray head started for this test module."""
    yield from started_head({k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"})


def started_head(env: dict[str, str]) -> Iterator[str]:
    """Start ``ray start --head --block`` with ``env``, yield its address, stop it."""
    port, client_port = free_port(), free_port()
    temp = Path(tempfile.mkdtemp(prefix="rh-", dir="/tmp"))  # short: Ray's socket paths have a length limit
    ray_bin = Path(sys.executable).with_name("ray")
    cmd = [str(ray_bin), "start", "--head", "--block", "--num-cpus", "2", "--port", str(port),
           "--node-ip-address", "127.0.0.1", "--include-dashboard=false", "--disable-usage-stats",
           f"--temp-dir={temp}",
           "--ray-client-server-port", str(client_port), "--dashboard-agent-listen-port", str(free_port()),
           "--metrics-export-port", str(free_port()), "--node-manager-port", str(free_port()),
           "--object-manager-port", str(free_port())]
    # a Ray Client connection starts a server process of its own, which a loaded two-core machine can take
    # longer than the head's default 30 s to bring up
    env = {**env, "RAY_CLIENT_SERVER_CHECK_CHANNEL_TIMEOUT_S": "180"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    try:
        _wait_for_port(port, proc, 120)
        CLIENT_PORTS[f"127.0.0.1:{port}"] = client_port
        yield f"127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the group this fixture started, nothing else
            proc.wait(timeout=30)
        shutil.rmtree(temp, ignore_errors=True)
