"""A vector set whose vectors all point one way is refused, whichever way it would be stored.

A text model of zero weights passes the probe (a bag of words gives a zero vector for unknown words,
so a zero vector alone is no proof), but every item it embeds gets the same vector: cosine search
then ranks by ties in gallery order, and the reports read those ties as retrieval. Embedding,
importing and attaching such a set stop with one line and store nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from text_fixtures import tiny_sentence_transformer

from embridge.core.cli.main import main
from embridge.core.store import Workspace
from embridge.core.vector_spread import SAMPLE_ROWS, one_direction

TEXTS = ["the cat sat on the mat", "a dog ran in the park", "bird sang in a tree", "the old man and the sea",
         "fish", "a cat and a dog"]


def _error_lines(capfd: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capfd.readouterr().err.splitlines() if line.startswith("embridge:")]


def _zeroed_sentence_transformer(folder: Path, bias: float) -> Path:
    """A sentence-transformers folder whose every weight is 0 (every bias ``bias``): one vector for all."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_sentence_transformer(folder.parent / "seed-model")), device="cpu")
    with torch.no_grad():
        for name, tensor in model.named_parameters():
            tensor.fill_(bias if name.endswith("bias") else 0.0)
    model.save(str(folder))
    return folder


@pytest.mark.parametrize(("bias", "found"), [(0.0, "are zero"), (0.3, "point the same way")])
def test_a_text_model_of_constant_weights_is_refused_when_it_embeds(
        tmp_path: Path, capfd: pytest.CaptureFixture[str], bias: float, found: str) -> None:
    folder = _zeroed_sentence_transformer(tmp_path / "flat", bias)
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({"key": f"k{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS)))
    ws_dir = tmp_path / "ws"
    assert main(["init", "-w", str(ws_dir)]) == 0
    assert main(["import", "-w", str(ws_dir), "--path", str(items), "--split", "gallery"]) == 0
    assert main(["model", "add", "-w", str(ws_dir), "--path", str(folder), "--name", "flat", "--role", "new"]) == 0
    capfd.readouterr()
    assert main(["embed", "-w", str(ws_dir), "--model", "flat"]) == 1
    errors = _error_lines(capfd)
    assert len(errors) == 1 and errors[0].startswith("embridge: error: vectors of model 'flat'"), errors
    assert f"all {len(TEXTS)} vectors {found}: the model gives one vector whatever the item" in errors[0]
    with Workspace.open(ws_dir) as ws:
        assert ws.vector_sets("flat") == []
    assert not list((ws_dir / "vectors").rglob("*.npy"))


def test_vectors_of_one_direction_are_refused_at_model_add_and_at_import(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    ws_dir = tmp_path / "ws"
    assert main(["init", "-w", str(ws_dir)]) == 0
    rng = np.random.default_rng(0)
    keys = np.array([f"k{i}" for i in range(50)])
    good = tmp_path / "good.npz"
    np.savez(good, ids=keys, vectors=rng.standard_normal((50, 8)))
    assert main(["model", "add", "-w", str(ws_dir), "--path", str(good), "--name", "old", "--role", "old"]) == 0
    assert main(["import", "-w", str(ws_dir), "--path", str(good), "--split", "gallery"]) == 0
    before = _state(ws_dir)
    repeated = tmp_path / "repeated.npz"  # one row over and over, at several lengths
    np.savez(repeated, ids=keys, vectors=np.outer(rng.uniform(1, 3, 50), rng.standard_normal(8)))
    capfd.readouterr()
    assert main(["model", "add", "-w", str(ws_dir), "--path", str(repeated), "--name", "flat", "--role", "new"]) == 1
    errors = _error_lines(capfd)
    assert len(errors) == 1 and "repeated.npz: vectors: all 50 vectors point the same way" in errors[0], errors
    assert main(["import", "-w", str(ws_dir), "--path", str(repeated), "--model", "old"]) == 1
    errors = _error_lines(capfd)
    assert len(errors) == 1 and "all 50 vectors point the same way" in errors[0], errors
    assert _state(ws_dir) == before


def _state(ws_dir: Path) -> tuple:
    with Workspace.open(ws_dir) as ws:
        return (len(ws.items()), [m["name"] for m in ws.models()],
                [(s["id"], s["count"]) for m in ws.models() for s in ws.vector_sets(m["name"])])


def test_the_check_reads_directions_not_lengths_and_needs_every_row_alike() -> None:
    rng = np.random.default_rng(1)
    row = rng.standard_normal(16).astype(np.float32)
    scaled = row[None, :] * rng.uniform(0.1, 9.0, (40, 1)).astype(np.float32)
    assert one_direction(scaled) == "point the same way"
    assert one_direction(np.zeros((40, 16), np.float16)) == "are zero"
    assert one_direction(np.tile(row, (2, 1))) is None  # two duplicates are no evidence
    varied = scaled.copy()
    varied[17] = rng.standard_normal(16)
    assert one_direction(varied) is None
    mixed = np.zeros((40, 16), np.float32)
    mixed[5] = row  # a zero row and a direction are not one vector
    assert one_direction(mixed) is None
    noisy = (scaled + 1e-6 * rng.standard_normal(scaled.shape)).astype(np.float16)  # one way, float16's rounding
    assert one_direction(noisy) == "point the same way"
    assert one_direction(rng.standard_normal((40, 16)).astype(np.float16)) is None
    big = np.tile(row, (SAMPLE_ROWS * 3, 1))
    assert one_direction(big) == "point the same way"
    big[::2] = rng.standard_normal(16)
    assert one_direction(big) is None
