"""Imported vectors whose lengths vary widely get a note: Embridge measures by cosine, a served index may not."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from embridge.core.cli.main import main
from embridge.core.vector_lengths import length_note

RNG = np.random.default_rng(5)


def _unit(n: int, d: int = 16) -> np.ndarray:
    x = RNG.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_lengths_that_carry_popularity_are_noted_and_model_like_ones_are_not() -> None:
    unit = _unit(3000)
    assert length_note(unit) is None
    assert length_note(unit * RNG.uniform(0.8, 1.25, (3000, 1)).astype(np.float32)) is None  # a model's own spread
    popular = unit * np.exp(RNG.normal(0.0, 1.2, (3000, 1))).astype(np.float32)  # a log-normal popularity factor
    note = length_note(popular)
    assert note is not None and "lengths vary widely" in note and "raw inner product" in note
    lengths = np.linalg.norm(popular, axis=1)
    low, high = np.percentile(lengths, [5, 95])
    assert f"{low:.3g} to {high:.3g}" in note  # a sample of 4,096 rows takes all 3,000: the file's own percentiles


def test_an_import_of_such_vectors_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = tmp_path / "ws"
    assert main(["init", "--workspace", str(ws)]) == 0
    keys = np.array([f"d{i}" for i in range(500)])
    plain, popular = tmp_path / "plain.npz", tmp_path / "popular.npz"
    np.savez(plain, ids=keys, vectors=_unit(500))
    np.savez(popular, ids=keys, vectors=_unit(500) * np.geomspace(0.5, 80.0, 500)[:, None].astype(np.float32))
    for name, path in (("plain", plain), ("popular", popular)):
        assert main(["model", "add", "--workspace", str(ws), "--name", name, "--path", str(path)]) == 0
    capsys.readouterr()
    assert main(["import", "--workspace", str(ws), "--format", "vectors", "--path", str(plain), "--model", "plain",
                 "--split", "gallery"]) == 0
    assert "note:" not in capsys.readouterr().out
    assert main(["import", "--workspace", str(ws), "--format", "vectors", "--path", str(popular), "--model", "popular",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "lengths vary widely" in out["note"]


def test_vectors_that_point_almost_one_way_are_noted() -> None:
    """A common offset of 1e4 with unit noise: directions differ by about 3e-7, below what float32 cosine
    scores resolve, so every search ranks them by rounding; nothing said so."""
    from embridge.core.vector_lengths import narrow_note, vector_notes

    offset = (1e4 + RNG.standard_normal((2000, 32))).astype(np.float32)
    note = narrow_note(offset)
    assert note is not None and "point almost the same way" in note and "centre" in note
    unit = offset.astype(np.float64) / np.linalg.norm(offset.astype(np.float64), axis=1, keepdims=True)
    gap = float(np.median(1.0 - np.einsum("ij,ij->i", unit[:-1], unit[1:])))
    stated = float(note.split("sampled rows ")[1].split(")")[0])  # neighbours within blocks of the sample
    assert gap < 1e-6 and abs(stated - gap) < 0.1 * gap
    centred = offset - offset.mean(axis=0)
    assert narrow_note(centred) is None and narrow_note(_unit(2000)) is None
    clustered = (_unit(2000) + 3.0 * _unit(1)).astype(np.float32)  # one dominant direction, items still apart
    assert narrow_note(clustered) is None
    both = vector_notes(offset * np.geomspace(0.5, 80.0, 2000)[:, None]) or ""
    assert "lengths vary widely" in both and "point almost the same way" in both
