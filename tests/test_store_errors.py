"""Bad input fails with a specific error naming the object, and a failed write changes nothing.

Each failing write is checked against a snapshot of the whole folder (see
``helpers.workspace_files``): every file's sha256 after a WAL checkpoint, and every table row.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from helpers.workspace_files import checkpoint, snapshot, table_dump

from embridge.core.errors import (
    EmbridgeError,
    ImportDataError,
    IntegrityError,
    SchemaVersionError,
    StoreError,
    VectorFileError,
)
from embridge.core.store import Workspace, file_checks
from embridge.core.store.files import sha256_file
from embridge.core.store.vector_matrix import finite_rows


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    """A workspace with items, two models, one vector set, a run and an adapter already stored."""
    workspace = Workspace.create(tmp_path / "ws")
    ids = workspace.add_items([{"key": f"k{i}", "label": str(i % 2)} for i in range(10)])
    workspace.add_model("m", "old", {"kind": "vectors", "dim": 4}, None)
    workspace.add_model("n", "new", {"kind": "vectors", "dim": 4}, None)
    workspace.add_vector_set("m", ids, np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32))
    adapter = tmp_path / "a.pt"
    adapter.write_bytes(b"adapter")
    workspace.add_adapter(workspace.start_run("train"), "affine", "backward", 4, 4, "m", "n", adapter)
    yield workspace
    workspace.close()


def _fails_cleanly(ws: Workspace, call: Callable[[], object], error: type[EmbridgeError], pattern: str) -> None:
    """``call`` raises ``error`` matching ``pattern`` and leaves the folder byte-identical."""
    checkpoint(ws)
    files, rows = snapshot(ws.root), table_dump(ws.root)
    with pytest.raises(error, match=pattern):
        call()
    assert snapshot(ws.root) == files
    assert table_dump(ws.root) == rows


def _ids(ws: Workspace) -> list[int]:
    return ws.item_ids().tolist()


# -- items ------------------------------------------------------------------------------------
def test_duplicate_keys_in_input(ws: Workspace) -> None:
    _fails_cleanly(ws, lambda: ws.add_items([{"key": "x"}, {"key": "y"}, {"key": " x "}], source="in.csv"),
                   ImportDataError, r"^in\.csv: duplicate keys in the input: 'x' \(each item needs a key of its own\)$")


def test_keys_already_present(ws: Workspace) -> None:
    _fails_cleanly(ws, lambda: ws.add_items([{"key": "new1"}, {"key": "k3"}, {"key": "k7"}], source="b.jsonl"),
                   ImportDataError, r"^b\.jsonl: 2 keys already exist in the workspace, e\.g\. k3, k7$")


def test_empty_input_and_empty_key(ws: Workspace) -> None:
    _fails_cleanly(ws, lambda: ws.add_items([], source="empty.csv"), ImportDataError,
                   r"^empty\.csv: no items to import$")
    _fails_cleanly(ws, lambda: ws.add_items([{"key": "ok"}, {"key": "  "}], source="c.csv"),
                   ImportDataError, r"^c\.csv: item 2 has an empty key$")


def test_unstorable_item_field_names_the_item(ws: Workspace) -> None:
    records = [{"key": f"n{i}"} for i in range(1500)] + [{"key": "bad", "text": {"not": "text"}}]
    _fails_cleanly(ws, lambda: ws.add_items(records, source="odd.jsonl"), ImportDataError,
                   r"^odd\.jsonl: item 'bad': field 'text'")
    _fails_cleanly(ws, lambda: ws.add_items([{"key": "m", "metadata": {"x": object()}}], source="odd.jsonl"),
                   ImportDataError, r"^odd\.jsonl: item 'm': metadata")


# -- vector sets ------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_rows_are_named(ws: Workspace, bad: float) -> None:
    vecs = np.zeros((10, 4), dtype=np.float32)
    vecs[6, 2] = bad
    vecs[8, 0] = bad
    _fails_cleanly(ws, lambda: ws.add_vector_set("n", _ids(ws), vecs), VectorFileError,
                   r"^vectors of model 'n': row 6 holds NaN or inf values \(2 such rows among rows 0-9\)")


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_finite_rows_tells_every_non_finite_row_and_only_those(dtype: str) -> None:
    big = float(np.finfo(dtype).max)
    rows = [[1.0, 2.0, 3.0], [np.nan, 0.0, 0.0], [0.0, np.inf, 0.0], [-np.inf, 1.0, 1.0],
            [np.inf, -np.inf, 0.0],  # a sum of NaN
            [big, big, big],  # finite values whose sum overflows
            [-big, -big, 1.0], [0.0, 0.0, 0.0]]
    block = np.array(rows, dtype=dtype)
    assert finite_rows(block).tolist() == np.isfinite(block).all(axis=1).tolist()
    assert finite_rows(block).tolist() == [True, False, False, False, False, True, True, True]
    assert finite_rows(np.arange(6).reshape(2, 3)).tolist() == [True, True]


def test_values_that_overflow_float16_are_refused(ws: Workspace) -> None:
    vecs = np.zeros((10, 4))
    vecs[3, 1] = 1e6  # finite as float64, inf once stored as float16
    _fails_cleanly(ws, lambda: ws.add_vector_set("n", _ids(ws), vecs, dtype="float16"), VectorFileError,
                   r"row 3 .*float16")


@pytest.mark.parametrize(("vectors", "pattern"), [
    (np.zeros(10), r"expected a 2-D matrix, got shape \(10,\)"),
    (np.zeros((10, 2, 2)), r"expected a 2-D matrix"),
    (np.zeros((9, 4)), r"9 vectors but 10 item ids"),
    (np.zeros((10, 0)), r"dimension must be positive"),
])
def test_wrong_shapes(ws: Workspace, vectors: np.ndarray, pattern: str) -> None:
    _fails_cleanly(ws, lambda: ws.add_vector_set("n", _ids(ws), vectors), VectorFileError,
                   r"^vectors of model 'n': " + pattern)


def test_bad_item_id_lists(ws: Workspace) -> None:
    ids = _ids(ws)
    _fails_cleanly(ws, lambda: ws.add_vector_set("n", ids[:3] + [999, 1000], np.zeros((5, 4))), StoreError,
                   r"unknown item ids, e\.g\. \[999, 1000\]")
    _fails_cleanly(ws, lambda: ws.add_vector_set("n", ids[:3] + ids[:1], np.zeros((4, 4))), VectorFileError,
                   r"duplicate item ids")
    _fails_cleanly(ws, lambda: ws.add_vector_set("n", [], np.zeros((0, 4))), VectorFileError,
                   r"non-empty 1-D list of item ids")
    _fails_cleanly(ws, lambda: ws.vector_set_writer("n", np.array([ids[0], 777]), 4), StoreError,
                   r"unknown item ids, e\.g\. \[777\]")


def test_unknown_model(ws: Workspace) -> None:
    _fails_cleanly(ws, lambda: ws.add_vector_set("ghost", _ids(ws), np.zeros((10, 4))), StoreError,
                   r"no model named 'ghost' \(known: m, n\)")
    _fails_cleanly(ws, lambda: ws.vector_set_writer("ghost", np.array(_ids(ws)), 4), StoreError,
                   r"no model named 'ghost'")
    with pytest.raises(StoreError, match=r"model 'n' has no vectors yet"):
        ws.vectors_for("n", _ids(ws))


def test_writer_rejects_bad_blocks_and_early_commit(ws: Workspace) -> None:
    writer = ws.vector_set_writer("n", np.array(_ids(ws)), 4, resume_key="bad-blocks")
    with pytest.raises(VectorFileError, match=r"block of shape \(2, 3\) does not match dim 4"):
        writer.write(0, np.zeros((2, 3)))
    with pytest.raises(VectorFileError, match=r"rows 8:12 fall outside 0:10"):
        writer.write(8, np.zeros((4, 4)))
    with pytest.raises(VectorFileError, match=r"row 5 holds NaN"):
        writer.write(4, np.array([[0, 0, 0, 0], [np.nan, 0, 0, 0]]))
    writer.write(0, np.zeros((4, 4)))
    checkpoint(ws)
    files, rows = snapshot(ws.root), table_dump(ws.root)
    with pytest.raises(VectorFileError, match=r"only 4 of 10 rows were written"):
        writer.commit()
    assert snapshot(ws.root) == files and table_dump(ws.root) == rows
    with pytest.raises(VectorFileError, match=r"unsupported dtype int8"):
        ws.vector_set_writer("n", np.array(_ids(ws)), 4, dtype="int8")
    writer.abort()


def test_model_removed_while_its_vectors_are_written(ws: Workspace) -> None:
    """``model remove`` (and ``model add`` of the name again) during an embed: the finished vectors are not
    stored under the new row, and the error says why instead of SQLite's foreign-key failure."""
    writer = ws.vector_set_writer("n", np.array(_ids(ws)), 4, resume_key="removed-meanwhile")
    writer.write(0, np.random.default_rng(1).standard_normal((10, 4)).astype(np.float32))
    ws.delete_model("n")
    ws.add_model("n", "new", {"kind": "vectors", "dim": 4, "prompt": "query: "}, None)  # the same id again
    checkpoint(ws)
    rows = table_dump(ws.root)
    with pytest.raises(StoreError, match=r"model 'n' was removed while its vectors were being written; nothing "
                                         r"was stored"):
        writer.commit()
    assert table_dump(ws.root) == rows
    assert not list((ws.root / "vectors" / "n").glob("*.npy"))
    writer.abort()


def test_model_and_fold_and_run_mistakes(ws: Workspace, tmp_path: Path) -> None:
    _fails_cleanly(ws, lambda: ws.add_model("m", "old", {"kind": "x"}, None), StoreError,
                   r"a model named 'm' already exists")
    _fails_cleanly(ws, lambda: ws.add_model("z", "boss", {"kind": "x"}, None), StoreError, r"unknown role 'boss'")
    _fails_cleanly(ws, lambda: ws.add_model("z", "old", {"kind": "x"}, tmp_path / "nope.pt"), StoreError,
                   r"nope\.pt: .*does not exist")
    ckpt = tmp_path / "ok.pt"
    ckpt.write_bytes(b"ok")
    _fails_cleanly(ws, lambda: ws.add_model("z", "old", {"kind": "x", "bad": object()}, ckpt), StoreError,
                   r"spec .*not JSON-serialisable")
    _fails_cleanly(ws, lambda: ws.set_folds({_ids(ws)[0]: "train", 4242: "test"}, seed=1), StoreError,
                   r"unknown item ids, e\.g\. \[4242\]")
    _fails_cleanly(ws, lambda: ws.update_run(99, status="completed"), StoreError, r"no run with id 99")
    _fails_cleanly(ws, lambda: ws.finish_run(99, "completed"), StoreError, r"no run with id 99")
    src = tmp_path / "b.pt"
    src.write_bytes(b"b")
    _fails_cleanly(ws, lambda: ws.add_adapter(98, "mlp", "backward", 4, 4, "m", "n", src), StoreError,
                   r"no run with id 98")
    _fails_cleanly(ws, lambda: ws.add_adapter(None, "mlp", "backward", 4, 4, "m", "n", tmp_path / "gone.pt"),
                   StoreError, r"gone\.pt: .*does not exist")


# -- opening ----------------------------------------------------------------------------------
def test_opening_a_folder_that_is_not_a_workspace(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("hi")
    before = snapshot(tmp_path / "plain")
    with pytest.raises(StoreError, match=r"plain: not an Embridge workspace \(no embridge\.db\)"):
        Workspace.open(tmp_path / "plain")
    with pytest.raises(StoreError, match=r"plain: folder is not empty"):
        Workspace.create(tmp_path / "plain")
    assert snapshot(tmp_path / "plain") == before
    with pytest.raises(StoreError, match=r"missing: not an Embridge workspace"):
        Workspace.open(tmp_path / "missing")
    assert not (tmp_path / "missing").exists()


def test_creating_over_an_existing_workspace(ws: Workspace) -> None:
    _fails_cleanly(ws, lambda: Workspace.create(ws.root), StoreError, r"a workspace already exists here")


@pytest.mark.parametrize("inner", ["models/nested", "sub", "vectors/old/deep/er"])
def test_creating_a_workspace_inside_another_is_refused(ws: Workspace, inner: str) -> None:
    """The outer workspace's temp sweeps and checks walk its folders: they would take the inner one's files
    for their own. 'init' and 'demo' made one anywhere inside it."""
    _fails_cleanly(ws, lambda: Workspace.create(ws.root / inner), StoreError,
                   rf"{inner}: is inside the workspace {re.escape(str(ws.root))}; make the new workspace beside it")
    assert not (ws.root / inner).exists()


def test_corrupt_database(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    Workspace.create(root).close()
    (root / "embridge.db").write_bytes(np.random.default_rng(0).bytes(8192))
    for sidecar in ("embridge.db-wal", "embridge.db-shm"):
        (root / sidecar).unlink(missing_ok=True)
    before = snapshot(root)
    with pytest.raises(StoreError, match=re.escape(str(root / "embridge.db")) + r": the workspace database is corrupt"):
        Workspace.open(root)
    assert snapshot(root) == before


def test_newer_schema_version_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    Workspace.create(root).close()
    conn = sqlite3.connect(root / "embridge.db")
    conn.execute("update meta set value = '99' where key = 'schema_version'")
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    before = snapshot(root)
    with pytest.raises(SchemaVersionError, match=r"schema version 99 is newer than this Embridge understands \(4\)"):
        Workspace.open(root)
    assert snapshot(root) == before


@pytest.mark.parametrize(("edit", "recorded"), [("update meta set value = '1' where key = 'schema_version'", 1),
                                                ("delete from meta", 0)], ids=["older-version", "no-version"])
def test_a_schema_version_that_does_not_match_the_tables_is_refused(tmp_path: Path, edit: str,
                                                                     recorded: int) -> None:
    """A meta row edited back to an older version made the migrations run again: raw SQLite words
    ('duplicate column name: namespace')."""
    root = tmp_path / "ws"
    Workspace.create(root).close()
    conn = sqlite3.connect(root / "embridge.db")
    conn.execute(edit)
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    before = snapshot(root)
    with pytest.raises(SchemaVersionError, match=rf"the recorded schema version \({recorded}\) does not match the "
                                                 r"database's tables.*Embridge leaves the database untouched"):
        Workspace.open(root)
    assert snapshot(root) == before


def test_vector_file_changed_after_registration(ws: Workspace) -> None:
    info = ws.vector_sets("m")[0]
    ws.open_vector_set(info["id"])  # verified once and remembered for this process
    path = Path(info["path"])
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=re.escape(str(path)) + r": checksum mismatch"):
        ws.open_vector_set(info["id"])
    with pytest.raises(IntegrityError, match=r"checksum mismatch"):
        ws.vectors_for("m", _ids(ws))
    _, matrix = ws.open_vector_set(info["id"], verify=False)  # an explicit opt-out still reads it
    assert matrix.shape == (10, 4)


def test_checksums_are_remembered_only_for_settled_files(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    hashed: list[str] = []
    real = file_checks.sha256_file
    monkeypatch.setattr(file_checks, "sha256_file", lambda p: hashed.append(Path(p).name) or real(p))
    set_id = ws.vector_sets("m")[0]["id"]
    monkeypatch.setattr(file_checks, "_RACY_WINDOW_NS", 10**18)  # as if the files were just written
    ws.open_vector_set(set_id)
    ws.open_vector_set(set_id)
    assert len(hashed) == 4  # an edit could share a fresh file's mtime, so it is hashed each time
    monkeypatch.setattr(file_checks, "_RACY_WINDOW_NS", 0)  # as if the files were old
    ws.open_vector_set(set_id)
    ws.open_vector_set(set_id)
    assert len(hashed) == 6  # hashed once more, then remembered


def test_vector_file_swapped_for_one_of_the_same_size(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(file_checks, "_RACY_WINDOW_NS", 0)
    info = ws.vector_sets("m")[0]
    ws.open_vector_set(info["id"])  # verified and remembered
    path = Path(info["path"])
    stat = path.stat()
    np.save(path.with_name("other.npy"), np.full((10, 4), 2, dtype=np.float32))
    os.replace(path.with_name("other.npy"), path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size, same mtime: only the content differs
    assert path.stat().st_size == stat.st_size
    with pytest.raises(IntegrityError, match=r"checksum mismatch"):
        ws.open_vector_set(info["id"])


def test_vector_file_edited_in_place_with_its_mtime_restored(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(file_checks, "_RACY_WINDOW_NS", 0)
    info = ws.vector_sets("m")[0]
    ws.open_vector_set(info["id"])
    path = Path(info["path"])
    stat = path.stat()
    with open(path, "r+b") as fh:
        fh.seek(-1, os.SEEK_END)
        fh.write(b"\x7f")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(IntegrityError, match=r"checksum mismatch"):
        ws.open_vector_set(info["id"])


def test_missing_vector_and_id_files(ws: Workspace) -> None:
    info = ws.vector_sets("m")[0]
    matrix, ids = ws.root / info["file"], ws.root / info["ids_file"]
    matrix.rename(matrix.with_suffix(".bak"))
    with pytest.raises(IntegrityError, match=re.escape(str(matrix)) + r": vector file is missing"):
        ws.open_vector_set(info["id"])
    matrix.with_suffix(".bak").rename(matrix)
    ids.unlink()
    with pytest.raises(IntegrityError, match=re.escape(str(ids)) + r": .*missing"):
        ws.open_vector_set(info["id"])
    with pytest.raises(IntegrityError, match=r"missing"):
        ws.open_vector_set(info["id"], verify=False)


def test_truncated_vector_file(ws: Workspace) -> None:
    info = ws.vector_sets("m")[0]
    path = Path(info["path"])
    path.write_bytes(path.read_bytes()[:-16])
    with pytest.raises(IntegrityError, match=r"checksum mismatch"):
        ws.open_vector_set(info["id"])
    with pytest.raises(IntegrityError, match=re.escape(str(path))):
        ws.open_vector_set(info["id"], verify=False)
    assert sha256_file(path) != info["sha256"]


def test_a_settled_file_hashed_by_one_process_is_not_hashed_again_by_the_next_unless_it_changed(
        ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    hashed: list[str] = []
    real = file_checks.sha256_file
    monkeypatch.setattr(file_checks, "sha256_file", lambda p: hashed.append(Path(p).name) or real(p))
    monkeypatch.setattr(file_checks, "_RACY_WINDOW_NS", 0)
    info = ws.vector_sets("m")[0]
    path = Path(info["path"])

    def new_process() -> Workspace:
        file_checks._verified.clear()  # what a fresh process starts with
        return Workspace.open(ws.root)

    before = snapshot(ws.root)
    ws.open_vector_set(info["id"])
    assert hashed.count(path.name) == 1
    other = new_process()
    other.open_vector_set(info["id"])
    assert hashed.count(path.name) == 1  # noted in the cache folder, across processes
    other.close()
    assert snapshot(ws.root) == before  # a check writes nothing into the workspace
    stat = path.stat()
    with open(path, "r+b") as fh:  # an edit in place, its mtime then restored: the ctime still moves
        fh.seek(-1, os.SEEK_END)
        fh.write(b"\x7f")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    third = new_process()
    with pytest.raises(IntegrityError, match="checksum mismatch"):
        third.open_vector_set(info["id"])
    third.close()


def test_an_unwritable_cache_folder_only_means_hashing_again(ws: Workspace, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    hashed: list[str] = []
    real = file_checks.sha256_file
    monkeypatch.setattr(file_checks, "sha256_file", lambda p: hashed.append(Path(p).name) or real(p))
    monkeypatch.setattr(file_checks, "_RACY_WINDOW_NS", 0)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would go")
    monkeypatch.setenv("EMBRIDGE_CACHE_DIR", str(blocker))
    info = ws.vector_sets("m")[0]
    for _ in range(2):  # two "processes": each reads fine, and each hashes, as no note could be kept
        file_checks._verified.clear()
        ids, matrix = ws.open_vector_set(info["id"])
        assert matrix.shape == (10, 4)
    assert hashed.count(Path(info["path"]).name) == 2
    assert blocker.read_text() == "a file where the cache folder would go"


def test_sqlite_errors_say_when_the_folder_is_read_only_or_the_disk_full(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite's own words ("unable to open database file", "disk I/O error") become the cause and the
    remedy, found by looking at the folder; the folder probes are replaced here to stage each cause."""
    from embridge.core.store import sqlite_errors

    db_path = tmp_path / "ws" / "embridge.db"
    with pytest.raises(sqlite3.OperationalError) as opened:
        sqlite3.connect(tmp_path / "no-such-folder" / "embridge.db")  # a real "unable to open"
    monkeypatch.setattr(sqlite_errors, "read_only_folder", lambda folder: True)
    assert "the workspace folder is read-only" in str(sqlite_errors.translate(opened.value, db_path))
    monkeypatch.setattr(sqlite_errors, "read_only_folder", lambda folder: False)
    assert str(sqlite_errors.translate(opened.value, db_path)) == f"{db_path}: unable to open database file"
    io_error = sqlite3.OperationalError("disk I/O error")
    monkeypatch.setattr(sqlite_errors, "free_bytes", lambda folder: 4096)
    assert "no space left on the disk holding the workspace (4,096 bytes were free when the write failed)" in str(
        sqlite_errors.translate(io_error, db_path))
    monkeypatch.setattr(sqlite_errors, "free_bytes", lambda folder: 10 << 30)
    assert str(sqlite_errors.translate(io_error, db_path)) == f"{db_path}: disk I/O error"  # not blamed on space


def test_a_real_read_only_folder_is_detected(tmp_path: Path) -> None:
    from embridge.core.store.sqlite_errors import read_only_folder

    assert not read_only_folder(tmp_path)
    assert read_only_folder(Path("/proc/1"))  # procfs entries take no new files


def test_a_run_of_an_unknown_kind_is_never_recorded(ws: Workspace) -> None:
    from embridge.core.store.records import RUN_KINDS

    before = [r["id"] for r in ws.runs()]
    with pytest.raises(StoreError, match="unknown run kind 'trian'"):
        ws.start_run("trian", "mlp")
    assert [r["id"] for r in ws.runs()] == before
    added = [ws.start_run(kind) for kind in RUN_KINDS]
    assert sorted(r["kind"] for r in ws.runs() if r["id"] in added) == sorted(RUN_KINDS)


def test_a_text_file_called_embridge_db_is_not_a_workspace_around_a_new_one(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "embridge.db").write_text("my notes\n")
    Workspace.create(tmp_path / "notes" / "ws").close()  # refused as 'inside the workspace .../notes' before
