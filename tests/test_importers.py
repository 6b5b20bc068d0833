"""Item import: each format works, and every bad input fails clearly with nothing half-imported."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from embridge.core.errors import ImportDataError, InputError, VectorFileError
from embridge.core.importers import import_items
from embridge.core.store import Workspace


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = Workspace.create(tmp_path / "ws")
    yield workspace
    workspace.close()


def _image_folder(root: Path, per_label: int = 3) -> Path:
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
        for i in range(per_label):
            Image.fromarray(np.full((4, 4), i * 40, dtype=np.uint8), mode="L").save(root / label / f"{i}.png")
    return root


def test_image_folder_import_labels_from_subfolders(ws: Workspace, tmp_path: Path) -> None:
    out = import_items(ws, _image_folder(tmp_path / "imgs"), split="gallery")
    assert out["count"] == 6 and out["format"] == "images"
    items = ws.items("gallery")
    assert sorted({i["label"] for i in items}) == ["cat", "dog"]
    assert all(Path(i["path"]).is_file() and i["modality"] == "image" for i in items)
    assert {i["key"] for i in items} >= {"cat/0.png", "dog/2.png"}


def test_csv_and_jsonl_texts(ws: Workspace, tmp_path: Path) -> None:
    csv_file = tmp_path / "t.csv"
    csv_file.write_text("key,text,label,lang\na,hello world,greet,en\nb,bonjour,greet,fr\n", encoding="utf-8")
    jl = tmp_path / "t.jsonl"
    jl.write_text("\n".join(json.dumps({"text": f"doc {i}"}) for i in range(3)) + "\n", encoding="utf-8")
    assert import_items(ws, csv_file, split="query")["count"] == 2
    assert import_items(ws, jl)["count"] == 3
    rows = {i["key"]: i for i in ws.items()}
    assert rows["a"]["text"] == "hello world" and rows["a"]["metadata"] == {"lang": "en"}
    assert rows["t:2"]["label"] is None and rows["t:2"]["text"] == "doc 1"


def test_vectors_import_registers_items_and_vector_set(ws: Workspace, tmp_path: Path) -> None:
    ws.add_model("pre", "old", {"kind": "vectors", "dim": 5}, None)
    vecs = np.random.default_rng(0).normal(size=(7, 5)).astype(np.float32)
    np.savez(tmp_path / "v.npz", ids=np.array([f"id{i}" for i in range(7)]), vectors=vecs)
    out = import_items(ws, tmp_path / "v.npz", model="pre", split="gallery")
    ids = ws.ids_for_keys([f"id{i}" for i in range(7)])
    assert out["count"] == 7 and out["vector_set"] is not None
    np.testing.assert_array_equal(ws.vectors_for("pre", ids[::-1]), vecs[::-1])


def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.endswith(("-wal", "-shm"))}


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("empty csv", lambda d: _write(d / "e.csv", ""), "empty"),
        ("no text column", lambda d: _write(d / "n.csv", "key,body\na,x\n"), "no 'text' column"),
        ("duplicate keys", lambda d: _write(d / "d.csv", "key,text\na,x\na,y\n"), "duplicate keys"),
        ("empty text", lambda d: _write(d / "m.csv", "key,text\na,\n"), "line 2 (record 1)"),
        ("empty text after a quoted field of two lines",
         lambda d: _write(d / "q.csv", "key,text\na,\"two\nlines\"\nb,\n"), "line 4 (record 2): missing or empty"),
        ("empty key cell", lambda d: _write(d / "k.csv", "key,text\nb,y\n,x\n"), "line 3 (record 2): 'key': the key is empty"),
        ("empty json key", lambda d: _write(d / "k.jsonl", '{"key": "", "text": "x"}\n'), "line 1: 'key': the key is empty"),
        ("null json key", lambda d: _write(d / "n.jsonl", '{"key": null, "text": "x"}\n'), "line 1: 'key': the key is empty"),
        ("bad json", lambda d: _write(d / "b.jsonl", '{"text": "ok"}\n{oops\n'), "line 2"),
        ("not utf8", lambda d: (d / "u.csv").write_bytes(b"key,text\na,\xff\xfe\n") and d / "u.csv", "UTF-8"),
        ("missing path", lambda d: d / "nope.csv", "no such file"),
        ("ids mismatch", lambda d: _npz(d / "v.npz", 3, 4), "3 vectors but 4 ids"),
        ("nan vectors", lambda d: _npz(d / "nan.npz", 3, 3, nan=True), "NaN"),
        ("1-d vectors", lambda d: _npz_raw(d / "one.npz", np.zeros(2)), "2-D"),
        ("text vectors", lambda d: _npz_raw(d / "s.npz", np.array([["a", "b"], ["c", "d"]])), "numeric"),
        ("loose images", lambda d: _loose_images(d / "loose"), "one sub-folder per label"),
        ("empty image folder", lambda d: _mkdir(d / "empty"), "no image files"),
    ],
)
def test_bad_input_is_named_and_leaves_workspace_unchanged(
    ws: Workspace, tmp_path: Path, name: str, make, message: str
) -> None:
    ws.add_model("pre", "old", {"kind": "vectors", "dim": 3}, None)
    import_items(ws, _write(tmp_path / "seed.csv", "key,text\nkeep,kept item\n"))
    ws.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = _snapshot(ws.root)
    src = make(tmp_path)
    with pytest.raises(InputError) as err:
        import_items(ws, src, model="pre" if str(src).endswith(".npz") else None)
    assert message in str(err.value)
    assert str(Path(src).name) in str(err.value) or Path(src).name in str(err.value.source)
    ws.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert _snapshot(ws.root) == before, f"{name}: workspace changed"
    assert [i["key"] for i in ws.items()] == ["keep"]


def test_named_key_and_label_columns_must_exist(ws: Workspace, tmp_path: Path) -> None:
    """Under their default names the key and label columns are optional; a column the user names is
    not, so a typo is refused instead of silently giving generated keys or no labels."""
    csv_file = _write(tmp_path / "t.csv", "id,text,cls\na,x,1\nb,y,2\n")
    jl = _write(tmp_path / "t.jsonl", '{"id": "a", "text": "x", "cls": 1}\n{"text": "y"}\n')
    for kwargs, message in [({"key_col": "nosuch"}, "no 'nosuch' column"),
                            ({"key_col": "id", "label_col": "nosuch"}, "no 'nosuch' column")]:
        with pytest.raises(ImportDataError, match=message):
            import_items(ws, csv_file, **kwargs)
    with pytest.raises(ImportDataError, match="line 2: no 'id' field"):
        import_items(ws, jl, key_col="id")
    with pytest.raises(ImportDataError, match="no record has the 'nosuch' field"):
        import_items(ws, _write(tmp_path / "u.jsonl", '{"text": "y"}\n'), label_col="nosuch")
    assert ws.items() == []
    assert import_items(ws, csv_file, key_col="id", label_col="cls")["count"] == 2
    assert {(i["key"], i["label"]) for i in ws.items()} == {("a", "1"), ("b", "2")}


def test_keys_already_in_workspace_are_refused_whole(ws: Workspace, tmp_path: Path) -> None:
    import_items(ws, _write(tmp_path / "a.csv", "key,text\na,x\n"))
    with pytest.raises(ImportDataError, match="already exist"):
        import_items(ws, _write(tmp_path / "b.csv", "key,text\nb,y\na,z\n"))
    assert [i["key"] for i in ws.items()] == ["a"]


def test_vector_import_with_unknown_model_writes_nothing(ws: Workspace, tmp_path: Path) -> None:
    _npz(tmp_path / "v.npz", 2, 2)
    with pytest.raises(Exception, match="no model named 'ghost'"):
        import_items(ws, tmp_path / "v.npz", model="ghost")
    assert ws.items() == []


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _npz(path: Path, n_vec: int, n_ids: int, nan: bool = False) -> Path:
    vecs = np.ones((n_vec, 3), dtype=np.float32)
    if nan:
        vecs[1, 2] = np.nan
    np.savez(path, ids=np.array([f"k{i}" for i in range(n_ids)]), vectors=vecs)
    return path


def _npz_raw(path: Path, vectors: np.ndarray) -> Path:
    np.savez(path, ids=np.array([f"k{i}" for i in range(len(vectors))]), vectors=vectors)
    return path


def _npy(path: Path, arr: np.ndarray) -> Path:
    np.save(path, arr)
    path.with_suffix(".txt").write_text("a\nb\n")
    return path


def _loose_images(root: Path) -> Path:
    _image_folder(root, 1)
    Image.fromarray(np.zeros((4, 4), dtype=np.uint8), mode="L").save(root / "stray.png")
    return root


def _mkdir(path: Path) -> Path:
    path.mkdir()
    (path / "label").mkdir()
    return path


def test_vector_error_type(tmp_path: Path, ws: Workspace) -> None:
    with pytest.raises(VectorFileError, match="needs an id list"):
        import_items(ws, _npy(tmp_path / "x.npy", np.zeros((2, 3))))
