"""Where the new model is no better than the old one, the gain retained is undefined, and every
command says so in the same words (train, report, and the app's pages through the same helper)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from embridge.core.cli.main import main
from embridge.core.evaluation.compat import NOT_BETTER
from embridge.core.store import Workspace
from embridge.core.synthetic import class_structured_pair


def test_train_and_report_say_an_undefined_gain_alike(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pair = class_structured_pair(400, 6, old_dim=16, new_dim=16, old_seen_classes=6, seed=2)
    rotation = np.linalg.qr(np.random.default_rng(2).standard_normal((16, 16)))[0]
    with Workspace.create(tmp_path / "ws") as ws:  # the new model is the old one turned: it finds the same
        ids = ws.add_items([{"key": f"i{i}", "label": str(int(pair.labels[i])),
                             "split": "query" if i < 100 else "gallery"} for i in range(400)])
        for name, role, vectors in (("old", "old", pair.old), ("new", "new", pair.old @ rotation)):
            ws.add_model(name, role, {"name": name, "kind": "vectors", "dim": 16,
                                      "sha256": name.encode().hex().ljust(64, "0")}, None)
            ws.add_vector_set(name, ids, vectors)
    ws_dir = str(tmp_path / "ws")
    assert main(["train", "-w", ws_dir, "--method", "procrustes", "--device", "cpu"]) == 0
    trained = capsys.readouterr().out
    assert main(["report", "-w", ws_dir, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["gain_retained"] is None and data["gain_retained_note"] == NOT_BETTER
    assert main(["report", "-w", ws_dir]) == 0
    reported = capsys.readouterr().out
    said = f"undefined — {NOT_BETTER}"
    assert said in trained and f"gain retained {said}" in reported and "n/a" not in reported.split("flips")[0]
