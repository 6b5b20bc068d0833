"""Two processes on one workspace: a writer blocks other writers (clear error after the busy
timeout, or a wait then success), never readers, and the database stays intact.

Process A is ``helpers/store_child.py hold``: it opens ``ws.transaction()`` (BEGIN IMMEDIATE),
inserts an item, signals, and holds the transaction until the test creates a release file, so
every assertion below is about state, not about how long something took.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from embridge.core.errors import WorkspaceBusyError
from embridge.core.store import Workspace

CHILD = Path(__file__).parent / "helpers" / "store_child.py"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    with Workspace.create(tmp_path / "ws") as ws:
        ids = ws.add_items([{"key": f"k{i}"} for i in range(20)])
        ws.add_model("m", "old", {"kind": "vectors", "dim": 3}, None)
        ws.add_vector_set("m", ids, np.arange(60, dtype=np.float32).reshape(20, 3))
    return tmp_path / "ws"


@pytest.fixture
def holder(root: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen, Path]]:
    """Process A, holding a write transaction; yields it and its release file."""
    signal_file = tmp_path / "held.json"
    child = subprocess.Popen([sys.executable, str(CHILD), "hold", str(root), str(signal_file)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not signal_file.exists():
        assert child.poll() is None, child.stderr.read()
        assert time.monotonic() < deadline, "the holding process never started its transaction"
        time.sleep(0.005)
    release = signal_file.with_name(signal_file.name + ".release")
    yield child, release
    release.touch()
    child.wait(timeout=30)
    child.stdout.close()
    child.stderr.close()


def _integrity(root: Path) -> str:
    with Workspace.open(root) as ws:
        return ws.db.execute("PRAGMA integrity_check").fetchone()[0]


def test_second_writer_gets_busy_error_with_short_timeout(root: Path, holder: tuple, tmp_path: Path) -> None:
    child, release = holder
    with Workspace.open(root, busy_timeout=0.2) as ws:  # opening only reads: not blocked
        with pytest.raises(WorkspaceBusyError, match=r"embridge\.db: the workspace is busy \(another process "
                                                     r"is writing\); try again"):
            ws.add_items([{"key": "from-b"}])
        assert child.poll() is None  # A still holds its transaction: the error came from waiting on it
        with pytest.raises(WorkspaceBusyError):
            ws.start_run("embed")
        checkpoint = tmp_path / "new.pt"
        checkpoint.write_bytes(b"weights")
        with pytest.raises(WorkspaceBusyError):
            ws.add_model("new", "new", {"kind": "torchscript", "dim": 3, "sha256": "ab" * 32}, checkpoint)
        with pytest.raises(WorkspaceBusyError):
            ws.add_adapter(None, "affine", "backward", 3, 3, "m", "new", checkpoint)
        assert not any((root / "models").iterdir()) and not any((root / "adapters").iterdir())  # copies undone
        assert not ws.existing_keys(["from-b"])
    release.touch()
    assert child.wait(timeout=30) == 0, child.stderr.read()
    with Workspace.open(root) as ws:
        assert ws.existing_keys(["held-by-child", "from-b"]) == {"held-by-child"}
        assert ws.runs() == [] and ws.models()[-1]["name"] == "m"
    assert _integrity(root) == "ok"


def test_second_writer_waits_and_succeeds_with_long_timeout(root: Path, holder: tuple) -> None:
    child, release = holder
    released_at: list[float] = []

    def release_soon() -> None:
        time.sleep(0.3)
        released_at.append(time.monotonic())
        release.touch()

    threading.Thread(target=release_soon).start()
    with Workspace.open(root, busy_timeout=30) as ws:
        ids = ws.add_items([{"key": "from-b"}])
        finished_at = time.monotonic()
        assert released_at and finished_at > released_at[0]  # it waited for A instead of failing
        assert ws.existing_keys(["held-by-child", "from-b"]) == {"held-by-child", "from-b"}
        assert ws.items(ids=ids)[0]["key"] == "from-b"
    assert child.wait(timeout=30) == 0, child.stderr.read()
    assert _integrity(root) == "ok"


def test_readers_are_not_blocked_by_a_writer(root: Path, holder: tuple) -> None:
    child, release = holder
    with Workspace.open(root, busy_timeout=30) as ws:
        assert len(ws.item_ids()) == 20  # A's uncommitted item is invisible, and reading did not wait
        assert ws.existing_keys(["held-by-child"]) == set()
        np.testing.assert_array_equal(ws.vectors_for("m", ws.item_ids()[:2]), [[0, 1, 2], [3, 4, 5]])
        assert [m["name"] for m in ws.models()] == ["m"]
        assert child.poll() is None and not release.exists()  # A was holding the lock throughout
        release.touch()
        assert child.wait(timeout=30) == 0, child.stderr.read()
        assert json.loads(Path(str(release).replace(".release", ".done")).read_text()) == {"committed": True}
        assert ws.existing_keys(["held-by-child"]) == {"held-by-child"}  # visible once committed
    assert _integrity(root) == "ok"


def test_busy_during_commit_keeps_the_set_committable(root: Path, holder: tuple) -> None:
    """A vector-set commit that meets a busy database registers nothing and can be retried."""
    child, release = holder
    with Workspace.open(root, busy_timeout=0.2) as ws:
        ids = ws.item_ids()
        writer = ws.vector_set_writer("m", ids, 3, name="second", resume_key="busy")
        vectors = np.random.default_rng(0).standard_normal((20, 3))
        writer.write(0, vectors)
        with pytest.raises(WorkspaceBusyError):
            writer.commit()
        assert sorted(p.name for p in (root / "vectors" / "m").iterdir()) == sorted(
            Path(s[c]).name for s in ws.vector_sets("m") for c in ("file", "ids_file"))
        release.touch()
        assert child.wait(timeout=30) == 0
        info = writer.commit()
        assert [s["id"] for s in ws.vector_sets("m")][-1] == info["id"]
        np.testing.assert_array_equal(ws.vectors_for("m", ids), vectors.astype(np.float32))
    assert _integrity(root) == "ok"
