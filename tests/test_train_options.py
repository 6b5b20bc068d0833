"""``embridge train`` options checked before a run is recorded, and the numbers a run records.

A size setting beyond any useful layer (``hidden``, ``rank``, ``extra_dims``) or a device that is
unknown or absent is one line naming it, exit 1, and the workspace stays byte-identical: no run
row. A run's ``best_epoch`` and ``epochs_run`` describe the same (chosen) layer.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.workspace_files import snapshot, table_dump

from embridge.core.cli.main import main
from embridge.core.store import Workspace


def _files(root: Path) -> dict[str, str]:
    """Every file but the database's (compared row by row instead: opening it may touch its WAL)."""
    return {k: v for k, v in snapshot(root).items() if not Path(k).name.startswith("embridge.db")}


BAD_OPTIONS = [
    (("--method", "mlp", "--set", "hidden=100000000000"), r"training settings: 'hidden' must be a positive "
                                                          r"integer of at most 16384"),
    (("--method", "lowrank", "--set", "rank=1000000"), r"'rank' must be a positive integer of at most 16384"),
    (("--method", "bt2", "--set", "extra_dims=100000"), r"'extra_dims' must be a positive integer of at most 4096"),
    (("--method", "auto", "--set", "hidden=20000"), r"'hidden' must be a positive integer of at most 16384"),
    (("--method", "procrustes", "--device", "banana"), r"--device: unknown device 'banana'"),
    (("--method", "mlp", "--device", "cuda:99"), r"--device: device 'cuda:99' was requested but "),
    (("--method", "mlp", "--device", "cuda:x"), r"--device: "),
]


@pytest.mark.parametrize(("args", "expect"), BAD_OPTIONS, ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_a_bad_size_setting_or_device_records_no_run(demo_copy: Path, capsys: pytest.CaptureFixture[str],
                                                      args: tuple[str, ...], expect: str) -> None:
    import re

    files, rows = _files(demo_copy), table_dump(demo_copy)
    code = main(["train", "-w", str(demo_copy), *args])
    out, err = capsys.readouterr()
    import torch

    absent_gpu = "cuda:99" in args or ("cuda:x" in args and not torch.cuda.is_available())
    assert code == (1 if absent_gpu else 2) and out == ""  # only a GPU this machine lacks is not misuse
    assert err.count("\n") == 1 and err.startswith("embridge: error: ") and re.search(expect, err), err
    assert "unexpected" not in err
    assert table_dump(demo_copy) == rows  # no failed run row
    assert _files(demo_copy) == files


def test_the_largest_allowed_width_is_accepted_by_the_settings() -> None:
    from embridge.core.train.config import SIZE_LIMITS, resolve_config

    for key, most in SIZE_LIMITS.items():
        method = "bt2" if key == "extra_dims" else "lowrank" if key == "rank" else "mlp"
        assert resolve_config(method, {key: most})[1][key] == most


def test_auto_records_best_epoch_and_epochs_run_of_the_chosen_candidate(
        demo_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """On the demo, backfilled, the cascade over lowrank wins when told to re-rank by the stored new vectors:
    both numbers are its base layer's training."""
    assert main(["backfill", "-w", str(demo_copy), "--model", "new-cnn", "--order", "stored"]) == 0
    capsys.readouterr()
    code = main(["train", "-w", str(demo_copy), "--method", "auto", "--device", "cpu", "--json",
                 "--set", 'candidates=["procrustes", "lowrank", "cascade"]', "--set", "rerank_new_vectors=true"])
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out)
    rows = {c["kind"]: c for c in summary["candidates"]}
    assert summary["kind"] == "cascade" and rows["cascade"]["base"] == "lowrank"
    assert rows["lowrank"]["epochs"] >= 2
    assert summary["epochs_run"] == rows["lowrank"]["epochs"]  # the base layer's training, not the K values tried
    assert 1 <= summary["best_epoch"] <= summary["epochs_run"]
    assert rows["cascade"]["epochs"] == 0 and rows["cascade"]["evaluations"] >= 1  # the bridge's own work
    with Workspace.open(demo_copy) as ws:
        run = ws.run(summary["run_id"])
    trained = sorted({int(e["epoch"]) for e in run["epochs"] if e["epoch"] > 0})
    assert trained == list(range(1, summary["epochs_run"] + 1))
    assert run["metrics"]["best_epoch"] == summary["best_epoch"] and run["metrics"]["epochs_run"] == len(trained)


def test_a_trained_layer_records_the_epochs_it_ran(demo_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "-w", str(demo_copy), "--method", "mlp", "--device", "cpu", "--epochs", "3",
                 "--set", "patience=10", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out)
    assert summary["epochs_run"] == 3 and 0 <= summary["best_epoch"] <= 3


def test_a_method_name_in_capitals_is_the_method(demo_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """'PROCRUSTES' trained and was recorded as such; 'BCT' also skipped the old classifier bct needs."""
    import json

    assert main(["train", "-w", str(demo_copy), "--method", " PROCRUSTES", "--device", "cpu", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["method"] == "procrustes" and out["kind"] == "procrustes"
    assert main(["runs", "-w", str(demo_copy), "--kind", "train", "--json"]) == 0
    assert [r["method"] for r in json.loads(capsys.readouterr().out)["runs"]] == ["procrustes"]


def test_a_training_option_a_closed_form_fit_ignores_is_said_to_be_unused(
        demo_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """procrustes took --epochs 5 --lr 0.1, recorded them in its run and said nothing: they change nothing."""
    assert main(["train", "-w", str(demo_copy), "--method", "procrustes", "--epochs", "5", "--lr", "0.1",
                 "--set", "patience=3", "--device", "cpu"]) == 0
    last = capsys.readouterr().out.rstrip().splitlines()[-1]
    assert last == ("WARNING: --epochs, --lr, patience not used: procrustes is a closed-form fit, with no training "
                    "loop to give them to")
    assert main(["train", "-w", str(demo_copy), "--method", "cascade", "--batch-size", "8", "--json",
                 "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    warning = "WARNING: --batch-size not used: the cascade's base, affine, is a closed-form fit"
    assert json.loads(out)["warning"].startswith(warning) and warning in err
    # a trained layer, or a cascade over one, reads them: nothing to say
    assert main(["train", "-w", str(demo_copy), "--method", "cascade", "--set", "base=mlp", "--epochs", "2",
                 "--json", "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    assert "warning" not in json.loads(out) and "WARNING" not in err


def test_a_bridge_says_which_settings_its_base_never_reads(demo_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A fusion over procrustes took hidden=8 and rank=4 (settings of other bases) and --epochs without a word;
    its base, named in capitals, was refused while --method is read in any case."""
    assert main(["train", "-w", str(demo_copy), "--method", "fusion", "--set", "base=PROCRUSTES", "--set", "hidden=8",
                 "--set", "rank=4", "--epochs", "3", "--device", "cpu", "--json"]) == 0
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert summary["warning"].splitlines() == [
        "WARNING: hidden, rank not used: settings of other bases than the fusion's, procrustes",
        "WARNING: --epochs not used: the fusion's base, procrustes, is a closed-form fit, with no training loop "
        "to give them to"]
    assert summary["warning"] in err
    with Workspace.open(demo_copy) as ws:
        assert ws.adapter(summary["adapter_id"])["config"]["base"]["kind"] == "procrustes"
        # the run's settings as the fit read them, not as typed
        assert ws.run(summary["run_id"])["config"]["settings"]["base"] == "procrustes"


def test_a_pair_loss_a_head_or_fct_never_reads_is_said_to_be_unused() -> None:
    """bct and bt2 train on their classification objective: --loss mse --set temperature=5 gave byte-identical
    heads to the defaults, recorded as if used; fct has no old-gallery bank, so --loss retrieval trained as
    contrastive. Both were said nothing of (the check is the one `train` prints and records)."""
    from embridge.core.train.config import unused_settings

    for head in ("bct", "bt2"):
        (said,) = unused_settings(head, {"loss": "mse", "temperature": 5.0, "epochs": 3})
        assert said.names == ["loss", "temperature"] and "not on a pair loss" in said.why
    (said,) = unused_settings("fct", {"loss": "retrieval"})
    assert said.names == ["loss"] and "'retrieval' trains as 'contrastive'" in said.why
    assert unused_settings("fct", {"loss": "mse"}) == [] and unused_settings("mlp", {"loss": "retrieval"}) == []
    (said,) = unused_settings("cascade", {"base": "bct", "temperature": 0.1})
    assert said.names == ["temperature"] and said.why.startswith("the cascade's base, bct,")


@pytest.mark.parametrize("argv, line", [
    (["--method", "fusion", "--set", "base=procrustes", "--set", "base=mlp"],
     "embridge: error: --set: base given more than once; give it once (see 'embridge train --help')"),
    (["--method", "mlp", "--batch-size", "1"],
     "embridge: error: argument --batch-size: expected an integer from 2 to 1048576, got '1' "
     "(see 'embridge train --help')"),
])
def test_a_setting_given_twice_or_a_batch_of_one_is_refused_naming_it(
        demo_copy: Path, capsys: pytest.CaptureFixture[str], argv: list[str], line: str) -> None:
    """The second base silently won; a batch of one was refused by the setting's name, after the option's range
    had said 1 was allowed."""
    assert main(["train", "-w", str(demo_copy), *argv]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == line


@pytest.mark.parametrize(("judged", "argv", "said", "code"), [
    # no workspace could take these: usage errors, as a bad setting is
    (False, ["--method", "auto", "--set", 'candidates=["fusion", "cascade"]'],
     "--set: auto's candidates (fusion, cascade) are bridges only, which build on a fitted new->old layer", 2),
    (False, ["--method", "affine", "--old", "old-mlp", "--new", "old-mlp"],
     "--old/--new: old and new model are both 'old-mlp'; choose two different models", 2),
    # this workspace cannot: its models or labels are what is missing
    (True, ["--method", "auto", "--set", 'candidates=["bct", "bt2"]'],
     "models: no candidate of auto can run: bct: BCT head needs labelled items; this workspace has none; bt2: ", 1),
    (True, ["--method", "cascade", "--set", "base=bct"],
     "models: its base, bct: BCT head needs labelled items; this workspace has none", 1),
])
def test_settings_no_run_could_take_are_refused_before_a_run_is_recorded(
        demo_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], judged: bool, argv: list[str],
        said: str, code: int) -> None:
    """Each left a failed run behind, auto's saying "every candidate failed" when none had run (they were
    skipped: no base layer, or no labels)."""
    from judged_fixtures import build_judged_workspace

    ws = build_judged_workspace(tmp_path / "judged")["path"] if judged else demo_copy
    capsys.readouterr()
    assert main(["train", "-w", str(ws), *argv, "--device", "cpu"]) == code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and said in err, err
    with Workspace.open(ws) as w:
        assert w.runs("train") == [] and w.adapters() == []


def test_train_help_lists_every_methods_settings_with_their_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    """The settings --set takes were listed only by the refusal of a misspelt one."""
    from embridge.core.adapters.registry import METHODS
    from embridge.core.train.config import allowed_settings

    assert main(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for kind in METHODS:
        assert f" {kind}: " in text
    assert "lowrank: rank=64" in text and f"mlp: hidden={allowed_settings('mlp')['hidden']}" in text
    assert 'auto: candidates=["procrustes",' in text and "each keep their own default" in text
