"""What goes into the workspace comes back out unchanged: items, models, vectors, runs, artifacts."""

from __future__ import annotations

import os
import tempfile
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embridge.core.errors import IntegrityError, StoreError, VectorFileError
from embridge.core.models.manage import pair_warnings
from embridge.core.store import Workspace
from embridge.core.store.files import sha256_file
from embridge.core.vector_spread import one_direction


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = Workspace.create(tmp_path / "ws")
    yield workspace
    workspace.close()


@pytest.fixture(scope="module")
def shared_ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """One workspace for all examples of a property test, on tmpfs where there is one (fsync is free)."""
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else tmp_path_factory.mktemp("shared")
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        workspace = Workspace.create(Path(tmp) / "ws")
        workspace.add_items(_items(PROPERTY_ITEMS))
        yield workspace
        workspace.close()


PROPERTY_ITEMS = 25


def _items(n: int, prefix: str = "k") -> list[dict]:
    return [{"key": f"{prefix}{i}", "label": str(i % 3), "split": "gallery"} for i in range(n)]


def _model(ws: Workspace, name: str = "m", dim: int = 8) -> None:
    ws.add_model(name, "old", {"kind": "vectors", "dim": dim, "sha256": "ab" * 32}, None)


# -- items ------------------------------------------------------------------------------------
def test_items_round_trip_every_field(ws: Workspace, tmp_path: Path) -> None:
    records = [
        {"key": "a", "label": "cat", "split": "gallery", "source": "s.csv", "modality": "text",
         "text": "a cat", "path": None, "metadata": {"w": 3, "tags": ["x", "y"], "nested": {"f": 0.5}}},
        {"key": "b", "label": None, "split": "query", "source": "s.csv", "modality": "image",
         "text": None, "path": str(tmp_path / "b.png"), "metadata": None},
        {"key": "c", "label": 7},  # labels are stored as text; absent fields stay None
    ]
    ids = ws.add_items(records, source="s.csv")
    assert len(set(ids)) == 3
    got = ws.items(ids=ids)
    assert [g["key"] for g in got] == ["a", "b", "c"]
    assert got[0]["metadata"] == {"w": 3, "tags": ["x", "y"], "nested": {"f": 0.5}}
    assert got[0]["text"] == "a cat" and got[0]["modality"] == "text" and got[0]["source"] == "s.csv"
    assert got[1]["label"] is None and got[1]["path"] == str(tmp_path / "b.png")
    assert got[1]["metadata"] == {}
    assert got[2]["label"] == "7" and got[2]["split"] is None and got[2]["text"] is None
    assert ws.labels(ids) == ["cat", None, "7"]
    assert ws.split_counts() == {"gallery": 1, "query": 1, "unassigned": 1}
    assert ws.ids_for_keys(["c", "a"]).tolist() == [ids[2], ids[0]]
    assert [r["key"] for r in ws.items("query")] == ["b"]
    assert ws.item_ids("gallery").tolist() == [ids[0]]
    assert ws.existing_keys(["a", "zz", "c"]) == {"a", "c"}
    # ids= keeps the caller's order, repeats included
    assert [g["key"] for g in ws.items(ids=[ids[2], ids[0], ids[2]])] == ["c", "a", "c"]


def test_items_survive_reopen_and_large_batches(tmp_path: Path) -> None:
    with Workspace.create(tmp_path / "ws") as ws:
        ids = ws.add_items(_items(2345))  # more than one insert batch and one lookup chunk
    with Workspace.open(tmp_path / "ws") as ws:
        assert ws.item_ids().tolist() == sorted(ids)
        assert ws.ids_for_keys([f"k{i}" for i in range(2345)]).tolist() == ids
        assert len(ws.existing_keys([f"k{i}" for i in range(0, 2345, 2)])) == 1173


_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
_json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=6,
)
_item = st.fixed_dictionaries({
    "label": st.none() | _text,
    "split": st.none() | st.sampled_from(["gallery", "query", "train"]),
    "text": st.none() | _text,
    "metadata": st.dictionaries(_text, _json_value, max_size=4),
})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(keys=st.lists(_text.map(str.strip).filter(bool), min_size=1, max_size=8, unique=True),
       data=st.data())
def test_items_round_trip_property(shared_ws: Workspace, keys: list[str], data: st.DataObject) -> None:
    prefix = uuid.uuid4().hex  # examples share one workspace; keys must stay unique across them
    records = [{"key": f"{prefix}{k}", **data.draw(_item)} for k in keys]
    got = shared_ws.items(ids=shared_ws.add_items(records))
    for want, row in zip(records, got, strict=True):
        assert row["key"] == want["key"]
        assert row["label"] == want["label"]
        assert row["split"] == want["split"] and row["text"] == want["text"]
        assert row["metadata"] == want["metadata"]


# -- models -----------------------------------------------------------------------------------
def test_models_round_trip_spec_and_copied_checkpoint(ws: Workspace, tmp_path: Path) -> None:
    ckpt = tmp_path / "old.pt"
    ckpt.write_bytes(b"weights" * 100)
    spec = {"name": "old", "kind": "torchscript", "modality": "image", "dim": 16, "params": 1234,
            "sha256": sha256_file(ckpt), "input_shape": [1, 8, 8], "extra": {"norm": True}}
    row = ws.add_model("old", "old", spec, ckpt)
    assert row["spec"] == spec and row["dim"] == 16 and row["params"] == 1234 and row["role"] == "old"
    assert Path(row["path"]).parent == ws.root / "models"
    assert sha256_file(row["path"]) == spec["sha256"]
    folder = tmp_path / "hf-model"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "sub" / "w.bin").write_bytes(b"\x00\x01")
    new = ws.add_model("new", "new", {"kind": "folder", "dim": 4, "sha256": "cd" * 32}, folder)
    assert (Path(new["path"]) / "sub" / "w.bin").read_bytes() == b"\x00\x01"
    _model(ws, "vec-only")
    assert ws.model("vec-only")["path"] is None
    assert [m["name"] for m in ws.models()] == ["old", "new", "vec-only"]
    assert ws.model_by_role("new")["name"] == "new"
    with pytest.raises(StoreError, match="no model with role 'other'"):
        ws.model_by_role("other")
    ws.add_model("new2", "new", {"kind": "vectors", "dim": 4}, None)  # the default would be a guess: refused
    with pytest.raises(StoreError, match=r"2 models have the role 'new' \(new, new2\); name the one to use with --new"):
        ws.model_by_role("new")
    assert any("2 models have the role 'new' (new, new2)" in note for note in pair_warnings(ws.models()))


# -- vector sets ------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_vector_set_round_trip(ws: Workspace, dtype: str) -> None:
    ids = ws.add_items(_items(50))
    _model(ws)
    vecs = np.random.default_rng(0).standard_normal((50, 8)).astype(dtype)
    info = ws.add_vector_set("m", ids, vecs, name="gallery")
    assert (info["dtype"], info["count"], info["dim"], info["model"]) == (dtype, 50, 8, "m")
    assert sha256_file(info["path"]) == info["sha256"]
    got_ids, matrix = ws.open_vector_set(info["id"])
    assert got_ids.tolist() == ids and matrix.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(matrix, vecs)
    order = np.random.default_rng(1).permutation(ids)
    assert ids == sorted(ids)
    np.testing.assert_array_equal(ws.vectors_for("m", order), vecs.astype(np.float32)[np.searchsorted(ids, order)])
    assert ws.ids_with_vectors("m").tolist() == sorted(ids)


def test_float64_input_is_stored_as_float32_unless_asked(ws: Workspace) -> None:
    ids = ws.add_items(_items(4))
    _model(ws, dim=3)
    vecs = np.arange(12, dtype=np.float64).reshape(4, 3) / 7
    assert ws.add_vector_set("m", ids, vecs)["dtype"] == "float32"
    assert ws.add_vector_set("m", ids, vecs, dtype="float16", name="half")["dtype"] == "float16"
    np.testing.assert_array_equal(ws.vectors_for("m", ids), vecs.astype(np.float16).astype(np.float32))


def test_vectors_for_later_sets_win_across_three_sets(ws: Workspace) -> None:
    ids = np.array(ws.add_items(_items(32)))
    _model(ws, dim=4)
    rng = np.random.default_rng(2)
    first, second, third = (rng.standard_normal((n, 4)).astype(np.float32) for n in (20, 19, 5))
    ws.add_vector_set("m", ids[:20], first, name="a")            # ids 0..19
    ws.add_vector_set("m", ids[10:29][::-1], second, name="b")   # ids 28..10 (reversed order)
    ws.add_vector_set("m", ids[[3, 12, 29, 0, 17]], third.astype(np.float16), name="c")
    want = np.empty((30, 4), dtype=np.float32)
    want[:20] = first
    want[10:29] = second[::-1]
    want[[3, 12, 29, 0, 17]] = third.astype(np.float16).astype(np.float32)
    request = np.random.default_rng(3).permutation(30)
    np.testing.assert_array_equal(ws.vectors_for("m", ids[request]), want[request])
    with pytest.raises(StoreError, match="2 of 3 requested items have no vectors"):
        ws.vectors_for("m", ids[[30, 0, 31]])  # the last two items are in no set


def test_vectors_for_repeated_ids_and_float16_output(ws: Workspace) -> None:
    ids = ws.add_items(_items(5))
    _model(ws, dim=2)
    vecs = np.arange(10, dtype=np.float32).reshape(5, 2)
    ws.add_vector_set("m", ids, vecs)
    request = [ids[4], ids[1], ids[4], ids[4]]
    got = ws.vectors_for("m", request, dtype=np.float16)
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, vecs[[4, 1, 4, 4]])


def test_vectors_for_fills_a_given_array_in_every_request_order(ws: Workspace) -> None:
    ids = np.array(ws.add_items(_items(12)))
    _model(ws, dim=3)
    rng = np.random.default_rng(4)
    first, second = rng.standard_normal((12, 3)).astype(np.float32), rng.standard_normal((4, 3)).astype(np.float32)
    ws.add_vector_set("m", ids, first, name="a")
    ws.add_vector_set("m", ids[[9, 2, 5, 7]], second, name="b")  # later sets win, stored out of order
    for request in (ids[1:11], ids[[8, 3, 3, 11, 0]]):  # ascending (read straight in), then shuffled with a repeat
        out = np.full((len(request), 3), np.nan, dtype=np.float32)
        assert ws.vectors_for("m", request, out=out) is out
        np.testing.assert_array_equal(out, ws.vectors_for("m", request))
    with pytest.raises(ValueError, match=r"shape \(3, 3\)"):
        ws.vectors_for("m", ids[:3], out=np.empty((4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="C-contiguous float32"):
        ws.vectors_for("m", ids[:3], out=np.empty((3, 6), dtype=np.float32)[:, ::2])
    assert ws.vector_dim("m") == 3


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, PROPERTY_ITEMS), dim=st.integers(1, 6), sets=st.integers(1, 3),
       dtype=st.sampled_from(["float32", "float16"]), data=st.data())
def test_vector_sets_round_trip_property(shared_ws: Workspace, n: int, dim: int, sets: int, dtype: str,
                                         data: st.DataObject) -> None:
    ws, model = shared_ws, f"m-{uuid.uuid4().hex}"  # a fresh model per example
    _model(ws, model, dim=dim)
    ids = ws.item_ids()[:n]
    elems = st.floats(-1000, 1000, allow_nan=False, width=16 if dtype == "float16" else 32)
    want = np.full((n, dim), np.nan, dtype=np.float32)
    for s in range(sets):
        members = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True))
        block = np.array(data.draw(st.lists(st.lists(elems, min_size=dim, max_size=dim),
                                            min_size=len(members), max_size=len(members))), dtype=dtype)
        if one_direction(block):  # all zero or one direction (1-d rows of one sign): refused, nothing stored
            before = ws.vector_sets(model)
            with pytest.raises(VectorFileError, match="are zero|point the same way"):
                ws.add_vector_set(model, ids[members], block, name=f"s{s}")
            assert ws.vector_sets(model) == before
            continue
        ws.add_vector_set(model, ids[members], block, name=f"s{s}")
        want[members] = block.astype(np.float32)
    covered = np.flatnonzero(~np.isnan(want[:, 0]))
    if not covered.size:
        return
    request = data.draw(st.lists(st.sampled_from(covered.tolist()), min_size=1, max_size=2 * n))
    np.testing.assert_array_equal(ws.vectors_for(model, ids[request]), want[request])
    for info in ws.vector_sets(model):
        got_ids, matrix = ws.open_vector_set(info["id"])
        assert matrix.dtype == np.dtype(dtype) and len(got_ids) == info["count"]


def test_chunked_writer_matches_one_shot_write(ws: Workspace) -> None:
    ids = np.array(ws.add_items(_items(103)))
    _model(ws, dim=5)
    vecs = np.random.default_rng(4).standard_normal((103, 5)).astype(np.float32)
    writer = ws.vector_set_writer("m", ids, 5, name="chunked", resume_key="chunked")
    for start in range(0, 103, 10):
        writer.write(start, vecs[start:start + 10])
    chunked = writer.commit()
    one_shot = ws.add_vector_set("m", ids, vecs, name="direct")
    assert chunked["sha256"] == one_shot["sha256"] and chunked["ids_sha256"] == one_shot["ids_sha256"]
    assert not any((ws.root / "vectors" / ".partial").iterdir())


# -- runs, adapters, reports, bundles, folds --------------------------------------------------
def test_runs_start_update_finish_with_numpy_values(ws: Workspace) -> None:
    config = {"lr": np.float32(0.5), "epochs": np.int64(3), "dims": np.array([4, 8]), "ok": np.bool_(True),
              "path": Path("/x/y"), "nested": {"t": (1, 2)}}
    run_id = ws.start_run("train", "procrustes", config)
    run = ws.run(run_id)
    assert run["status"] == "running"  # this process is alive
    assert run["config"] == {"lr": 0.5, "epochs": 3, "dims": [4, 8], "ok": True, "path": "/x/y",
                             "nested": {"t": [1, 2]}}
    ws.update_run(run_id, epochs=[{"epoch": np.int32(0), "loss": np.float64(0.25)}], device="cpu")
    ws.finish_run(run_id, "completed", metrics={"top1": np.float32(0.75), "per_label": {"a": np.float16(1)}})
    run = ws.run(run_id)
    assert run["status"] == "completed" and run["error"] is None and run["device"] == "cpu"
    assert run["epochs"] == [{"epoch": 0, "loss": 0.25}]
    assert run["metrics"] == {"top1": 0.75, "per_label": {"a": 1.0}}
    assert run["finished"] >= run["started"] and run["duration_s"] >= 0
    failed = ws.start_run("report")
    ws.finish_run(failed, "failed", error="boom", duration_s=1.5)
    assert ws.run(failed)["error"] == "boom" and ws.run(failed)["duration_s"] == 1.5
    assert [r["id"] for r in ws.runs("train")] == [run_id]
    assert ws.latest_run("train")["id"] == run_id and ws.latest_run("report") is None
    assert ws.latest_run("report", status="failed")["id"] == failed
    with pytest.raises(StoreError, match="no run with id 999"):
        ws.run(999)


def test_adapter_is_copied_hashed_and_verified(ws: Workspace, tmp_path: Path) -> None:
    run_id = ws.start_run("train", "affine")
    src = tmp_path / "adapter.pt"
    src.write_bytes(bytes(range(256)) * 4)
    row = ws.add_adapter(run_id, "affine", "backward", 8, 4, "old", "new", src, {"bias": True})
    path = ws.adapter_path(row["id"], verify=True)
    assert path.parent == ws.root / "adapters" and path.read_bytes() == src.read_bytes()
    assert row["sha256"] == sha256_file(src) and row["config"] == {"bias": True, "input_normalised": True}  # the input policy is always stored
    assert (row["in_dim"], row["out_dim"], row["direction"]) == (8, 4, "backward")
    assert ws.adapter_for_run(run_id)["id"] == row["id"] and [a["id"] for a in ws.adapters()] == [row["id"]]
    src.write_bytes(b"changed")  # the stored copy is independent of the source
    assert ws.adapter_path(row["id"]) == path
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="adapter file is missing or changed"):
        ws.adapter_path(row["id"], verify=True)
    assert ws.adapter_path(row["id"], verify=False) == path
    path.unlink()
    with pytest.raises(IntegrityError, match=str(path.name)):
        ws.adapter_path(row["id"])
    with pytest.raises(StoreError, match="produced no adapter"):
        ws.adapter_for_run(ws.start_run("train"))


def test_reports_and_bundles_round_trip(ws: Workspace, tmp_path: Path) -> None:
    run_id = ws.start_run("report")
    inside = ws.root / "reports" / "r1.json"
    inside.write_text("{}")
    outside = tmp_path / "elsewhere.html"
    summary = {"gain_retained": np.float64(0.9), "cells": [{"q": "new", "g": "old", "top1": 0.5}]}
    rep = ws.add_report(run_id, None, inside, outside, summary)
    assert rep["json_file"] == "reports/r1.json" and rep["html_file"] == str(outside)
    assert rep["summary"] == {"gain_retained": 0.9, "cells": [{"q": "new", "g": "old", "top1": 0.5}]}
    assert ws.report(rep["id"]) == rep and ws.reports() == [rep]
    no_html = ws.add_report(None, None, inside, None, {})
    assert no_html["html_file"] is None
    manifest = {"format": 1, "files": {"adapter.pt": "00" * 32}, "dims": [8, 4]}
    bundle = ws.add_bundle(None, rep["id"], tmp_path / "b.zip", "ff" * 32, manifest)
    assert bundle["manifest"] == manifest and bundle["path"] == str(tmp_path / "b.zip")
    assert ws.bundles() == [bundle]
    with pytest.raises(StoreError, match="no report with id 42"):
        ws.report(42)


def test_folds_round_trip_and_reassign(ws: Workspace) -> None:
    ids = ws.add_items(_items(6))
    ws.set_folds({i: ("train" if n < 4 else "test") for n, i in enumerate(ids)}, seed=7)
    assert ws.folds() == {i: ("train" if n < 4 else "test") for n, i in enumerate(ids)}
    ws.set_folds({ids[0]: "val"}, seed=8)
    assert ws.folds()[ids[0]] == "val" and len(ws.folds()) == 6
    by_fold = ws.fold_ids()
    assert {f: a.tolist() for f, a in by_fold.items()} == {"test": ids[4:], "train": ids[1:4], "val": ids[:1]}
    assert all(a.dtype == np.int64 for a in by_fold.values())


def test_fold_ids_of_a_workspace_without_folds_is_empty(ws: Workspace) -> None:
    ws.add_items(_items(3))
    assert ws.fold_ids() == {}


def test_one_workspace_shared_by_threads_keeps_transactions_apart(ws: Workspace) -> None:
    """The app runs jobs in worker threads on one open workspace; their writes must not interleave."""
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for i in range(15):
                with ws.transaction():
                    ws.db["items"].insert({"key": f"t{t}-{i}", "created": "x"})
                    ws.db["items"].insert({"key": f"t{t}-{i}-b", "created": "x"})
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(ws.item_ids()) == 4 * 15 * 2
