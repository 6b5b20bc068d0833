"""Damaged or crafted store folders and index files: refused in one line naming the store, nothing run,
nothing written into them, and never a crash of the interpreter."""

from __future__ import annotations

import json
import pickle
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.workspace_files import snapshot
from store_fixtures import cli, one_line

D, N = 16, 300


def _vectors(seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((N, D)).astype(np.float32)


def _workspace(tmp_path: Path) -> str:
    from embridge.core.store import Workspace

    if not (tmp_path / "ws").exists():
        Workspace.create(tmp_path / "ws").close()
    return str(tmp_path / "ws")


def _qdrant_store(path: Path) -> str:
    from qdrant_client import QdrantClient, models

    client = QdrantClient(path=str(path))
    client.create_collection("docs", vectors_config=models.VectorParams(size=D, distance=models.Distance.COSINE))
    client.upsert("docs", points=[models.PointStruct(id=i, vector=v.tolist(), payload={"n": i})
                                  for i, v in enumerate(_vectors())])
    client.close()
    return f"qdrant://{path}?collection=docs"


class _Touch:
    """A pickle that creates a file when it is loaded: the stand-in for code a crafted store would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return Path.touch, (self.marker,)


def test_a_qdrant_folder_whose_pickles_would_run_code_is_refused_unopened(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """qdrant-client unpickles every stored point when it opens a folder: `check --uri` ran the code."""
    uri = _qdrant_store(tmp_path / "q")
    code, out, _ = cli(capsys, "check", "--uri", uri)
    assert code == 0 and out["count"] == N  # the untouched store reads as before
    marker = tmp_path / "ran"
    db = sqlite3.connect(tmp_path / "q" / "collection" / "docs" / "storage.sqlite")
    with db:
        db.execute("update points set point = ? where rowid = 7", [pickle.dumps(_Touch(marker))])
    db.close()
    before = snapshot(tmp_path / "q")
    for argv in (("check", "--uri", uri), ("import", "--workspace", _workspace(tmp_path), "--from", uri)):
        code, _, err = cli(capsys, *argv)
        one_line(code, err, uri, "row 7 of storage.sqlite", "pathlib", "which no Qdrant point holds")
    assert not marker.exists() and snapshot(tmp_path / "q") == before


def test_a_qdrant_folder_a_killed_writer_left_a_hot_journal_in_is_read(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A migration killed mid-write into an embedded Qdrant leaves a hot journal: a read-only look at the points
    could not roll it back, and the resumed migration's check refused the store."""
    uri = _qdrant_store(tmp_path / "q")
    storage = tmp_path / "q" / "collection" / "docs" / "storage.sqlite"
    writer = ("import os, sqlite3, sys\ndb = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
              "db.execute('begin immediate')\n"
              "for i in range(2000):\n    db.execute('insert or replace into points values (?, ?)', (f'k{i}', b'x' * 999))\n"
              "os._exit(0)\n")  # gone mid-transaction, as under kill -9
    subprocess.run([sys.executable, "-c", writer, str(storage)], check=True, timeout=120)
    assert storage.with_name("storage.sqlite-journal").stat().st_size > 0
    code, out, err = cli(capsys, "check", "--uri", uri)
    assert code == 0 and out["count"] == N, err  # rolled back: the points of before the interrupted write


def test_a_damaged_qdrant_folder_is_named_not_read_as_empty(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    uri = _qdrant_store(tmp_path / "q")
    storage = tmp_path / "q" / "collection" / "docs" / "storage.sqlite"
    storage.unlink()  # the collection is listed, its points are gone: it read as "0 points, empty", exit 0
    code, _, err = cli(capsys, "check", "--uri", uri)
    one_line(code, err, "collection 'docs' has no storage.sqlite")
    assert not storage.exists()  # opening it would have made an empty one
    uri = _qdrant_store(tmp_path / "q2")
    meta = tmp_path / "q2" / "meta.json"
    for size, needle in ((0, "the collection's settings give vectors of size 0"),
                         (1, f"point 0 holds a {D}-long vector where the collection's settings give vectors of size 1"),
                         (2**31, "give vectors of size 2147483648")):  # it reshaped to a size the rows lack: exit 3
        settings = json.loads(meta.read_text(encoding="utf-8"))
        settings["collections"]["docs"]["vectors"]["size"] = size
        meta.write_text(json.dumps(settings), encoding="utf-8")
        for argv in (("check", "--uri", uri), ("import", "--workspace", _workspace(tmp_path), "--from", uri)):
            code, _, err = cli(capsys, *argv)
            one_line(code, err, needle)


def test_an_empty_chroma_database_is_not_set_up_anew(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "chroma.sqlite3").write_bytes(b"")  # truncated to nothing
    code, _, err = cli(capsys, "check", "--uri", f"chroma://{tmp_path / 'c'}?collection=docs")
    one_line(code, err, "holds no chroma store (its chroma.sqlite3 is empty")
    assert (tmp_path / "c" / "chroma.sqlite3").stat().st_size == 0  # it became a fresh 188 kB database


def test_a_lancedb_table_with_a_damaged_data_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import lancedb
    import pyarrow as pa

    db = lancedb.connect(str(tmp_path / "l"))
    db.create_table("docs", pa.table({"id": pa.array(range(N), pa.int64()),
                                      "vector": pa.array(_vectors().tolist(), pa.list_(pa.float32(), D))}))
    (data,) = (tmp_path / "l" / "docs.lance" / "data").glob("*.lance")
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    uri = f"lancedb://{tmp_path / 'l'}?table=docs"
    for argv in (("check", "--uri", uri), ("import", "--workspace", _workspace(tmp_path), "--from", uri)):
        code, _, err = cli(capsys, *argv)  # it exited 3, "unexpected RuntimeError: lance error: ..."
        one_line(code, err, "LanceDB", "table 'docs': the table cannot be read, its files are damaged")
        assert ".rs:" not in err  # not the Rust source line lance names


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    probe = f"import sys\nfrom embridge.core.cli.main import main\nsys.exit(main({argv!r}))\n"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)


def test_an_ivf_fast_scan_index_is_refused_not_a_crash(tmp_path: Path) -> None:
    """faiss crashes (SIGSEGV) reconstructing an IVF fast-scan index's vectors: import and check died."""
    import faiss

    x = _vectors()
    index = faiss.IndexIVFPQFastScan(faiss.IndexFlatL2(D), D, 4, 8, 4)
    index.train(np.tile(x, (4, 1)) + 0.01 * np.random.default_rng(2).standard_normal((4 * N, D)).astype(np.float32))
    index.add(x)
    path = tmp_path / "fs.faiss"
    faiss.write_index(index, str(path))
    assert _run(["init", "--workspace", str(tmp_path / "ws")]).returncode == 0
    for argv in (["check", "--uri", f"faiss://{path}"],
                 ["import", "--workspace", str(tmp_path / "ws"), "--from", f"faiss://{path}", "--model", "old"]):
        done = _run(argv)  # in a process of its own: the old code took the interpreter down
        assert done.returncode == 1, (done.returncode, done.stderr)
        assert done.stderr.strip().splitlines() == [f"embridge: error: {path}: an IVF fast-scan index "
                                                    "(IndexIVFPQFastScan) cannot give back its vectors (its packed "
                                                    "codes have no reconstruction); read the gallery from the store "
                                                    "or file the index was built from"]
    assert not (tmp_path / "ws" / "embridge.db-wal").exists()


def test_an_id_map_over_an_ivf_with_ids_of_its_own_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import faiss

    x = _vectors()
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatL2(D), D, 4)
    ivf.train(x)
    mapped = faiss.IndexIDMap(ivf)
    ivf.add_with_ids(x, np.arange(N, dtype=np.int64) * 3 + 1000)  # the inner ids are not 0..n-1
    mapped.ntotal = N
    faiss.copy_array_to_vector(np.arange(N, dtype=np.int64), mapped.id_map)
    path = tmp_path / "m.faiss"
    faiss.write_index(mapped, str(path))
    code, _, err = cli(capsys, "import", "--workspace", _workspace(tmp_path), "--from", f"faiss://{path}")
    one_line(code, err, f"{path}: this index cannot find its vectors by id")  # it exited 3, "unexpected RuntimeError"


def test_an_index_of_dimension_zero_and_empty_vectors_are_named_as_such(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A 0-d FAISS index of 5 points was 'no points' to import and '5 points' to check; a Parquet column of
    empty lists read 'a 0-long vector among 0-long ones'."""
    import faiss
    import pyarrow as pa
    import pyarrow.parquet as pq

    index = faiss.IndexFlatL2(0)
    index.add(np.zeros((5, 0), np.float32))
    faiss.write_index(index, str(tmp_path / "zero.faiss"))
    for argv in (("check", "--uri", f"faiss://{tmp_path / 'zero.faiss'}"),
                 ("import", "--workspace", _workspace(tmp_path), "--from", f"faiss://{tmp_path / 'zero.faiss'}")):
        code, _, err = cli(capsys, *argv)
        one_line(code, err, "zero.faiss: the index's vectors have dimension 0")
    (tmp_path / "pq").mkdir()
    pq.write_table(pa.table({"id": [1, 2], "vector": pa.array([[], []], pa.list_(pa.float32()))}),
                   tmp_path / "pq" / "part.parquet")
    code, _, err = cli(capsys, "import", "--workspace", _workspace(tmp_path), "--from", f"parquet://{tmp_path / 'pq'}")
    one_line(code, err, "row 0 (id 1): an empty vector")


@pytest.mark.parametrize(("module", "name"), [
    ("qdrant_client.http.models.models", "BaseModel"),  # imported there (pydantic's), not a Qdrant class
    ("qdrant_client.http.models.models", "Enum.__new__"),  # a dotted path through what the module imported
    ("builtins", "getattr"), ("builtins", "eval"), ("posix", "system"),
])
def test_the_point_unpickler_resolves_only_qdrants_own_classes(module: str, name: str) -> None:
    import io

    from embridge.core.connectors.qdrant_local import _PointUnpickler

    with pytest.raises(pickle.UnpicklingError):
        _PointUnpickler(io.BytesIO(b"")).find_class(module, name)
    from qdrant_client import models

    point = models.PointStruct(id=3, vector=[0.5, 0.25], payload={"n": 1, "t": "x"})
    assert _PointUnpickler(io.BytesIO(pickle.dumps(point))).load() == point


def test_a_qdrant_points_view_is_refused_as_what_the_client_reads_could_differ(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A view over the points (here with a row shown at random) gave the check clean rows and qdrant-client,
    reading again, a pickle that ran code."""
    uri = _qdrant_store(tmp_path / "q")
    marker = tmp_path / "ran"
    db = sqlite3.connect(tmp_path / "q" / "collection" / "docs" / "storage.sqlite")
    with db:
        db.execute("alter table points rename to real_points")
        db.execute("create table extra (id text, point blob)")
        db.execute("insert into extra values ('x', ?)", [pickle.dumps(_Touch(marker))])
        db.execute("create view points (id, point) as select id, point from real_points "
                   "union all select id, point from extra where abs(random()) % 2 = 0")
    db.close()
    for _ in range(4):
        code, _, err = cli(capsys, "check", "--uri", uri)
        one_line(code, err, "the points of storage.sqlite are not a plain table (view)")
    assert not marker.exists()
