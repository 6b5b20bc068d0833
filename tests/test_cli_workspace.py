"""The command line end to end: demo, info, init, import, model add, embed, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from embridge.core.cli.main import main
from embridge.core.store import Workspace


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict | str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    data = json.loads(out) if "--json" in args and code == 0 else out
    return code, data, err


def test_demo_info_json_shows_models_splits_and_vectors(demo_workspace_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "embridge.core.cli.main", "info", "--workspace", str(demo_workspace_path),
                          "--json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    models = {m["name"]: m for m in info["models"]}
    assert models["old-mlp"]["role"] == "old" and models["old-mlp"]["dim"] == 32
    assert models["new-cnn"]["role"] == "new" and models["new-cnn"]["dim"] == 64
    assert all(len(m["sha256"]) == 64 for m in models.values())
    assert info["items"] == {"gallery": 997, "query": 200}
    sets = {v["model"]: v for v in info["vector_sets"]}
    assert sets["old-mlp"]["count"] == 997 + 200 and sets["old-mlp"]["dim"] == 32
    assert sets["new-cnn"]["count"] == 600 + 200
    assert Path(sets["old-mlp"]["path"]).is_file()


def test_demo_command_builds_a_workspace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, data, err = run_cli(capsys, "demo", "--workspace", str(tmp_path / "w"), "--json")
    assert code == 0, err
    assert {m["name"] for m in data["models"]} == {"old-mlp", "new-cnn"}
    assert "demo:" in err  # progress goes to stderr, never stdout


def test_init_import_model_add_embed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = str(tmp_path / "w")
    assert run_cli(capsys, "init", "--workspace", ws)[0] == 0
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(30, 6)).astype(np.float32)
    np.savez(tmp_path / "items.npz", ids=np.array([f"it{i}" for i in range(30)]), vectors=vecs)
    code, data, err = run_cli(capsys, "import", "--workspace", ws, "--path", str(tmp_path / "items.npz"),
                              "--split", "gallery", "--json")
    assert code == 0, err
    assert data["count"] == 30
    # a TorchScript embedder taking the 6-d item vectors as input
    module = torch.jit.script(torch.nn.Sequential(torch.nn.Linear(6, 4)))
    module.save(str(tmp_path / "m.pt"))
    code, data, err = run_cli(capsys, "model", "add", "--workspace", ws, "--name", "m", "--path",
                              str(tmp_path / "m.pt"), "--role", "new", "--json")
    assert code == 0, err
    assert data["dim"] == 4 and data["kind"] == "torchscript"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["info", "--workspace", "{tmp}/nope"], "not an Embridge workspace"),
        (["model", "add", "--workspace", "{ws}", "--name", "x", "--path", "{tmp}/missing.pt"], "missing.pt"),
        (["import", "--workspace", "{ws}", "--path", "{tmp}/bad.csv"], "bad.csv"),
        (["embed", "--workspace", "{ws}", "--model", "ghost"], "no model named 'ghost'"),
        (["train", "--workspace", "{ws}", "--method", "procrustes"], "no model with role 'old'"),
        (["train", "--workspace", "{ws}", "--method", "procrustes", "--old", "ghost"],
         "--old: no model named 'ghost' in the workspace"),
        (["init", "--workspace", "{ws}"], "already exists"),
    ],
)
def test_errors_exit_non_zero_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            args: list[str], needle: str) -> None:
    ws = tmp_path / "w"
    assert main(["init", "--workspace", str(ws)]) == 0
    (tmp_path / "bad.csv").write_text("key,body\n1,2\n", encoding="utf-8")
    capsys.readouterr()
    filled = [a.format(tmp=tmp_path, ws=ws) for a in args]
    code = main(filled)
    out, err = capsys.readouterr()
    assert code != 0
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("embridge: error: ")
    assert needle in lines[0]


def test_import_options_of_the_other_source_are_refused_not_ignored(demo_copy: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """--format, --key-column and the like describe files; --label-field and --text-field a store's points.
    Each was silently ignored with the other source, and an empty --model fell back to a made-up name."""
    import numpy as np
    from store_fixtures import parquet_dataset

    uri = parquet_dataset(tmp_path / "docs", np.random.default_rng(0).standard_normal((20, 8)).astype(np.float32))
    csv = tmp_path / "items.csv"
    csv.write_text("key,text,label\na,hello,x\nb,world,y\n")
    ws = str(demo_copy)
    with Workspace.open(demo_copy) as opened:
        before = (opened.item_count(), len(opened.models()))
    for argv, problem in (
            (["--from", uri, "--model", ""], "--model: is empty"),
            (["--from", uri, "--model", "stored", "--format", "csv", "--key-column", "k"],
             "--format, --key-column: describe files given with --path or --qrels, not a store's points (--from)"),
            (["--path", str(csv), "--label-field", "label"],
             "--label-field: names a payload field of a store's points (--from URI)")):
        capsys.readouterr()
        code = main(["import", "--workspace", ws, *argv])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and problem in err, err
    with Workspace.open(demo_copy) as opened:
        assert (opened.item_count(), len(opened.models())) == before


def test_info_marks_a_vector_set_whose_file_was_removed(demo_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Workspace.open(demo_copy) as ws:
        gone = ws.vector_sets("new-cnn")[0]
    (demo_copy / gone["file"]).unlink()
    assert main(["info", "-w", str(demo_copy), "--json"]) == 0
    listed = {v["id"]: v for v in json.loads(capsys.readouterr().out)["vector_sets"]}
    assert listed[gone["id"]]["file_missing"] and sum(v["file_missing"] for v in listed.values()) == 1
    assert main(["info", "-w", str(demo_copy)]) == 0
    lines = [x for x in capsys.readouterr().out.splitlines() if x.strip().startswith(f"#{gone['id']} ")]
    assert len(lines) == 1 and "MISSING: its file is gone from the workspace" in lines[0]
    (demo_copy / gone["file"]).symlink_to("/dev/zero")  # replaced, not removed: said so, as info --verify does
    assert main(["info", "-w", str(demo_copy)]) == 0
    lines = [x for x in capsys.readouterr().out.splitlines() if x.strip().startswith(f"#{gone['id']} ")]
    assert len(lines) == 1 and "its file is no longer a regular file (replaced by a link" in lines[0]


def test_a_stopped_text_demo_is_told_to_build_the_text_demo_again(demo_copy: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from embridge.core.demo_workspace import MARKER

    (demo_copy / MARKER).write_text(json.dumps({"kept": [], "kind": "text"}), encoding="utf-8")
    assert main(["info", "-w", str(demo_copy)]) == 1
    err = capsys.readouterr().err
    assert f"run 'embridge demo --workspace {demo_copy} --kind text' again to finish it" in err


def test_control_and_format_characters_of_names_are_shown_not_obeyed(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A folder named with an escape sequence recoloured and retitled the terminal through `init`, `info` and
    some error lines; a right-to-left override reversed what followed it."""
    hostile = tmp_path / "esc\x1b[31mRED\x1b]0;TITLE\x07dir\u202erev"
    assert main(["init", "--workspace", str(hostile)]) == 0
    assert main(["info", "--workspace", str(hostile)]) == 0
    assert main(["info", "--workspace", str(hostile / "nows")]) == 1
    out, err = capsys.readouterr()
    for stream in (out, err):
        assert "\x1b" not in stream and "\x07" not in stream and "\u202e" not in stream, stream
    assert "esc\\x1b[31mRED\\x1b]0;TITLE\\x07dir\\u202erev" in out and "\\x1b[31mRED" in err
