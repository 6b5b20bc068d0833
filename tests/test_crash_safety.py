"""A writer killed at any point never leaves a half-written vector set registered, and resumes.

A child process (``helpers/store_child.py``) writes a vector set and is killed with SIGKILL at
chosen points (inside a chunk, between the renames of the commit, after registration) and at
random times. Afterwards the workspace opens, every registered set verifies and holds exactly the
reference data, no stray vector file is left in ``vectors/``, and resuming with the same key
continues from the recorded row and ends byte-identical to an uninterrupted write. Full-disk
failures are simulated with a real file-size limit (RLIMIT_FSIZE) in a child process and with
ENOSPC raised from the writer's file operations.

Workspaces live on tmpfs where there is one: SIGKILL loses nothing the page cache already holds,
so the outcome is the same as on disk, only without the fsync latency. (Power loss, where fsync
matters, cannot be simulated here.)
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers.store_child import expected_vectors
from helpers.workspace_files import checkpoint, snapshot, table_dump

from embridge.core.errors import StoreError
from embridge.core.store import Workspace
from embridge.core.store import vector_matrix as vectors_module
from embridge.core.store.files import TMP_PREFIX, sha256_file
from embridge.core.store.rows import now_iso

CHILD = Path(__file__).parent / "helpers" / "store_child.py"
ROWS, DIM, CHUNK, SEED = 8000, 64, 400, 0
SMALL = 500  # rows of the set stored before a full-disk attempt


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    shm = Path("/dev/shm")
    parent = shm if shm.is_dir() and os.access(shm, os.W_OK) else tmp_path_factory.mktemp("crash")
    with tempfile.TemporaryDirectory(dir=parent) as tmp:
        yield Path(tmp)


@pytest.fixture(scope="module")
def template(base: Path) -> Path:
    """A workspace with ROWS items and a vector-only model 'm', copied by each test."""
    root = base / "template"
    with Workspace.create(root) as ws:
        ws.add_items([{"key": f"item-{i:05d}", "label": str(i % 10)} for i in range(ROWS)])
        ws.add_model("m", "new", {"kind": "vectors", "dim": DIM}, None)
    return root


@pytest.fixture(scope="module")
def reference_sha(template: Path, base: Path) -> str:
    """sha256 of the vector file an uninterrupted write of the reference data produces."""
    root = base / "reference"
    shutil.copytree(template, root)
    with Workspace.open(root) as ws:
        info = ws.add_vector_set("m", ws.item_ids(), expected_vectors(ROWS, DIM, SEED), name="big")
        assert sha256_file(info["path"]) == info["sha256"]
        return info["sha256"]


@pytest.fixture
def ws_path(template: Path, base: Path) -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(dir=base)) / "ws"
    shutil.copytree(template, root)
    yield root
    shutil.rmtree(root.parent, ignore_errors=True)


def _spawn(mode: str, root: Path, signal_file: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(CHILD), mode, str(root), str(signal_file), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(signal_file: Path, child: subprocess.Popen, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if signal_file.exists():
            return json.loads(signal_file.read_text())
        if child.poll() is not None:
            raise AssertionError(f"child exited with {child.returncode}: {child.stderr.read()}")
        time.sleep(0.005)
    child.kill()
    raise AssertionError("child never reached its signal point")


def _kill(child: subprocess.Popen) -> None:
    if child.poll() is None:
        os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)  # reaped, so its pid is no longer alive
    child.stdout.close()
    child.stderr.close()


def _write_args(key: str, stop_at: str, chunk: int = CHUNK) -> list[str]:
    return ["--key", key, "--rows", str(ROWS), "--dim", str(DIM), "--chunk", str(chunk), "--seed", str(SEED),
            "--stop-at", stop_at]


def _check_registered_sets(ws: Workspace, reference: str) -> int:
    """Every registered set verifies and holds the complete reference data; returns how many."""
    sets = ws.vector_sets("m")
    for info in sets:
        ids, matrix = ws.open_vector_set(info["id"])  # raises on any checksum or shape mismatch
        assert info["sha256"] == reference and info["count"] == ROWS
        assert ids.tolist() == ws.item_ids().tolist()
    return len(sets)


def _check_no_stray_files(ws: Workspace) -> None:
    """Only registered files in vectors/m; nothing but crash-left temp files in .partial."""
    registered = {ws.root / s[col] for s in ws.vector_sets("m") for col in ("file", "ids_file")}
    assert set((ws.root / "vectors" / "m").iterdir()) == registered
    partial = ws.root / "vectors" / ".partial"
    leftovers = [p.name for p in partial.iterdir()] if partial.exists() else []
    assert all(name.startswith(TMP_PREFIX) for name in leftovers), leftovers


def _resume(ws: Workspace, key: str, reference: str) -> int:
    """Finish an interrupted write with a different chunk size; returns the row it resumed from."""
    ids = ws.item_ids()
    data = expected_vectors(ROWS, DIM, SEED)
    writer = ws.vector_set_writer("m", ids, DIM, name="big", resume_key=key)
    resumed_from = writer.done_rows
    for start in range(resumed_from, ROWS, 777):
        writer.write(start, data[start:start + 777])
    info = writer.commit()
    assert info["sha256"] == reference  # identical bytes to an uninterrupted write
    np.testing.assert_array_equal(ws.vectors_for("m", ids[::-1]), data[::-1])
    return resumed_from


@pytest.mark.parametrize(("stop_at", "resumes_from", "registered_by_child"), [
    ("chunk:3", 4 * CHUNK, 0),      # killed after chunk 3 was written and recorded
    ("state:5", 5 * CHUNK, 0),      # chunk 5 flushed but its progress not yet recorded
    ("publish:1", ROWS, 0),         # commit: id list renamed into place, matrix not yet
    ("publish:2", ROWS, 0),         # commit: both renamed, not registered
    ("registered", 0, 1),           # registered; the progress file not yet removed
])
def test_kill_at_each_stage_of_a_write(ws_path: Path, reference_sha: str, tmp_path: Path, stop_at: str,
                                       resumes_from: int, registered_by_child: int) -> None:
    signal_file = tmp_path / "signal.json"
    child = _spawn("write", ws_path, signal_file, *_write_args("big", stop_at))
    _wait_for(signal_file, child)
    _kill(child)
    with Workspace.open(ws_path) as ws:
        assert _check_registered_sets(ws, reference_sha) == registered_by_child
        assert _resume(ws, "big", reference_sha) == resumes_from
        assert _check_registered_sets(ws, reference_sha) == registered_by_child + 1
        _check_no_stray_files(ws)


def test_kill_at_random_times(ws_path: Path, reference_sha: str, tmp_path: Path) -> None:
    """Several writers killed at random moments of writing or committing, one after another."""
    rng, chunk = random.Random(1234), 50  # small chunks: many recorded steps to be killed between
    child = _spawn("write", ws_path, tmp_path / "timing.json", *_write_args("timing", "never", chunk))
    _wait_for(tmp_path / "timing.json", child)
    assert child.wait(timeout=60) == 0, child.stderr.read()
    write_and_commit = json.loads((tmp_path / "timing.json.done").read_text())["elapsed"]
    _kill(child)
    registered, resumed_from = 1, []
    for trial in range(5):
        signal_file = tmp_path / f"trial{trial}.json"
        child = _spawn("write", ws_path, signal_file, *_write_args(f"trial{trial}", "never", chunk))
        _wait_for(signal_file, child)
        time.sleep(rng.uniform(0.0, 1.2 * write_and_commit))
        _kill(child)
        finished = child.returncode == 0
        with Workspace.open(ws_path) as ws:
            count = _check_registered_sets(ws, reference_sha)
            assert count in (registered, registered + 1)  # the killed writer's set is all or nothing
            assert finished <= (count == registered + 1)
            resumed_from.append(_resume(ws, f"trial{trial}", reference_sha))
            registered = count + 1
            assert _check_registered_sets(ws, reference_sha) == registered
            _check_no_stray_files(ws)
    assert all(0 <= r <= ROWS and r % chunk == 0 for r in resumed_from), resumed_from


def test_resume_needs_the_same_id_list_row_for_row(ws_path: Path) -> None:
    """Progress recorded for one id order must not be reused for another (rows would be misaligned)."""
    with Workspace.open(ws_path) as ws:
        ids = ws.item_ids()[:100]
        data = expected_vectors(100, DIM, SEED)
        first = ws.vector_set_writer("m", ids, DIM, resume_key="order")
        first.write(0, data[:60])
        first.release()  # as its process ends: the next run of the key resumes or starts over

        def done_rows(*args: object) -> int:
            writer = ws.vector_set_writer("m", *args, resume_key="order")  # type: ignore[arg-type]
            writer.release()
            return writer.done_rows

        assert done_rows(ids, DIM) == 60
        assert done_rows(ids[::-1], DIM) == 0
        swapped = ids.copy()
        swapped[[3, 4]] = swapped[[4, 3]]
        assert done_rows(swapped, DIM) == 0
        assert done_rows(ids, DIM, "float16") == 0


def test_run_of_a_killed_process_shows_interrupted(ws_path: Path, tmp_path: Path) -> None:
    signal_file = tmp_path / "run.json"
    child = _spawn("run", ws_path, signal_file)
    run_id = _wait_for(signal_file, child)["run_id"]
    with Workspace.open(ws_path) as ws:
        assert ws.run(run_id)["status"] == "running"  # its process is alive
        _kill(child)
        assert ws.run(run_id)["status"] == "interrupted"
        assert ws.db.execute("select status from runs where id = ?", [run_id]).fetchone()[0] == "running"
        assert ws.mark_interrupted_runs() == 1
        stored = ws.run(run_id)
        assert stored["status"] == "interrupted" and stored["finished"] and "stopped" in stored["error"]
        assert ws.mark_interrupted_runs() == 0


def test_run_of_a_killed_process_not_yet_reaped_shows_interrupted(ws_path: Path, tmp_path: Path) -> None:
    """A killed child its parent has not waited for (an app's or script's process) answers signal 0 as a zombie."""
    signal_file = tmp_path / "run.json"
    child = _spawn("run", ws_path, signal_file)
    run_id = _wait_for(signal_file, child)["run_id"]
    os.kill(child.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline, "the killed child never became a zombie"
        time.sleep(0.05)
    try:
        with Workspace.open(ws_path) as ws:
            assert ws.run(run_id)["status"] == "interrupted"
    finally:
        _kill(child)


def test_a_running_run_whose_process_id_was_reused_shows_interrupted(ws_path: Path) -> None:
    """Only signal 0 was asked: after a reboot (or weeks of uptime) another process holding the run's id kept
    the dead run 'running' for good. A process that began well after the run is not the run's."""
    import subprocess
    import sys

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # a process alive now
    try:
        with Workspace.open(ws_path) as ws:
            run_id = ws.start_run("train", "mlp", {})
            with ws.transaction():  # as recorded a day ago by a process whose id the new one reuses
                ws.db.execute("update runs set pid = ?, started = ? where id = ?",
                              [other.pid, "2026-01-01T00:00:00+00:00", run_id])
            assert ws.run(run_id)["status"] == "interrupted"
            with ws.transaction():  # the same process, recorded as it started: running
                ws.db.execute("update runs set started = ? where id = ?", [now_iso(), run_id])
            assert ws.run(run_id)["status"] == "running"
    finally:
        other.kill()
        other.wait()


def test_info_counts_runs_by_kind_and_ending_and_names_the_latest_completed_training(
        ws_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`info` listed the last five run ids, which after a burst of exports named no training run at all."""
    from embridge.core.cli.main import main

    with Workspace.open(ws_path) as ws:
        trained = ws.start_run("train", "mlp", {})
        ws.finish_run(trained, "completed")
        ws.finish_run(ws.start_run("train", "bct", {}), "cancelled")
        for _ in range(5):
            ws.finish_run(ws.start_run("export", "mlp", {}), "completed")
        dead = ws.start_run("report", "mlp", {})
        with ws.transaction():  # its process gone
            ws.db.execute("update runs set pid = 0 where id = ?", [dead])
        summaries = ws.run_summaries()
    assert [r["status"] for r in summaries][-1] == "interrupted" and set(summaries[0]) == {
        "id", "kind", "method", "status", "started"}
    assert main(["info", "-w", str(ws_path)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("runs: "))
    assert line.endswith(f"; latest completed training run: #{trained} mlp")
    assert "5 export" in line and "2 train" in line and "1 cancelled, 1 interrupted" in line
    # `runs` narrowed: the newest two exports, and the one cancelled run
    assert main(["runs", "-w", str(ws_path), "--kind", "export", "--last", "2", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["runs"]
    assert [r["id"] for r in listed] == [r["id"] for r in summaries if r["kind"] == "export"][-2:]
    assert main(["runs", "-w", str(ws_path), "--status", "cancelled", "--json"]) == 0
    assert [r["method"] for r in json.loads(capsys.readouterr().out)["runs"]] == ["bct"]


def test_stale_temp_files_are_swept_on_open(ws_path: Path) -> None:
    old, fresh = time.time() - 7200, time.time()
    ours = f"{TMP_PREFIX}0123456789ab-"  # the names temp_path_for gives
    stale = [ws_path / "vectors" / ".partial" / f"{ours}k.json", ws_path / "models" / f"{ours}x.pt"]
    stale_dir = ws_path / "models" / f"{ours}y-folder"
    recent = ws_path / "adapters" / f"{ours}z.pt"
    not_ours = ws_path / "models" / f"{TMP_PREFIX}notes.pt"  # a temp-like name this program never gives
    for path in [*stale, recent, not_ours, stale_dir / "w.bin"]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial")
    for path in [*stale, stale_dir, not_ours]:
        os.utime(path, (old, old))
    os.utime(recent, (fresh, fresh))
    Workspace.open(ws_path).close()
    assert not any(p.exists() for p in [*stale, stale_dir])
    assert recent.exists()  # may belong to a writer that is still running
    assert not_ours.exists()


def test_unregistered_vector_files_are_swept_unless_a_resume_needs_them(
        ws_path: Path, reference_sha: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    signal_file = tmp_path / "signal.json"
    child = _spawn("write", ws_path, signal_file, *_write_args("big", "publish:2"))
    _wait_for(signal_file, child)
    _kill(child)  # its two published files are unregistered but named in its progress JSON
    with Workspace.open(ws_path) as ws:
        ids = ws.item_ids()[:5]
        kept_rows = np.random.default_rng(5).standard_normal((5, DIM)).astype(np.float32)
        ws.add_vector_set("m", ids, kept_rows, name="kept")
    orphan = ws_path / "vectors" / "m" / "lost-0000abcd.npy"  # e.g. from a rolled-back outer transaction
    np.save(orphan, np.zeros((2, DIM), dtype=np.float32))
    monkeypatch.setattr("embridge.core.store.workspace_folder.TEMP_MAX_AGE_S", -60)  # everything counts as old
    with Workspace.open(ws_path) as ws:
        assert not orphan.exists()
        assert len(list((ws_path / "vectors" / "m").glob("big-*.npy"))) == 2  # kept for the resume
        assert _resume(ws, "big", reference_sha) == ROWS
        kept = ws.vector_sets("m")[0]
        np.testing.assert_array_equal(ws.open_vector_set(kept["id"])[1], kept_rows)
        _check_no_stray_files(ws)


# -- full disk --------------------------------------------------------------------------------
def _with_small_set(root: Path) -> tuple[Workspace, dict]:
    ws = Workspace.open(root)
    info = ws.add_vector_set("m", ws.item_ids()[:SMALL], expected_vectors(SMALL, DIM, 7), name="small")
    return ws, info


def _earlier_set_intact(ws: Workspace, info: dict) -> None:
    assert [s["id"] for s in ws.vector_sets()] == [info["id"]]
    _, matrix = ws.open_vector_set(info["id"])
    np.testing.assert_array_equal(matrix, expected_vectors(SMALL, DIM, 7))


def test_file_size_limit_in_a_real_process(ws_path: Path, tmp_path: Path) -> None:
    ws, info = _with_small_set(ws_path)
    ws.close()  # the child then checkpoints and removes the WAL on close, as we did
    before_files, before_rows = snapshot(ws_path), table_dump(ws_path)
    limit = ROWS * DIM * 4 // 2  # half the size of the set the child tries to store
    child = subprocess.run([sys.executable, str(CHILD), "fsize", str(ws_path), str(tmp_path / "s"),
                            "--rows", str(ROWS), "--dim", str(DIM), "--fsize-limit", str(limit)],
                           capture_output=True, text=True, timeout=60)
    assert child.returncode == 0, child.stderr
    outcome = json.loads(child.stdout)
    assert outcome["error"] == "DiskFullError", outcome  # a StoreError
    assert "not enough disk space" in outcome["message"] and ".partial" in outcome["message"]
    assert snapshot(ws_path) == before_files and table_dump(ws_path) == before_rows
    with Workspace.open(ws_path) as ws:
        _earlier_set_intact(ws, info)


@pytest.mark.parametrize("where", ["open_memmap", "posix_fallocate"])
def test_no_space_when_reserving_the_file(ws_path: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    if where == "posix_fallocate" and not hasattr(os, "posix_fallocate"):
        pytest.skip("no posix_fallocate on this platform")
    ws, info = _with_small_set(ws_path)
    checkpoint(ws)
    before_files, before_rows = snapshot(ws_path), table_dump(ws_path)

    def no_space(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    target = np.lib.format if where == "open_memmap" else os
    monkeypatch.setattr(target, where, no_space)
    with pytest.raises(StoreError, match=r"\.partial/.*: not enough disk space to start vectors of model 'm'"):
        ws.add_vector_set("m", ws.item_ids(), expected_vectors(ROWS, DIM, SEED))
    with pytest.raises(StoreError, match=r"not enough disk space"):
        ws.vector_set_writer("m", ws.item_ids(), DIM, resume_key="resumable")
    assert snapshot(ws_path) == before_files and table_dump(ws_path) == before_rows
    monkeypatch.undo()  # np.load needs open_memmap back
    _earlier_set_intact(ws, info)
    ws.close()


def test_no_space_mid_write_keeps_progress(ws_path: Path, reference_sha: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    ws, info = _with_small_set(ws_path)
    checkpoint(ws)
    rows = table_dump(ws_path)
    flushes = {"n": 0}
    real_flush = np.memmap.flush

    def flush_until_full(self: np.memmap) -> None:
        flushes["n"] += 1
        if flushes["n"] > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_flush(self)

    monkeypatch.setattr(np.memmap, "flush", flush_until_full)
    data = expected_vectors(ROWS, DIM, SEED)
    writer = ws.vector_set_writer("m", ws.item_ids(), DIM, name="big", resume_key="full")
    with pytest.raises(StoreError, match=r"not enough disk space to write vectors of model 'm'"):
        for start in range(0, ROWS, CHUNK):
            writer.write(start, data[start:start + CHUNK])
    assert writer.done_rows == 3 * CHUNK
    assert table_dump(ws_path) == rows
    _earlier_set_intact(ws, info)
    writer.release()  # the failed run ends; its rows stay for the next one
    monkeypatch.undo()  # space was freed
    resumed = ws.vector_set_writer("m", ws.item_ids(), DIM, name="big", resume_key="full")
    assert resumed.done_rows == 3 * CHUNK
    for start in range(resumed.done_rows, ROWS, CHUNK):
        resumed.write(start, data[start:start + CHUNK])
    assert resumed.commit()["sha256"] == reference_sha
    ws.close()


def test_no_space_for_the_progress_record_leaves_the_count_at_the_rows_recorded(
        ws_path: Path, reference_sha: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The count went up before the progress was recorded: a full disk there made the writer (and the
    error's 'N rows are kept') claim a chunk that a resume does not find."""
    ws, _ = _with_small_set(ws_path)
    data = expected_vectors(ROWS, DIM, SEED)
    writer = ws.vector_set_writer("m", ws.item_ids(), DIM, name="big", resume_key="count")
    writer.write(0, data[:CHUNK])
    real = vectors_module.atomic_write_text

    def no_space(path: object, text: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(vectors_module, "atomic_write_text", no_space)
    with pytest.raises(StoreError, match="not enough disk space"):
        writer.write(CHUNK, data[CHUNK:2 * CHUNK])
    assert writer.done_rows == CHUNK
    writer.release()
    monkeypatch.setattr(vectors_module, "atomic_write_text", real)
    resumed = ws.vector_set_writer("m", ws.item_ids(), DIM, name="big", resume_key="count")
    assert resumed.done_rows == CHUNK
    for start in range(CHUNK, ROWS, CHUNK):
        resumed.write(start, data[start:start + CHUNK])
    assert resumed.commit()["sha256"] == reference_sha
    ws.close()


@pytest.mark.parametrize("failing_call", [1, 2])
def test_no_space_while_publishing_then_commit_again(ws_path: Path, reference_sha: str,
                                                     monkeypatch: pytest.MonkeyPatch, failing_call: int) -> None:
    ws, info = _with_small_set(ws_path)
    data = expected_vectors(ROWS, DIM, SEED)
    writer = ws.vector_set_writer("m", ws.item_ids(), DIM, name="big", resume_key="pub")
    writer.write(0, data)
    checkpoint(ws)
    rows, files = table_dump(ws_path), {k: v for k, v in snapshot(ws_path).items() if "/m/" in k}
    calls = {"n": 0}
    real_publish = vectors_module.publish

    def publish_until_full(tmp: Path, final: Path) -> None:
        calls["n"] += 1
        if calls["n"] == failing_call:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_publish(tmp, final)

    monkeypatch.setattr(vectors_module, "publish", publish_until_full)
    with pytest.raises(StoreError, match=r"vectors/m/big-.*: not enough disk space to store"):
        writer.commit()
    assert table_dump(ws_path) == rows
    assert {k: v for k, v in snapshot(ws_path).items() if "/m/" in k} == files  # nothing half-published
    _earlier_set_intact(ws, info)
    monkeypatch.undo()
    assert writer.commit()["sha256"] == reference_sha  # the same writer can finish once space is back
    _check_no_stray_files(ws)
    ws.close()


def test_a_checkpoint_a_killed_migration_was_writing_is_swept_once_old(tmp_path: Path) -> None:
    """Temp checkpoints (.tmp-…-migrate-T.json) of killed migrations stayed in the store's folder forever."""
    import os
    import time

    from embridge.core.connectors import open_store

    with open_store(f"parquet://{tmp_path}/store/t1") as store:
        store.save_state("migrate-t1", {"done": 1})
        folder = store._state_file("migrate-t1").parent
        old, fresh = folder / ".tmp-4eb153e9a731-migrate-t1.json", folder / ".tmp-739d4ab276eb-migrate-t1.json"
        for path in (old, fresh):
            path.write_text("{}")
        hours_ago = time.time() - 3 * 3600
        os.utime(old, (hours_ago, hours_ago))
        store.save_state("migrate-t1", {"done": 2})
        assert sorted(p.name for p in folder.iterdir()) == [fresh.name, "migrate-t1.json"]  # a live writer's stays
        assert store.load_state("migrate-t1") == {"done": 2}
