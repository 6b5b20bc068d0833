"""A migration resumed after its source changed under the points already copied is refused before it writes.

The checkpoint's cursor says where to continue; only the chain of hashes of the batches copied
(:mod:`embridge.core.connectors.source_digest`) says the points before it are still the source's.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from store_fixtures import fct_upgrade, fill_source, read_all

from embridge.core.connectors import open_store
from embridge.core.connectors.connector import VectorStoreError
from embridge.core.connectors.migration import migrate_store
from embridge.core.errors import Cancelled

BATCH = 50


@pytest.fixture(scope="module")
def upgrade(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return fct_upgrade(tmp_path_factory.mktemp("changed"))


def _stop_after(batches: int) -> Callable[[], bool]:
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > batches

    return stop


def _edit_parquet_payload(folder: Path) -> None:
    """Change the body of the first point of the first file (a point the stopped run has copied)."""
    part = folder / "part-0.parquet"
    table = pq.read_table(part)
    bodies = table.column("body").to_pylist()
    bodies[0] = "edited after the migration copied it"
    pq.write_table(table.set_column(table.schema.get_field_index("body"), "body", pa.array(bodies)), part)


def _edit_qdrant_vector(root: Path, point: int, vector: np.ndarray) -> None:
    from qdrant_client import QdrantClient, models

    client = QdrantClient(path=str(root / "qdrant"))
    try:
        client.upsert("docs_v1", points=[models.PointStruct(id=point, vector=vector.tolist(),
                                                            payload={"label": "x", "body": "moved"})])
    finally:
        client.close()


@pytest.mark.parametrize("kind", ["parquet", "qdrant"])
def test_a_resume_after_a_copied_point_changed_is_refused_and_writes_nothing(kind: str, upgrade: dict,
                                                                             tmp_path: Path) -> None:
    v1, labels = upgrade["vectors"]["v1"], upgrade["labels"]
    ids = [int(i) + 1 for i in range(len(v1))]
    case = fill_source(kind, tmp_path, ids, v1, labels)
    with pytest.raises(Cancelled):
        migrate_store(upgrade["bundle"], case.source, case.target, batch_size=BATCH, should_stop=_stop_after(3))
    before = read_all(case.target)
    with open_store(case.target) as target:
        checkpoint = target.load_state("migrate-docs_v2")
    written = checkpoint["written"]
    assert 2 * BATCH < written == len(before) < len(ids)  # parquet batches end at its files' ends too

    if kind == "parquet":
        _edit_parquet_payload(tmp_path / "pq" / "docs_v1")
    else:
        _edit_qdrant_vector(tmp_path, ids[0], -v1[0])
    with pytest.raises(VectorStoreError, match=r"changed since the migration into .* started \(points among the "
                                               rf"{written} it has copied were edited") as refused:
        migrate_store(upgrade["bundle"], case.source, case.target, batch_size=BATCH)
    assert "resumes there" not in str(refused.value)  # one remedy: a rerun would be refused the same way
    after = read_all(case.target)  # nothing more written, nothing removed
    assert sorted(after) == sorted(before)
    for pid, (vec, payload) in before.items():
        np.testing.assert_array_equal(after[pid][0], vec)
        assert after[pid][1] == payload
    with open_store(case.target) as target:  # as it was, and marked: check says a rerun cannot finish it
        assert target.load_state("migrate-docs_v2") == {**checkpoint, "source_changed": True}


def test_a_resume_of_an_unchanged_source_keeps_its_first_batch_size(upgrade: dict, tmp_path: Path) -> None:
    """The chain is recomputed with the batches it was recorded with, so a resume with another --batch
    continues in the first size and a second resume still finds the source unchanged."""
    v1, labels = upgrade["vectors"]["v1"], upgrade["labels"]
    ids = [int(i) + 1 for i in range(len(v1))]
    case = fill_source("qdrant", tmp_path, ids, v1, labels)
    with pytest.raises(Cancelled):
        migrate_store(upgrade["bundle"], case.source, case.target, batch_size=BATCH, should_stop=_stop_after(2))
    with pytest.raises(Cancelled):
        migrate_store(upgrade["bundle"], case.source, case.target, batch_size=7, should_stop=_stop_after(2))
    with open_store(case.target) as target:
        assert target.load_state("migrate-docs_v2")["written"] == 4 * BATCH
    done = migrate_store(upgrade["bundle"], case.source, case.target, batch_size=300)
    assert done.status == "completed" and done.resumed_from == 4 * BATCH
    assert done.verification.target_count == len(ids) and sorted(read_all(case.target), key=int) == [str(i) for i in ids]


def _edit_after(batches: int, edit: Callable[[], None]) -> Callable[[], bool]:
    """A stop check that never stops, and edits the source once ``batches`` batches were written."""
    calls = {"n": 0}

    def check() -> bool:
        calls["n"] += 1
        if calls["n"] == batches + 1:
            edit()
        return False

    return check


def _edit_lance_body(root: Path, point: int) -> None:
    import lancedb

    lancedb.connect(str(root / "lance")).open_table("docs_v1").update(where=f"id = {point}",
                                                                      values={"body": "edited while migrating"})


@pytest.mark.parametrize("kind", ["parquet", "lancedb"])  # a local Qdrant folder takes one client at a time
def test_a_source_edited_during_one_run_is_not_switched_to_nor_called_complete(kind: str, upgrade: dict,
                                                                            tmp_path: Path) -> None:
    """A point edited after the run had copied it: the run finished, verified its sample and moved the
    alias to a shadow holding the old vector; a rerun said 'already complete ... verified'."""
    v1, labels = upgrade["vectors"]["v1"], upgrade["labels"]
    ids = [int(i) + 1 for i in range(len(v1))]
    case = fill_source(kind, tmp_path, ids, v1, labels)
    edit = ((lambda: _edit_parquet_payload(tmp_path / "pq" / "docs_v1")) if kind == "parquet"
            else (lambda: _edit_lance_body(tmp_path, ids[0])))
    with pytest.raises(VectorStoreError, match=r"changed since the migration into .* started .*; the alias was not "
                                               r"moved: drop 'docs_v2' to migrate again"):
        migrate_store(upgrade["bundle"], case.source, case.target, batch_size=BATCH, switch=True, alias="docs",
                      should_stop=_edit_after(2, edit))
    with open_store(case.alias_uri) as alias:
        assert not alias.exists()  # nothing serves the shadow
    # never verified complete: a rerun cannot finish it, and check says so
    with pytest.raises(VectorStoreError, match=r"changed since .*; the shadow was left as it is: drop 'docs_v2'"):
        migrate_store(upgrade["bundle"], case.source, case.target, batch_size=BATCH)
    with pytest.raises(VectorStoreError, match=r"changed since .*; the alias was not moved"):
        migrate_store(upgrade["bundle"], case.source, case.target, batch_size=BATCH, switch=True, alias="docs")
    with open_store(case.target) as target:
        assert target.load_state("migrate-docs_v2")["source_changed"] is True


@pytest.mark.parametrize("kind", ["parquet", "lancedb"])
def test_a_complete_migration_run_again_after_its_source_changed_says_so_and_refuses_only_to_switch(
        kind: str, upgrade: dict, tmp_path: Path) -> None:
    """A rerun said 'already complete ... verified' of a shadow that no longer held its source; a complete
    shadow may already serve, so the rerun says the change (no 'drop'), and only a switch onto it is refused."""
    v1, labels = upgrade["vectors"]["v1"], upgrade["labels"]
    ids = [int(i) + 1 for i in range(len(v1))]
    case = fill_source(kind, tmp_path, ids, v1, labels)
    done = migrate_store(upgrade["bundle"], case.source, case.target, batch_size=BATCH)
    assert done.status == "completed" and done.warning is None
    _edit_parquet_payload(tmp_path / "pq" / "docs_v1") if kind == "parquet" else _edit_lance_body(tmp_path, ids[0])
    again = migrate_store(upgrade["bundle"], case.source, case.target, batch_size=BATCH)
    assert again.status == "already complete" and "changed since the migration copied it" in (again.warning or "")
    assert "drop" not in again.warning
    with pytest.raises(VectorStoreError, match=r"changed since .*; the alias was not moved"):
        migrate_store(upgrade["bundle"], case.source, case.target, batch_size=BATCH, switch=True, alias="docs")
    with open_store(case.target) as target:  # complete: check says so, and nothing asks to drop it
        assert "source_changed" not in target.load_state("migrate-docs_v2")


def test_a_parquet_source_read_from_a_cursor_in_other_batches_is_not_taken_for_a_changed_one(
        upgrade: dict, tmp_path: Path) -> None:
    """Row groups of 170 and batches of 250: the copy, reading on from a cursor, cut its batches at other
    points than a read from the start, and every --switch of an untouched source was refused as changed."""
    v1 = np.concatenate([upgrade["vectors"]["v1"]] * 5)[:1000]
    folder = tmp_path / "pq" / "docs_v1"
    folder.mkdir(parents=True)
    table = pa.table({"id": pa.array(range(1000), pa.int64()),
                      "vector": pa.FixedSizeListArray.from_arrays(pa.array(v1.ravel()), v1.shape[1]),
                      "label": [str(i % 7) for i in range(1000)]})
    pq.write_table(table, folder / "part-0.parquet", row_group_size=170)
    base = f"parquet://{tmp_path / 'pq'}"
    done = migrate_store(upgrade["bundle"], f"{base}/docs_v1", f"{base}/docs_v2", batch_size=250, switch=True,
                         alias="docs")
    assert done.status == "completed" and done.switched
    again = migrate_store(upgrade["bundle"], f"{base}/docs_v1", f"{base}/docs_v2", batch_size=250)
    assert again.status == "already complete" and again.warning is None


def test_a_run_stopped_before_a_source_grew_says_a_rerun_cannot_finish_it(upgrade: dict, tmp_path: Path) -> None:
    """The same options, a source that gained points: 'run it with the same options' could not help."""
    v1, labels = upgrade["vectors"]["v1"], upgrade["labels"]
    ids = [int(i) + 1 for i in range(len(v1))]
    case = fill_source("parquet", tmp_path, ids, v1, labels)
    with pytest.raises(Cancelled):
        migrate_store(upgrade["bundle"], case.source, case.target, batch_size=BATCH, should_stop=_stop_after(2))
    extra = tmp_path / "pq" / "docs_v1" / "part-9.parquet"
    table = pq.read_table(tmp_path / "pq" / "docs_v1" / "part-0.parquet")
    pq.write_table(table.set_column(0, "id", pa.array(np.arange(10_000, 10_000 + table.num_rows))), extra)
    with pytest.raises(VectorStoreError, match=rf"its migration read a source of {len(ids)} points, which holds "
                                               rf"{len(ids) + table.num_rows} now .*drop 'docs_v2'"):
        migrate_store(upgrade["bundle"], case.source, case.target, batch_size=BATCH)
    with open_store(case.target) as target:
        assert target.load_state("migrate-docs_v2")["source_changed"] is True
    extra.unlink()  # the source as it was: the run resumes and finishes, and the mark goes
    done = migrate_store(upgrade["bundle"], case.source, case.target, batch_size=BATCH)
    assert done.status == "completed" and done.resumed_from > 0
    with open_store(case.target) as target:
        assert "source_changed" not in target.load_state("migrate-docs_v2")


def test_a_chroma_point_deleted_during_a_run_is_found_before_the_run_says_it_verified(upgrade: dict,
                                                                                    tmp_path: Path) -> None:
    """Chroma pages by offset: a point deleted below the cursor shifted the next page by one, an untouched
    point was never copied, the counts still agreed and the run said 'verified'."""
    import chromadb
    from chromadb.config import Settings

    v1, labels = upgrade["vectors"]["v1"], upgrade["labels"]
    ids = [int(i) + 1 for i in range(len(v1))]
    case = fill_source("chroma", tmp_path, ids, v1, labels)

    def delete_a_copied_point() -> None:
        client = chromadb.PersistentClient(path=str(tmp_path / "chroma"), settings=Settings(anonymized_telemetry=False))
        client.get_collection("docs_v1").delete(ids=[str(ids[3])])

    with pytest.raises(VectorStoreError, match=r"changed since the migration into .*; the shadow was left as it is: "
                                               r"drop 'docs_v2'"):
        migrate_store(upgrade["bundle"], case.source, case.target, batch_size=BATCH,
                      should_stop=_edit_after(2, delete_a_copied_point))
    with open_store(case.target) as target:
        assert target.load_state("migrate-docs_v2")["source_changed"] is True
