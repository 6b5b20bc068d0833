"""``backfill --to-store``'s points: keyed by item key, written once, never into a collection of other points.

The writer (:mod:`embridge.core.scale.backfill_store`) is exercised on real embedded stores (Parquet,
LanceDB); the backfill runs that call it are in test_scale_jobs.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from store_fixtures import fill_source, read_all, unit

from embridge.core.connectors import open_store
from embridge.core.errors import InputError
from embridge.core.scale.backfill_store import check_store_option, point_ids, write_store
from embridge.core.store import Workspace


def _workspace(path: Path, keys: list[str]) -> tuple[Workspace, np.ndarray]:
    """Items with these keys and a vectors-only model 'v2' of 8-d vectors."""
    ws = Workspace.create(path)
    ws.add_model("v2", "new", {"name": "v2", "kind": "vectors", "modality": "vector", "dim": 8,
                               "sha256": "0" * 64, "path": ""}, None)
    return ws, np.asarray(ws.add_items([{"key": k, "split": "gallery"} for k in keys]))


def test_points_are_keyed_by_item_key_not_row_id(tmp_path: Path) -> None:
    ws, ids = _workspace(tmp_path / "ws", ["1000", "1001", "20000"])
    try:
        assert ids.tolist() != [1000, 1001, 20000]  # the workspace's own row ids differ from the keys
        assert point_ids(ws, ids[::-1]) == [20000, 1001, 1000]
        ws.add_items([{"key": "042", "split": "gallery"}])
        mixed = np.asarray([i["id"] for i in ws.items()])
        assert point_ids(ws, mixed) == ["1000", "1001", "20000", "042"]  # one id type per collection
    finally:
        ws.close()


@pytest.mark.parametrize("kind", ["parquet", "lancedb"])
def test_a_rerun_replaces_its_points_instead_of_adding_them(kind: str, tmp_path: Path) -> None:
    uri = (f"parquet://{tmp_path / 'pq' / 'new_vectors'}" if kind == "parquet"
           else f"lancedb://{tmp_path / 'lance'}?table=new_vectors")
    rng = np.random.default_rng(0)
    first = rng.standard_normal((30, 8)).astype(np.float32)
    write_store(uri, "v2", list(range(30)), first, batch_rows=7)
    second = rng.standard_normal((20, 8)).astype(np.float32)  # a rerun over part of the points
    write_store(uri, "v2", list(range(10, 30)), second, batch_rows=6)
    got = read_all(uri)  # fails on an id stored twice
    assert sorted(got, key=int) == [str(i) for i in range(30)]
    # L2-normalised, as a migration writes new-model points
    np.testing.assert_allclose(np.stack([got[str(i)][0] for i in range(10)]), unit(first[:10]), rtol=1e-6)
    np.testing.assert_allclose(np.stack([got[str(i)][0] for i in range(10, 30)]), unit(second), rtol=1e-6)
    assert {p["embridge_space"] for _, p in got.values()} == {"v2"}


def test_a_collection_of_other_points_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    ws, _ = _workspace(tmp_path / "ws", ["a"])
    try:
        vectors = np.random.default_rng(1).standard_normal((40, 8)).astype(np.float32)
        case = fill_source("parquet", tmp_path, list(range(40)), vectors, ["x"] * 40)  # a user's gallery
        before = read_all(case.source)
        with pytest.raises(InputError, match=r"--to-store: .*holds points a backfill of 'v2' did not write "
                                             r"\(field 'embridge_space': 40 with \(none\)\)"):
            check_store_option(ws, case.source, "v2")
        with pytest.raises(InputError, match="holds points a backfill of 'v2' did not write"):
            write_store(case.source, "v2", list(range(5)), vectors[:5])
        assert read_all(case.source).keys() == before.keys()  # nothing deleted, nothing added
        write_store(f"parquet://{tmp_path / 'pq' / 'mine'}", "v2", [1, 2], vectors[:2])
        ws.add_model("v3", "new", {"name": "v3", "kind": "vectors", "modality": "vector", "dim": 8,
                                   "sha256": "1" * 64, "path": ""}, None)
        with pytest.raises(InputError, match="holds points a backfill of 'v3' did not write"):
            check_store_option(ws, f"parquet://{tmp_path / 'pq' / 'mine'}", "v3")  # another model's points
    finally:
        ws.close()


def test_an_unfinished_migration_target_is_refused(tmp_path: Path) -> None:
    ws, _ = _workspace(tmp_path / "ws", ["a"])
    try:
        target = f"parquet://{tmp_path / 'pq' / 'shadow'}"
        write_store(target, "v2", [1, 2, 3], np.eye(3, 8, dtype=np.float32))
        with open_store(target) as store:  # as a migration into it that was killed leaves its checkpoint
            store.save_state("migrate-shadow", {"status": "running", "written": 3,
                                                "fingerprint": {"source_count": 10}})
        with pytest.raises(InputError, match=r"--to-store: .*an unfinished migration \(running, or stopped\) has written part of it \(3 of 10"):
            check_store_option(ws, target, "v2")
        with open_store(target) as store:  # finished: its points are a served gallery, of this model's space too
            store.save_state("migrate-shadow", {"status": "complete", "written": 3, "fingerprint": {}})
        with pytest.raises(InputError, match=r"--to-store: .*a migration wrote it"):
            check_store_option(ws, target, "v2")
    finally:
        ws.close()


def test_what_a_store_cannot_take_is_refused_before_embedding(tmp_path: Path) -> None:
    """Checked from the items' keys and the model's width alone: an existing empty collection, another width,
    keys of another type than the collection's, keys Qdrant cannot take as ids."""
    ws, ids = _workspace(tmp_path / "ws", ["1", "2", "doc-3"])
    try:
        (tmp_path / "pq" / "empty").mkdir(parents=True)
        with pytest.raises(InputError, match=r"--to-store: .*already exists, empty; give a new collection"):
            check_store_option(ws, f"parquet://{tmp_path / 'pq' / 'empty'}", "v2", ids)
        wide = f"parquet://{tmp_path / 'pq' / 'wide'}"
        write_store(wide, "v2", [1, 2], np.ones((2, 16), np.float32))
        with pytest.raises(InputError, match=r"--to-store: .*holds 16-d vectors; 'v2' gives 8-d ones"):
            check_store_option(ws, wide, "v2", ids[:2])
        ints = f"parquet://{tmp_path / 'pq' / 'ints'}"
        write_store(ints, "v2", [1, 2], np.ones((2, 8), np.float32))
        check_store_option(ws, ints, "v2", ids[:2])  # the same integer keys: a rerun may write
        with pytest.raises(InputError, match=r"its points have integer ids, but these items' keys are not all integer"):
            check_store_option(ws, ints, "v2", ids)
        with pytest.raises(InputError, match=r"item key '1' cannot be a point id there \(Qdrant ids are unsigned"):  # mixed keys are text
            check_store_option(ws, f"qdrant://{tmp_path / 'qd'}?collection=c", "v2", ids)
        assert not (tmp_path / "qd").exists()  # refused, and the folder its check's opening made is gone too
    finally:
        ws.close()


def test_a_backfill_of_items_that_came_as_vectors_alone_is_refused_before_any_run(
        demo_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Items imported from a store hold no raw input: the backfill failed on the first of them and left a
    failed run; the store's vectors-only model has no file and said only 'model record lacks path'."""
    from store_fixtures import parquet_dataset

    from embridge.core.cli.main import main

    rng = np.random.default_rng(0)
    uri = parquet_dataset(tmp_path / "docs", rng.standard_normal((30, 32)).astype(np.float32))
    ws = str(demo_copy)
    assert main(["import", "--workspace", ws, "--from", uri, "--model", "stored"]) == 0
    with Workspace.open(demo_copy) as opened:
        runs = len(opened.runs())
    capsys.readouterr()
    assert main(["backfill", "--workspace", ws, "--model", "new-cnn"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--model: 30 of the 1027 items to backfill with 'new-cnn' came as vectors alone" in err
    assert main(["backfill", "--workspace", ws, "--model", "stored"]) == 1
    assert "--model: 'stored' is an embeddings-only model" in capsys.readouterr().err
    with Workspace.open(demo_copy) as opened:
        assert len(opened.runs()) == runs


def test_vectors_of_one_direction_never_reach_the_store(tmp_path: Path) -> None:
    """The workspace refuses a set whose vectors all point one way; the store target is not written first."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from embridge.core.errors import VectorFileError
    from embridge.core.scale.backfill_workspace import record_vectors

    ws, ids = _workspace(tmp_path / "ws", [f"k{i}" for i in range(12)])
    try:
        chunks = tmp_path / "vectors"
        chunks.mkdir()
        flat = np.tile(np.arange(1, 9, dtype=np.float32), (12, 1))  # a model of zero weights and a bias
        pq.write_table(pa.table({"id": pa.array(ids, pa.int64()),
                                 "vector": pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), 8)}),
                       chunks / "chunk-00000.parquet")
        target = tmp_path / "pq" / "new_vectors"
        with pytest.raises(VectorFileError, match="all 12 vectors point the same way"):
            record_vectors(ws, "v2", ids, chunks, store=f"parquet://{target}")
        assert not target.exists() and ws.vector_sets("v2") == []
    finally:
        ws.close()
