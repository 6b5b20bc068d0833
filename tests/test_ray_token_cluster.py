"""A cluster `ray start` began with token authentication (a token in ~/.ray/auth_token): every command
given its address attaches, sending the token as Ray's own tools do, not only a detached backfill (a
transform or report with --ray-address failed: 'cannot start or reach Ray')."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ray_head_fixtures import CLIENT_PORTS, started_head, wait_for_listener
from scale_fixtures import write_partitions
from store_fixtures import fct_upgrade

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def token_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("home")
    (home / ".ray").mkdir()
    (home / ".ray" / "auth_token").write_text("embridge-test-token-" + "7" * 24 + "\n")
    return home


def _env(home: Path) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("RAY_")} | {"HOME": str(home)}


@pytest.fixture(scope="module")
def token_head(token_home: Path) -> Iterator[str]:
    yield from started_head(_env(token_home))


@pytest.fixture(scope="module")
def upgrade(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return fct_upgrade(tmp_path_factory.mktemp("token-upgrade"))


def _transform(upgrade: dict, src: Path, out: Path, env: dict[str, str], *engine: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "embridge.core.cli.main", "transform", "--bundle",
                           str(upgrade["bundle"]), "--from", str(src), "--to", str(out), *engine],
                          capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)


def test_a_transform_attaches_to_a_token_cluster(token_head: str, token_home: Path, upgrade: dict,
                                                 tmp_path: Path) -> None:
    write_partitions(tmp_path / "in", upgrade["vectors"]["v1"][:200], parts=2)
    env = _env(token_home)
    done = _transform(upgrade, tmp_path / "in", tmp_path / "ray", env, "--engine", "ray", "--ray-address", token_head)
    assert done.returncode == 0, done.stderr
    local = _transform(upgrade, tmp_path / "in", tmp_path / "local", env)
    assert local.returncode == 0, local.stderr
    ray_files = {p.name: p.read_bytes() for p in (tmp_path / "ray").glob("*.parquet")}
    assert ray_files and ray_files == {p.name: p.read_bytes() for p in (tmp_path / "local").glob("*.parquet")}


PROBE = """
import sys
from embridge.core.errors import EmbridgeError
from embridge.core.scale.engine import check_reachable
for address in sys.argv[1:]:
    try:
        check_reachable(address)
        print("passed")
    except EmbridgeError as exc:
        print(exc)
"""


def test_the_port_kind_is_told_on_a_token_cluster(token_head: str, token_home: Path) -> None:
    """The GCS answers an unauthenticated probe with UNAUTHENTICATED, so its port given with ray:// passed the
    check; the probe sends the token as Ray's own clients do."""
    host, client_port = token_head.rsplit(":", 1)[0], CLIENT_PORTS[token_head]
    wait_for_listener(host, client_port)
    done = subprocess.run([sys.executable, "-c", PROBE, f"ray://{token_head}", token_head,
                           f"ray://{host}:{client_port}", f"{host}:{client_port}"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT, env=_env(token_home))
    lines = done.stdout.splitlines()
    assert done.returncode == 0 and len(lines) == 4, done.stderr
    assert "this port is a cluster's GCS, which Ray Client does not serve" in lines[0]
    assert lines[1:3] == ["passed", "passed"]
    assert "this port is a Ray Client server, not a cluster's GCS" in lines[3]
