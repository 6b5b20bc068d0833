"""Paths and values that are no usage error yet must still be one line: a link that leads back to itself,
a FIFO given as a model, a JUnit file whose name argparse refused, a model config torch would choke on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from embridge.core.cli.main import main

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("argv", [["init", "-w", "{loop}"], ["demo", "-w", "{loop}"], ["info", "-w", "{loop}"]])
def test_a_link_that_leads_to_itself_is_named_with_the_systems_words(argv: list[str], tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Python 3.11's Path.resolve raises RuntimeError for it: told as 'unexpected RuntimeError', exit 3."""
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    assert main([a.replace("{loop}", str(loop)) for a in argv]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"embridge: error: {loop}") and \
        "Too many levels of symbolic links" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loop"]


def test_a_junit_file_refused_by_name_is_not_written_after_the_refusal(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["report", "-w", str(tmp_path / "ws"), "--junit", "   "]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []  # a file named '   ' was written with the refusal as its error case


def test_a_fifo_given_as_embed_datasets_model_is_refused_by_kind(tmp_path: Path) -> None:
    """Its checkpoint was hashed before its kind was checked: the command blocked for good."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "items").mkdir()
    inputs = pa.array([np.zeros(4, np.float32).tolist()] * 2, type=pa.list_(pa.float32(), 4))
    pq.write_table(pa.table({"id": [1, 2], "input": inputs}),
                   tmp_path / "items" / "part-0.parquet")
    os.mkfifo(tmp_path / "m.pt")
    done = subprocess.run([sys.executable, "-m", "embridge.core.cli.main", "embed-dataset", "--model",
                           str(tmp_path / "m.pt"), "--from", f"parquet://{tmp_path}/items", "--to",
                           f"parquet://{tmp_path}/out"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert "m.pt: is a FIFO (named pipe); the checkpoint must be a regular file or folder" in done.stderr
    assert not (tmp_path / "out").exists()


def test_a_config_without_a_classifier_written_as_null_still_builds() -> None:
    """An earlier version built ``num_classes: null`` (or false) as no classifier; stored models keep it."""
    from embridge.core.models.builtin import build_model

    for none in (None, False):
        module, shape = build_model("mlp", {"input_dim": 8, "out_dim": 4, "num_classes": none})
        assert module.classifier is None and shape == (8,)


@pytest.mark.parametrize(("config", "said"), [
    ('{"input_dim": 9223372036854775808, "out_dim": 4}', "input_dim must be a whole number from 0 to 16,777,216"),
    ('{"input_dim": 8.5, "out_dim": 4}', "input_dim must be a whole number"),
    ('{"input_dim": 8, "out_dim": 4, "hidden": [16, true]}', "hidden must be a whole number"),
])
def test_a_built_in_models_config_is_checked_before_torch_builds_it(config: str, said: str, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """torch's refusal of such a size was its C++ stack, 2,000 characters in the one error line."""
    from embridge.core.models.builtin import build_model, save_checkpoint

    module, _ = build_model("mlp", {"input_dim": 8, "out_dim": 4})
    save_checkpoint(tmp_path / "sd.pt", module, "mlp", {"input_dim": 8, "out_dim": 4})
    ws = tmp_path / "ws"
    assert main(["init", "-w", str(ws)]) == 0
    capsys.readouterr()
    assert main(["model", "add", "-w", str(ws), "--name", "m", "--path", str(tmp_path / "sd.pt"), "--arch", "mlp",
                 "--arch-config", config]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and said in err and "frame #" not in err and len(err) < 300, err


@pytest.fixture(scope="module")
def fct_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from store_fixtures import fct_upgrade

    return Path(fct_upgrade(tmp_path_factory.mktemp("odd-paths"))["bundle"])


def test_new_vectors_that_are_a_fifo_or_empty_are_one_line(fct_bundle: Path, tmp_path: Path) -> None:
    """A FIFO blocked the migration for good; an empty file or /dev/null was 'unexpected EOFError', exit 3."""
    fifo, empty = tmp_path / "new.npz", tmp_path / "empty.npz"
    os.mkfifo(fifo)
    empty.write_bytes(b"")
    for given, said in ((fifo, "is a FIFO (named pipe); the --new-vectors file must be a regular file"),
                       (empty, "unreadable --new-vectors file (it is empty)"), (Path("/dev/null"), "is a device")):
        done = subprocess.run([sys.executable, "-m", "embridge.core.cli.main", "migrate", "--bundle", str(fct_bundle),
                               "--from", f"parquet://{tmp_path}/a", "--to", f"parquet://{tmp_path}/b",
                               "--new-vectors", str(given)], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert done.returncode == 1 and done.stderr.count("\n") == 1 and said in done.stderr, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.npz", "new.npz"]


@pytest.mark.parametrize(("argv", "code", "said"), [
    (["embed-dataset", "--model", "{tmp}/m.pt", "--from", "parquet://{tmp}/in", "--to", "parquet://{tmp}/out",
      "--order", "{tmp}/empty.npy"], 1, "cannot read the id order"),
    (["embed-dataset", "--model", "{tmp}/m.pt", "--from", "parquet://{tmp}/in", "--to", "parquet://{tmp}/out",
      "--input-shape", " "], 2, "argument --input-shape: is empty"),
    (["model", "add", "-w", "{tmp}/ws", "--name", "m", "--path", "{tmp}/m.pt", "--kind", ""], 2,
     "argument --kind: is empty"),
    (["model", "add", "-w", "{tmp}/ws", "--name", "m", "--path", "{tmp}/m.pt", "--arch", "mlp", "--arch-config",
      "[" * 5000 + "]" * 5000], 2, "--arch-config: nested too deeply to be read as JSON"),
    (["model", "add", "-w", "{tmp}/ws", "--name", "m", "--path", "{tmp}/m.pt", "--arch", "mlp", "--arch-config",
      "[]"], 2, "--arch-config: expected a JSON object"),
    (["model", "add", "-w", "{tmp}/ws", "--name", "m", "--path", "{tmp}/m.pt", "--input-shape", "0"], 2,
     "--input-shape: expected positive integers like 1,28,28, got '0'"),
    (["model", "add", "-w", "{tmp}/ws", "--name", "m", "--path", "{tmp}/m.pt", "--input-shape", "\uff14"], 2,
     "--input-shape: expected integers like 1,28,28, got '\uff14'"),  # a full-width 4, which int() reads
    (["model", "add", "-w", "{tmp}/ws", "--name", "a/b", "--path", "{tmp}/m.pt"], 2, "--name 'a/b': use 1 to 64"),
    (["train", "-w", "{tmp}/ws", "--method", "0"], 2, "error: --method: unknown method '0'; choose one of"),
    # an alias's form is refused before the store is opened: opening a LanceDB one made its folder
    (["migrate", "--bundle", "{tmp}/b.zip", "--from", "parquet://{tmp}/in", "--to", "lancedb://{tmp}/out?table=x",
      "--switch", "--alias", "a/b"], 2, "--alias 'a/b': use 1 to 64"),
    (["rollback", "--to", "lancedb://{tmp}/out?table=x", "--alias", "a/b"], 2, "--alias 'a/b': use 1 to 64"),
    (["rollback", "--to", "lancedb://{tmp}/out?table=x&alias=" + "a" * 70], 2, "--to '" + "a" * 70 + "': use 1 to 64"),
    (["backfill", "-w", "{tmp}/ws", "--model", "m", "--order", "planner", "--fraction", "0"], 2,
     "argument --fraction: expected a number above 0"),
    # the plan accepted 0 and left its partial-backfill option out without a word
    (["plan", "-w", "{tmp}/ws", "--fraction", "0"], 2, "argument --fraction: expected a number above 0"),
    (["transform", "--bundle", "{tmp}/b.zip", "--from", "parquet://{tmp}/in", "--to", "parquet:{tmp}/out"], 1,
     "a dataset URI needs '://' after its scheme (did you mean parquet:///"),
])
def test_odd_values_of_dataset_and_model_options_are_one_line(argv: list[str], code: int, said: str, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Each was a traceback-class error (EOFError, TypeError, RecursionError: exit 3), a refusal after work,
    a folder named 'parquet:' made in the current one, or an option's refusal with exit status 1, not 2."""
    from embridge.core.models.builtin import build_model, save_checkpoint

    module, _ = build_model("mlp", {"input_dim": 4, "out_dim": 2})
    save_checkpoint(tmp_path / "m.pt", module, "mlp", {"input_dim": 4, "out_dim": 2})
    (tmp_path / "empty.npy").write_bytes(b"")
    assert main(["init", "-w", str(tmp_path / "ws")]) == 0
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    capsys.readouterr()
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and said in err and "unexpected" not in err, err
    assert list(work.iterdir()) == [] and not (tmp_path / "out").exists()


def test_embed_dataset_names_num_gpus_when_this_machine_has_no_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Locally it said "device 'cuda' was requested" without naming the option that asked for it."""
    import torch

    from embridge.core.models.builtin import build_model, save_checkpoint

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    module, _ = build_model("mlp", {"input_dim": 4, "out_dim": 2})
    save_checkpoint(tmp_path / "m.pt", module, "mlp", {"input_dim": 4, "out_dim": 2})
    assert main(["embed-dataset", "--model", str(tmp_path / "m.pt"), "--from", f"parquet://{tmp_path}/in", "--to",
                 f"parquet://{tmp_path}/out", "--num-gpus", "1"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("embridge: error: --num-gpus") and "CUDA" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]
