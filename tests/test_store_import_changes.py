"""Stores met again and stores met by mistake: a store that grew (points before the imported ones) or shrank
since its import, a folder that holds no store of the scheme named, a dataset folder whose subfolder holds
other data, and payload values JSON cannot hold."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from store_fixtures import cli, fill_source

from embridge.core.retrieval import l2_normalize
from embridge.core.store import Workspace


def _write(folder: Path, name: str, ids: range, vectors: np.ndarray, **columns: Any) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    flat = pa.array(vectors.astype(np.float32).ravel())
    pq.write_table(pa.table({"id": pa.array(list(ids), pa.int64()),
                             "vector": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1]), **columns}),
                   folder / name)


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_store_that_grew_before_its_imported_points_or_shrank_is_imported_as_it_is(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The vector set's rows were the source's items in the order they were stored: points read before
    them failed every rerun with 'the store's order changed during the import; run it again'."""
    vectors = l2_normalize(np.random.default_rng(0).standard_normal((30, 8))).astype(np.float32)
    folder, ws = tmp_path / "pq" / "docs", tmp_path / "ws"
    assert cli(capsys, "init", "--workspace", str(ws))[0] == 0
    uri = f"parquet://{folder}"
    _write(folder, "part-1.parquet", range(10, 20), vectors[10:20])
    assert cli(capsys, "import", "-w", str(ws), "--from", uri, "--model", "v1")[0] == 0
    _write(folder, "part-0.parquet", range(0, 10), vectors[0:10])  # read first now
    code, out, err = cli(capsys, "import", "-w", str(ws), "--from", uri, "--model", "v1")
    assert code == 0, err
    assert out["count"] == 20 and out["new_items"] == 10
    with Workspace.open(ws) as w:
        items = w.item_ids()
        keys = [int(k) for k in w.keys_of(items)]
        np.testing.assert_array_equal(w.vectors_for("v1", items), vectors[keys])
    (folder / "part-1.parquet").unlink()  # and shrank: its ten remaining points imported again
    code, out, err = cli(capsys, "import", "-w", str(ws), "--from", uri, "--model", "v1")
    assert code == 0, err
    assert out["count"] == 10 and out["new_items"] == 0


@pytest.mark.parametrize("scheme", ["qdrant", "chroma"])
def test_a_folder_without_a_store_of_the_scheme_is_refused_and_left_as_it_was(
        scheme: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """check --uri and import --from set up an empty store in any existing folder (or another store's) and
    then said the collection did not exist."""
    empty = tmp_path / "empty"
    empty.mkdir()
    other = "chroma" if scheme == "qdrant" else "qdrant"
    case = fill_source(other, tmp_path, [1, 2, 3], np.eye(3, 4, dtype=np.float32), ["a", "b", "c"])
    theirs = tmp_path / other
    before = _tree(theirs)
    assert cli(capsys, "init", "--workspace", str(tmp_path / "ws"))[0] == 0
    for folder in (empty, theirs):
        uri = f"{scheme}://{folder}?collection=docs_v1"
        for args in (("check", "--uri", uri), ("import", "-w", str(tmp_path / "ws"), "--from", uri)):
            code, _, err = cli(capsys, *args)
            assert code == 1 and f"holds no {scheme} store" in err and len(err.strip().splitlines()) == 1, err
    assert list(empty.iterdir()) == [] and _tree(theirs) == before
    assert cli(capsys, "check", "--uri", case.source)[0] == 0  # its own scheme still reads it


def test_a_subfolder_of_other_data_in_a_parquet_dataset_is_refused(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """'sub/part-0.PARQ' (or a Lance table) was passed over: the dataset read as empty, and a migration from
    it 'completed' with 0 points and switched the alias to an empty collection."""
    folder = tmp_path / "src"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "part-0.PARQ").write_bytes(b"PAR1 not read")
    code, _, err = cli(capsys, "check", "--uri", f"parquet://{folder}")
    assert code == 1 and "sub: a subfolder holding files that are not .parquet files" in err
    (folder / "sub" / "part-0.PARQ").unlink()  # an empty subfolder holds nothing to leave out
    code, out, err = cli(capsys, "check", "--uri", f"parquet://{folder}")
    assert code == 0 and out["count"] == 0, err


def test_import_refusals_name_the_store_uri_and_bytes_and_times_are_kept_readably(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import datetime as dt

    folder, ws = tmp_path / "pq" / "docs", tmp_path / "ws"
    vectors = l2_normalize(np.random.default_rng(1).standard_normal((3, 4))).astype(np.float32)
    when = [dt.datetime(2026, 1, 2, 3, 4, 5, 6000) + dt.timedelta(days=i) for i in range(3)]
    _write(folder, "part-0.parquet", range(3), vectors, blob=pa.array([b"\xff\xfe\x00", b"", b"ab"]),
           ts=pa.array(when, pa.timestamp("ms")), flag=pa.array([True, False, True]))
    uri = f"parquet://{folder}"
    assert cli(capsys, "init", "--workspace", str(ws))[0] == 0
    code, _, err = cli(capsys, "import", "-w", str(ws), "--from", uri, "--label-field", "flag")
    assert code == 1 and f"embridge: error: {uri}: point 0, field 'flag'" in err and "store:" not in err, err
    assert cli(capsys, "import", "-w", str(ws), "--from", uri)[0] == 0
    with Workspace.open(ws) as w:
        meta = {r["key"]: r["metadata"] for r in w.items()}
    assert meta["0"]["blob"] == "fffe00" and meta["2"]["blob"] == "6162"
    assert meta["1"]["ts"] == "2026-01-03T03:04:05.006000"


def test_a_second_import_of_a_store_while_the_first_runs_is_refused_and_takes_nothing_back(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two imports of one store at once: the second took the first one's fresh items for points seen twice
    ('the point id ... occurs more than once') and its clean-up removed them, leaving the first one's vector
    set pointing at items that no longer existed."""
    import threading

    from embridge.core.connectors.gallery_import import import_from_store

    vectors = l2_normalize(np.random.default_rng(1).standard_normal((400, 8))).astype(np.float32)
    folder, root = tmp_path / "pq" / "docs", tmp_path / "ws"
    for n in range(4):  # four files: the first import pauses after its first batch's items
        _write(folder, f"part-{n}.parquet", range(100 * n, 100 * (n + 1)), vectors[100 * n:100 * (n + 1)])
    assert cli(capsys, "init", "--workspace", str(root))[0] == 0
    uri = f"parquet://{folder}"
    paused, go_on, outcome = threading.Event(), threading.Event(), {}

    def progress(done: int, total: int, info: dict[str, Any]) -> None:
        if done and not paused.is_set():
            paused.set()
            go_on.wait(30)

    def first() -> None:
        with Workspace.open(root) as ws:
            outcome["result"] = import_from_store(ws, uri, model="v1", batch_size=100, on_progress=progress)

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert paused.wait(30)
        code, _, err = cli(capsys, "import", "-w", str(root), "--from", uri + "/", "--model", "v1")  # one store
    finally:
        go_on.set()
        thread.join(60)
    lines = [line for line in err.splitlines() if not line.startswith("import:")]
    assert code == 1 and len(lines) == 1 and "another process is importing" in lines[0], err
    assert outcome["result"].count == 400
    with Workspace.open(root) as ws:
        items = ws.item_ids()
        assert len(items) == 400
        keys = [int(k) for k in ws.keys_of(items)]
        np.testing.assert_array_equal(ws.vectors_for("v1", items), vectors[keys])


def _two_stores(tmp_path: Path, capsys: pytest.CaptureFixture[str], seed: int) -> tuple[np.ndarray, np.ndarray, Path]:
    """Parquet stores a/docs (ids 0-49) and b/docs (ids 100-149) of 8-d vectors, and an empty workspace."""
    rng = np.random.default_rng(seed)
    a_vectors, b_vectors = (l2_normalize(rng.standard_normal((50, 8))).astype(np.float32) for _ in "ab")
    _write(tmp_path / "a" / "docs", "part-0.parquet", range(50), a_vectors)
    _write(tmp_path / "b" / "docs", "part-0.parquet", range(100, 150), b_vectors)
    root = tmp_path / "ws"
    assert cli(capsys, "init", "--workspace", str(root))[0] == 0
    return a_vectors, b_vectors, root


def _second_import_while_the_first_decides(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch, first_model: str,
                                            second_model: str) -> tuple[np.ndarray, np.ndarray, Path, Any]:
    """Stores a/docs and b/docs; b imported (as ``second_model``, from the command line) while the import
    of a (as ``first_model``) has decided its model and waits for its first points (a slow store). Their
    vectors, the workspace and a's outcome; b must have succeeded."""
    import threading

    import embridge.core.connectors.gallery_import as gallery_import

    first_vectors, second_vectors, root = _two_stores(tmp_path, capsys, seed=2)
    decided, go_on, outcome = threading.Event(), threading.Event(), {}
    real = gallery_import._new_model

    def slow_store(*args: Any, **kwargs: Any) -> Any:  # its first points are still on their way
        spec = real(*args, **kwargs)
        if not decided.is_set():
            decided.set()
            go_on.wait(30)
        return spec

    monkeypatch.setattr(gallery_import, "_new_model", slow_store)

    def first() -> None:
        try:
            with Workspace.open(root) as ws:
                outcome["a"] = gallery_import.import_from_store(ws, f"parquet://{tmp_path / 'a' / 'docs'}",
                                                                model=first_model)
        except Exception as exc:  # noqa: BLE001 - the caller's assertion shows it
            outcome["a"] = exc

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert decided.wait(30)
        code, _, err = cli(capsys, "import", "-w", str(root), "--from", f"parquet://{tmp_path / 'b' / 'docs'}",
                           "--model", second_model)
    finally:
        go_on.set()
        thread.join(60)
    assert code == 0, err
    return first_vectors, second_vectors, root, outcome["a"]


def test_two_stores_imported_at_once_under_one_new_model_name_both_land(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Two stores imported at once as one new --model: the one whose first points came later failed with
    'a model named ... already exists', a name --model may give (its vectors join the model)."""
    first_vectors, second_vectors, root, first = _second_import_while_the_first_decides(
        tmp_path, capsys, monkeypatch, "v1", "v1")
    assert not isinstance(first, Exception), first
    with Workspace.open(root) as ws:
        assert [m["name"] for m in ws.models()] == ["v1"] and len(ws.vector_sets("v1")) == 2
        items = ws.item_ids()
        by_key = dict(zip((int(k) for k in ws.keys_of(items)), ws.vectors_for("v1", items), strict=True))
        np.testing.assert_array_equal(np.stack([by_key[k] for k in range(50)]), first_vectors)
        np.testing.assert_array_equal(np.stack([by_key[k] for k in range(100, 150)]), second_vectors)


def test_an_import_that_joined_a_model_another_then_took_back_makes_it_again(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A joined the model B registered; B was then refused and took its model back, and A failed with 'no
    model named ...' (a model it had been asked to create), its items left without vectors."""
    import threading

    import embridge.core.connectors.gallery_import as gallery_import

    a_vectors, _, root = _two_stores(tmp_path, capsys, seed=3)
    a_uri, b_uri = (f"parquet://{tmp_path / n / 'docs'}" for n in "ab")
    steps = {name: threading.Event() for name in ("a_decided", "b_registered", "a_joined", "b_go", "a_go", "a_go2")}
    real_new, real_register = gallery_import._new_model, gallery_import._Run.register_with

    def new_model(ws: Any, name: str, dim: int, uri: str, text_field: Any) -> Any:
        spec = real_new(ws, name, dim, uri, text_field)
        if uri == a_uri and not steps["a_decided"].is_set():  # A decided to create v1, which did not exist
            steps["a_decided"].set()
            steps["a_go"].wait(30)
        return spec

    def register_with(run: Any, records: list) -> Any:
        ids = real_register(run, records)
        if run.uri == b_uri and not steps["b_registered"].is_set():  # B made v1 with its first batch
            steps["b_registered"].set()
            steps["b_go"].wait(30)
        elif run.uri == a_uri and not steps["a_joined"].is_set():  # A joined it
            steps["a_joined"].set()
            steps["a_go2"].wait(30)
        return ids

    monkeypatch.setattr(gallery_import, "_new_model", new_model)
    monkeypatch.setattr(gallery_import._Run, "register_with", register_with)
    outcome: dict[str, Any] = {}

    def run(key: str, uri: str, **options: Any) -> None:
        try:
            with Workspace.open(root) as ws:
                outcome[key] = gallery_import.import_from_store(ws, uri, model="v1", batch_size=25, **options)
        except Exception as exc:  # noqa: BLE001 - the assertions below show it
            outcome[key] = exc

    threads = [threading.Thread(target=run, args=("a", a_uri)),
               threading.Thread(target=run, args=("b", b_uri), kwargs={"label_field": "nosuch"})]
    try:
        threads[0].start()
        assert steps["a_decided"].wait(30)
        threads[1].start()
        assert steps["b_registered"].wait(30)
        steps["a_go"].set()
        assert steps["a_joined"].wait(30)
        steps["b_go"].set()
        threads[1].join(60)
    finally:
        for step in steps.values():
            step.set()
        for thread in threads:
            thread.join(60)
    assert "no point has a 'nosuch' field" in str(outcome["b"])
    assert not isinstance(outcome["a"], Exception), outcome["a"]
    with Workspace.open(root) as ws:
        assert [(m["name"], m["role"]) for m in ws.models()] == [("v1", "old")]
        items = ws.item_ids()
        assert sorted(int(k) for k in ws.keys_of(items)) == list(range(50))
        np.testing.assert_array_equal(ws.vectors_for("v1", items), a_vectors[[int(k) for k in ws.keys_of(items)]])


def test_two_new_models_imported_at_once_get_one_old_role(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Each import chose the role of its new model when it began: two at once both took 'old', and every
    later command resolving the old model refused ('2 models have the role old')."""
    *_, root, first = _second_import_while_the_first_decides(tmp_path, capsys, monkeypatch, "m1", "m2")
    assert not isinstance(first, Exception), first
    with Workspace.open(root) as ws:
        assert sorted((m["name"], m["role"]) for m in ws.models()) == [("m1", "other"), ("m2", "old")]
