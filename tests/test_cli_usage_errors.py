"""A refused option or combination of options: one line naming it, exit status 2, before any work.

argparse gives status 2 for the values it refuses itself; the combinations the commands check
afterwards give the same, so a script tells misuse (2) from a failed run or a failed gate (1).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from embridge.core.cli.main import main

CASES = [
    (["backfill", "--model", "m", "--detach"], "backfill", "--detach: submits a job to a Ray cluster"),
    (["backfill", "--model", "m", "--actors", "2"], "backfill", "--actors: sizes the Ray actor pool; it needs --engine ray"),
    (["report", "--shards", "3"], "report", "--shards: splits the gallery across Ray workers; it needs --engine ray"),
    (["report", "--engine", "ray", "--search", "ivf"], "report", "--search: --engine ray searches shards exactly"),
    (["report", "--junit", "{tmp}/gate.xml"], "report", "--junit: needs at least one --fail-under check"),
    (["chain", "--models", "a,,b", "--runs", "1,2"], "chain", "--models: has an empty entry in 'a,,b'"),
    (["import"], "import", "give --path (a folder or file to import), --from URI, or --qrels FILE"),
    (["import", "--from", "parquet:///{tmp}/store", "--model", " "], "import", "--model: is empty"),
    (["import", "--path", "{tmp}/x.csv", "--label-field", "label"], "import",
     "--label-field: names a payload field of a store's points"),
    (["migrate", "--bundle", "{tmp}/b.zip", "--from", "parquet:///{tmp}/a", "--to", "parquet:///{tmp}/b",
      "--engine", "ray", "--order", "planner"], "migrate", "--engine ray: migrates through the bundle only"),
    # a run id SQLite cannot hold (it crashed with OverflowError, exit 3), an empty or malformed id list
    (["report", "--run", "9223372036854775808"], "report", "argument --run: expected an integer from 1 to "
     "9223372036854775807"),
    (["bundle", "export", "--chain", "", "--out", "{tmp}/x.zip"], "bundle export",
     "argument --chain: expected comma-separated run ids, got ''"),
    (["chain", "--models", "a,b", "--runs", "1,"], "chain", "argument --runs: expected comma-separated run ids"),
    (["embed", "--model", "m", "--sample", "1_0"], "embed", "argument --sample: expected an integer"),
    # options the command would ignore, and blank values that would silently mean the default
    (["import", "--path", "{tmp}/x.csv", "--model", "old"], "import", "--model: describes a vector file"),
    (["import", "--path", "{tmp}/x.csv", "--qrels-seed", "7"], "import", "--qrels-seed: seeds the split of --qrels"),
    # --split with --qrels alone is the judgments' split: 'test' was ignored and the judgments split at random
    (["import", "--qrels", "{tmp}/j.tsv", "--split", "banana"], "import",
     "--split: with --qrels alone names the judgments' split (train, dev, test), not 'banana'"),
    (["import", "--qrels", "{tmp}/j.tsv", "--model", "old", "--format", "csv"], "import",
     "--format, --model: describe items to import with --path; --qrels alone imports judgments only"),
    (["import", "--qrels", "{tmp}/j.tsv", "--split", "test", "--qrels-seed", "3"], "import",
     "--qrels-seed: seeds a random split of the judgments, and --split gives theirs"),
    (["jobs", "list", "--run", "3"], "jobs", "--run: names one job for status, attach or cancel"),
    (["jobs", "status"], "jobs", "--run: jobs status needs the job's run id"),
    (["check", "--uri", "parquet:///{tmp}/s", "--served-as", "v2"], "check", "--served-as: chooses the points"),
    (["embed", "--model", "m", "--split", " "], "embed", "argument --split: is empty"),
    (["train", "--method", "mlp", "--device", ""], "train", "argument --device: is empty"),
    (["report", "--engine", "ray", "--ray-address", ""], "report", "argument --ray-address: is empty"),
    # a cluster keeps its own CPUs: --num-cpus there was accepted and did nothing
    (["transform", "--bundle", "{tmp}/b.zip", "--from", "parquet:///{tmp}/a", "--to", "parquet:///{tmp}/b",
      "--engine", "ray", "--ray-address", "127.0.0.1:6379", "--num-cpus", "1"], "transform",
     "--num-cpus: sizes the local Ray started for the job; the cluster --ray-address names keeps its own CPUs"),
    (["report", "--engine", "ray", "--ray-address", "host:abc"], "report",
     "--ray-address: 'host:abc' is not HOST:PORT or ray://HOST:PORT (a port from 1 to 65535)"),
    # a local Ray of 4,096 CPUs on two cores started one actor a partition, 30 at once (9 GB)
    (["transform", "--bundle", "{tmp}/b.zip", "--from", "parquet:///{tmp}/a", "--to", "parquet:///{tmp}/b",
      "--engine", "ray", "--num-cpus", "4096"], "transform", "--num-cpus: asks for 4096 CPUs, but this machine has "),
    # a setting with its own option, given through --set: one way each, checked by its option
    (["train", "--method", "mlp", "--set", "lr=1e300"], "train", "--set: lr has its own option: use --lr"),
    (["train", "--method", "mlp", "--set", "device=banana"], "train", "--set: device has its own option"),
    # an unknown setting's list of known ones offers the options, not the settings --set refuses
    (["train", "--method", "mlp", "--set", "epochz=3"], "train", "unknown setting(s) epochz for method 'mlp'; "
     "known: amp, bank_size, hard_every, hard_negatives, hidden, patience, temperature, weight_decay (and the "
     "options --batch-size, --device, --epochs, --loss, --lr, --seed)"),
    # a second value of a one-value option: argparse kept the last silently (the first file went unread)
    (["import", "--path", "{tmp}/a.csv", "--split", "gallery", "--path", "{tmp}/b.jsonl"], "import",
     "argument --path: given more than once; give it once"),
    (["report", "--run", "1", "--run", "2"], "report", "argument --run: given more than once"),
    (["model", "add", "--name", "m", "--path", "{tmp}/m.pt", "--input-shape", " "], "model add",
     "argument --input-shape: is empty"),
    # a value missing: argparse's line only (a second parse, for --junit, printed its own usage and error)
    (["report", "--junit"], "report", "argument --junit: expected one argument"),
    # a 5,000-character value refused by argparse: cut in its middle as every error line is
    (["report", "--search", "x" * 5000], "report", "characters left out"),
    # a blank name of a column or field silently meant the default one (or no quality measure at all)
    (["check", "--uri", "parquet:///{tmp}/s", "--label-field", " "], "check", "argument --label-field: is empty"),
    (["transform", "--bundle", "{tmp}/b.zip", "--from", "parquet:///{tmp}/a", "--to", "parquet:///{tmp}/b",
      "--id-column", ""], "transform", "argument --id-column: is empty"),
    (["import", "--path", "{tmp}/x.csv", "--key-column", " "], "import", "argument --key-column: is empty"),
    (["rollback", "--to", "parquet:///{tmp}/a", "--alias", ""], "rollback", "argument --alias: is empty"),
    # a value as typed is shown, not obeyed by the terminal
    (["report", "--bootstrap", "1\x1b[2J"], "report", "got '1\\x1b[2J'"),
    (["report", "--search", "\x1b]0;title\x07"], "report", "invalid choice: '\\x1b]0;title\\x07'"),
    # an option another command has: the hint named the top-level help, which lists no command's options
    (["migrate", "--bundle", "{tmp}/b.zip", "--from", "parquet:///{tmp}/a", "--to", "parquet:///{tmp}/b",
      "--num-cpus", "1"], "migrate", "unrecognized arguments: --num-cpus 1"),
    (["model", "add", "--name", "m", "--path", "{tmp}/m.pt", "--seed", "1"], "model add",
     "unrecognized arguments: --seed 1"),
]


@pytest.mark.parametrize(("argv", "command", "said"), CASES, ids=[" ".join(c[0][:3]) for c in CASES])
def test_a_refused_option_is_one_line_and_status_2(argv: list[str], command: str, said: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    ws = tmp_path / "ws"
    args = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if command not in ("migrate", "check", "rollback"):
        args += ["--workspace", str(ws)]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1, captured.err
    assert "\x1b" not in captured.err and "\x07" not in captured.err
    assert said in captured.err and f"(see 'embridge {command} --help')" in captured.err, captured.err
    assert "Traceback" not in captured.err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing was created: no workspace, no output


def test_an_id_order_that_is_a_fifo_or_a_device_is_refused_by_kind(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Reading a FIFO blocked embed-dataset forever; /dev/zero was blamed on pickled data."""
    import os

    fifo = tmp_path / "order.npy"
    os.mkfifo(fifo)
    for order, said in ((fifo, "is a FIFO (named pipe); the id order must be a regular file"),
                        ("/dev/zero", "is a device; the id order must be a regular file")):
        code = main(["embed-dataset", "--model", str(tmp_path / "m.npz"), "--from", f"parquet://{tmp_path}/in",
                     "--to", f"parquet://{tmp_path}/out", "--order", str(order)])
        err = capsys.readouterr().err
        assert code == 1 and err.count("\n") == 1 and said in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["order.npy"]


def test_the_command_lines_loss_choices_are_the_trainers() -> None:
    from embridge.core.cli.train_cmds import LOSS_CHOICES
    from embridge.core.train.config import LOSSES

    assert LOSS_CHOICES == list(LOSSES)


def test_backfill_names_an_unknown_model_before_the_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An empty workspace said '--order: no gallery items to backfill' for a model it does not hold."""
    ws = str(tmp_path / "ws")
    assert main(["init", "-w", ws]) == 0
    capsys.readouterr()
    assert main(["backfill", "-w", ws, "--model", "x"]) == 1
    assert capsys.readouterr().err == f"embridge: error: {ws}: no model named 'x' (known: none)\n"


def test_a_bad_ray_address_from_the_environment_is_named_as_such(monkeypatch: pytest.MonkeyPatch) -> None:
    """RAY_ADDRESS=garbage was refused as '--ray-address: ...', an option the command was never given."""
    from embridge.core.errors import UsageError
    from embridge.core.scale.engine import address_parts

    monkeypatch.setenv("RAY_ADDRESS", "garbage")
    with pytest.raises(UsageError, match=r"^RAY_ADDRESS: 'garbage' is not HOST:PORT"):
        address_parts("garbage")
    with pytest.raises(UsageError, match=r"^--ray-address: 'other:x' is not HOST:PORT"):
        address_parts("other:x")


def test_a_folder_named_like_a_vector_file_is_said_to_be_a_folder(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """It read 'a images import has no vectors to store', naming neither the folder nor what it was read as."""
    (tmp_path / "v.npz").mkdir()
    assert main(["import", "--workspace", str(tmp_path / "ws"), "--path", str(tmp_path / "v.npz"), "--model", "m"]) == 2
    err = capsys.readouterr().err
    assert (f"--model: describes a vector file (--format vectors); this import reads an image folder "
            f"({tmp_path / 'v.npz'} is a folder), which has no vectors to store") in err
