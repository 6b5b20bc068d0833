"""`embridge info --verify`: every stored file hashed afresh and SQLite's own check, reading only."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from embridge.core.cli.main import main
from embridge.core.store import Workspace


def _verify(capsys: pytest.CaptureFixture[str], ws: Path) -> tuple[int, dict]:
    code = main(["info", "--workspace", str(ws), "--verify", "--json"])
    out, _ = capsys.readouterr()
    return code, json.loads(out)["verify"]


def _tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_an_intact_workspace_verifies_with_every_recorded_file(demo_copy: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, check = _verify(capsys, demo_copy)
    assert code == 0 and check["ok"] and check["database_problem"] is None
    with Workspace.open(demo_copy) as ws:
        expected = 2 * len(ws.vector_sets()) + len(ws.models()) + len(ws.adapters())
    assert check["checked_files"] == expected == len(check["files"]) and expected >= 6
    assert main(["info", "--workspace", str(demo_copy)]) == 0  # without --verify nothing is hashed or said
    assert "verified" not in capsys.readouterr().out


def test_damaged_files_are_named_with_exit_1_and_nothing_changes(demo_copy: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--workspace", str(demo_copy), "--method", "procrustes", "--json"]) == 0
    capsys.readouterr()
    with Workspace.open(demo_copy) as ws:
        vectors = Path(ws.root) / ws.vector_sets()[0]["file"]
        ids = Path(ws.root) / ws.vector_sets()[1]["ids_file"]
        layer = Path(ws.adapters()[0]["path"])
    data = bytearray(vectors.read_bytes())  # one flipped bit, same size: what a disk's rot looks like
    data[-5] ^= 0x10
    vectors.write_bytes(bytes(data))
    ids.unlink()
    layer.write_bytes(layer.read_bytes()[:-1])
    before = _tree_hashes(demo_copy)

    code, check = _verify(capsys, demo_copy)

    assert code == 1 and not check["ok"] and check["damaged_files"] == 3
    bad = {f["path"]: f for f in check["files"] if not f["ok"]}
    assert set(bad) == {str(vectors), str(ids), str(layer)}
    assert "differ" in bad[str(vectors)]["problem"] and "embridge embed" in bad[str(vectors)]["advice"]
    assert "missing" in bad[str(ids)]["problem"]
    assert "embridge train --method procrustes" in bad[str(layer)]["advice"]
    assert _tree_hashes(demo_copy) == before  # a check reads only
    main(["info", "--workspace", str(demo_copy), "--verify"])
    text = capsys.readouterr().out
    assert text.count("DAMAGED:") >= 3 and "3 damaged; nothing was changed" in text


def test_a_damaged_database_page_is_reported(demo_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = demo_copy / "embridge.db"
    with sqlite3.connect(db) as conn:
        page = conn.execute("pragma page_size").fetchone()[0]
        root = conn.execute("select rootpage from sqlite_master where name = 'idx_items_key_namespace'").fetchone()[0]
    conn.close()
    with open(db, "r+b") as fh:  # zero the tail of the items' key index: its entries no longer match the rows
        fh.seek(root * page - 200)
        fh.write(b"\0" * 150)

    code, check = _verify(capsys, demo_copy)

    assert code == 1 and not check["ok"]
    assert check["database_problem"].startswith("SQLite's integrity check reports:")
    assert "\n" not in check["database_problem"]
    assert check["damaged_files"] == 0


def test_a_pipe_or_a_folder_in_place_of_a_file_is_named_not_read(demo_copy: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A named pipe where a vector file was made the check wait for ever; a folder read as 'changed'."""
    import os

    with Workspace.open(demo_copy) as ws:
        vectors = Path(ws.root) / ws.vector_sets()[0]["file"]
        ids = Path(ws.root) / ws.vector_sets()[1]["ids_file"]
    vectors.unlink()
    os.mkfifo(vectors)
    ids.unlink()
    ids.mkdir()
    code, check = _verify(capsys, demo_copy)
    bad = {f["path"]: f["problem"] for f in check["files"] if not f["ok"]}
    assert code == 1 and bad == {str(vectors): "is not a regular file (a pipe, socket or device)",
                                 str(ids): "is a folder where a file was stored"}


def test_an_id_list_naming_items_the_database_lost_is_damage(demo_copy: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Items gone from under a vector set (a database restored from an older backup; a clean-up that once
    removed another process's items) said 'all intact': the set's files still matched their hashes."""
    with Workspace.open(demo_copy) as ws:
        vector_set = ws.vector_sets()[0]
        ids_file = str(Path(ws.root) / vector_set["ids_file"])
        gone = int(ws.item_ids()[-1])
    conn = sqlite3.connect(demo_copy / "embridge.db")
    with conn:
        conn.execute("pragma foreign_keys = off")
        conn.execute("delete from items where id = ?", [gone])
    conn.close()
    before = _tree_hashes(demo_copy)
    code, check = _verify(capsys, demo_copy)
    assert code == 1 and not check["ok"]
    bad = {f["path"]: f for f in check["files"] if not f["ok"]}
    assert ids_file in bad and f"names 1 item the workspace does not hold (item id {gone}" in bad[ids_file]["problem"]
    assert _tree_hashes(demo_copy) == before


def test_train_report_and_export_refuse_a_pipe_where_a_vector_file_was(demo_copy: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """info --verify named the pipe, but train, report and bundle export hashed it and waited for ever."""
    assert main(["train", "--workspace", str(demo_copy), "--method", "procrustes"]) == 0
    with Workspace.open(demo_copy) as ws:
        vectors = Path(ws.root) / ws.vector_sets()[-1]["file"]
        layer = Path(ws.adapters()[-1]["path"])
    capsys.readouterr()
    for path, commands in ((vectors, [["train", "--method", "procrustes"], ["report"]]),
                           (layer, [["report"], ["bundle", "export", "--out", str(demo_copy.parent / "b.zip")]])):
        _each_refuses_a_pipe_at(path, commands, demo_copy, capsys)


def _each_refuses_a_pipe_at(vectors: Path, commands: list[list[str]], demo_copy: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    """Each command refuses, in one line naming it, a FIFO put where the stored file ``vectors`` was."""
    import os
    import threading

    kept = vectors.with_name(vectors.name + ".kept")
    vectors.rename(kept)
    os.mkfifo(vectors)
    for argv in commands:
        outcome: dict[str, int] = {}

        def run(argv: list[str] = argv, outcome: dict[str, int] = outcome) -> None:
            outcome["code"] = main([*argv, "--workspace", str(demo_copy)])

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        worker.join(120)
        if worker.is_alive():  # let the blocked open go, so the test ends: it failed already
            with open(vectors, "wb"):
                pass
            pytest.fail(f"{argv[0]} waited on the pipe")
        err = capsys.readouterr().err
        assert outcome["code"] == 1 and f"{vectors}:" in err and "not" in err and "regular file" in err, err
    vectors.unlink()
    kept.rename(vectors)


def test_a_vector_file_cut_to_nothing_is_damage_not_a_crash(demo_copy: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    with Workspace.open(demo_copy) as ws:
        vectors = Path(ws.root) / ws.vector_sets()[0]["file"]
    vectors.write_bytes(b"")
    code = main(["info", "--workspace", str(demo_copy)])  # 'unexpected EOFError: No data left in file', exit 3
    out, err = capsys.readouterr()
    assert code == 0 and "DAMAGED: its file cannot be read as the stored vectors" in out, err
    code, check = _verify(capsys, demo_copy)
    assert code == 1 and not {f["path"]: f["ok"] for f in check["files"]}[str(vectors)]


def test_a_damaged_set_the_advised_embed_replaced_is_a_note_not_damage(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """After the embed the damage line advises, verify still said DAMAGED with the same advice, for ever."""
    import numpy as np

    from embridge.core.models.adding import add_model

    ws_path = tmp_path / "ws"
    np.savez(tmp_path / "new.npz", ids=np.array([f"i{i}" for i in range(60)]),
             vectors=np.random.default_rng(0).standard_normal((60, 8)).astype(np.float32))
    with Workspace.create(ws_path) as ws:
        ws.add_items([{"key": f"i{i}", "split": "gallery"} for i in range(60)])
        add_model(ws, tmp_path / "new.npz", "new", role="new")
    assert main(["embed", "--workspace", str(ws_path), "--model", "new"]) == 0
    capsys.readouterr()
    with Workspace.open(ws_path) as ws:
        damaged = Path(ws.vector_sets("new")[0]["path"])
    damaged.write_bytes(b"")
    code, check = _verify(capsys, ws_path)
    assert code == 1 and "embridge embed --model new" in check["files"][0]["advice"]
    assert main(["embed", "--workspace", str(ws_path), "--model", "new"]) == 0  # as advised
    capsys.readouterr()
    code, check = _verify(capsys, ws_path)
    superseded = [f for f in check["files"] if f["superseded"]]
    assert code == 0 and check["ok"] and [f["path"] for f in superseded] == [str(damaged)]
    assert superseded[0]["advice"] == "a later set holds all its items again, so nothing reads it"
    assert main(["info", "--workspace", str(ws_path), "--verify"]) == 0
    out = capsys.readouterr().out
    assert f"NOTE: vector set #1 (new, 60 x 8) ({damaged})" in out and "all intact" in out


def test_an_id_list_replaced_by_a_pipe_is_not_called_missing(tmp_path: Path) -> None:
    import os

    from embridge.core.errors import IntegrityError
    from embridge.core.store.vector_set_health import read_id_list

    os.mkfifo(tmp_path / "ids.npy")
    with pytest.raises(IntegrityError, match=r"ids.npy: id list of vector set 3 is no longer a regular file"):
        read_id_list(tmp_path / "ids.npy", {"id": 3, "ids_sha256": "0" * 64}, verify=True)
