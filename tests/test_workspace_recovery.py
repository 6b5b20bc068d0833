"""What a stopped `init` and a damaged vector file leave, and how the command line gets out of it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from embridge.core.cli.main import main
from embridge.core.store import Workspace


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_an_init_killed_before_its_first_write_is_finished_by_init(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A 0-byte embridge.db (what `init` killed at the wrong moment leaves) blocked init, info and demo for good."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "embridge.db").touch()
    code, _, err = _cli(capsys, "info", "--workspace", str(ws))
    assert code == 1 and "an 'embridge init' stopped before it finished" in err
    assert f"run 'embridge init --workspace {ws}' to finish it" in err
    assert _cli(capsys, "init", "--workspace", str(ws))[0] == 0
    code, out, _ = _cli(capsys, "info", "--workspace", str(ws), "--json")
    assert code == 0 and json.loads(out)["schema_version"] >= 1


def test_an_init_whose_first_table_hit_a_full_disk_is_finished_by_init_and_info_leaves_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A full disk failed `init` after SQLite wrote the file's first page (4,096 bytes, no table): every retry
    said "a workspace already exists here", and `info` wrote a schema into it."""
    import resource
    import subprocess
    import sys

    ws = tmp_path / "ws"

    def small_files() -> None:  # a write past 4,096 bytes fails as on a full disk (EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    done = subprocess.run([sys.executable, "-m", "embridge.core.cli.main", "init", "--workspace", str(ws)],
                          capture_output=True, text=True, preexec_fn=small_files, timeout=120, check=False)
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    left = (ws / "embridge.db").read_bytes()
    assert len(left) == 4096 and left.startswith(b"SQLite format 3")  # the header page, and no table
    code, _, err = _cli(capsys, "info", "--workspace", str(ws))
    assert code == 1 and "the workspace database is without tables" in err and "init' stopped before" in err
    assert (ws / "embridge.db").read_bytes() == left  # info wrote nothing
    assert _cli(capsys, "init", "--workspace", str(ws))[0] == 0
    code, out, _ = _cli(capsys, "info", "--workspace", str(ws), "--json")
    assert code == 0 and json.loads(out)["schema_version"] >= 1


def test_another_programs_database_is_not_taken_for_a_stopped_init(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    import sqlite3

    ws = tmp_path / "ws"
    ws.mkdir()
    for statement in ("create table notes (x)", "pragma user_version = 7"):
        made = tmp_path / f"{len(statement)}.db"
        with sqlite3.connect(made) as conn:
            conn.execute(statement)
        made.replace(ws / "embridge.db")
        before = (ws / "embridge.db").read_bytes()
        code, _, err = _cli(capsys, "init", "--workspace", str(ws))
        assert code == 1 and "a workspace already exists here" in err
        assert (ws / "embridge.db").read_bytes() == before


def test_an_empty_database_beside_stored_files_is_never_reinitialised(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    ws = tmp_path / "ws"
    Workspace.create(ws).close()
    (ws / "vectors" / "kept.npy").write_bytes(b"data")
    (ws / "embridge.db").write_bytes(b"")
    for wal in ws.glob("embridge.db-*"):
        wal.unlink()
    code, _, err = _cli(capsys, "init", "--workspace", str(ws))
    assert code == 1 and "a workspace already exists here" in err
    code, _, err = _cli(capsys, "info", "--workspace", str(ws))
    assert code == 1 and "restore it from a backup" in err and "init" not in err.split("restore")[0]
    assert (ws / "embridge.db").stat().st_size == 0 and (ws / "vectors" / "kept.npy").read_bytes() == b"data"


def test_a_workspace_path_that_is_a_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "afile"
    file.write_text("hi")
    code, _, err = _cli(capsys, "info", "--workspace", str(file))
    assert code == 1 and err == f"embridge: error: {file}: is a file, not a workspace folder\n"
    code, _, err = _cli(capsys, "init", "--workspace", str(file))
    assert code == 1 and f"{file}: is a file, not a folder" in err and file.read_text() == "hi"


def _embedded_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, np.ndarray, np.ndarray, Path]:
    """(workspace, item ids, their vectors, the vector file) after `model add` of a vectors-only model 'new'
    and `embed`: 60 items, one vector set."""
    ws = tmp_path / "ws"
    vectors = np.random.default_rng(0).standard_normal((60, 8)).astype(np.float32)
    with Workspace.create(ws) as w:
        ids = np.asarray(w.add_items([{"key": f"i{i}", "split": "gallery"} for i in range(60)]), dtype=np.int64)
    np.savez(tmp_path / "new.npz", ids=np.array([f"i{i}" for i in range(60)]), vectors=vectors)
    assert _cli(capsys, "model", "add", "--workspace", str(ws), "--name", "new", "--path",
                str(tmp_path / "new.npz"), "--role", "new")[0] == 0
    assert _cli(capsys, "embed", "--workspace", str(ws), "--model", "new")[0] == 0
    with Workspace.open(ws) as w:
        return ws, ids, vectors, Path(w.vector_sets("new")[0]["path"])


def test_a_cut_short_vector_file_is_flagged_and_embed_stores_its_items_again(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`info` flagged nothing, `embed` counted the damaged set's items as held, and train and report failed
    on its checksum with no way out but restoring the file by hand."""
    ws, ids, vectors, path = _embedded_set(tmp_path, capsys)
    path.write_bytes(path.read_bytes()[:-100])  # cut short
    code, out, _ = _cli(capsys, "info", "--workspace", str(ws))
    assert code == 0 and "DAMAGED:" in out and "run 'embridge embed --model new' to embed every item" in out
    with Workspace.open(ws) as w, pytest.raises(Exception, match="embridge embed --model new"):
        w.vectors_for("new", ids)
    code, out, err = _cli(capsys, "embed", "--workspace", str(ws), "--model", "new", "--json")
    assert code == 0, err
    assert json.loads(out)["written"] == 60
    with Workspace.open(ws) as w:
        np.testing.assert_array_equal(w.vectors_for("new", ids), vectors)  # the new set, not the damaged one
    code, out, _ = _cli(capsys, "info", "--workspace", str(ws))
    assert "a later set holds all its items again, so nothing reads it" in out
    code, out, _ = _cli(capsys, "embed", "--workspace", str(ws), "--model", "new", "--json")
    assert code == 0 and json.loads(out)["written"] == 0  # the intact new set holds them all now


def test_a_vector_file_changed_in_place_counts_as_damaged_too(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    ws, ids, vectors, path = _embedded_set(tmp_path, capsys)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x40  # one flipped bit in the last row: same size, other checksum
    path.write_bytes(bytes(data))
    code, out, _ = _cli(capsys, "embed", "--workspace", str(ws), "--model", "new", "--json")
    assert code == 0 and json.loads(out)["written"] == 60
    with Workspace.open(ws) as w:
        np.testing.assert_array_equal(w.vectors_for("new", ids), vectors)


@pytest.mark.parametrize("damage", ["deleted", "changed"])
def test_a_damaged_id_list_is_passed_over_with_a_warning_and_embed_mends_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str) -> None:
    """A deleted or changed `.ids.npy` blocked every reader for good (train, report, embed --sample) and
    following the advice did not help; `info` flagged a changed one not at all."""
    ws, ids, vectors, path = _embedded_set(tmp_path, capsys)
    id_list = path.with_name(path.name.replace(".npy", ".ids.npy"))
    if damage == "deleted":
        id_list.unlink()
    else:
        stored = np.load(id_list)
        stored[[0, 1]] = stored[[1, 0]]  # two items swap vectors: the same size, another checksum
        np.save(id_list, stored)
    code, out, _ = _cli(capsys, "info", "--workspace", str(ws))
    assert code == 0 and ("MISSING" if damage == "deleted" else "DAMAGED") in out and "readers pass it over" in out
    with Workspace.open(ws) as w:
        assert w.ids_with_vectors("new").size == 0  # its items are not counted as holding vectors
    capsys.readouterr()
    code, out, err = _cli(capsys, "embed", "--workspace", str(ws), "--model", "new", "--json")
    assert code == 0 and json.loads(out)["written"] == 60
    warnings = [line for line in err.splitlines() if line.startswith("WARNING: ")]
    assert len(warnings) == 1 and warnings[0].startswith("WARNING: vector set 1 of model 'new' was passed over: ")
    assert err.count("was passed over") == 1  # not a second time by logging (the app's log shows it)
    with Workspace.open(ws) as w:
        np.testing.assert_array_equal(w.vectors_for("new", ids), vectors)  # the new set's, read past the old one


def test_init_where_the_database_is_a_folder_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ws" / "embridge.db").mkdir(parents=True)
    code, _, err = _cli(capsys, "init", "--workspace", str(tmp_path / "ws"))
    assert code == 1 and err == f"embridge: error: {tmp_path / 'ws' / 'embridge.db'}: the workspace database is not a regular file\n"
