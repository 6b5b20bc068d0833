"""Vector files are streamed, never loaded whole: memory-mapped when stored, decompressed in blocks
when compressed; their rows attach to existing documents and queries by key, and a vectors-only
model stores each vector once."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from helpers.workspace_files import checkpoint, snapshot

from embridge.core.cli.main import main
from embridge.core.embed import embed_items
from embridge.core.errors import ImportDataError, VectorFileError
from embridge.core.importers import import_items
from embridge.core.models import describe_model, save_vectors_model
from embridge.core.store import Workspace
from embridge.core.vector_files import VectorFile

RNG = np.random.default_rng(11)


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_reader_streams_stored_and_compressed_members_alike(tmp_path: Path, save) -> None:
    matrix = RNG.normal(size=(1000, 7)).astype(np.float32)
    path = tmp_path / "v.npz"
    save(path, ids=np.array([f"k{i}" for i in range(1000)]), vectors=matrix,
         query_ids=np.array(["a", "b"]), query_vectors=np.asfortranarray(matrix[:2].astype(np.float16))
         if save is np.savez else matrix[:2].astype(np.float16))
    vf = VectorFile.open(path)
    assert vf.vectors.mapped == (save is np.savez) and vf.keys[3] == "k3" and vf.query_keys == ["a", "b"]
    blocks = list(vf.vectors.blocks(block_rows=300))
    assert [start for start, _ in blocks] == [0, 300, 600, 900]
    np.testing.assert_array_equal(np.concatenate([b for _, b in blocks]), matrix)
    rows = np.array([999, 5, 300, 299, 5])
    np.testing.assert_array_equal(vf.vectors.lookup(rows), matrix[rows])
    assert vf.query_vectors.storage_dtype == "float16"
    np.testing.assert_array_equal(vf.query_vectors.lookup(np.array([1, 0])), matrix[[1, 0]].astype(np.float16))


def test_bad_rows_are_named_by_their_row_in_the_file(tmp_path: Path) -> None:
    matrix = np.ones((50, 3), np.float32)
    matrix[37, 1] = np.inf
    np.savez_compressed(tmp_path / "c.npz", ids=np.arange(50), vectors=matrix)
    with pytest.raises(VectorFileError, match=r"c\.npz: row 37 holds NaN or inf"):
        list(VectorFile.open(tmp_path / "c.npz").vectors.blocks(block_rows=8))
    np.savez(tmp_path / "s.npz", ids=np.arange(50), vectors=matrix)
    with pytest.raises(VectorFileError, match=r"s\.npz: row 37 holds NaN or inf"):
        VectorFile.open(tmp_path / "s.npz").vectors.lookup(np.array([1, 37]))
    np.savez(tmp_path / "q.npz", ids=np.arange(50), vectors=matrix, query_ids=np.arange(3))
    with pytest.raises(VectorFileError, match="needs both 'query_ids' and 'query_vectors'"):
        VectorFile.open(tmp_path / "q.npz")


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    """Documents d0..d99 plus a document '7'; queries q0..q9 plus a query '7' (the same key)."""
    workspace = Workspace.create(tmp_path / "ws")
    workspace.add_items([{"key": f"d{i}", "split": "gallery"} for i in range(100)] + [{"key": "7", "split": "gallery"}])
    workspace.add_items([{"key": f"q{i}", "split": "query"} for i in range(10)] + [{"key": "7", "split": "query"}])
    workspace.add_model("new", "new", {"kind": "vectors", "dim": 8}, None)
    yield workspace
    workspace.close()


def _sample_file(path: Path, compressed: bool = False) -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    """New-model vectors for a sample of the documents (in shuffled order) and for some queries."""
    docs = [f"d{i}" for i in RNG.permutation(100)[:30]] + ["7"]
    queries = ["7", "q3", "q0"]
    dv, qv = RNG.normal(size=(len(docs), 8)).astype(np.float32), RNG.normal(size=(3, 8)).astype(np.float32)
    (np.savez_compressed if compressed else np.savez)(path, ids=np.array(docs), vectors=dv,
                                                      query_ids=np.array(queries), query_vectors=qv)
    return docs, dv, queries, qv


@pytest.mark.parametrize("compressed", [False, True])
def test_import_attaches_vectors_to_existing_documents_and_queries(ws: Workspace, tmp_path: Path,
                                                                   compressed: bool) -> None:
    docs, dv, queries, qv = _sample_file(tmp_path / "new.npz", compressed)
    out = import_items(ws, tmp_path / "new.npz", fmt="vectors", model="new")
    assert (out["count"], out["attached"], out["already_stored"]) == (0, 34, 0)
    assert len(ws.item_ids()) == 112  # no item was added
    np.testing.assert_array_equal(ws.vectors_for("new", ws.doc_ids_for_keys(docs)), dv)
    np.testing.assert_array_equal(ws.vectors_for("new", ws.query_ids_for_keys(queries)), qv)
    assert not np.array_equal(ws.vectors_for("new", ws.doc_ids_for_keys(["7"])),
                              ws.vectors_for("new", ws.query_ids_for_keys(["7"])))
    again = import_items(ws, tmp_path / "new.npz", fmt="vectors", model="new")
    assert again["attached"] == 0 and again["already_stored"] == 34 and len(ws.vector_sets("new")) == 1
    broken = dv.copy()
    broken[4, 2] = np.nan  # the same items again, in a file that holds a NaN: refused, not passed over
    np.savez(tmp_path / "nan.npz", ids=np.array(docs), vectors=broken, query_ids=np.array(queries), query_vectors=qv)
    with pytest.raises(VectorFileError, match=r"nan\.npz.*row 4 holds NaN"):
        import_items(ws, tmp_path / "nan.npz", fmt="vectors", model="new")
    assert len(ws.vector_sets("new")) == 1


def test_a_models_own_file_changed_since_it_was_added_is_refused_as_embed_refuses_it(ws: Workspace,
                                                                                     tmp_path: Path) -> None:
    """Rewritten after model add, the model's own file was attached (exit 0) while embed refused it: the stored
    vectors no longer matched the checksum reports and bundles carry."""
    from embridge.core.cli.main import main

    docs = [f"d{i}" for i in range(10)]
    path = tmp_path / "own.npz"
    np.savez(path, ids=np.array(docs), vectors=RNG.normal(size=(10, 8)).astype(np.float32))
    assert main(["model", "add", "-w", str(ws.root), "--name", "own", "--path", str(path)]) == 0
    np.savez(path, ids=np.array(docs), vectors=-3 * RNG.normal(size=(10, 8)).astype(np.float32))
    with pytest.raises(VectorFileError, match=r"own\.npz: the file of model 'own' changed since the model was added"):
        import_items(ws, path, fmt="vectors", model="own")
    assert ws.vector_sets("own") == []


def test_vectors_wider_than_any_embedding_are_refused_before_a_block_is_read(ws: Workspace, tmp_path: Path) -> None:
    """A 467 KB compressed file of two 60M-value rows took 4.5 GB at model add: blocks were 4096 rows whatever
    the width. A width beyond 65,536 is refused from the header; a wide one that passes is read in smaller
    blocks."""
    from embridge.core.vector_files import BLOCK_VALUES, rows_per_block

    path = tmp_path / "wide.npz"
    np.savez_compressed(path, ids=np.array(["d1", "d2"]), vectors=np.zeros((2, 70_000), dtype=np.float32))
    with pytest.raises(VectorFileError, match=r"wide\.npz: vectors of 70,000 values each; Embridge takes at most 65,536"):
        import_items(ws, path, fmt="vectors", model="new")
    assert rows_per_block(384) == 4096 and rows_per_block(65_536) * 65_536 <= BLOCK_VALUES


def test_existing_documents_and_new_queries_in_one_file(ws: Workspace, tmp_path: Path) -> None:
    """Documents that exist get the vectors attached and queries new to the workspace become items
    holding theirs, in one vector set of the model; a second import stores nothing again."""
    docs = ["d5", "d1", "d9"]
    queries = ["fresh-b", "fresh-a"]
    dv, qv = RNG.normal(size=(3, 8)).astype(np.float32), RNG.normal(size=(2, 8)).astype(np.float32)
    np.savez(tmp_path / "side.npz", ids=np.array(docs), vectors=dv, query_ids=np.array(queries), query_vectors=qv)
    out = import_items(ws, tmp_path / "side.npz", fmt="vectors", model="new")
    assert (out["count"], out["attached"], out["already_stored"]) == (2, 5, 0)
    assert {(i["key"], i["split"]) for i in ws.items(ids=ws.query_ids_for_keys(queries).tolist())} == {
        ("fresh-b", "query"), ("fresh-a", "query")}
    np.testing.assert_array_equal(ws.vectors_for("new", ws.doc_ids_for_keys(docs)), dv)
    np.testing.assert_array_equal(ws.vectors_for("new", ws.query_ids_for_keys(queries)), qv)
    again = import_items(ws, tmp_path / "side.npz", fmt="vectors", model="new")
    assert (again["count"], again["attached"], again["already_stored"]) == (0, 0, 5)


@pytest.mark.parametrize("with_queries", [False, True])
def test_keys_resolve_alike_by_index_look_ups_and_by_one_scan(ws: Workspace, with_queries: bool) -> None:
    """A few keys take indexed look-ups, many take one scan of the namespace: same ids either way,
    documents before queries for a shared key, queries only when asked, -1 for unknown keys."""
    from embridge.core.vector_attach import key_ids

    few = ["d3", "q2", "7", "nope"]
    many = [f"d{i}" for i in range(90)] + few
    for keys in (few, many):
        got = key_ids(ws, keys, "doc", with_queries=with_queries)
        by_key = dict(zip(keys, got.tolist(), strict=True))
        assert by_key["d3"] == ws.doc_ids_for_keys(["d3"])[0] and by_key["7"] == ws.doc_ids_for_keys(["7"])[0]
        assert by_key["q2"] == (ws.query_ids_for_keys(["q2"])[0] if with_queries else -1)
        assert by_key["nope"] == -1
    assert len(few) * 2 < ws.item_count() <= len(many) * 2  # the two cases take the two paths


def test_a_writer_outside_a_transaction_checks_its_ids_even_when_told_they_are(ws: Workspace) -> None:
    """``ids_checked`` is honoured only inside the caller's write transaction, where the ids were read."""
    from embridge.core.errors import StoreError

    with pytest.raises(StoreError, match=r"unknown item ids, e\.g\. \[9999\]"):
        ws.vector_set_writer("new", np.array([1, 9999]), 8, ids_checked=True)


def test_mixed_new_and_existing_keys_or_no_model_store_nothing(ws: Workspace, tmp_path: Path) -> None:
    np.savez(tmp_path / "mixed.npz", ids=np.array(["d1", "fresh"]), vectors=np.ones((2, 8)))
    np.savez(tmp_path / "old.npz", ids=np.array(["d1", "d2"]), vectors=np.ones((2, 8)))
    checkpoint(ws)
    before = snapshot(ws.root)
    with pytest.raises(ImportDataError, match=r"mixed\.npz: 1 key already exists in the workspace: d1, "
                                              r"and 1 does not: fresh"):
        import_items(ws, tmp_path / "mixed.npz", model="new")
    with pytest.raises(ImportDataError, match=r"old\.npz: 2 keys already exist.*pass --model NAME"):
        import_items(ws, tmp_path / "old.npz")
    bad = np.ones((2, 8))
    bad[1, 2] = np.nan
    np.savez(tmp_path / "nan.npz", ids=np.array(["d1", "d2"]), vectors=bad)
    with pytest.raises(VectorFileError, match=r"nan\.npz: row 1 holds NaN"):
        import_items(ws, tmp_path / "nan.npz", model="new")
    checkpoint(ws)
    assert snapshot(ws.root) == before


def test_vectors_only_model_references_its_file_and_embeds_covered_items(ws: Workspace, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    docs, dv, queries, qv = _sample_file(tmp_path / "newer.npz")
    spec = describe_model(tmp_path / "newer.npz")
    ws.add_model("newer", "other", spec.to_dict(), tmp_path / "newer.npz")
    assert not any((ws.root / "models").iterdir())  # referenced, not copied
    gallery = ws.item_ids("gallery")
    info = embed_items(ws, "newer", gallery, device="cpu")
    assert (info["count"], info["not_covered"]) == (len(docs), 101 - len(docs))
    assert set(ws.ids_with_vectors("newer").tolist()) == set(ws.doc_ids_for_keys(docs).tolist())
    info = embed_items(ws, "newer", ws.item_ids(), device="cpu")  # the queries are new, the documents not
    assert (info["written"], info["already_stored"]) == (len(queries), len(docs))
    np.testing.assert_array_equal(ws.vectors_for("newer", ws.query_ids_for_keys(queries)), qv)
    np.testing.assert_array_equal(ws.vectors_for("newer", ws.doc_ids_for_keys(docs)), dv)
    stored_rows = sum(s["count"] for s in ws.vector_sets("newer"))
    assert stored_rows == len(docs) + len(queries)  # each vector once
    root, total = str(ws.root), len(ws.item_ids())
    ws.close()
    assert main(["embed", "--workspace", root, "--model", "newer", "--json"]) == 0  # every item asked: none new
    out = json.loads(capsys.readouterr().out)
    lacking = total - len(docs) - len(queries)
    assert (out["written"], out["already_stored"], out["not_covered"]) == (0, len(docs) + len(queries), lacking)
    assert main(["embed", "--workspace", root, "--model", "newer"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("nothing new stored for newer") and "embedded" not in text
    assert f"{lacking} are not in its vector file" in text and lacking > 0


def test_embed_cli_with_a_sample_of_the_gallery(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = str(tmp_path / "w")
    with Workspace.create(root) as ws:
        ws.add_items([{"key": f"g{i}", "split": "gallery"} for i in range(40)])
    keys = [f"g{i}" for i in range(0, 40, 4)]
    save_vectors_model(tmp_path / "sample.npz", keys, RNG.normal(size=(10, 6)).astype(np.float32))
    assert main(["model", "add", "-w", root, "--name", "new", "--path", str(tmp_path / "sample.npz")]) == 0
    assert main(["embed", "-w", root, "--model", "new", "--split", "gallery", "--json"]) == 0
    assert '"count": 10' in capsys.readouterr().out


def test_a_vectors_file_moved_away_after_its_vectors_are_stored_is_a_note_not_damage(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The docs say to keep the file until its vectors are stored. Moved away after that, `info --verify` failed
    for good (DAMAGED, exit 1) and an embed with nothing left to store failed on the missing file."""
    root = str(tmp_path / "w")
    with Workspace.create(root) as ws:
        ws.add_items([{"key": f"g{i}", "split": "gallery"} for i in range(40)])
    vectors = tmp_path / "all.npz"
    save_vectors_model(vectors, [f"g{i}" for i in range(40)], RNG.normal(size=(40, 6)).astype(np.float32))
    assert main(["model", "add", "-w", root, "--name", "va", "--path", str(vectors)]) == 0
    assert main(["embed", "-w", root, "--model", "va"]) == 0
    vectors.rename(tmp_path / "elsewhere.npz")
    capsys.readouterr()
    assert main(["embed", "-w", root, "--model", "va"]) == 0
    assert capsys.readouterr().out.startswith("nothing new stored for va: its vector set 1 stays as it is")
    assert main(["info", "-w", root, "--verify"]) == 0
    text = capsys.readouterr().out
    assert "DAMAGED" not in text and "all intact" in text and "(and 1 file it references)" in text
    assert f"NOTE: model 'va' (the vectors file it references, not a copy) ({vectors}): missing" in text


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_attaching_streams_in_bounded_memory(ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             save) -> None:
    import embridge.core.vector_files

    monkeypatch.setattr(embridge.core.vector_files, "BLOCK_ROWS", 64)  # blocks of 256 KB: memory is a few blocks
    n = 100
    matrix = RNG.normal(size=(10_000, 1024)).astype(np.float32)  # 41 MB; keys take a few MB more
    keys = [f"d{i}" for i in range(n)] + [f"other{i}" for i in range(10_000 - n)]
    save(tmp_path / "big.npz", ids=np.array(keys), vectors=matrix)
    ws.add_model("big", "other", {"kind": "vectors", "dim": 1024}, None)
    ws.add_items([{"key": k, "split": "gallery"} for k in keys[n:]])
    tracemalloc.start()
    try:
        import_items(ws, tmp_path / "big.npz", model="big")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < matrix.nbytes / 4, f"peak {peak / 1e6:.1f} MB for a {matrix.nbytes / 1e6:.1f} MB matrix"
    rows = np.array([5, 9_999, 2_345])
    np.testing.assert_array_equal(ws.vectors_for("big", ws.doc_ids_for_keys([keys[r] for r in rows])), matrix[rows])


def test_cli_attaches_vectors_and_stores_qrels_with_them(ws: Workspace, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    docs, dv, queries, qv = _sample_file(tmp_path / "new.npz")
    (tmp_path / "judged.tsv").write_text("q3\td5\t2\ttest\n7\t7\t1\tdev\n")
    root = str(ws.root)
    code = main(["import", "-w", root, "--format", "vectors", "--path", str(tmp_path / "new.npz"), "--model", "new",
                 "--qrels", str(tmp_path / "judged.tsv")])
    out = capsys.readouterr().out
    assert code == 0 and "stored vectors of model new for 34 items (0 already had them)" in out
    assert "stored 2 judgments" in out
    assert ws.judgments("dev").relevant_sets() == {int(ws.query_ids_for_keys(["7"])[0]):
                                                   {int(ws.doc_ids_for_keys(["7"])[0]): 1}}


def test_cli_vectors_without_a_model_says_only_their_keys_were_stored(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    root = str(tmp_path / "fresh")
    assert main(["init", "-w", root]) == 0
    np.savez(tmp_path / "g.npz", ids=np.array([f"k{i}" for i in range(30)]),
             vectors=np.random.default_rng(0).standard_normal((30, 8)).astype(np.float32))
    capsys.readouterr()
    assert main(["import", "-w", root, "--format", "vectors", "--path", str(tmp_path / "g.npz")]) == 0
    out = capsys.readouterr().out
    assert "imported 30 items (vectors)" in out
    assert "only their keys: the vectors were not stored (pass --model NAME" in out
    with Workspace.open(root) as ws:
        assert ws.vector_sets() == [] and ws.item_count() == 30


def test_a_file_name_that_is_no_valid_set_name_gives_its_set_a_valid_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The set is named after the file when --split is not given; a name the user never chose as one
    (spaces, accents, 70 characters) is made valid instead of refused."""
    ws_dir = tmp_path / "ws"
    keys = np.array([f"k{i}" for i in range(30)])
    good = tmp_path / "good.npz"
    np.savez(good, ids=keys, vectors=RNG.normal(size=(30, 6)))
    assert main(["init", "-w", str(ws_dir)]) == 0
    assert main(["model", "add", "-w", str(ws_dir), "--path", str(good), "--name", "old", "--role", "old"]) == 0
    assert main(["import", "-w", str(ws_dir), "--path", str(good), "--split", "gallery"]) == 0
    odd = tmp_path / f"my vecteurs été {'x' * 60}.npz"
    np.savez(odd, ids=keys, vectors=RNG.normal(size=(30, 6)))
    assert main(["import", "-w", str(ws_dir), "--path", str(odd), "--model", "old"]) == 0, capsys.readouterr().err
    with Workspace.open(ws_dir) as ws:
        names = [s["name"] for s in ws.vector_sets("old")]
    assert names[-1] == ("my-vecteurs-ete-" + "x" * 60)[:64]
