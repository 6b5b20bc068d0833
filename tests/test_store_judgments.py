"""Judgments in the store: query and document keys in separate namespaces, all-or-nothing writes,
the array form with its per-split and relevant-set views."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers.workspace_files import checkpoint, snapshot

from embridge.core.errors import ImportDataError, StoreError
from embridge.core.store import Workspace
from embridge.core.store.judgments import Judgments


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = Workspace.create(tmp_path / "ws")
    workspace.add_items([{"key": k, "split": "gallery"} for k in ("d1", "d2", "d3", "q1")])
    workspace.add_items([{"key": k, "split": "query"} for k in ("q1", "q2", "d1")])
    yield workspace
    workspace.close()


def test_query_and_document_keys_are_separate_namespaces(ws: Workspace) -> None:
    docs, queries = ws.doc_ids_for_keys(["d1", "q1"]), ws.query_ids_for_keys(["q1", "d1"])
    assert docs.tolist() == [1, 4] and queries.tolist() == [5, 7]
    assert ws.item_ids(namespace="query").tolist() == [5, 6, 7]
    assert ws.ids_for_keys(["q2", "d1"]).tolist() == [6, 1]  # either namespace; a shared key means the document
    assert ws.existing_keys(["q2", "d2"], "query") == {"q2"}
    with pytest.raises(StoreError, match=r"1 unknown query keys, e\.g\. \['d2'\]"):
        ws.query_ids_for_keys(["d2"])
    with pytest.raises(ImportDataError, match="1 key already exists in the workspace: q2"):
        ws.add_items([{"key": "q2", "split": "query"}, {"key": "q3", "split": "query"}])


def test_judgments_round_trip_and_views(ws: Workspace) -> None:
    q1, q2, qd1 = ws.query_ids_for_keys(["q1", "q2", "d1"]).tolist()
    d1, d2, d3 = ws.doc_ids_for_keys(["d1", "d2", "d3"]).tolist()
    added = Judgments.from_arrays([q2, q1, q1, q2, qd1], [d1, d2, d1, d3, d1], [0, 2, 1, 3, 1],
                                  ["test", "train", "train", "test", "dev"])
    assert ws.add_judgments(added) == 5 and ws.has_judgments()
    stored = ws.judgments()
    assert len(stored) == 5
    assert list(zip(stored.query_ids.tolist(), stored.item_ids.tolist(), stored.grades.tolist(),
                    stored.splits.tolist(), strict=True)) == [
        (q1, d1, 1, "train"), (q1, d2, 2, "train"), (q2, d1, 0, "test"), (q2, d3, 3, "test"), (qd1, d1, 1, "dev")]
    assert stored.relevant_sets() == {q1: {d1: 1, d2: 2}, q2: {d3: 3}, qd1: {d1: 1}}  # grade 0 kept out
    test = ws.judgments("test")
    assert test.query_ids_unique().tolist() == [q2] and len(test) == 2
    assert stored.for_split("test").item_ids.tolist() == test.item_ids.tolist() == [d1, d3]
    assert ws.judgment_counts() == {"dev": {"judgments": 1, "relevant": 1, "queries": 1},
                                    "test": {"judgments": 2, "relevant": 1, "queries": 1},
                                    "train": {"judgments": 2, "relevant": 2, "queries": 1}}
    assert stored.split_counts() == ws.judgment_counts()
    assert len(ws.judgments("dev").for_split("train")) == 0


@pytest.mark.parametrize(("judgments", "message"), [
    (([5], [6], [1], ["test"]), r"1 ids are not document items of the workspace, e\.g\. \[6\]"),
    (([1], [2], [1], ["test"]), r"1 ids are not query items of the workspace, e\.g\. \[1\]"),
    (([5, 5], [1, 1], [1, 2], ["test", "test"]), r"the pair \(query item 5, item 1\) is judged more than once"),
    (([5], [1], [1], ["holdout"]), "unknown split 'holdout'"),
    (([5], [1], [-1], ["test"]), "negative grade -1"),
    (([5, 6], [2, 1], [1, 1], ["test", "test"]),
     r"query 'q2' and item 'd1' are already judged in the workspace \(1 pair in all\)"),
])
def test_bad_judgments_store_nothing(ws: Workspace, judgments: tuple, message: str) -> None:
    ws.add_judgments(Judgments.from_arrays([6], [1], [1], ["dev"]))
    checkpoint(ws)
    before = snapshot(ws.root)
    with pytest.raises(ImportDataError, match=message):
        ws.add_judgments(Judgments.from_arrays(*judgments))
    checkpoint(ws)
    assert snapshot(ws.root) == before
    assert len(ws.judgments()) == 1


def test_judgments_can_be_added_as_arrays(ws: Workspace) -> None:
    assert ws.add_judgments(query_ids=[5, 6], item_ids=[1, 2], grades=[2, 0], splits=["dev", "test"]) == 2
    assert ws.judgments("dev").grades.tolist() == [2] and ws.judgments("test").item_ids.tolist() == [2]
    with pytest.raises(ImportDataError, match="judgment arrays differ in length"):
        ws.add_judgments(query_ids=[5], item_ids=[3, 4], grades=[1], splits=["dev"])
    with pytest.raises(ImportDataError, match="give a Judgments or all of"):
        ws.add_judgments(query_ids=[5])


def test_empty_workspace_has_no_judgments(tmp_path: Path) -> None:
    with Workspace.create(tmp_path / "e") as ws:
        empty = ws.judgments("train")
        assert not ws.has_judgments() and len(empty) == 0 and empty.relevant_sets() == {}
        assert empty.query_ids.dtype == np.int64 and empty.grades.dtype == np.int32
        with pytest.raises(StoreError, match="unknown judgment split 'query'"):
            ws.judgments("query")


def test_store_refuses_a_second_split_for_a_judged_query(ws: Workspace) -> None:
    ws.add_judgments(query_ids=[5], item_ids=[1], grades=[1], splits=["test"])
    checkpoint(ws)
    before = snapshot(ws.root)
    with pytest.raises(ImportDataError, match="query item 5 is given split 'train' but is already in split 'test'"):
        ws.add_judgments(query_ids=[6, 5], item_ids=[1, 2], grades=[1, 1], splits=["train", "train"])
    with pytest.raises(ImportDataError, match="query item 6 is given splits 'dev' and 'test'"):
        ws.add_judgments(query_ids=[6, 6], item_ids=[1, 2], grades=[1, 1], splits=["dev", "test"])
    checkpoint(ws)
    assert snapshot(ws.root) == before
    assert ws.add_judgments(query_ids=[5], item_ids=[2], grades=[0], splits=["test"]) == 1


@pytest.mark.parametrize("grade", [1_000_001, 2**31, 10**20])
def test_store_refuses_too_large_grades(ws: Workspace, grade: int) -> None:
    with pytest.raises(ImportDataError, match="grades are 0 to 1000000"):
        ws.add_judgments(query_ids=[5], item_ids=[1], grades=[grade], splits=["test"])
    assert not ws.has_judgments()
