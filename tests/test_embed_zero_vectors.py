"""`embed` says how many items a model gave an all-zero vector: no search finds them and bundles and
migrations refuse them, so they must not be stored silently (a bag of words reading no known word)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers.vector_workspaces import gallery_workspace

from embridge.core.cli.main import main
from embridge.core.demo_text import save_encoder, whitespace_tokenizer
from embridge.core.embed import embed_items
from embridge.core.errors import Cancelled
from embridge.core.store import Workspace

VOCAB = ["probe", "sentence", "another", "slightly", "longer", "cat", "dog", "fish", "mat"]
TEXTS = {"d0": "cat on a mat", "d1": "zebra okapi", "d2": "dog and fish", "d3": "quagga", "d4": "a fish"}


@pytest.fixture()
def workspace(tmp_path: Path) -> Path:
    folder = save_encoder(tmp_path / "bow", whitespace_tokenizer(VOCAB),
                          np.random.default_rng(0).standard_normal((len(VOCAB), 8)).astype(np.float32), "")
    root, docs = tmp_path / "ws", tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"key": k, "text": t}) + "\n" for k, t in TEXTS.items()))
    w = ["--workspace", str(root)]
    assert main(["init", *w]) == 0
    assert main(["import", *w, "--path", str(docs), "--format", "jsonl", "--split", "gallery"]) == 0
    assert main(["model", "add", *w, "--name", "bow", "--path", str(folder)]) == 0
    return root


def test_embed_counts_and_names_all_zero_vectors(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["embed", "--workspace", str(workspace), "--model", "bow", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["zero_vectors"], out["zero_vector_example"]) == (2, "d1")
    with Workspace.open(workspace) as ws:
        stored = ws.vectors_for("bow", ws.item_ids())
    assert int((~stored.any(axis=1)).sum()) == 2  # stored as given, and counted


def test_the_count_covers_rows_an_interrupted_run_stored(workspace: Path) -> None:
    calls = []

    def stop_after_two_chunks() -> bool:
        calls.append(1)
        return len(calls) > 2

    with Workspace.open(workspace) as ws:
        ids = ws.item_ids()
        with pytest.raises(Cancelled):
            embed_items(ws, "bow", ids, chunk_size=2, device="cpu", should_stop=stop_after_two_chunks)
        info = embed_items(ws, "bow", ids, chunk_size=2, device="cpu")
    assert (info["zero_vectors"], info["zero_vector_example"]) == (2, "d1")


def test_a_clean_embed_says_nothing_about_zero_vectors(tmp_path: Path, workspace: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    with Workspace.open(workspace) as ws:
        ids = [i for i, it in zip(ws.item_ids(), ws.items(ids=ws.item_ids()), strict=True)
               if it["key"] in ("d0", "d2", "d4")]
        info = embed_items(ws, "bow", ids, device="cpu")
    assert "zero_vectors" not in info and info["count"] == 3


def test_a_vector_files_all_zero_rows_are_counted_by_embed_and_import(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A vectors-only model's zero rows were stored without a word by ``embed`` and by ``import --format
    vectors``, where a model giving them is named."""
    keys = [f"doc{i}" for i in range(60)]
    vectors = np.random.default_rng(3).normal(size=(60, 8)).astype(np.float32)
    vectors[[7, 8, 40]] = 0.0
    np.savez(tmp_path / "v.npz", ids=np.array(keys), vectors=vectors)
    np.savez(tmp_path / "old.npz", ids=np.array(keys), vectors=np.ones((60, 4), dtype=np.float32) + np.eye(60, 4))
    w = gallery_workspace(tmp_path / "ws", tmp_path / "old.npz")
    assert main(["model", "add", *w, "--name", "v", "--path", str(tmp_path / "v.npz")]) == 0
    capsys.readouterr()
    assert main(["embed", *w, "--model", "v", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["zero_vectors"], out["zero_vector_example"]) == (3, "doc7")
    np.savez(tmp_path / "v2.npz", ids=np.array(keys), vectors=vectors + 1.0)
    assert main(["model", "add", *w, "--name", "v2", "--path", str(tmp_path / "v2.npz")]) == 0
    capsys.readouterr()
    assert main(["import", *w, "--format", "vectors", "--path", str(tmp_path / "v.npz"), "--model", "v2"]) == 0
    assert "3 items got an all-zero vector (e.g. 'doc7')" in capsys.readouterr().out
