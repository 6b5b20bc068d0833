"""``kill -9`` of the command line in the middle of embed, train, report and bundle export.

Each test starts ``python -m embridge.core.cli.main ...`` on a copy of the demo workspace, waits until the
command is demonstrably mid-work (a chunk recorded in the embed's progress file, a training epoch
or report stage printed on stderr while its run row says 'running', the export's staging folder
beside the destination) and sends SIGKILL. Afterwards the workspace opens and passes SQLite's
integrity check, every registered vector set, adapter, report and bundle has its files (and the
checksummed ones verify), nothing of the killed job is registered, ``embridge runs --json`` shows
the job as interrupted, and resuming or rerunning gives the result of an uninterrupted run.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embridge.core.cli.main import main
from embridge.core.store import Workspace
from embridge.core.store.files import TMP_PREFIX

REPO = Path(__file__).resolve().parent.parent
HEADLINE = ("old_old_top1", "new_new_top1", "upgraded_top1", "gain_retained")


class Child:
    """A CLI process whose stderr lines are collected as they arrive."""

    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "embridge.core.cli.main", *args], cwd=REPO,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_until(self, condition: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.proc.poll() is not None:
                self._reader.join(5)
                raise AssertionError(f"the command ended (status {self.proc.returncode}) before {what}: "
                                     + "\n".join(self.lines[-5:]))
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.005)

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        assert self.proc.wait(timeout=30) == -signal.SIGKILL  # killed, not finished on its own
        self._reader.join(5)


@pytest.fixture
def started() -> Iterator[list[Child]]:
    """Children started by a test; any still running at the end are killed."""
    children: list[Child] = []
    yield children
    for child in children:
        if child.proc.poll() is None:
            child.kill()


def _start(children: list[Child], args: list[str]) -> Child:
    child = Child(args)
    children.append(child)
    return child


def _cli_json(capsys: pytest.CaptureFixture[str], args: list[str]) -> tuple[dict[str, Any], str]:
    capsys.readouterr()
    code = main([*args, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out), err


def _runs(capsys: pytest.CaptureFixture[str], ws: Path, kind: str) -> list[dict[str, Any]]:
    return _cli_json(capsys, ["runs", "-w", str(ws), "--kind", kind])[0]["runs"]


def _running(ws: Path, kind: str) -> bool:
    """A run of ``kind`` is recorded as running (read through a connection of our own)."""
    conn = sqlite3.connect(ws / "embridge.db", timeout=5)
    try:
        return conn.execute("select count(*) from runs where kind = ? and status = 'running'", [kind]).fetchone()[0] > 0
    finally:
        conn.close()


def _assert_consistent(root: Path) -> None:
    """Opens, passes integrity_check; every registered object has intact files; no stray files."""
    with Workspace.open(root) as ws:
        assert ws.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        registered = set()
        for info in ws.vector_sets():
            ws.open_vector_set(info["id"])  # raises on a missing, short or changed file
            registered |= {ws.root / info["file"], ws.root / info["ids_file"]}
        stored = {p for p in (root / "vectors").rglob("*") if p.is_file() and ".partial" not in p.parts}
        assert stored == registered
        adapters = {ws.adapter_path(a["id"]) for a in ws.adapters()}  # verifies each file's sha256
        assert {p for p in (root / "adapters").iterdir() if not p.name.startswith(TMP_PREFIX)} == adapters
        for report in ws.reports():
            assert (root / report["json_file"]).is_file() and (root / report["html_file"]).is_file()
        for bundle in ws.bundles():
            assert Path(bundle["path"]).exists()


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


# -- embed ------------------------------------------------------------------------------------
EXTRA = 2 * 4096 + 1000  # items beyond two embedding chunks: a recorded chunk, then time to kill


def _add_array_items(root: Path) -> None:
    """Items the old model (8x8 pixel input) can embed from values stored in the database."""
    values = np.random.default_rng(5).random((EXTRA, 64)).astype(np.float32)
    with Workspace.open(root) as ws:
        ws.add_items([{"key": f"extra-{i:05d}", "modality": "array", "split": "extra", "label": str(i % 10),
                       "metadata": {"array": values[i].tolist()}} for i in range(EXTRA)])


def _partial_rows(root: Path) -> int:
    rows = 0
    for state in (root / "vectors" / ".partial").glob("embed-*.json"):
        rows = max(rows, json.loads(state.read_text())["done_rows"])
    return rows


def test_kill_during_embed_then_resume_gives_identical_vectors(
        demo_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], started: list[Child]) -> None:
    from embridge.core.embed import embed_items

    chunk = inspect.signature(embed_items).parameters["chunk_size"].default
    assert EXTRA > 2 * chunk
    _add_array_items(demo_copy)
    reference_ws = _copy(demo_copy, tmp_path / "reference")
    with Workspace.open(demo_copy) as ws:
        sets_before = [s["id"] for s in ws.vector_sets()]
    args = ["embed", "-w", str(demo_copy), "--model", "old-mlp", "--split", "extra", "--batch-size", "32",
            "--device", "cpu"]
    child = _start(started, args)
    child.wait_until(lambda: (demo_copy / "vectors" / ".partial").is_dir() and _partial_rows(demo_copy) >= chunk,
                     "the first chunk was recorded")
    child.kill()

    (run,) = _runs(capsys, demo_copy, "embed")
    assert run["status"] == "interrupted"
    _assert_consistent(demo_copy)
    with Workspace.open(demo_copy) as ws:
        assert [s["id"] for s in ws.vector_sets()] == sets_before  # the killed set is not registered

    resumed, err = _cli_json(capsys, args)
    resumed_from = int(re.search(r"resumed_from=(\d+)", err).group(1))
    assert resumed_from % chunk == 0 and chunk <= resumed_from < EXTRA  # after recorded chunks, not from 0
    reference, _ = _cli_json(capsys, [*args[:2], str(reference_ws), *args[3:]])
    assert resumed["count"] == reference["count"] == EXTRA
    with Workspace.open(demo_copy) as ws, Workspace.open(reference_ws) as ref:
        ids = ws.item_ids("extra")
        assert ids.tolist() == ref.item_ids("extra").tolist()
        np.testing.assert_array_equal(ws.vectors_for("old-mlp", ids), ref.vectors_for("old-mlp", ids))
        assert ws.vector_set(resumed["vector_set"])["sha256"] == ref.vector_set(reference["vector_set"])["sha256"]
    assert [r["status"] for r in _runs(capsys, demo_copy, "embed")] == ["interrupted", "completed"]
    _assert_consistent(demo_copy)


def test_a_second_embed_of_the_same_model_is_refused_while_the_first_runs(
        demo_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], started: list[Child]) -> None:
    """Both would write the same partial file (its name follows the model, not the items): the second
    is refused as busy and the first stores its own rows, not the other's."""
    from embridge.core.embed import embed_items

    chunk = inspect.signature(embed_items).parameters["chunk_size"].default
    _add_array_items(demo_copy)
    reference_ws = _copy(demo_copy, tmp_path / "reference")
    args = ["embed", "-w", str(demo_copy), "--model", "old-mlp", "--split", "extra", "--batch-size", "32",
            "--device", "cpu"]
    child = _start(started, args)
    child.wait_until(lambda: (demo_copy / "vectors" / ".partial").is_dir() and _partial_rows(demo_copy) >= chunk,
                     "the first chunk was recorded")
    code = main([*args, "--sample", "300", "--json"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1, err
    assert f"{demo_copy}: the workspace is busy (another process is writing vectors of model 'old-mlp')" in err
    assert child.proc.wait(timeout=300) == 0
    reference, _ = _cli_json(capsys, [*args[:2], str(reference_ws), *args[3:]])
    with Workspace.open(demo_copy) as ws, Workspace.open(reference_ws) as ref:
        (stored,) = [s for s in ws.vector_sets("old-mlp") if s["count"] == EXTRA]
        assert stored["sha256"] == ref.vector_set(reference["vector_set"])["sha256"]
        ids = ws.item_ids("extra")
        np.testing.assert_array_equal(ws.vectors_for("old-mlp", ids), ref.vectors_for("old-mlp", ids))
    assert not list((demo_copy / "vectors" / ".partial").glob("*.lock"))
    _assert_consistent(demo_copy)


# -- train ------------------------------------------------------------------------------------
def test_kill_during_train_then_rerun_gives_the_same_heldout_numbers(
        demo_copy: Path, demo_workspace_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        started: list[Child]) -> None:
    args = ["train", "-w", str(demo_copy), "--method", "mlp", "--epochs", "500", "--device", "cpu", "--seed", "3"]
    child = _start(started, args)
    child.wait_until(lambda: any(re.match(r"train mlp: \d+/\d+ .*epoch=1 ", line) for line in child.lines),
                     "the first epoch was reported")
    assert _running(demo_copy, "train")
    child.kill()

    (run,) = _runs(capsys, demo_copy, "train")
    assert run["status"] == "interrupted" and run["method"] == "mlp"
    _assert_consistent(demo_copy)
    with Workspace.open(demo_copy) as ws:
        assert ws.adapters() == []  # no adapter of the killed run

    rerun, _ = _cli_json(capsys, args)
    reference_ws = _copy(demo_workspace_path, tmp_path / "reference")
    reference, _ = _cli_json(capsys, [*args[:2], str(reference_ws), *args[3:]])
    assert {k: rerun[k] for k in HEADLINE} == {k: reference[k] for k in HEADLINE}
    assert rerun["epochs_run"] == reference["epochs_run"] > 1
    assert rerun["upgraded_top1"] > rerun["old_old_top1"]  # a real, useful result, not an empty one
    assert [r["status"] for r in _runs(capsys, demo_copy, "train")] == ["interrupted", "completed"]
    _assert_consistent(demo_copy)


def test_sigterm_during_train_ends_it_with_one_line_and_records_the_run_as_stopped(
        demo_copy: Path, capsys: pytest.CaptureFixture[str], started: list[Child]) -> None:
    """SIGTERM (what a service manager or `kill` sends) unwinds the command like Ctrl-C does."""
    args = ["train", "-w", str(demo_copy), "--method", "mlp", "--epochs", "500", "--set", "patience=500",
            "--device", "cpu", "--seed", "3"]  # no early stop: the signal always finds it training
    child = _start(started, args)
    child.wait_until(lambda: any(re.match(r"train mlp: \d+/\d+ .*epoch=1 ", line) for line in child.lines),
                     "the first epoch was reported")
    child.proc.send_signal(signal.SIGTERM)
    assert child.proc.wait(timeout=60) == 128 + signal.SIGTERM
    child._reader.join(5)
    assert child.lines[-1] == "embridge: error: terminated"
    (run,) = _runs(capsys, demo_copy, "train")
    # not a Ctrl-C: a service manager or `kill` stopped it, and the run says so
    assert (run["status"], run["error"]) == ("cancelled", "stopped by SIGTERM (terminated)")
    _assert_consistent(demo_copy)
    with Workspace.open(demo_copy) as ws:
        assert ws.adapters() == []


LATE_SIGNALS = """
import os, signal, sys
from embridge.core.cli import main as cli

real_emit = cli.emit


def emit_after_a_stop(*args, **kwargs):  # the work is done and stored; the stop comes before the output
    os.kill(os.getpid(), signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGINT)
    real_emit(*args, **kwargs)


cli.emit = emit_after_a_stop
sys.argv = ["embridge", *sys.argv[1:]]
cli.run_program()
"""


def test_a_stop_after_the_work_is_done_still_reports_the_command_as_done(
        demo_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A Ctrl-C or SIGTERM that arrives once a command's work is stored no longer turns it into a failure
    (exit 130/143 with nothing said) for a script checking its exit status."""
    args = ["train", "-w", str(demo_copy), "--method", "procrustes", "--device", "cpu", "--json"]
    proc = subprocess.run([sys.executable, "-c", LATE_SIGNALS, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["method"] == "procrustes" and "error" not in proc.stderr
    (run,) = _runs(capsys, demo_copy, "train")
    assert run["status"] == "completed"


STOP_AT_COMMIT = """
import os, signal, sys
import sqlite_utils
from embridge.core.cli import main as cli


class StopAfterCommit:  # the database connection, with a stop arriving as a vector set's commit returns
    def __init__(self, conn):
        self._conn, self._armed = conn, False

    def __getattr__(self, name):
        return getattr(self._conn, name)

    def execute(self, sql, *args):
        self._armed |= "insert into vector_sets" in str(sql).lower().translate({ord(c): None for c in '[]"'})
        return self._conn.execute(sql, *args)

    def commit(self):
        self._conn.commit()
        if self._armed:
            self._armed = False
            os.kill(os.getpid(), signal.SIGINT)


real_init = sqlite_utils.Database.__init__


def init(self, *args, **kwargs):
    real_init(self, *args, **kwargs)
    self.conn = StopAfterCommit(self.conn)


sqlite_utils.Database.__init__ = init
sys.argv = ["embridge", *sys.argv[1:]]
cli.run_program()
"""


def test_a_stop_as_an_import_commits_keeps_the_stored_vector_set_whole(
        demo_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A Ctrl-C landing just after an import's transaction committed took the new vector set's files away
    while the set stayed listed (the workspace could neither read it nor import it again); it now waits
    for the command's end, which reads as done."""
    vectors = np.random.default_rng(0).standard_normal((500, 16)).astype(np.float32)
    path = tmp_path / "extra.npz"
    np.savez(path, ids=np.array([f"extra-{i}" for i in range(500)]), vectors=vectors)
    assert main(["model", "add", "-w", str(demo_copy), "--name", "extra", "--path", str(path)]) == 0
    capsys.readouterr()
    args = ["import", "-w", str(demo_copy), "--format", "vectors", "--path", str(path), "--model", "extra", "--json"]
    proc = subprocess.run([sys.executable, "-c", STOP_AT_COMMIT, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and json.loads(proc.stdout)["attached"] == 500, proc.stderr
    _assert_consistent(demo_copy)
    with Workspace.open(demo_copy) as ws:
        (stored,) = [s for s in ws.vector_sets() if s["model"] == "extra"]
        np.testing.assert_array_equal(np.asarray(ws.open_vector_set(stored["id"])[1]), vectors)


# -- report and bundle export -------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(demo_workspace_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """The demo workspace with one completed (closed-form) training run."""
    from embridge.core.train.runs import train_run

    root = _copy(demo_workspace_path, tmp_path_factory.mktemp("trained") / "ws")
    with Workspace.open(root) as ws:
        run_id = train_run(ws, "procrustes", device="cpu")["run_id"]
    return root, run_id


def test_kill_during_report_then_rerun_gives_the_same_report(
        trained: tuple[Path, int], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        started: list[Child]) -> None:
    ws_path, run_id = _copy(trained[0], tmp_path / "ws"), trained[1]
    reports_before = sorted(p.name for p in (ws_path / "reports").iterdir())
    args = ["report", "-w", str(ws_path), "--run", str(run_id), "--bootstrap", "200"]
    child = _start(started, args)
    child.wait_until(lambda: any(line.startswith("report: ") for line in child.lines) and _running(ws_path, "report"),
                     "the report's first stage was reported")
    child.kill()

    (run,) = _runs(capsys, ws_path, "report")
    assert run["status"] == "interrupted"
    _assert_consistent(ws_path)
    with Workspace.open(ws_path) as ws:
        assert ws.reports() == []
    leftovers = [p.name for p in (ws_path / "reports").iterdir() if p.name not in reports_before]
    assert all(name.startswith(TMP_PREFIX) for name in leftovers), leftovers  # only the scratch folder

    rerun, _ = _cli_json(capsys, args)
    reference_ws = _copy(trained[0], tmp_path / "reference")
    reference, _ = _cli_json(capsys, [*args[:2], str(reference_ws), *args[3:]])
    for key in (*HEADLINE, "arr", "negative_flip_rate", "positive_flip_rate", "cells", "backfill_areas"):
        assert rerun[key] == reference[key], key
    assert Path(rerun["report_json"]).is_file() and Path(rerun["report_html"]).is_file()
    _assert_consistent(ws_path)


def test_kill_during_bundle_export_then_rerun_gives_a_verified_bundle(
        trained: tuple[Path, int], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        started: list[Child]) -> None:
    from embridge.core.bundle import verify_bundle

    ws_path, run_id = _copy(trained[0], tmp_path / "ws"), trained[1]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "upgrade.zip"
    args = ["bundle", "export", "-w", str(ws_path), "--run", str(run_id), "--out", str(out)]
    child = _start(started, args)
    # the staging folder, not the write probe (a file made and removed before the run is recorded)
    child.wait_until(lambda: any(p.is_dir() for p in out_dir.iterdir()), "the export's staging folder appeared")
    child.kill()

    assert not out.exists()  # never a half bundle under the final name
    # temp files, and the export's empty lock file (released by the kernel; the next export takes and removes it)
    assert all(p.name.startswith(TMP_PREFIX) or p.name == "upgrade.zip.lock" for p in out_dir.iterdir())
    (run,) = _runs(capsys, ws_path, "export")
    assert run["status"] == "interrupted"
    _assert_consistent(ws_path)
    with Workspace.open(ws_path) as ws:
        assert ws.bundles() == []

    rerun, _ = _cli_json(capsys, args)
    assert not (out_dir / "upgrade.zip.lock").exists()
    reference, _ = _cli_json(capsys, [*args[:6], "--out", str(tmp_path / "reference.zip")])
    assert verify_bundle(out)["files_checked"] == verify_bundle(tmp_path / "reference.zip")["files_checked"]
    for name in ("probes/inputs.npy", "probes/outputs.npy"):
        assert rerun["manifest"]["files"][name] == reference["manifest"]["files"][name]
    assert rerun["manifest"]["metrics"] == reference["manifest"]["metrics"]
    with Workspace.open(ws_path) as ws:
        assert [Path(b["path"]) for b in ws.bundles()] == [out.resolve(), (tmp_path / "reference.zip").resolve()]
    assert [r["status"] for r in _runs(capsys, ws_path, "export")] == ["interrupted", "completed", "completed"]
    _assert_consistent(ws_path)


# -- demo -------------------------------------------------------------------------------------
def test_a_demo_being_built_is_neither_cleared_by_a_second_demo_nor_called_stopped(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], started: list[Child]) -> None:
    """A second demo on the folder took the running build's marker for a killed build and removed its
    files (the first then exited 0 with no database left), and info said the demo 'was stopped',
    advising the command that did that."""
    folder = tmp_path / "demo"
    child = _start(started, ["demo", "--workspace", str(folder)])
    child.wait_until(lambda: (folder / "embridge.db").is_file(), "the workspace was made")
    capsys.readouterr()
    for command in (["demo"], ["info"], ["init"]):
        assert main([*command, "--workspace", str(folder)]) == 1
        err = capsys.readouterr().err
        assert f"{folder}: an 'embridge demo' is building this" in err and err.count("\n") == 1, err
    assert child.proc.wait(timeout=600) == 0
    assert main(["info", "--workspace", str(folder), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["items"]["gallery"] == 997 and [v["count"] for v in info["vector_sets"]] == [1197, 800]


def test_a_demo_killed_midway_is_built_again_by_the_next_demo(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], started: list[Child]) -> None:
    """Killed after its images and items were stored: the next ``demo`` on the folder clears that
    unfinished build and makes the whole demo, instead of refusing an existing workspace."""
    from embridge.core.demo_workspace import MARKER

    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / ".mine").write_text("the user's own dot file")  # an empty folder may hold dot files
    child = _start(started, ["demo", "--workspace", str(folder)])

    def items_stored() -> bool:
        if not (folder / "embridge.db").is_file():
            return False
        try:
            conn = sqlite3.connect(f"file:{folder / 'embridge.db'}?mode=ro", uri=True, timeout=0.1)
            try:
                return conn.execute("select count(*) from items").fetchone()[0] >= 1197
            finally:
                conn.close()
        except sqlite3.Error:
            return False

    child.wait_until(items_stored, "the items were imported")  # then the models train for seconds
    child.kill()
    assert (folder / MARKER).is_file() and (folder / "demo-items").is_dir()
    capsys.readouterr()
    for command in (["info"], ["import", "--path", str(folder / "demo-items")]):  # no command adds to it
        assert main([*command, "--workspace", str(folder)]) == 1
        err = capsys.readouterr().err
        assert "an 'embridge demo' that was stopped before it finished; run 'embridge demo" in err
        assert err.count("\n") == 1
    (folder / "notes.txt").write_text("put here by hand")  # the next build clears nothing while it is there
    made = sorted(p.name for p in folder.iterdir())
    assert main(["demo", "--workspace", str(folder)]) == 1
    assert "holds notes.txt beside the stopped demo's own files; move them out" in capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == made and (folder / MARKER).is_file()
    assert (folder / "notes.txt").read_text() == "put here by hand"
    (folder / "notes.txt").unlink()
    (folder / "demo-items" / "mine").mkdir()  # inside the build's own folders too: clearing them deleted these
    (folder / "demo-items" / "mine" / "p.txt").write_text("put here by hand")
    (folder / "vectors" / "mine.txt").write_text("put here by hand")
    assert main(["demo", "--workspace", str(folder)]) == 1
    err = capsys.readouterr().err
    assert "holds demo-items/mine, vectors/mine.txt beside the stopped demo's own files" in err, err
    assert (folder / "demo-items" / "mine" / "p.txt").is_file() and (folder / "vectors" / "mine.txt").is_file()
    shutil.rmtree(folder / "demo-items" / "mine")
    (folder / "vectors" / "mine.txt").unlink()
    assert main(["demo", "--workspace", str(folder)]) == 0, capsys.readouterr().err
    with Workspace.open(folder) as ws:
        assert [m["name"] for m in ws.models()] == ["old-mlp", "new-cnn"]
        assert len(ws.gallery_ids()) == 997 and len(ws.vector_sets()) == 2
    assert not (folder / MARKER).exists() and (folder / ".mine").read_text() == "the user's own dot file"
    _assert_consistent(folder)


def test_a_cancelled_demo_removes_what_it_made(tmp_path: Path) -> None:
    from embridge.core.demo import build_demo
    from embridge.core.errors import Cancelled

    made = tmp_path / "new-folder"
    with pytest.raises(Cancelled):
        build_demo(made, should_stop=lambda: True)
    assert not made.exists()
    kept = tmp_path / "with-dot-file"
    kept.mkdir()
    (kept / ".keep").write_text("x")
    with pytest.raises(Cancelled):
        build_demo(kept, should_stop=lambda: True)
    assert sorted(p.name for p in kept.iterdir()) == [".keep"]


def test_a_ctrl_c_while_the_command_line_loads_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A Ctrl-C in the first fraction of a second (the command line importing its commands) printed a
    Python traceback; it is the same one line as later. The program's own module loads without numpy,
    so the window before that guard is only Python's start."""
    from embridge.core.cli import main as cli

    def stopped(*_args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", stopped)
    assert cli.main(["info", "-w", "x"]) == 130
    assert capsys.readouterr().err == "embridge: error: interrupted\n"
    loaded = subprocess.run([sys.executable, "-c", "import sys, embridge.core.cli.main; print('numpy' in sys.modules)"],
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    assert loaded.stdout.strip() == "False", loaded.stderr
