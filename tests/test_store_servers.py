"""Stores reached over the network: a real Chroma server, and the Qdrant server URIs.

Chroma ships its server (``chroma run``); each test here starts one on a free local port, runs the
whole round trip through ``chroma://127.0.0.1:PORT?collection=...`` (import, migrate, check,
rollback, and kill -9 in the middle of a migration, whose checkpoint lives in the server) and
stops it. No PyPI package ships the Qdrant server, so for ``qdrant://host:port`` the URI parsing
and the client's construction are checked against a small local HTTP endpoint that records what
the client sends, and the server-side checkpoint helpers against Qdrant's own local mode.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from store_fixtures import cli, fct_upgrade, read_all

from embridge.core.bundle import load_bundle
from embridge.core.connectors import open_store
from embridge.core.connectors.connector import StoreURI, VectorStoreError
from embridge.core.errors import InputError
from embridge.core.store import Workspace

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _chroma_command() -> list[str]:
    exe = Path(sys.executable).with_name("chroma")
    return [str(exe)] if exe.exists() else [shutil.which("chroma") or "chroma"]


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[str]:
    """``chroma run`` on a free port of this machine; yields its base URI, stops it afterwards."""
    import chromadb
    from chromadb.config import Settings

    port = free_port()
    log = (tmp_path / "chroma-server.log").open("wb")
    proc = subprocess.Popen([*_chroma_command(), "run", "--path", str(tmp_path / "chroma-data"), "--host",
                             "127.0.0.1", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                chromadb.HttpClient(host="127.0.0.1", port=port,
                                    settings=Settings(anonymized_telemetry=False)).heartbeat()
                break
            except Exception as exc:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the Chroma server did not start: "
                                       + (tmp_path / "chroma-server.log").read_text(errors="replace")[-2000:]) from exc
                time.sleep(0.25)
        yield f"chroma://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def upgrade(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return fct_upgrade(tmp_path_factory.mktemp("servers"))


def fill_chroma_server(base: str, name: str, ids: list[int], vectors: np.ndarray, labels: list[str]) -> None:
    """The source collection, written with Chroma's own HTTP client as an application would."""
    import chromadb
    from chromadb.config import Settings

    host, port = StoreURI.parse(base).server(8000)
    client = chromadb.HttpClient(host=host, port=port, settings=Settings(anonymized_telemetry=False))
    col = client.create_collection(name, metadata={"hnsw:space": "cosine"})
    for start in range(0, len(ids), 200):
        part = slice(start, start + 200)
        col.add(ids=[str(i) for i in ids[part]], embeddings=vectors[part],
                metadatas=[{"label": lab, "body": f"text of point {i}"} for i, lab in zip(ids[part], labels[part],
                                                                                        strict=True)])


@pytest.mark.slow
def test_chroma_server_round_trip_import_migrate_check_rollback(chroma_server: str, upgrade: dict, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    v1, labels = upgrade["vectors"]["v1"], upgrade["labels"]
    ids = [int(i) + 1000 for i in range(len(v1))]
    fill_chroma_server(chroma_server, "docs_v1", ids, v1, labels)
    source, target = f"{chroma_server}?collection=docs_v1", f"{chroma_server}?collection=docs_v2"

    ws_path = tmp_path / "ws"
    assert cli(capsys, "init", "--workspace", str(ws_path))[0] == 0
    code, imported, err = cli(capsys, "import", "--workspace", str(ws_path), "--from", source, "--model", "old",
                              "--label-field", "label", "--text-field", "body")
    assert code == 0, err
    assert imported["count"] == imported["new_items"] == len(ids) and imported["dim"] == v1.shape[1]
    with Workspace.open(ws_path) as ws:
        items = {r["key"]: r for r in ws.items()}
        stored = ws.vectors_for("old", ws.ids_for_keys([str(i) for i in ids]))
    assert items[str(ids[3])]["label"] == labels[3] and items[str(ids[3])]["text"] == f"text of point {ids[3]}"
    np.testing.assert_allclose(stored, v1, rtol=1e-6, atol=1e-6)

    code, result, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", source, "--to", target,
                            "--batch", "40")
    assert code == 0, err
    assert result["status"] == "completed" and result["written"] == len(ids) and result["verification"]["ok"]
    got = read_all(target)
    assert sorted(got) == sorted(str(i) for i in ids)
    want = load_bundle(upgrade["bundle"])(v1, normalise_output=True)
    np.testing.assert_allclose(np.stack([got[str(i)][0] for i in ids]), want, rtol=1e-4, atol=1e-5)
    assert {p["embridge_space"] for _, p in got.values()} == {result["spaces"]["adapted"]}
    assert all(got[str(i)][1]["label"] == labels[n] for n, i in enumerate(ids))
    assert all("embridge_space" not in p for _, p in read_all(source).values())  # the source is untouched

    code, checked, err = cli(capsys, "check", "--uri", target, "--label-field", "label")
    assert code == 0, err
    assert checked["state"] == "single" and checked["count"] == len(ids) and checked["migration"]["status"] == "complete"
    code, rerun, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", source, "--to", target)
    assert code == 0 and rerun["status"] == "already complete" and rerun["written"] == 0, err

    # Chroma has no aliases: a switch or a rollback is refused in one line, and nothing changes
    for args in (["migrate", "--bundle", str(upgrade["bundle"]), "--from", source, "--to",
                  f"{chroma_server}?collection=docs_v3", "--switch", "--alias", "docs"],
                 ["rollback", "--to", f"{source}&alias=docs"]):
        code, _, err = cli(capsys, *args)
        assert code == 1 and "Chroma has no aliases" in err and err.count("\n") == 1
    assert len(read_all(target)) == len(ids)
    with pytest.raises(VectorStoreError, match="no such collection"):
        open_store(f"{chroma_server}?collection=docs_v3").count()


@pytest.mark.slow
def test_chroma_server_kill_9_mid_migration_resumes_from_the_server_checkpoint(chroma_server: str, upgrade: dict
                                                                               ) -> None:
    n = 1200  # each poll opens a client over HTTP: room for a late one before the migration ends
    old = np.random.default_rng(3).standard_normal((n, 16)).astype(np.float32)
    ids = list(range(1, n + 1))
    fill_chroma_server(chroma_server, "killed_v1", ids, old, [str(i % 6) for i in ids])
    source, target = f"{chroma_server}?collection=killed_v1", f"{chroma_server}?collection=killed_v2"
    args = [sys.executable, "-m", "embridge.core.cli.main", "migrate", "--bundle", str(upgrade["bundle"]), "--from", source,
            "--to", target, "--batch", "10", "--json"]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None and _server_written(chroma_server) < 100:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the migration finished before it could be killed"
    at_kill = _server_written(chroma_server)
    assert 100 <= at_kill < n

    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "completed" and result["resumed_from"] == at_kill and result["written"] == n - at_kill
    got = read_all(target)  # fails on any id stored twice
    assert sorted(got, key=int) == [str(i) for i in ids]
    np.testing.assert_allclose(np.stack([got[str(i)][0] for i in ids]), load_bundle(upgrade["bundle"])(old, normalise_output=True),
                               rtol=1e-4, atol=1e-5)


def _server_written(base: str) -> int:
    """Points the running migration has recorded as written, read from the server's checkpoint."""
    store = open_store(f"{base}?collection=killed_v2")
    try:
        state = store.load_state("migrate-killed_v2")
    finally:
        store.close()
    return int(state["written"]) if state else 0


def test_chroma_server_that_is_not_there_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    port = free_port()
    with pytest.raises(VectorStoreError, match=rf"chroma://127.0.0.1:{port}\?collection=docs: cannot reach the "
                                               "Chroma server"):
        open_store(f"chroma://127.0.0.1:{port}?collection=docs")
    code, out, err = cli(capsys, "check", "--uri", f"chroma://127.0.0.1:{port}?collection=docs")
    assert code == 1 and "cannot reach the Chroma server" in err and err.count("\n") == 1


# -- Qdrant servers -------------------------------------------------------------------------------
@pytest.mark.parametrize(("uri", "host", "port", "tls", "url"), [
    ("qdrant://db.example:6334?collection=docs", "db.example", 6334, False, "http://db.example:6334"),
    ("qdrant://db.example?collection=docs&https=1", "db.example", 6333, True, "https://db.example:6333"),
    ("qdrant://10.0.0.7:7000?collection=docs&https=true", "10.0.0.7", 7000, True, "https://10.0.0.7:7000"),
    ("qdrant://[::1]:6333?collection=docs", "::1", 6333, False, "http://[::1]:6333"),
])
def test_qdrant_server_uris_are_parsed(uri: str, host: str, port: int, tls: bool, url: str) -> None:
    from embridge.core.connectors.qdrant import server_url

    parsed = StoreURI.parse(uri)
    assert parsed.server(6333) == (host, port) and parsed.tls is tls and server_url(parsed) == url
    assert parsed.param("collection") == "docs"


@pytest.mark.parametrize(("uri", "message"), [("qdrant://db:63x3?collection=docs", "port '63x3' is not a number"),
                                              ("qdrant://:6333?collection=docs", "no server host named")])
def test_bad_server_uris_are_refused_in_one_line(uri: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(InputError, match=message):
        open_store(uri)
    code, _, err = cli(capsys, "check", "--uri", uri)
    assert code in (1, 2) and message in err and err.count("\n") == 1


class _Recorder(BaseHTTPRequestHandler):
    """Answers the Qdrant REST calls a connector makes on opening, and records each request."""

    seen: list[tuple[str, str, str | None]] = []

    def do_GET(self) -> None:  # noqa: N802 - the http.server name
        self.seen.append(("GET", self.path, self.headers.get("api-key")))
        if self.path.startswith("/collections/") and self.path.endswith("/exists"):
            body: dict[str, Any] = {"exists": False}
        elif self.path.startswith("/collections"):
            body = {"collections": []}
        elif self.path.startswith("/aliases"):
            body = {"aliases": []}
        else:
            body = {}
        data = json.dumps({"result": body, "status": "ok", "time": 0.0}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")
def test_qdrant_server_uri_builds_a_client_that_talks_to_that_server(monkeypatch: pytest.MonkeyPatch) -> None:
    _Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("QDRANT_API_KEY", "secret-key")
    try:
        port = server.server_address[1]
        store = open_store(f"qdrant://127.0.0.1:{port}?collection=docs")
        try:
            assert store.local_path is None and store.single_client is False and store.state_dir() is None
            assert store.describe() == f"Qdrant 127.0.0.1:{port} collection 'docs'"
            assert store.exists() is False
            assert store.load_state("migrate-docs") is None  # checkpoints are looked up on the server
        finally:
            store.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    paths = [p for _, p, _ in _Recorder.seen]
    assert paths[0] == "/collections" and "/collections/docs/exists" in paths and "/aliases" in paths
    assert "/collections/embridge_state/exists" in paths
    assert {key for _, _, key in _Recorder.seen} == {"secret-key"}


def test_qdrant_server_that_is_not_there_is_one_line() -> None:
    port = free_port()
    with pytest.raises(VectorStoreError, match=rf"qdrant://127.0.0.1:{port}\?collection=docs: cannot open the "
                                               r"Qdrant store \(") as info:
        open_store(f"qdrant://127.0.0.1:{port}?collection=docs")
    assert "\n" not in str(info.value)


def test_qdrant_server_checkpoints_round_trip_in_a_state_collection(tmp_path: Path) -> None:
    """The server-side checkpoint helpers, run against Qdrant's local mode (the same client API)."""
    from qdrant_client import QdrantClient

    from embridge.core.connectors.qdrant import STATE_COLLECTION, load_server_state, save_server_state

    client = QdrantClient(path=str(tmp_path / "q"))
    try:
        assert load_server_state(client, "migrate-docs_v2") is None
        save_server_state(client, "migrate-docs_v2", None)  # removing what is not there creates nothing
        assert not client.collection_exists(STATE_COLLECTION)
        save_server_state(client, "migrate-docs_v2", {"written": 10, "cursor": [1, 2]})
        save_server_state(client, "migrate-other", {"written": 1})
        save_server_state(client, "migrate-docs_v2", {"written": 20, "cursor": [3, 4], "pending": None})
        assert load_server_state(client, "migrate-docs_v2") == {"written": 20, "cursor": [3, 4], "pending": None}
        assert load_server_state(client, "migrate-other") == {"written": 1}
        assert client.count(STATE_COLLECTION, exact=True).count == 2  # replaced, not appended
        save_server_state(client, "migrate-docs_v2", None)
        assert load_server_state(client, "migrate-docs_v2") is None
        assert load_server_state(client, "migrate-other") == {"written": 1}
    finally:
        client.close()
