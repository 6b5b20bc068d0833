"""Vectors of huge but finite values (1e37-1e38) through import, training and ``bundle apply``.

Squaring 1e38 overflows float32, so a naive L2 normalisation turned such rows into zero rows,
silently, in training and in ``bundle apply``. Here the same vectors go through the command line
once as they are and once with a few rows blown up to 1e38: the trained layers and their outputs
must agree, and no output row may be zero.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embridge.core.cli.main import main
from embridge.core.synthetic import class_structured_pair

N = 240
HUGE_ROWS = np.array([3, 17, 50, 101, 200])


def _huge(rows: np.ndarray, scale: float = 1e38) -> np.ndarray:
    """``rows`` rescaled so their largest magnitude is ``scale`` (values spread over 1e36-1e38)."""
    out = rows.astype(np.float64) * (scale / np.abs(rows).max(axis=1, keepdims=True))
    return out.astype(np.float32)


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    capsys.readouterr()
    assert main([*argv, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def _workspace(root: Path, old: np.ndarray, new: np.ndarray, labels: np.ndarray,
               capsys: pytest.CaptureFixture[str]) -> Path:
    """A workspace built only through ``embridge``: items, two embeddings-only models, their vectors."""
    root.mkdir()
    keys = [f"item-{i:03d}" for i in range(N)]
    (root / "items.csv").write_text("key,text,label\n" + "".join(f"{k},text {k},{int(y)}\n"
                                                                  for k, y in zip(keys, labels, strict=True)))
    np.savez(root / "old.npz", ids=np.array(keys), vectors=old)
    np.savez(root / "new.npz", ids=np.array(keys), vectors=new)
    ws = str(root / "ws")
    _cli(capsys, "init", "-w", ws)
    _cli(capsys, "import", "-w", ws, "--path", str(root / "items.csv"))
    for name in ("old", "new"):
        _cli(capsys, "model", "add", "-w", ws, "--name", name, "--path", str(root / f"{name}.npz"), "--role", name)
        _cli(capsys, "embed", "-w", ws, "--model", name)
    return root / "ws"


@pytest.fixture(scope="module")
def pair() -> Any:
    return class_structured_pair(N, 6, old_dim=16, new_dim=24, old_seen_classes=6, seed=5)


def test_the_premise_a_naive_norm_of_such_rows_is_infinite() -> None:
    row = _huge(np.ones((1, 24), np.float32))
    with np.errstate(over="ignore"):
        assert np.isinf(np.linalg.norm(row, axis=1)).all()


def test_training_and_bundle_apply_treat_huge_rows_like_their_scaled_down_selves(
        pair: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    blown = pair.new.copy()
    blown[HUGE_ROWS] = _huge(pair.new[HUGE_ROWS])
    assert 1e37 < float(np.abs(blown[HUGE_ROWS]).max()) <= 1e38
    outputs = {}
    for name, new in (("plain", pair.new), ("huge", blown)):
        ws = _workspace(tmp_path / name, pair.old, new, pair.labels, capsys)
        run = _cli(capsys, "train", "-w", str(ws), "--method", "procrustes", "--device", "cpu")
        run_id = str(run.get("run_id", run.get("id")))
        bundle = tmp_path / f"{name}.zip"
        _cli(capsys, "bundle", "export", "-w", str(ws), "--run", run_id, "--out", str(bundle))
        np.save(tmp_path / f"{name}-in.npy", new)
        _cli(capsys, "bundle", "apply", str(bundle), "--vectors", str(tmp_path / f"{name}-in.npy"),
             "--out", str(tmp_path / f"{name}-out.npy"), "--normalise")
        outputs[name] = np.load(tmp_path / f"{name}-out.npy")
        # the same bundle on its own huge rows: what the scaled-down rows give
        np.save(tmp_path / f"{name}-blown.npy", blown)
        _cli(capsys, "bundle", "apply", str(bundle), "--vectors", str(tmp_path / f"{name}-blown.npy"),
             "--out", str(tmp_path / f"{name}-blown-out.npy"), "--normalise")
        on_blown = np.load(tmp_path / f"{name}-blown-out.npy")
        np.testing.assert_allclose(on_blown, outputs[name], rtol=1e-4, atol=1e-5)
    # the layer trained with five rows at 1e38 is the layer trained on the plain vectors
    np.testing.assert_allclose(outputs["huge"], outputs["plain"], rtol=1e-4, atol=1e-5)
    norms = np.linalg.norm(outputs["huge"], axis=1)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-5)  # no zero rows, no NaN
    assert np.isfinite(outputs["huge"]).all()
