"""Refusals of store commands: one line naming the option or file, and nothing stored or written.

Parquet (real files) carries the store-independent core: the import's all-or-nothing rule, where
store outputs may go, damaged files, aliases, and outputs left by refused scale-out jobs.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scale_fixtures import write_items
from store_fixtures import cli, fct_upgrade, fill_source, one_line

from embridge.core.connectors.gallery_import import import_from_store
from embridge.core.errors import ImportDataError
from embridge.core.store import Workspace


@pytest.fixture(scope="module")
def upgrade(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return fct_upgrade(tmp_path_factory.mktemp("store-refusals"))


@pytest.fixture
def source(upgrade: dict, tmp_path: Path) -> Any:
    v1 = upgrade["vectors"]["v1"]
    return fill_source("parquet", tmp_path, list(range(len(v1))), v1, upgrade["labels"])


def snapshot(ws: Path) -> tuple[list[str], list[str]]:
    """The workspace's rows (an SQL dump) and its files, to compare before and after a refusal."""
    with sqlite3.connect(ws / "embridge.db") as conn:
        rows = list(conn.iterdump())
    conn.close()
    files = sorted(str(p.relative_to(ws)) for p in ws.rglob("*") if p.is_file() and not p.name.endswith(("-wal", "-shm")))
    return rows, files


def fresh_workspace(path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    assert cli(capsys, "init", "--workspace", str(path))[0] == 0
    return path


def parquet_store(folder: Path, ids: list[Any], vectors: np.ndarray, parts: int = 1) -> str:
    """A Parquet dataset of (id, vector) rows in ``parts`` files; returns its URI."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True)
    for n, rows in enumerate(np.array_split(np.arange(len(ids)), parts)):
        flat = pa.array(vectors[rows].astype(np.float32).ravel())
        pq.write_table(pa.table({"id": pa.array([ids[r] for r in rows]),
                                 "vector": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])}),
                       folder / f"part-{n}.parquet")
    return f"parquet://{folder}"



def test_a_refused_store_import_stores_nothing(upgrade: dict, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    v1 = upgrade["vectors"]["v1"].copy()
    ws = fresh_workspace(tmp_path / "ws", capsys)
    before = snapshot(ws)
    bad = v1.copy()
    bad[7, 3] = np.nan
    nan_uri = parquet_store(tmp_path / "pq" / "nan_v1", [f"p{i}" for i in range(len(v1))], bad)
    code, _, err = cli(capsys, "import", "--workspace", str(ws), "--from", nan_uri, "--model", "vn")
    one_line(code, err, nan_uri, "'p7'", "NaN")
    assert snapshot(ws) == before  # no items, no model 'vn'
    with Workspace.open(ws) as w:  # the bad batch is the third: the two before it are taken back
        with pytest.raises(ImportDataError, match="'p7' holds NaN"):
            import_from_store(w, nan_uri, "vn", batch_size=3)
        assert w.item_count() == 0 and not w.has_model("vn")
    assert snapshot(ws) == before
    # an id twice in the collection, in batches of different files
    dup_uri = parquet_store(tmp_path / "pq" / "dup_v1", [*range(60), 5], v1[:61], parts=2)
    code, _, err = cli(capsys, "import", "--workspace", str(ws), "--from", dup_uri, "--model", "vd")
    one_line(code, err, dup_uri, "'5' occurs more than once")
    assert snapshot(ws) == before
    # keys that already exist: the second store is refused whole, its model is not registered
    ok_uri = parquet_store(tmp_path / "pq" / "a_v1", list(range(40)), v1[:40])
    assert cli(capsys, "import", "--workspace", str(ws), "--from", ok_uri, "--model", "va")[0] == 0
    after_first = snapshot(ws)
    clash_uri = parquet_store(tmp_path / "pq" / "b_v1", [*range(100, 135), *range(35, 40)], v1[:40])
    code, _, err = cli(capsys, "import", "--workspace", str(ws), "--from", clash_uri, "--model", "vb")
    one_line(code, err, "already exist")
    assert snapshot(ws) == after_first
    with Workspace.open(ws) as w:  # batches of 7: the clash comes after five batches were stored
        with pytest.raises(ImportDataError, match="already exist"):
            import_from_store(w, clash_uri, "vb", batch_size=7)
    assert snapshot(ws) == after_first


def test_store_ids_and_fields_are_held_to_the_importers_rules(upgrade: dict, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """An id another importer would store differently (NFD, a byte-order mark, a control character),
    a label that is an object and a text field that is not text or holds a NUL (which a JSONL import refuses) are
    refused with one line; nothing is stored."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    v1 = upgrade["vectors"]["v1"][:6].copy()
    ws = fresh_workspace(tmp_path / "ws", capsys)
    before = snapshot(ws)
    for name, odd in (("nfd", "cafe\u0301"), ("bom", "\ufeffx"), ("control", "a\x01b")):
        uri = parquet_store(tmp_path / "pq" / name, ["p0", odd, "p2"], v1[:3])
        code, _, err = cli(capsys, "import", "--workspace", str(ws), "--from", uri, "--model", "v" + name)
        one_line(code, err, uri, ascii(odd) if name != "control" else "control character")  # 'cafe\u0301
        assert snapshot(ws) == before
    for name, column, value, needle in (("label", "label", pa.array([{"a": 1}] * 3), "a label must be text"),
                                        ("text", "body", pa.array([[1, 2]] * 3), "not text"),
                                        ("nul", "body", pa.array(["a\x00b"] * 3), "control character U+0000")):
        folder = tmp_path / "pq" / f"field-{name}"
        folder.mkdir(parents=True)
        flat = pa.array(v1[:3].astype(np.float32).ravel())
        pq.write_table(pa.table({"id": pa.array(["a", "b", "c"]),
                                 "vector": pa.FixedSizeListArray.from_arrays(flat, v1.shape[1]), column: value}),
                       folder / "part-0.parquet")
        option = "--label-field" if name == "label" else "--text-field"
        code, _, err = cli(capsys, "import", "--workspace", str(ws), "--from", f"parquet://{folder}",
                           "--model", "vf" + name, option, column)
        one_line(code, err, "'a'", option, needle)
        assert snapshot(ws) == before


@pytest.mark.parametrize("option", ["--label-field", "--text-field"])
def test_a_field_asked_of_a_faiss_index_is_refused_before_anything_is_stored(
        upgrade: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str) -> None:
    """An index holds no fields: the import stored every item, then took them back, leaving the database file
    with free pages (its content as before, its bytes not)."""
    import faiss

    v1 = upgrade["vectors"]["v1"][:50].astype(np.float32)
    index = faiss.IndexFlatIP(v1.shape[1])
    index.add(v1)
    faiss.write_index(index, str(tmp_path / "x.faiss"))
    ws = fresh_workspace(tmp_path / "ws", capsys)
    before = {p: p.read_bytes() for p in ws.rglob("*") if p.is_file()}
    code, _, err = cli(capsys, "import", "--workspace", str(ws), "--from", f"faiss://{tmp_path / 'x.faiss'}",
                       option, "label")
    one_line(code, err, "holds vectors only, no fields", f"{option} names nothing")
    assert {p: p.read_bytes() for p in ws.rglob("*") if p.is_file()} == before


def test_store_vectors_are_not_attached_to_a_model_that_embeds_raw_inputs(
        upgrade: dict, source: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from embridge.core.models.builtin import build_model, save_checkpoint

    checkpoint = tmp_path / "mlp.pt"
    save_checkpoint(checkpoint, build_model("mlp", {"input_dim": 8, "out_dim": 16})[0], "mlp",
                    {"input_dim": 8, "out_dim": 16})
    ws = fresh_workspace(tmp_path / "ws", capsys)
    assert cli(capsys, "model", "add", "--workspace", str(ws), "--name", "raw", "--path", str(checkpoint),
               "--role", "old")[0] == 0
    before = snapshot(ws)
    code, _, err = cli(capsys, "import", "--workspace", str(ws), "--from", source.source, "--model", "raw")
    one_line(code, err, "--model", "'raw'", "give a new model name")
    assert snapshot(ws) == before
    code, out, err = cli(capsys, "import", "--workspace", str(ws), "--from", source.source, "--model", "raw-store")
    assert code == 0 and out["new_items"] == len(upgrade["ids"]), err
    with Workspace.open(ws) as w:
        assert w.model("raw-store")["kind"] == "vectors"


def test_store_outputs_never_land_in_or_around_a_workspace(upgrade: dict, source: Any, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from embridge.core.models.builtin import build_model, save_checkpoint

    ws = fresh_workspace(tmp_path / "ws", capsys)
    holder = tmp_path / "holder"
    fresh_workspace(holder / "inner", capsys)
    before = snapshot(ws)
    b = str(upgrade["bundle"])
    migrate = ["migrate", "--bundle", b, "--from", source.source, "--to"]
    cases = [
        ([*migrate, f"parquet://{ws}/m_v2"], "inside the workspace", ws / "m_v2"),
        ([*migrate, f"parquet://{ws}"], "is the workspace", None),
        ([*migrate, f"lancedb://{ws}?table=x"], "inside the workspace", ws / "x.lance"),
        ([*migrate, f"qdrant://{ws}/q?collection=x"], "inside the workspace", ws / "q"),
        ([*migrate, f"chroma://{ws}/c?collection=xyz"], "inside the workspace", ws / "c"),
        ([*migrate, f"qdrant://{holder}?collection=x"], "holding the workspace", holder / "collection"),
        ([*migrate, f"parquet://{Path(source.source.removeprefix('parquet://'))}/sub"], "inside the input", None),
        (["transform", "--bundle", b, "--from", source.source, "--to", f"parquet://{ws}/reports/t"],
         "inside the workspace", ws / "reports" / "t"),
    ]
    checkpoint = tmp_path / "mlp.pt"
    save_checkpoint(checkpoint, build_model("mlp", {"input_dim": 8, "out_dim": 6})[0], "mlp",
                    {"input_dim": 8, "out_dim": 6})
    write_items(tmp_path / "items", np.zeros((20, 8), np.float32), 1)
    embed = ["embed-dataset", "--model", str(checkpoint), "--from", f"parquet://{tmp_path / 'items'}", "--to"]
    cases += [([*embed, f"parquet://{ws}/vectors/x"], "inside the workspace", ws / "vectors" / "x"),
              ([*embed, f"parquet://{holder}"], "holding the workspace", holder / "_embridge_embed.json")]
    for args, message, absent in cases:
        code, _, err = cli(capsys, *args)
        one_line(code, err, "--to", message)
        assert absent is None or not absent.exists(), args
    assert snapshot(ws) == before
    assert sorted(p.name for p in holder.iterdir()) == ["inner"]


def test_a_damaged_parquet_file_is_named(upgrade: dict, source: Any, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    folder = Path(source.source.removeprefix("parquet://"))
    damaged = folder / "part-2.parquet"
    damaged.write_bytes(os.urandom(300))
    ws = fresh_workspace(tmp_path / "ws", capsys)
    before = snapshot(ws)
    for args in (["check", "--uri", source.source],
                 ["migrate", "--bundle", str(upgrade["bundle"]), "--from", source.source, "--to", source.target],
                 ["import", "--workspace", str(ws), "--from", source.source, "--model", "v1"]):
        code, _, err = cli(capsys, *args)
        one_line(code, err, str(damaged), "is not a readable Parquet file")
    assert snapshot(ws) == before
    assert not Path(source.target.removeprefix("parquet://")).exists()


def test_rollback_refuses_an_alias_that_does_not_exist(source: Any, capsys: pytest.CaptureFixture[str]) -> None:
    store = Path(source.source.removeprefix("parquet://")).parent
    listing = sorted(p.name for p in store.parent.rglob("*"))
    code, _, err = cli(capsys, "rollback", "--to", source.source, "--alias", "nosuch")
    one_line(code, err, "--alias", "'nosuch' is not an alias")
    code, _, err = cli(capsys, "rollback", "--to", source.source, "--alias", "a/../b")
    one_line(code, err, "--alias 'a/../b'", status=2)
    assert sorted(p.name for p in store.parent.rglob("*")) == listing  # no link, no alias history


def test_a_bad_alias_is_refused_before_any_point_is_written(upgrade: dict, source: Any,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    store = Path(source.source.removeprefix("parquet://")).parent
    listing = sorted(str(p) for p in store.parent.rglob("*"))
    args = ["migrate", "--bundle", str(upgrade["bundle"]), "--from", source.source, "--to", source.target, "--switch"]
    for alias, message, status in (("a/../../b", "--alias 'a/../../b'", 2), ("..", "--alias '..'", 2),
                                   ("docs_v1", "'docs_v1' is a collection, not an alias", 1),
                                   ("docs_v2", "is the name of the collection it would serve", 1)):
        code, _, err = cli(capsys, *args, "--alias", alias)
        one_line(code, err, message, status=status)
    assert sorted(str(p) for p in store.parent.rglob("*")) == listing  # no shadow, no checkpoint
    code, out, err = cli(capsys, *args, "--alias", "docs")
    assert code == 0 and out["switched"] and os.readlink(store / "docs") == "docs_v2", err
    code, back, err = cli(capsys, "rollback", "--to", source.source, "--alias", "docs")
    assert code == 0 and back["previous"] == "docs_v2" and os.readlink(store / "docs") == "docs_v1", err


def test_refused_transform_and_embedding_leave_no_output(upgrade: dict, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from embridge.core.models.builtin import build_model, save_checkpoint

    v1 = upgrade["vectors"]["v1"].copy()
    v1[3, 0] = np.inf
    ids = list(range(len(v1)))
    first_bad = parquet_store(tmp_path / "bad_first", ids, v1, parts=2)
    b = str(upgrade["bundle"])
    for target in (str(tmp_path / "t1" / "out"), f"lance://{tmp_path / 't1' / 'out.lance'}"):
        code, _, err = cli(capsys, "transform", "--bundle", b, "--from", first_bad, "--to", target)
        one_line(code, err, str(tmp_path / "bad_first" / "part-0.parquet"), "row 3", "NaN or inf")
        assert not (tmp_path / "t1").exists()  # nor the folders made for it
    (tmp_path / "t2").mkdir()  # an empty folder named as the output stays, empty
    assert cli(capsys, "transform", "--bundle", b, "--from", first_bad, "--to", str(tmp_path / "t2"))[0] == 1
    assert list((tmp_path / "t2").iterdir()) == []
    # a partition finished before the bad one is kept, with its checkpoint, for a resume
    late = upgrade["vectors"]["v1"].copy()
    late[-2, 0] = np.nan
    later_bad = parquet_store(tmp_path / "bad_later", ids, late, parts=2)
    assert cli(capsys, "transform", "--bundle", b, "--from", later_bad, "--to", str(tmp_path / "t3"))[0] == 1
    assert sorted(p.name for p in (tmp_path / "t3").iterdir()) == ["_embridge_transform.json", "part-0.parquet"]

    checkpoint = tmp_path / "mlp.pt"
    save_checkpoint(checkpoint, build_model("mlp", {"input_dim": 5, "out_dim": 6})[0], "mlp",
                    {"input_dim": 5, "out_dim": 6})
    write_items(tmp_path / "items", np.zeros((30, 8), np.float32), 2)  # 8 inputs for a 5-input model
    nan_items = np.ones((30, 5), np.float32)
    nan_items[4, 1] = np.nan
    write_items(tmp_path / "nan_items", nan_items, 1)
    for items, out in (("items", "e1"), ("nan_items", "e2"), ("nope", "e3")):
        code, _, err = cli(capsys, "embed-dataset", "--model", str(checkpoint), "--from",
                           f"parquet://{tmp_path / items}", "--to", f"parquet://{tmp_path / out}")
        one_line(code, err)
        assert not (tmp_path / out).exists(), (items, err)


def test_null_ids_null_vectors_and_ragged_vectors_are_named_by_column_and_row(
        upgrade: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import lance
    import pyarrow as pa

    v1 = upgrade["vectors"]["v1"][:20]
    rows = [list(map(float, r)) for r in v1]
    fixed = pa.list_(pa.float32(), v1.shape[1])
    null_vec, short, holed = list(rows), list(rows), list(rows)
    null_vec[5], short[7] = None, rows[7][:10]
    holed[9] = [*rows[9][:3], None, *rows[9][4:]]  # read by numpy as NaN, and the point called NaN
    cases = {
        "nullelem": (list(range(20)), pa.array(holed, fixed), "column 'vector' row 9 (id 9): a null element"),
        "nullid": ([0, 1, None, *range(3, 20)], pa.array(rows, fixed), "column 'id' row 2: a null id"),
        "nullvec": (list(range(20)), pa.array(null_vec, fixed), "column 'vector' row 5 (id 5): a null vector"),
        "ragged": (list(range(20)), pa.array(short, pa.list_(pa.float32())), "column 'vector' row 7 (id 7): a 10-long"),
    }
    ws = fresh_workspace(tmp_path / "ws", capsys)
    before = snapshot(ws)
    for name, (ids, vectors, needle) in cases.items():
        table = pa.table({"id": pa.array(ids, pa.int64()), "vector": vectors})
        lance.write_dataset(table, str(tmp_path / "ldb" / f"{name}.lance"))
        (tmp_path / "pq" / name).mkdir(parents=True)
        import pyarrow.parquet as pq

        pq.write_table(table, tmp_path / "pq" / name / "part-0.parquet")
        for uri, where in ((f"lancedb://{tmp_path / 'ldb'}?table={name}", f"table '{name}'"),
                           (f"parquet://{tmp_path / 'pq' / name}", "part-0.parquet")):
            code, _, err = cli(capsys, "import", "--workspace", str(ws), "--from", uri, "--model", "vx")
            one_line(code, err, where, needle)
            assert snapshot(ws) == before
            code, _, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from", uri,
                               "--to", uri.replace(name, f"{name}_v2"))
            one_line(code, err, where, needle)
    assert not list((tmp_path / "ldb").glob("*_v2*")) and not list((tmp_path / "pq").glob("*_v2"))
    # a plain (variable-length) list column whose rows are all one length is read like a fixed-size one
    table = pa.table({"id": pa.array(range(20), pa.int64()), "vector": pa.array(rows, pa.list_(pa.float32()))})
    lance.write_dataset(table, str(tmp_path / "ldb" / "plain.lance"))
    code, out, err = cli(capsys, "migrate", "--bundle", str(upgrade["bundle"]), "--from",
                         f"lancedb://{tmp_path / 'ldb'}?table=plain", "--to", f"lancedb://{tmp_path / 'ldb'}?table=plain_v2")
    assert code == 0 and out["total"] == 20, err


def test_reading_a_mistyped_store_folder_creates_nothing(upgrade: dict, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    ws = fresh_workspace(tmp_path / "ws", capsys)
    before = snapshot(ws)
    for uri in (f"lancedb://{tmp_path}/nodb?table=t", f"chroma://{tmp_path}/nochr?collection=abc",
                f"qdrant://{tmp_path}/noqd?collection=t"):
        folder = uri.split("://", 1)[1].split("?")[0]
        for option, args in (("--uri", ["check", "--uri", uri]),
                             ("--from", ["import", "--workspace", str(ws), "--from", uri, "--model", "vx"]),
                             ("--from", ["migrate", "--bundle", str(upgrade["bundle"]), "--from", uri,
                                         "--to", f"parquet://{tmp_path}/out_v2"])):
            code, _, err = cli(capsys, *args)
            one_line(code, err, option, f"no such store folder {folder}")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["ws"]
    assert snapshot(ws) == before
