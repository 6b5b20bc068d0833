"""Command-line options checked before a job is recorded, and printed numbers that add up.

``chain --metric`` and ``plan --device`` are refused before any run row is written (one line naming
the option); ``train`` and ``runs`` print the ceiling a head's gain retained is measured against
(head/head, as report and plan label it); ``train --help`` lists every method of the registry.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from helpers.workspace_files import table_dump
from report_fixtures import build_chain_workspace

from embridge.core.cli.main import main
from embridge.core.store import Workspace


@pytest.fixture(scope="module")
def chain_ws(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Three embeddings-only versions with two completed affine runs (the new model has no backbone)."""
    return build_chain_workspace(tmp_path_factory.mktemp("sweep") / "ws", n=200, n_query=40)


def _one_line(err: str, option: str) -> None:
    assert err.count("\n") == 1 and err.startswith("embridge: error: ") and option in err, err
    assert "unexpected" not in err and "Traceback" not in err, err


@pytest.mark.parametrize(("metric", "code", "said"), [
    # not a metric name at all: a usage error, naming the judged metrics too (a judged chain's default is nDCG@10)
    ("bogus", 2, "argument --metric: unknown metric 'bogus'; use top1, top5, recall@10, mAP or mAP@R, or with "
                 "relevance judgments ndcg@10 or mrr@10"),
    # known names the chain's sample does not report: usage errors too (exit 2, as documented)
    ("recall@5", 2, "--metric: recall@5 is not measured on this chain's sample of "),  # the sample's is recall@10
    ("mAP@R", 2, "--metric: mAP@R is not measured on this chain's sample of "),  # a sample this small reports mAP
])
def test_chain_refuses_a_metric_before_recording_a_run(chain_ws: dict[str, Any], capsys: pytest.CaptureFixture[str],
                                                       metric: str, code: int, said: str) -> None:
    ws, rows = chain_ws["path"], table_dump(chain_ws["path"])
    got = main(["chain", "-w", str(ws), "--models", ",".join(chain_ws["models"]),
                "--runs", ",".join(map(str, chain_ws["runs"])), "--metric", metric])
    out, err = capsys.readouterr()
    assert got == code and out == ""
    _one_line(err, said)
    assert all(m in err for m in ("top1", "top5", "recall@10", "mAP")), err
    assert table_dump(ws) == rows


def test_chain_names_a_model_the_workspace_lacks(chain_ws: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    """It said "step 1 of the chain is 'nosuch' -> ..." as if the run linked other models."""
    ws, rows = chain_ws["path"], table_dump(chain_ws["path"])
    models = [chain_ws["models"][0], "nosuch", *chain_ws["models"][2:]]
    assert main(["chain", "-w", str(ws), "--models", ",".join(models),
                 "--runs", ",".join(map(str, chain_ws["runs"]))]) == 1
    _one_line(capsys.readouterr().err, "--models: no model named 'nosuch' in the workspace (known: ")
    assert table_dump(ws) == rows


def test_chain_refuses_a_version_named_twice(chain_ws: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    """v1,v2,v1 scored v1 against itself after a round trip and counted it towards AC."""
    ws, rows = chain_ws["path"], table_dump(chain_ws["path"])
    models = [chain_ws["models"][0], chain_ws["models"][1], chain_ws["models"][0]]
    assert main(["chain", "-w", str(ws), "--models", ",".join(models),
                 "--runs", ",".join(map(str, chain_ws["runs"]))]) == 2
    _one_line(capsys.readouterr().err, f"--models: names '{models[0]}' twice")
    assert table_dump(ws) == rows


@pytest.mark.parametrize("device", ["bogus", "cuda:99", "cuda:x"])
def test_plan_refuses_a_bad_device_on_an_embeddings_only_model(chain_ws: dict[str, Any], device: str,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    ws, rows = chain_ws["path"], table_dump(chain_ws["path"])
    code = main(["plan", "-w", str(ws), "--device", device])
    out, err = capsys.readouterr()
    import torch

    # a name no machine has is a usage error; a GPU this machine lacks is not (without CUDA, cuda:x is one)
    misuse = device == "bogus" or (device == "cuda:x" and torch.cuda.is_available())
    assert code == (2 if misuse else 1) and out == ""
    _one_line(err, "--device: ")
    assert table_dump(ws) == rows  # no report was built for the plan


def test_plan_names_device_with_a_real_model(demo_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "-w", str(demo_copy), "--method", "affine", "--device", "cpu"]) == 0
    capsys.readouterr()
    rows = table_dump(demo_copy)
    code = main(["plan", "-w", str(demo_copy), "--device", "banana"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    _one_line(err, "--device: unknown device 'banana'")
    assert table_dump(demo_copy) == rows


def _share(text: str, label: str) -> float:
    match = re.search(rf"{re.escape(label)} (\d+\.\d)%", text)
    assert match, (label, text)
    return float(match.group(1)) / 100


def test_a_heads_printed_numbers_give_its_printed_gain(demo_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """bct's gain retained is measured against head/head: train text, train --json and runs all show it."""
    code = main(["train", "-w", str(demo_copy), "--method", "bct", "--epochs", "3", "--device", "cpu", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    assert data["ceiling_cell"] == "head/head"
    cc, oo_s, up_s = data["ceiling_top1"], data["old_old_sample_top1"], data["upgraded_sample_top1"]
    # the demo's new model embedded 600 of the 997 gallery items: the gain is measured on those
    assert oo_s is not None and data["gain_retained"] == pytest.approx((up_s - oo_s) / (cc - oo_s))

    from embridge.core.cli.train_cmds import _train_text

    text = _train_text(data)
    cc_t, gain_t = _share(text, "head/head"), _share(text, "gain retained:")
    on_sample = re.search(r"on the evaluation sample: old/old (\d+\.\d)%, upgraded (\d+\.\d)%", text)
    assert on_sample, text
    oo_st, up_st = (float(x) / 100 for x in on_sample.groups())
    assert "of the gain from old/old to head/head on the sample" in text
    assert abs((up_st - oo_st) / (cc_t - oo_st) - gain_t) < 0.01, text

    assert main(["runs", "-w", str(demo_copy)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    line = [x for x in lines if x.startswith("#")][-1]
    # each listed number names its query set and gallery on the lines under its run
    assert any(x.strip().startswith("old/old, upgraded on ") and "against the whole gallery" in x
               for x in lines[lines.index(line) + 1:]), lines
    assert any("head/head" in x.split(" on ")[0] and "against the evaluation sample" in x
               for x in lines[lines.index(line) + 1:]), lines  # the head's ceiling names its gallery too
    shown = dict(re.findall(r"(\S+)=(\d+\.\d+)", line))
    cc_r, oo_sr, up_sr = (float(shown[k]) for k in ("head/head_top1", "old_old_sample_top1", "upgraded_sample_top1"))
    gain = float(re.search(r"gain_retained=(-?\d+\.\d)%", line).group(1)) / 100  # a share, as train prints it
    assert abs((up_sr - oo_sr) / (cc_r - oo_sr) - gain) < 0.002, line
    assert main(["runs", "-w", str(demo_copy), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["runs"][-1]
    metrics = listed["metrics"]
    assert metrics["ceiling_cell"] == "head/head" and metrics["ceiling_top1"] == pytest.approx(cc)
    # the validation the record keeps, as train --json gave it (runs --json left it out)
    assert listed["validation"] == {k: data[k] for k in ("val_metric", "val_metric_name", "val_protocol",
                                                         "best_epoch", "epochs_run", "reason")}
    assert main(["report", "-w", str(demo_copy), "--json"]) == 0  # its report run lists the same cell
    reported = json.loads(capsys.readouterr().out)
    assert main(["runs", "-w", str(demo_copy), "--kind", "report", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)["runs"][-1]["metrics"]
    assert metrics["ceiling_cell"] == reported["ceiling_cell"] == "head/head"
    assert metrics["ceiling_top1"] == pytest.approx(reported["ceiling_top1"])
    assert main(["runs", "-w", str(demo_copy), "--kind", "report"]) == 0  # the id --report takes, and its layer
    listed = [x for x in capsys.readouterr().out.splitlines() if x.startswith("#")][-1]
    assert listed.endswith(f" report #{reported['report_id']} of run #{data['run_id']}"), listed


def test_a_layer_on_the_raw_new_model_keeps_new_new_as_its_ceiling(demo_copy: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "-w", str(demo_copy), "--method", "affine", "--device", "cpu", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ceiling_cell"] == "new/new" and data["ceiling_top1"] == data["new_new_top1"]
    assert main(["runs", "-w", str(demo_copy)]) == 0
    out = capsys.readouterr().out
    line = [x for x in out.strip().splitlines() if x.startswith("#")][-1]
    assert "ceiling" not in line and "head/head" not in line and "gain_retained=" in line
    # the sample numbers and the gain sit under the evaluation sample's gallery, not the whole one's
    assert "      new/new (and the _sample numbers and gain_retained) on 200 test queries (query split) against the " \
           "evaluation sample" in out


def test_train_help_lists_every_method(capsys: pytest.CaptureFixture[str]) -> None:
    from embridge.core.adapters.registry import ALIASES, METHODS

    assert main(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    listed = re.search(r"--method METHOD (.*?) --old", text)
    assert listed, text
    names = set(re.findall(r"[a-z0-9]+", listed.group(1)))
    assert set(METHODS) | set(ALIASES) | {"auto"} <= names, listed.group(1)


def test_every_option_of_every_command_says_what_it_does() -> None:
    """``--help`` listed train's --epochs, --lr and --seed, embed's --model and --device and a dozen
    others with no word of what they do."""
    import argparse

    from embridge.core.cli.main import build_parser

    def parsers(parser: argparse.ArgumentParser, name: str) -> list[tuple[str, argparse.ArgumentParser]]:
        found = [(name, parser)]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    found += parsers(sub, f"{name} {sub_name}")
        return found

    silent = [f"{name} {action.option_strings[-1]}" for name, parser in parsers(build_parser(), "embridge")
              for action in parser._actions
              if action.option_strings and not action.help and not isinstance(action, argparse._HelpAction)]
    assert silent == []


def test_runs_show_a_forward_layers_pair_old_to_new(demo_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """fct brings the stored old gallery into the new space: its pair reads old→new, a query map's new→old."""
    for method in ("fct", "procrustes"):
        assert main(["train", "-w", str(demo_copy), "--method", method, "--epochs", "1", "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["runs", "-w", str(demo_copy), "--kind", "train"]) == 0
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("#")]
    assert " fct " in lines[-2] and "old-mlp→new-cnn " in lines[-2]
    assert " procrustes " in lines[-1] and "new-cnn→old-mlp " in lines[-1]


def test_the_torch_free_forward_methods_are_the_registrys() -> None:
    from embridge.core.adapters.registry import METHODS
    from embridge.core.run_choice import FORWARD_METHODS

    assert {k for k, m in METHODS.items() if m.direction == "forward"} == set(FORWARD_METHODS)
    import subprocess
    import sys

    code = ("import sys\nfrom embridge.core.cli.train_cmds import pair_arrow\n"
            "print(pair_arrow('a', 'b', 'fct'), 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["a→b", "False"], done.stderr  # listing runs stays torch-free


def test_a_heldout_gallery_report_says_the_train_fold_was_left_out(demo_copy: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "-w", str(demo_copy), "--method", "procrustes", "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["report", "-w", str(demo_copy), "--heldout-gallery", "--json"]) == 0
    sizes = json.loads(capsys.readouterr().out)["sizes"]
    assert main(["report", "-w", str(demo_copy), "--heldout-gallery"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.endswith(f"evaluation sample {sizes['gallery']} of the {sizes['gallery_full']} gallery items (the "
                          f"train fold's {sizes['removed_train']} left out by --heldout-gallery)"), first


def test_a_local_backfill_on_a_gpu_this_machine_lacks_records_no_run(demo_copy: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """It recorded a failed backfill run whose error did not name --num-gpus."""
    import torch

    if torch.cuda.is_available():  # the GPU exists: nothing to refuse (CI machines have none)
        return
    rows = table_dump(demo_copy)
    store = demo_copy.parent / "newstore"
    assert main(["backfill", "-w", str(demo_copy), "--model", "new-cnn", "--num-gpus", "1",
                 "--to-store", f"lancedb://{store}?table=t"]) == 1
    err = capsys.readouterr().err
    assert err == "embridge: error: --num-gpus: device 'cuda' was requested but no CUDA GPU is available on this machine\n"
    assert table_dump(demo_copy) == rows and not store.exists()  # no store opened (or created) either


def test_embed_after_a_backfill_names_every_set_holding_the_models_vectors(demo_copy: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """It named one set (997 rows) beside a count of 1197 items held across two."""
    import json

    assert main(["backfill", "-w", str(demo_copy), "--model", "new-cnn", "--name", "bf1"]) == 0
    capsys.readouterr()
    assert main(["embed", "-w", str(demo_copy), "--model", "new-cnn", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    with Workspace.open(demo_copy) as ws:
        sets, items = ws.vector_sets("new-cnn"), ws.item_count()
    assert len(sets) == 2 and out["held_in"] == [s["id"] for s in sets]
    assert out["already_stored"] == items > max(s["count"] for s in sets) and out["written"] == 0
    assert main(["embed", "-w", str(demo_copy), "--model", "new-cnn"]) == 0
    assert f"its vector sets {sets[0]['id']}, {sets[1]['id']} stay as they are" in capsys.readouterr().out


def test_a_stored_checkpoint_added_again_is_named_a_duplicate_before_its_input_shape_is_asked(
        demo_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """It asked for --input-shape first (describing the file), and never said the name was taken."""
    import shutil

    with Workspace.open(demo_copy) as ws:
        stored = Path(ws.model("new-cnn")["path"])
    copy = shutil.copy(stored, tmp_path / "again.pt")
    rows = table_dump(demo_copy)
    assert main(["model", "add", "-w", str(demo_copy), "--name", "zz", "--path", str(copy)]) == 1
    assert "this checkpoint is already in the workspace as model 'new-cnn'" in capsys.readouterr().err
    assert main(["model", "add", "-w", str(demo_copy), "--name", "new-cnn", "--path", str(copy)]) == 1
    assert capsys.readouterr().err == ("embridge: error: --name: a model named 'new-cnn' already exists; choose "
                                       "another name\n")
    assert table_dump(demo_copy) == rows


def test_runs_names_sample_numbers_only_where_a_run_has_them() -> None:
    """'(and the _sample numbers and gain_retained)' was said of a run whose sample numbers were all null."""
    from embridge.core.cli.train_cmds import _measured_on

    protocols = {"old/old": {"text": "60 test queries against the whole gallery (362 items)"},
                 "new→old": {"text": "60 test queries against the whole gallery (362 items)"},
                 "new/new": {"text": "53 test queries against the whole gallery (362 items)"}}
    held = {"protocols": protocols, "old_old_sample_top1": 0.5, "upgraded_sample_top1": 0.6}
    assert "new/new (and the _sample numbers) on " in _measured_on(held)[1]
    gained = {**held, "gain_retained": 0.4, "arr": 0.9}
    assert "new/new (and the _sample numbers, gain_retained and arr) on " in _measured_on(gained)[1]
    none = {"protocols": protocols, "old_old_sample_top1": None, "upgraded_sample_top1": None}
    assert _measured_on(none)[1] == "new/new on 53 test queries against the whole gallery (362 items)"


def test_what_a_library_prints_during_a_json_command_goes_to_stderr(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray printed '(raylet) A worker died ...' on stdout before the JSON when a worker was killed and its
    task retried: the command succeeded and its JSON could not be parsed."""
    from embridge.core.cli import workspace_cmds

    real = workspace_cmds.cmd_info

    def noisy(args: Any) -> Any:
        print("(raylet) A worker died or was killed while executing a task")  # as a library's thread does
        return real(args)

    assert main(["init", "--workspace", str(tmp_path / "ws")]) == 0
    monkeypatch.setattr(workspace_cmds, "cmd_info", noisy)
    capsys.readouterr()
    assert main(["info", "--workspace", str(tmp_path / "ws"), "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["models"] == [] and "(raylet) A worker died" in err


def test_embed_json_carries_the_same_keys_on_a_first_and_a_later_run(demo_copy: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A first run's JSON had no 'written' or 'already_stored', a later run's had both: a script reading
    them failed on the first run only."""
    import json

    import torch

    torch.jit.script(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 8)).eval()).save(
        str(demo_copy.parent / "tiny.pt"))  # a model holding no vectors yet (the demo's digits are 8x8)
    assert main(["model", "add", "-w", str(demo_copy), "--name", "tiny", "--path", str(demo_copy.parent / "tiny.pt"),
                 "--input-shape", "1,8,8"]) == 0
    with Workspace.open(demo_copy) as ws:
        items = ws.item_count()
    capsys.readouterr()
    assert main(["embed", "-w", str(demo_copy), "--model", "tiny", "--split", "query", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(["embed", "-w", str(demo_copy), "--model", "tiny", "--json"]) == 0
    later = json.loads(capsys.readouterr().out)
    for out in (first, later):
        assert {"written", "already_stored", "count", "vector_set"} <= set(out), out
    assert (first["written"], first["already_stored"]) == (200, 0)
    assert (later["written"], later["already_stored"]) == (items - 200, 200)


def test_json_paths_do_not_depend_on_how_the_workspace_was_spelled(demo_copy: Path, capsys: pytest.CaptureFixture[str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """`info --json` resolved 'workspace' but kept each model's and vector set's path relative to the caller's
    working folder, as -w was spelled (and with its '..')."""
    import json

    monkeypatch.chdir(demo_copy.parent)
    spelled = f"{demo_copy.name}/../{demo_copy.name}"
    assert main(["info", "-w", spelled, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    paths = [m["path"] for m in info["models"]] + [v["path"] for v in info["vector_sets"]]
    assert paths and all(Path(p).is_absolute() and ".." not in Path(p).parts and Path(p).exists() for p in paths)
    assert all(Path(p).is_relative_to(demo_copy) for p in paths)


def test_export_of_a_run_that_is_no_training_run_names_its_kind(demo_copy: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """It said 'run 2 produced no adapter' where report and plan say what run 2 is."""
    assert main(["train", "-w", str(demo_copy), "--method", "procrustes", "--device", "cpu"]) == 0
    assert main(["report", "-w", str(demo_copy), "--bootstrap", "20", "--backfill-steps", "2"]) == 0
    capsys.readouterr()
    assert main(["bundle", "export", "-w", str(demo_copy), "--run", "2", "--out", str(demo_copy.parent / "b.zip")]) == 1
    assert capsys.readouterr().err == "embridge: error: run 2: is a report run, not a training run\n"
    assert main(["model"]) == 2
    assert "the following arguments are required: ACTION" in capsys.readouterr().err  # not 'model_command'


def test_commands_that_read_no_workspace_take_one_as_every_command_does(
        demo_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A script passing --workspace to every command got 'unrecognized arguments' from bundle apply,
    migrate, rollback, check, transform and embed-dataset; a folder that is no workspace is still named."""
    import numpy as np

    assert main(["train", "-w", str(demo_copy), "--method", "procrustes", "--device", "cpu"]) == 0
    bundle = tmp_path / "b.zip"
    assert main(["bundle", "export", "-w", str(demo_copy), "--out", str(bundle)]) == 0
    np.save(tmp_path / "q.npy", np.random.default_rng(0).standard_normal((5, 64)).astype(np.float32))
    capsys.readouterr()
    assert main(["bundle", "apply", str(bundle), "-w", str(demo_copy), "--vectors", str(tmp_path / "q.npy"),
                 "--out", str(tmp_path / "o.npy")]) == 0
    assert np.load(tmp_path / "o.npy").shape == (5, 32)
    assert main(["bundle", "apply", str(bundle), "-w", str(demo_copy), "--vectors", str(tmp_path / "q.npy"),
                 "--out", str(demo_copy / "o.npy")]) == 1  # inside it: refused, as any output inside a workspace
    capsys.readouterr()
    for argv in (["bundle", "apply", str(bundle), "--vectors", "q.npy", "--out", "o2.npy"],
                 ["migrate", "--bundle", str(bundle), "--from", "parquet:///nowhere", "--to", "parquet:///x"],
                 ["rollback", "--to", "qdrant:///nowhere?collection=a"], ["check", "--uri", "parquet:///nowhere"],
                 ["transform", "--bundle", str(bundle), "--from", "in", "--to", "out"],
                 ["embed-dataset", "--model", "m.pt", "--from", "in", "--to", "out"]):
        assert main([*argv, "--workspace", str(tmp_path)]) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"--workspace: {tmp_path} is not an Embridge workspace" in err, err


def test_chain_refuses_a_cascade_run(demo_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A cascade was scored as its fallback layer alone (0.78 where its run says 0.80), named a cascade."""
    assert main(["train", "-w", str(demo_copy), "--method", "cascade", "--json"]) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    rows = table_dump(demo_copy)
    assert main(["chain", "-w", str(demo_copy), "--models", "old-mlp,new-cnn", "--runs", str(run_id)]) == 1
    _one_line(capsys.readouterr().err, f"run {run_id}: cascade needs each query under two models")
    assert table_dump(demo_copy) == rows


def test_a_judged_chain_reads_ndcg_by_default_and_offers_mrr(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """With judgments the chain's protocol said nDCG@10 and MRR@10 were reported, but its matrices held only
    top-1 to mAP and --metric ndcg@10 was refused; AC was read from top-1 where reports weigh nDCG@10."""
    import numpy as np
    from judged_fixtures import build_judged_workspace

    data = build_judged_workspace(tmp_path / "ws")
    rotation = np.linalg.qr(np.random.default_rng(5).standard_normal((data["new_docs"].shape[1],) * 2))[0]
    with Workspace.open(tmp_path / "ws") as ws:
        spec = {"name": "newer", "kind": "vectors", "modality": "vector", "dim": rotation.shape[0],
                "sha256": "9" * 64, "path": ""}
        ws.add_model("newer", "other", spec, None)
        ids = np.concatenate([data["doc_ids"], data["query_ids"]])
        ws.add_vector_set("newer", ids, np.concatenate([data["new_docs"], data["new_queries"]]) @ rotation)
    runs = []
    for old, new in (("old", "new"), ("new", "newer")):
        assert main(["train", "-w", str(tmp_path / "ws"), "--method", "procrustes", "--old", old, "--new", new,
                     "--json"]) == 0
        runs.append(json.loads(capsys.readouterr().out)["run_id"])
    args = ["chain", "-w", str(tmp_path / "ws"), "--models", "old,new,newer", "--runs", ",".join(map(str, runs)),
            "--json"]
    assert main(args) == 0
    chain = json.loads(capsys.readouterr().out)
    assert chain["metric"] == "ndcg@10"
    report = json.loads(Path(chain["report_json"]).read_text())["chain"]
    assert {"ndcg@10", "mrr@10", "top1"} <= set(report["matrices"]) and chain["matrix"] == report["matrices"]["ndcg@10"]
    newest, new = chain["matrix"][2], chain["matrix"][1]  # a rotation of the new model: mapped back exactly
    assert newest[:2] == pytest.approx(new[:2], abs=1e-6) and newest[2] == pytest.approx(new[1], abs=1e-6)
    assert main([*args, "--metric", "mrr@10"]) == 0
    assert json.loads(capsys.readouterr().out)["matrix"] == report["matrices"]["mrr@10"]


def test_a_checkpoint_read_at_another_input_shape_is_another_model(demo_copy: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A model added with a wrong --input-shape could not be added again with the right one: 'already in the
    workspace (same sha256 and embedding settings); use that model', which cannot embed the gallery."""
    import shutil

    with Workspace.open(demo_copy) as ws:
        stored = Path(ws.model("new-cnn")["path"])
        shape = ws.model("new-cnn")["spec"]["input_shape"]
    copy = shutil.copy(stored, tmp_path / "cnn.pt")
    wider = ",".join(str(s * 2 if i else s) for i, s in enumerate(shape))  # the same channels, twice the side
    assert main(["model", "add", "-w", str(demo_copy), "--name", "wider", "--path", str(copy), "--input-shape",
                 wider]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main(["model", "add", "-w", str(demo_copy), "--name", "wider-again", "--path", str(copy),
                 "--input-shape", wider]) == 1
    err = capsys.readouterr().err
    assert "already in the workspace as model 'wider'" in err and "read at another --input-shape, or as another --arch" in err
    with Workspace.open(demo_copy) as ws:
        assert ws.model("wider")["spec"]["input_shape"] == [int(s) for s in wider.split(",")]
    # a stored shape written without its channel of 1 (the MLP reads 8,8 as 1,8,8), or an empty --arch-config,
    # reads the same input: the same model
    with Workspace.open(demo_copy) as ws:
        mlp, mlp_shape = Path(ws.model("old-mlp")["path"]), ws.model("old-mlp")["spec"]["input_shape"]
    assert mlp_shape[0] == 1
    mlp_copy = shutil.copy(mlp, tmp_path / "mlp.pt")
    for extra in (["--input-shape", ",".join(map(str, mlp_shape[1:]))],
                  ["--input-shape", ",".join(map(str, mlp_shape)), "--arch-config", "{}"]):
        assert main(["model", "add", "-w", str(demo_copy), "--name", "same", "--path", str(mlp_copy), *extra]) == 1
        assert "already in the workspace as model 'old-mlp'" in capsys.readouterr().err, extra


def test_a_vector_models_duplicate_is_not_told_to_change_text_settings(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    checkpoint = tmp_path / "flat.pt"
    torch.jit.script(torch.nn.Linear(16, 8)).save(str(checkpoint))
    ws = str(tmp_path / "ws")
    assert main(["init", "-w", ws]) == 0
    assert main(["model", "add", "-w", ws, "--name", "a", "--path", str(checkpoint)]) == 0
    capsys.readouterr()
    assert main(["model", "add", "-w", ws, "--name", "b", "--path", str(checkpoint)]) == 1
    err = capsys.readouterr().err
    assert "already in the workspace as model 'a'" in err and "prompt" not in err and "--input-shape" in err, err
