"""The migration's read-ahead (Prefetch) and Parquet's bounded streaming reads."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from embridge.core.connectors import open_store
from embridge.core.connectors.prefetch import Prefetch


def test_prefetch_keeps_order_and_stays_at_most_depth_items_ahead() -> None:
    made: list[int] = []
    threads: set[str] = set()

    def numbers():
        for i in range(20):
            threads.add(threading.current_thread().name)
            made.append(i)
            yield i

    got = []
    with Prefetch(numbers, depth=2, name="test-prefetch") as items:
        for item in items:
            time.sleep(0.01)  # the producer would run far ahead if it were not bounded
            # beyond the item in use, at most depth items are made (or being made) and not yet taken
            assert len(made) - 1 - item <= 2
            got.append(item)
    assert got == list(range(20)) and threads == {"test-prefetch"}


def test_prefetch_raises_the_producers_error_where_it_happened() -> None:
    def failing():
        yield 1
        yield 2
        raise ValueError("row 3 is broken")

    got = []
    with pytest.raises(ValueError, match="row 3 is broken"), Prefetch(failing) as items:
        for item in items:
            got.append(item)
    assert got == [1, 2]


def test_closing_early_stops_and_joins_the_producer_and_closes_its_generator() -> None:
    closed = threading.Event()
    made: list[int] = []

    def endless():
        try:
            i = 0
            while True:
                made.append(i)
                yield i
                i += 1
        finally:
            closed.set()

    prefetch = Prefetch(endless, depth=1)
    with prefetch as items:
        for item in items:
            if item == 3:
                break
    assert closed.is_set() and not prefetch._thread.is_alive()
    assert len(made) <= 3 + 1 + 1  # never ran far past the consumer


def _write_parquet(folder: Path, n: int, dim: int, row_group: int) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True)
    vectors = np.random.default_rng(0).standard_normal((n, dim)).astype(np.float32)
    for part, rows in enumerate((slice(0, n // 2), slice(n // 2, n))):
        ids = np.arange(n)[rows]
        table = pa.table({"id": pa.array(ids, pa.int64()), "vector": pa.FixedSizeListArray.from_arrays(
            pa.array(vectors[rows].ravel()), dim), "label": [str(i % 4) for i in ids]})
        pq.write_table(table, folder / f"part-{part}.parquet", row_group_size=row_group)
    return vectors


@pytest.mark.parametrize("row_group", [7, 64, 1000])
def test_parquet_reads_every_row_once_and_resumes_from_any_cursor(tmp_path: Path, row_group: int) -> None:
    vectors = _write_parquet(tmp_path / "pq" / "docs", 300, 8, row_group)
    store = open_store(f"parquet://{tmp_path / 'pq' / 'docs'}")
    batches = list(store.read_batches(40))
    assert [i for b in batches for i in b.ids] == list(range(300))
    assert max(len(b) for b in batches) <= 40 and batches[-1].cursor is None
    np.testing.assert_array_equal(np.concatenate([b.vectors for b in batches]), vectors)
    assert batches[0].payloads[5] == {"label": "1"}
    for n, batch in enumerate(batches[:-1]):  # resuming after any batch gives exactly the rest
        rest = [i for b in store.read_batches(33, batch.cursor) for i in b.ids]
        assert rest == [i for b in batches[n + 1:] for i in b.ids]


def test_parquet_reads_ids_from_the_row_groups_that_hold_them(tmp_path: Path) -> None:
    vectors = _write_parquet(tmp_path / "pq" / "docs", 300, 8, 16)
    store = open_store(f"parquet://{tmp_path / 'pq' / 'docs'}")
    wanted = [299, 3, 150, 1000, 17, 149]  # both files, several row groups, one id that is not there
    got = store.read_ids(wanted)
    assert got.ids == [299, 3, 150, 17, 149]
    np.testing.assert_array_equal(got.vectors, vectors[[299, 3, 150, 17, 149]])
    assert [p["label"] for p in got.payloads] == [str(i % 4) for i in got.ids]
    assert len(store.read_ids([5000])) == 0


def test_parquet_writes_bounded_row_groups(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from embridge.core.connectors import Batch
    from embridge.core.connectors.parquet import ROW_GROUP_ROWS

    store = open_store(f"parquet://{tmp_path / 'out'}")
    store.create(4)
    n = ROW_GROUP_ROWS * 2 + 5
    store.write(Batch(list(range(n)), np.ones((n, 4), np.float32), [{"s": "a"}] * n))
    (file,) = list((tmp_path / "out").glob("*.parquet"))
    meta = pq.ParquetFile(file).metadata
    assert meta.num_rows == n and meta.num_row_groups == 3
    assert max(meta.row_group(g).num_rows for g in range(3)) == ROW_GROUP_ROWS
    assert store.count() == n


@pytest.mark.slow
def test_a_migration_runs_without_torch_and_matches_the_layer(tmp_path: Path) -> None:
    """The store path uses the bundle's torch-free runtime: torch blocked from import, same vectors."""
    from bundle_fixtures import build_upgrade_workspace
    from store_fixtures import fill_source, read_all
    from test_bundle_portable import run_without_torch

    from embridge.core.bundle import export_bundle, load_bundle
    from embridge.core.store import Workspace

    up = build_upgrade_workspace(tmp_path / "ws", with_report=False)
    bundle = tmp_path / "fct.zip"
    with Workspace.open(up["path"]) as ws:
        export_bundle(ws, bundle, [up["runs"]["fct"]])
    v1 = up["vectors"]["v1"]
    ids = list(range(len(v1)))
    case = fill_source("parquet", tmp_path, ids, v1, [str(i % 6) for i in ids])
    done = run_without_torch("migrate", "--bundle", str(bundle), "--from", case.source, "--to", case.target,
                             "--batch", "64", "--json", blocked=("torch",))
    assert done.returncode == 0, done.stderr
    assert '"status": "completed"' in done.stdout
    loaded = load_bundle(bundle)
    assert loaded.runtime == "onnx"
    got = read_all(case.target)
    written = np.stack([got[str(i)][0] for i in ids])
    np.testing.assert_allclose(written, loaded(v1, normalise_output=True), rtol=1e-6, atol=1e-6)
