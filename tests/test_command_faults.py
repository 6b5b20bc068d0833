"""Faults while a command runs: a full disk (a real file-size limit on a real process, or an
ENOSPC write) and a model that fails halfway through an embedding.

Each must end in one line naming the file and the problem, exit status 1, no file changed or
left behind, and in the database only the documented trace: one new run row, status
``failed``, whose error is that same line.
"""

from __future__ import annotations

import errno
import os
import re
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import badinput_builders as mk
import badinput_command_builders as cb
import numpy as np
import pytest
from badinputs import corpus_base, make_env
from helpers.interrupt_child import interrupt_when
from helpers.workspace_files import snapshot, table_dump

from embridge.core.cli.main import main

__all__ = ["corpus_base"]
REPO = Path(__file__).resolve().parent.parent
DB_FILES = ("embridge.db", "embridge.db-wal", "embridge.db-shm")


@dataclass(frozen=True)
class Fault:
    name: str
    args: tuple[str, ...]
    expect: str
    fsize: int | None = None  # a real RLIMIT_FSIZE on a real process, in bytes (over SQLite's 32 KiB -shm)
    prepare: Callable[[Any], None] | None = None
    run_row: bool = True  # the command had started a recorded run
    rerun: bool = True  # without the limit, the same command then succeeds (skipped where slow)


def _files(root: Path) -> dict[str, str]:
    return {k: v for k, v in snapshot(root).items() if Path(k).name not in DB_FILES}


def _limited(limit: int) -> Callable[[], None]:
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG errors instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def _big_input(env: Any) -> None:
    cb.bundle_copy(env)
    np.save(env.inputs / "q.npy", np.random.default_rng(0).standard_normal((5000, 32)).astype(np.float32))


def _with_report(env: Any) -> None:
    """A report of run 3, so the bundle carries its 200 kB report.html."""
    from embridge.core.report.build import ReportOptions, build_report
    from embridge.core.store import Workspace

    with Workspace.open(env.ws) as ws:
        build_report(ws, 3, ReportOptions(n_boot=50, backfill_steps=3))


FAULTS = [
    Fault("disk-full-bundle-export-zip", ("bundle", "export", "-w", "{ws}", "--run", "3", "--out", "{in}/b.zip"),
          r"b\.zip: not enough disk space", fsize=100_000, prepare=_with_report),
    Fault("disk-full-bundle-export-folder", ("bundle", "export", "-w", "{ws}", "--run", "3", "--out", "{in}/b"),
          r"/b: not enough disk space", fsize=100_000, prepare=_with_report),
    Fault("disk-full-train", ("train", "-w", "{ws}", "--method", "mlp", "--old", "v1", "--new", "v3",
                              "--set", "hidden=2048", "--epochs", "2"), "adapters/.*: not enough disk space",
          fsize=100_000, rerun=False),
    Fault("disk-full-report", ("report", "-w", "{ws}", "--run", "3", "--bootstrap", "50", "--backfill-steps", "3"),
          r"report\.html: not enough disk space", fsize=100_000, rerun=False),
    Fault("disk-full-bundle-apply", ("bundle", "apply", "{in}/b.zip", "--vectors", "{in}/q.npy",
                                     "--out", "{in}/out.npy"), r"out\.npy: not enough disk space",
          fsize=100_000, prepare=_big_input, run_row=False),
]


def _check(env: Any, fault: Fault, before_files: dict, before_rows: dict, code: int, err: str) -> None:
    errors = [line for line in err.splitlines() if line.startswith("embridge: error: ")]
    assert len(errors) == 1 and err.rstrip().splitlines()[-1] == errors[0], err
    line = errors[0]
    assert code == 1, line
    assert re.search(fault.expect, line), line
    assert "Traceback" not in err and "unexpected" not in line
    assert _files(env.root) == before_files  # nothing written, nothing left behind
    after_rows = table_dump(env.ws)
    for table, rows in before_rows.items():
        if table != "runs":
            assert after_rows[table] == rows, table
    new_runs = [r for r in after_rows["runs"] if r not in before_rows["runs"]]
    assert len(after_rows["runs"]) == len(before_rows["runs"]) + (1 if fault.run_row else 0)
    if fault.run_row:
        columns = [c[1] for c in _columns(env.ws)]
        run = dict(zip(columns, new_runs[0], strict=True))
        assert run["status"] == "failed"
        assert run["error"] and run["error"] in " ".join(line.split()), (run["error"], line)


def _columns(ws: Path) -> list[tuple]:
    import sqlite3

    conn = sqlite3.connect(ws / "embridge.db")
    try:
        return conn.execute("pragma table_info(runs)").fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.name)
def test_a_full_disk_fails_cleanly_in_a_real_process(fault: Fault, corpus_base: dict[str, Path],
                                                     tmp_path: Path) -> None:
    env = make_env(corpus_base["ws"], corpus_base["bundle"], tmp_path)
    if fault.prepare:
        fault.prepare(env)
    subs = {"ws": env.ws, "in": env.inputs}
    args = [a.format(**subs) for a in fault.args]
    before_files, before_rows = _files(env.root), table_dump(env.ws)
    proc = subprocess.run([sys.executable, "-m", "embridge.core.cli.main", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, preexec_fn=_limited(fault.fsize or 0))
    _check(env, fault, before_files, before_rows, proc.returncode, proc.stderr)
    assert proc.stdout == ""
    if not fault.rerun:
        return
    # with the limit lifted the same command succeeds: the failure left nothing in its way
    again = subprocess.run([sys.executable, "-m", "embridge.core.cli.main", *args], cwd=REPO, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr


def test_no_space_while_writing_a_trained_layer(corpus_base: dict[str, Path], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC from the write itself (not a size limit), in the process that records the run."""
    env = make_env(corpus_base["ws"], corpus_base["bundle"], tmp_path)
    real = Path.write_bytes

    def full(self: Path, data: Any) -> int:
        if "adapters" in self.parts:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real(self, data)

    before_files, before_rows = _files(env.root), table_dump(env.ws)
    monkeypatch.setattr(Path, "write_bytes", full)
    code = main(["train", "-w", str(env.ws), "--method", "procrustes", "--old", "v1", "--new", "v3"])
    _, err = capsys.readouterr()
    fault = Fault("enospc-train", (), r"adapters/.*adapter\.pt: not enough disk space .*No space left")
    _check(env, fault, before_files, before_rows, code, err)


def test_a_report_whose_run_cannot_be_marked_completed_is_not_stored(demo_copy: Path,
                                                                     capsys: pytest.CaptureFixture[str],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk at the run's completion left report #2 registered under a run read as interrupted, while
    the command said nothing was changed: the report and its run's status now commit together."""
    from embridge.core.errors import StoreError
    from embridge.core.store import Workspace

    assert main(["train", "-w", str(demo_copy), "--method", "procrustes"]) == 0
    real = Workspace.finish_run

    def full(self: Workspace, run_id: int, status: str, **fields: Any) -> None:
        if status == "completed" and self.run(run_id)["kind"] == "report":
            raise StoreError(f"{self.root / 'embridge.db'}: no space left on the disk holding the workspace")
        real(self, run_id, status, **fields)

    before_reports = table_dump(demo_copy)["reports"]
    monkeypatch.setattr(Workspace, "finish_run", full)
    capsys.readouterr()
    assert main(["report", "-w", str(demo_copy)]) == 1
    assert "no space left" in capsys.readouterr().err
    monkeypatch.undo()
    assert table_dump(demo_copy)["reports"] == before_reports  # no report without its completed run
    assert not (demo_copy / "reports" / str(len(before_reports) + 1)).exists()  # nor its files
    with Workspace.open(demo_copy) as ws:
        assert ws.runs("report")[-1]["status"] == "failed"


def test_a_model_that_fails_halfway_through_an_embedding(corpus_base: dict[str, Path], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The model passes its probe when added (2 rows) and raises on the first real batch."""
    env = make_env(corpus_base["ws"], corpus_base["bundle"], tmp_path)
    for i in range(12):  # 4x4 grayscale images, flattened to 16 features for a vector-input model
        mk.png(env.inputs / "imgs" / str(i % 2) / f"{i}.png", 20 * i)
    assert main(["import", "-w", str(env.ws), "--path", str(env.inputs / "imgs"), "--split", "pics"]) == 0
    model = cb.raising_model(env, limit=4, in_features=16)
    assert main(["model", "add", "-w", str(env.ws), "--name", "flaky", "--path", str(model)]) == 0
    capsys.readouterr()
    before_files, before_rows = _files(env.root), table_dump(env.ws)
    code = main(["embed", "-w", str(env.ws), "--model", "flaky", "--split", "pics"])
    _, err = capsys.readouterr()
    fault = Fault("model-fails-mid-embed", (), r"models/flaky-.*\.ts: the model runs on a batch of 2 rows but fails "
                  r"on a batch of 12 \(builtins\.ValueError: this model refuses to work\)")  # it takes 4 at most
    _check(env, fault, before_files, before_rows, code, err)


# -- Ctrl-C -------------------------------------------------------------------------------------
def _add_array_items(root: Path, count: int = 30_000) -> None:
    """Items the demo's old model (8x8 pixel input) embeds one by one for a few seconds."""
    from embridge.core.store import Workspace

    values = np.random.default_rng(5).random((count, 64)).astype(np.float32)
    with Workspace.open(root) as ws:
        ws.add_items([{"key": f"extra-{i:05d}", "modality": "array", "split": "extra",
                       "metadata": {"array": values[i].tolist()}} for i in range(count)])


def _train_first(root: Path) -> None:
    assert main(["train", "-w", str(root), "--method", "procrustes", "--device", "cpu"]) == 0


INTERRUPTS = {  # command, what prepares the workspace, a stderr line showing the job is under way
    "train": (("train", "--method", "mlp", "--epochs", "500", "--set", "patience=500", "--device", "cpu"), None,
              r"^train mlp: \d+/\d+ .*epoch=1 "),
    "embed": (("embed", "--model", "old-mlp", "--split", "extra", "--batch-size", "1", "--device", "cpu"),
              _add_array_items, r"^embed old-mlp: [1-9]\d*/30000 \((\d|[1-9]\d)%\)"),  # under way, not done
    "report": (("report", "--run", "1", "--bootstrap", "1000"), _train_first, r"^report: "),
}


@pytest.mark.parametrize("kind", list(INTERRUPTS))
def test_ctrl_c_records_the_run_as_cancelled(kind: str, demo_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A real SIGINT to a real process mid-job: the run reads cancelled (as the app's Cancel), not failed."""
    from embridge.core.jobs import INTERRUPTED
    from embridge.core.store import Workspace

    args, prepare, under_way = INTERRUPTS[kind]
    if prepare is not None:
        prepare(demo_copy)
    capsys.readouterr()
    before_rows = table_dump(demo_copy)
    code, lines = interrupt_when([args[0], "-w", str(demo_copy), *args[1:]], under_way)
    assert code == 130 and lines[-1] == "embridge: error: interrupted", lines[-3:]
    with Workspace.open(demo_copy) as ws:
        run = ws.runs(kind)[-1]
    assert (run["status"], run["error"]) == ("cancelled", INTERRUPTED) == ("cancelled", "cancelled by the user "
                                                                                          "(interrupted)")
    after_rows = table_dump(demo_copy)
    assert len(after_rows["runs"]) == len(before_rows["runs"]) + 1
    for table in ("adapters", "reports", "vector_sets"):
        assert after_rows[table] == before_rows[table], table  # nothing of the stopped job is registered


def test_an_embed_whose_stored_checkpoint_was_deleted_says_so_and_its_advice_mends_it(
        demo_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The advice ('add the model again') was refused: the checkpoint was a duplicate of the broken model, and
    its name was taken; nothing but copying the file back by hand mended it."""
    import shutil

    (copy,) = (demo_copy / "models").glob("new-cnn-*.pt")
    original = shutil.copy(copy, tmp_path / "original.pt")
    copy.unlink()
    capsys.readouterr()
    # beyond the 800 items the demo's sample holds, so there is something to embed with the checkpoint
    embed = ["embed", "-w", str(demo_copy), "--model", "new-cnn", "--sample", "900"]
    assert main(embed) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("embridge:")]
    assert err == [f"embridge: error: {copy}: the model's checkpoint is missing (deleted or moved since the model "
                   "was added); add the checkpoint it was added from again ('embridge model add --name new-cnn "
                   "--path ORIGINAL') to restore it"]
    rows = {k: v for k, v in table_dump(demo_copy).items() if k != "runs"}
    # under its name, or as a duplicate under another, with or without the input shape the model records
    for name, shape in (("new-cnn", []), ("another-name", ["--input-shape", "1,8,8"]), ("another-name", [])):
        copy.unlink(missing_ok=True)
        assert main(["model", "add", "-w", str(demo_copy), "--name", name, "--path", str(original), *shape]) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"restored the stored copy of model new-cnn from {Path(original).resolve()}"), out
        assert copy.read_bytes() == Path(original).read_bytes()
        assert {k: v for k, v in table_dump(demo_copy).items() if k != "runs"} == rows  # no model added
    assert main(embed) == 0
    assert main(["info", "-w", str(demo_copy), "--verify"]) == 0


def test_a_damaged_database_page_is_found_before_a_job_does_its_work(demo_copy: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A damaged page of a table the job's record touches was found only after embedding every item."""
    import sqlite3

    conn = sqlite3.connect(demo_copy / "embridge.db")
    page_size = conn.execute("pragma page_size").fetchone()[0]
    (root,) = conn.execute("select rootpage from sqlite_master where name = 'adapters'").fetchone()
    conn.execute("pragma wal_checkpoint(truncate)")  # every page in the main file, where the damage lands
    conn.close()
    with open(demo_copy / "embridge.db", "r+b") as db:
        db.seek((root - 1) * page_size)
        db.write(bytes(range(256)) * (page_size // 256))
    before, db_bytes = _files(demo_copy), (demo_copy / "embridge.db").read_bytes()
    capsys.readouterr()
    assert main(["embed", "-w", str(demo_copy), "--model", "new-cnn", "--sample", "900"]) == 1
    err = capsys.readouterr().err
    assert "the workspace database is corrupt" in err and err.count("\n") == 1, err
    assert _files(demo_copy) == before  # no vector file written
    assert (demo_copy / "embridge.db").read_bytes() == db_bytes  # nor the database written while damaged
