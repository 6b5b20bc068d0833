"""Every command that runs a stored model checkpoint refuses one that changed since it was added, as
``embed`` does: ``plan`` timed it and ``backfill`` stored its vectors (up to 0.009 away from the real
model's) without a word."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.workspace_files import table_dump

from embridge.core.cli.main import main
from embridge.core.store import Workspace


def _tamper(ws_path: Path, model: str) -> Path:
    with Workspace.open(ws_path) as ws:
        path = Path(ws.model(model)["path"])
    data = bytearray(path.read_bytes())
    data[len(data) // 2: len(data) // 2 + 4] = bytes(4)  # four bytes inside the weights
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(("argv", "model"), [
    (["plan", "--device", "cpu"], "new-cnn"),
    (["backfill", "--model", "new-cnn", "--name", "bf"], "new-cnn"),
    (["embed", "--model", "new-cnn", "--device", "cpu"], "new-cnn"),
    (["train", "--method", "bct", "--epochs", "1", "--device", "cpu"], "old-mlp"),  # the old classifier's weights
], ids=lambda a: a[0] if isinstance(a, list) else "")
def test_a_changed_checkpoint_is_refused_before_it_runs(demo_copy: Path, argv: list[str], model: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "-w", str(demo_copy), "--method", "affine", "--device", "cpu"]) == 0
    assert main(["report", "-w", str(demo_copy), "--bootstrap", "100"]) == 0  # plan reads it: no report to build
    path = _tamper(demo_copy, model)
    capsys.readouterr()
    rows = {k: v for k, v in table_dump(demo_copy).items() if k != "runs"}
    assert main([argv[0], "-w", str(demo_copy), *argv[1:]]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]  # beside progress lines
    assert errors == [f"embridge: error: {path}: file changed since the model was added (sha256 differs); add the "
                      f"checkpoint it was added from again ('embridge model add --name {model} --path ORIGINAL') "
                      "to restore it"], errors
    assert {k: v for k, v in table_dump(demo_copy).items() if k != "runs"} == rows  # no vectors stored
