"""Bad scale-out inputs are refused with one line before any work: embed-dataset items and orders,
and backfill targets (local engine)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scale_fixtures import mlp_items

from embridge.core.cli.main import main
from embridge.core.store import Workspace


@pytest.fixture
def items(tmp_path: Path) -> dict[str, Any]:
    return mlp_items(tmp_path, 300)  # ids 1000..1299


def embed(m: dict[str, Any], target: Path, *extra: str) -> int:
    return main(["embed-dataset", "--model", str(m["model"]), "--from", str(m["items"]), "--to", str(target),
                 "--chunk", "2", *extra])


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_an_order_with_the_same_sum_is_another_job(items: dict, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    np.save(tmp_path / "a.npy", np.array([1005, 1003, 1150]))
    np.save(tmp_path / "b.npy", np.array([1006, 1002, 1150]))  # same sum, other items
    out = tmp_path / "out"
    assert embed(items, out, "--order", str(tmp_path / "a.npy")) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert embed(items, out, "--order", str(tmp_path / "b.npy")) == 1
    err = one_line_error(capsys)
    assert "--to" in err and "another embedding job" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert embed(items, out, "--order", str(tmp_path / "a.npy")) == 0  # the same order resumes
    assert "2 chunks were already done" in capsys.readouterr().out
    assert embed(items, tmp_path / "fresh", "--order", str(tmp_path / "b.npy")) == 0
    import pyarrow.parquet as pq

    got = np.concatenate([pq.read_table(f).column("id").to_numpy() for f in sorted((tmp_path / "fresh").glob("chunk-*"))])
    assert got.tolist() == [1006, 1002, 1150]


@pytest.mark.parametrize("order", [np.array(["1005"]), np.array([[1005, 1003]]), np.array([1005.0, 1003.0]),
                                   np.array([1005, 1005]), np.array([], np.int64)])
def test_an_order_that_is_not_a_list_of_dataset_ids_is_refused(items: dict, tmp_path: Path, order: np.ndarray,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    np.save(tmp_path / "o.npy", order)
    assert embed(items, tmp_path / "out", "--order", str(tmp_path / "o.npy")) == 1
    assert "--order" in one_line_error(capsys)
    assert not (tmp_path / "out").exists()


def test_a_text_order_over_text_ids_embeds_those_items(items: dict, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    for file in sorted(items["items"].glob("*.parquet")):
        _rewrite(file, id=[f"i{v}" for v in pq.read_table(file).column("id").to_pylist()])
    np.save(tmp_path / "o.npy", np.array(["i1005", "i1003", "i1150"]))
    assert embed(items, tmp_path / "out", "--order", str(tmp_path / "o.npy")) == 0
    got = [v for f in sorted((tmp_path / "out").glob("chunk-*")) for v in pq.read_table(f).column("id").to_pylist()]
    assert got == ["i1005", "i1003", "i1150"]


def _rewrite(file: Path, **columns: Any) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(file)
    for name, values in columns.items():
        table = table.set_column(table.column_names.index(name), name, pa.array(values) if not
                                 isinstance(values, pa.Array) else values)
    pq.write_table(table, file)


def _odd_partition(kind: str, folder: Path) -> tuple[Path, str]:
    import pyarrow as pa

    last = sorted(folder.glob("*.parquet"))[-1]
    first = sorted(folder.glob("*.parquet"))[0]
    n = 100
    if kind == "text_id":
        _rewrite(last, id=[f"x{i}" for i in range(n)])
        return last, "column 'id'"
    if kind == "null_id":
        _rewrite(last, id=pa.array([1200 + i if i != 7 else None for i in range(n)], pa.int64()))
        return last, "row 7"
    if kind == "repeated_id":
        _rewrite(last, id=pa.array([1200 + i if i != 9 else 1000 for i in range(n)], pa.int64()))
        return last, "row 9"
    if kind == "nan_input":  # the input's fault, named by file and row, not the model's output
        values = np.zeros((n, 8), np.float32)
        values[11, 2] = np.inf
        _rewrite(last, input=pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), 8))
        return last, "row 11 (id 1211): column 'input' holds NaN or inf values (1 such rows)"
    flat = pa.array(np.zeros(n * 8, np.float32))
    col = pa.FixedSizeListArray.from_arrays(flat, 8, mask=pa.array([i == 4 for i in range(n)]))
    _rewrite(last, input=col)
    assert first != last
    return last, "row 4"


@pytest.mark.parametrize("kind", ["text_id", "null_id", "repeated_id", "null_input", "nan_input"])
def test_odd_items_are_named_by_file_and_row_before_any_chunk(items: dict, tmp_path: Path, kind: str,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    bad, where = _odd_partition(kind, items["items"])
    assert embed(items, tmp_path / "out") == 1
    err = one_line_error(capsys)
    assert bad.name in err and where in err
    assert not (tmp_path / "out").exists()


def test_rows_of_another_width_name_the_width_the_model_takes(items: dict, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from scale_fixtures import write_items

    write_items(tmp_path / "narrow", np.zeros((20, 5), np.float32), 2)
    assert embed({**items, "items": tmp_path / "narrow"}, tmp_path / "out") == 1
    err = one_line_error(capsys)
    assert "m.pt: the model takes inputs of shape (8,), not rows of shape (5,)" in err, err


@pytest.fixture
def ws_and_model(demo_copy: Path) -> tuple[Path, str]:
    with Workspace.open(demo_copy) as ws:
        model = next(m["name"] for m in ws.models() if m["role"] == "new")
    return demo_copy, model


def _state(ws_path: Path) -> tuple[int, int, list[str]]:
    with Workspace.open(ws_path) as ws:
        sets, runs = len(ws.vector_sets()), len(ws.runs())
    return sets, runs, sorted(p.name for p in ws_path.iterdir())


@pytest.mark.parametrize("option", [
    ["--to-store", "lancedb://{ws}?table=x"],
    ["--to-store", "lancedb://{ws}/sub?table=x"],
    ["--to-store", "faiss://{tmp}/index.faiss"],
    ["--to-store", "faiss://{tmp}/index.faiss?collection=index"],
    ["--to-store", "qdrant://{tmp}/newq?collection=c"],  # keys that are no point ids: the new folder goes too
    ["--name", "a/b"],
])
def test_backfill_refuses_a_bad_target_before_embedding(ws_and_model: tuple[Path, str], tmp_path: Path,
                                                        option: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    ws_path, model = ws_and_model
    before = _state(ws_path)
    args = [a.format(ws=ws_path, tmp=tmp_path) for a in option]
    # a name refused by its format is a usage error (exit status 2), a store the target cannot be is not
    assert main(["backfill", "-w", str(ws_path), "--model", model, *args]) == (2 if option[0] == "--name" else 1)
    err = one_line_error(capsys)
    assert option[0] in err
    assert _state(ws_path) == before
    assert not (ws_path / "x.lance").exists() and not (ws_path / "scale-jobs").exists()
    assert not (tmp_path / "index.faiss").exists() and not (tmp_path / "newq").exists()


def test_backfill_on_an_unreachable_cluster_stages_and_records_nothing(ws_and_model: tuple[Path, str],
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """It staged every item under scale-jobs/ and recorded a failed run before finding nobody there."""
    ws_path, model = ws_and_model
    before = _state(ws_path)
    assert main(["backfill", "-w", str(ws_path), "--model", model, "--engine", "ray",
                 "--ray-address", "127.0.0.1:1"]) == 1
    assert "--ray-address 127.0.0.1:1: no Ray cluster answers there" in one_line_error(capsys)
    assert _state(ws_path) == before and not (ws_path / "scale-jobs").exists()


def test_gpus_a_ray_cluster_lacks_are_refused_not_waited_for(ray_cluster: Any, items: dict, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Actors asking for a GPU on a cluster without one waited forever, saying nothing."""
    assert embed(items, tmp_path / "out", "--engine", "ray", "--num-gpus", "1") == 1
    assert one_line_error(capsys).endswith("--num-gpus 1: the Ray cluster has 0 GPUs; leave --num-gpus out to "
                                           "embed on its CPUs")
    assert not (tmp_path / "out").exists()


def test_more_actors_than_the_ray_cluster_has_cpus_are_refused_not_waited_for(
        ray_cluster: Any, items: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each actor holds a CPU: a pool larger than the cluster waited on its first chunk forever, saying nothing."""
    import ray

    cpus = int(ray.cluster_resources()["CPU"])
    assert embed(items, tmp_path / "out", "--engine", "ray", "--actors", str(cpus + 1)) == 1
    assert one_line_error(capsys).endswith(f"--actors {cpus + 1}: the Ray cluster has {cpus} CPUs and each actor "
                                           f"holds one; give at most {cpus}, or leave --actors out for one a CPU")
    assert not (tmp_path / "out").exists()


def test_a_source_rewritten_in_place_is_another_job_but_a_touched_one_resumes(
        items: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The job's identity is its items: a partition copied over itself (new time, same bytes) resumes;
    the same partition with other inputs of the very same size is refused before any chunk is touched."""
    import json
    import os
    import shutil

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from embridge.core.scale.backfill_embed import STATE_FILE

    out = tmp_path / "out"
    assert embed(items, out) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    part = items["items"] / "p1.parquet"
    shutil.copyfile(part, tmp_path / "copy.parquet")
    os.replace(tmp_path / "copy.parquet", part)  # same bytes, a new file and time
    capsys.readouterr()
    assert embed(items, out) == 0
    assert "150 chunks were already done" in capsys.readouterr().out

    table = pq.read_table(part)
    col = table.column("input").combine_chunks()
    flipped = pa.FixedSizeListArray.from_arrays(pc.negate(col.flatten()), col.type.list_size)
    size = part.stat().st_size
    pq.write_table(table.set_column(1, "input", flipped), part)
    assert part.stat().st_size == size, "the rewritten partition should keep its size for this check"
    assert embed(items, out) == 1
    err = one_line_error(capsys)
    assert "--to" in err and "another embedding job" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before

    # a folder marked by an earlier version (source files by name and size) resumes on those terms
    fresh = tmp_path / "older"
    assert embed(items, fresh) == 0
    marker = fresh / STATE_FILE
    state = json.loads(marker.read_text())
    del state["items"]
    state["files"] = [f"{p.name}:{p.stat().st_size}" for p in sorted(items["items"].glob("*.parquet"))]
    marker.write_text(json.dumps(state))
    capsys.readouterr()
    assert embed(items, fresh) == 0
    assert "150 chunks were already done" in capsys.readouterr().out
    assert "items" in json.loads(marker.read_text())



def test_a_cluster_lost_mid_job_is_one_line_saying_so() -> None:
    """A dead cluster's actor error came out as "unexpected ActorUnavailableError: ..." (exit 3)."""
    from ray import exceptions

    from embridge.core.scale.engine import EngineError, remote_errors

    with pytest.raises(EngineError, match=r"the Ray cluster at 10\.0\.0\.1:6379 stopped answering during the job "
                                          r"\(RaySystemError: .*node lost.*\); what finished is kept"):
        with remote_errors("10.0.0.1:6379"):
            raise exceptions.RaySystemError("the connection to the node lost")
    # a worker that died past its restarts (the cluster answering all along) was called the cluster stopping
    with pytest.raises(EngineError, match=r"^a worker of the job on the Ray cluster at 10\.0\.0\.1:6379 died more "
                                          r"often than Ray restarts it, or its node went \(ActorDiedError: The actor "
                                          r"died unexpectedly"):
        with remote_errors("10.0.0.1:6379"):
            raise exceptions.ActorDiedError()
    with pytest.raises(ValueError, match="a task's own bug"):  # an error of the task's code stays itself
        with remote_errors("10.0.0.1:6379"):
            raise ValueError("a task's own bug")



@pytest.mark.parametrize("answers", [True, False])
def test_a_lost_detached_job_is_stopped_where_its_cluster_still_answers(demo_copy: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       answers: bool) -> None:
    """A job silent for a minute was recorded as failed and its stage removed, while its actor, only stalled,
    went on and crashed into the missing folder; it is stopped first where the cluster answers."""
    import time

    from embridge.core.scale import detached_jobs
    from embridge.core.scale.engine import EngineError

    stage = tmp_path / "stage"
    stage.mkdir()
    (stage / detached_jobs.STATUS_FILE).write_text(json.dumps({"state": "running", "done": 3, "total": 9,
                                                               "heartbeat": time.time() - 120}))
    with Workspace.open(demo_copy) as ws:
        run_id = ws.start_run("backfill", "new-cnn", {"engine": "ray"})
    job = detached_jobs.RayJob(run_id, "job-1", "10.0.0.1:6379", "ns", str(stage), "new-cnn", 9)
    controlled: list[str] = []

    def reachable(address: str) -> None:
        if not answers:
            raise EngineError(f"--ray-address {address}: no Ray cluster answers there")

    monkeypatch.setattr(detached_jobs, "check_reachable", reachable)
    monkeypatch.setattr(detached_jobs, "_control", lambda action, job, timeout_s=0: controlled.append(action))
    with Workspace.open(demo_copy) as ws:
        current = detached_jobs.read_status(job)
        assert current.state == "lost" and "stopped reporting for over 60 s" in (current.error or "")
        detached_jobs.settle(ws, job, current)
        run = ws.run(run_id)
    assert run["status"] == "failed" and "stopped reporting" in run["error"] and not stage.exists()
    assert controlled == (["kill"] if answers else [])


@pytest.mark.parametrize("command", ["embed-dataset", "transform"])
def test_a_fifo_named_like_a_partition_is_refused_not_read(items: dict, tmp_path: Path, command: str) -> None:
    """A FIFO named p9.parquet in the input folder blocked both commands for good in its open(), deaf to
    Ctrl-C and SIGTERM (only kill -9 ended them); the folder listing now names it. A fresh process with a
    timeout, so that a hang fails the test instead of the run."""
    import os
    import subprocess
    import sys

    from scale_fixtures import write_partitions

    if command == "transform":
        from bundle_fixtures import build_upgrade_workspace

        from embridge.core.bundle import export_bundle

        info = build_upgrade_workspace(tmp_path / "ws")
        with Workspace.open(info["path"]) as ws:
            export_bundle(ws, tmp_path / "b.zip", [info["runs"]["v3_to_v1"]])
        source = tmp_path / "gallery"
        write_partitions(source, info["vectors"]["v3"], 2)
        argv = ["transform", "--bundle", str(tmp_path / "b.zip"), "--from", str(source), "--to", str(tmp_path / "o")]
    else:
        source = items["items"]
        argv = ["embed-dataset", "--model", str(items["model"]), "--from", str(source), "--to", str(tmp_path / "o")]
    os.mkfifo(source / "p9.parquet")
    done = subprocess.run([sys.executable, "-m", "embridge.core.cli.main", *argv], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == (f"embridge: error: {source / 'p9.parquet'}: is a FIFO (named pipe), not a "
                                   "regular file; a dataset's .parquet entries must be files")
    assert not (tmp_path / "o").exists()


def _write_items(folder: Path, parts: list[tuple[Any, Any]]) -> None:
    """Partitions p0, p1, ... of (id, input) columns given as Arrow arrays."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir()
    for n, (ids, inputs) in enumerate(parts):
        pq.write_table(pa.table({"id": ids, "input": inputs}), folder / f"p{n}.parquet")


def _hostile_items(case: str) -> tuple[list[tuple[Any, Any]], str]:
    """(partitions, what the one-line refusal says) for an embed-dataset input of 8-value rows."""
    import pyarrow as pa

    def rows(values: Any, kind: Any = None) -> Any:
        flat = pa.array(np.asarray(values).ravel().tolist(), kind)
        return pa.FixedSizeListArray.from_arrays(flat, 8)

    good = np.random.default_rng(0).standard_normal((3, 8))
    if case == "empty":  # crashed reshaping zero rows
        empty = (pa.array([], pa.int64()), rows(np.zeros((0, 8)), pa.float32()))
        return [empty, empty], "holds no items: its 2 partitions are empty"
    if case == "beyond float32":  # read as inf, then blamed on the model after chunks were written
        late = good.copy()
        late[2, 5] = 1e300
        return [(pa.array([1, 2, 3]), rows(good)), (pa.array([4, 5, 6]), rows(late))], \
            "p1.parquet: row 2 (id 6): column 'input' holds 1e+300, a value beyond the float32 range"
    if case == "strings":  # 'could not convert string to float' as an unexpected error
        return [(pa.array([1, 2, 3]), rows(np.full((3, 8), "abc")))], \
            "p0.parquet: column 'input' is fixed_size_list<element: string>[8]; an input must be a fixed-size list of numbers"
    if case == "booleans":  # read as 0.0 and 1.0 without a word
        return [(pa.array([1, 2, 3]), rows(good > 0))], "column 'input' is fixed_size_list<element: bool>[8]"
    if case == "NUL":  # written as 'x', and 'a\0' beside 'a' called a repeat
        return [(pa.array(["a", "b\0", "c"]), rows(good))], "p0.parquet: row 1: id 'b\\x00' holds a NUL character"
    # a uint64 id past 2^63 - 1 beside int64 ids: pyarrow's own error, unexpected
    return [(pa.array([1, 2, 3], pa.int64()), rows(good)), (pa.array([2**63 + 5, 8, 9], pa.uint64()), rows(good))], \
        "the partitions' 'id' columns (int64, uint64) have no common type"


@pytest.mark.parametrize("case", ["empty", "beyond float32", "strings", "booleans", "NUL", "uint64 past int64"])
def test_hostile_item_datasets_are_one_line_before_any_chunk(items: dict, tmp_path: Path, case: str,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    parts, said = _hostile_items(case)
    _write_items(tmp_path / "bad", parts)
    code = main(["embed-dataset", "--model", str(items["model"]), "--from", str(tmp_path / "bad"),
                 "--to", str(tmp_path / "o"), "--chunk", "2"])
    err = one_line_error(capsys)
    assert code == 1 and said in err, err
    assert not (tmp_path / "o").exists()


def test_all_zero_vectors_are_said_beside_the_result(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """embed-dataset stored all-zero vectors without a word (``embed`` says so): bundles and migrations refuse
    them later. Counted over every chunk, those a killed earlier run wrote included."""
    import torch
    from scale_fixtures import write_items

    from embridge.core.models.builtin import build_model, save_checkpoint

    torch.manual_seed(0)
    model = build_model("mlp", {"input_dim": 8, "out_dim": 6})[0]
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear) and module.bias is not None:
                module.bias.zero_()  # an all-zero input then gives an all-zero vector
    save_checkpoint(tmp_path / "m.pt", model, "mlp", {"input_dim": 8, "out_dim": 6})
    inputs = np.random.default_rng(0).standard_normal((6, 8)).astype(np.float32)
    inputs[[1, 4]] = 0.0
    write_items(tmp_path / "items", inputs, 2)
    argv = ["embed-dataset", "--model", str(tmp_path / "m.pt"), "--from", str(tmp_path / "items"),
            "--to", str(tmp_path / "o"), "--chunk", "2"]
    capsys.readouterr()
    assert main(argv) == 0
    said = ("; 2 items got an all-zero vector (e.g. 1001): no direction, so no search finds them and bundles and "
            "migrations refuse them")
    assert capsys.readouterr().out.strip().endswith(said)
    assert main([*argv, "--json"]) == 0  # a rerun finds every chunk done, and still counts them
    out = json.loads(capsys.readouterr().out)
    assert (out["written"], out["zero_vectors"], out["zero_vector_example"]) == (0, 2, 1001)


def test_a_backfill_pool_the_cluster_cannot_hold_is_refused_before_a_run_or_a_stage(
        ray_cluster: Any, ws_and_model: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    """Refused only once the job ran: a failed run was recorded and a copy of the gallery's items left staged
    (and a detached job was submitted, exit 0, to fail on the cluster)."""
    ws_path, model = ws_and_model
    cpus = int(ray_cluster.cluster_resources()["CPU"])
    before = _state(ws_path)
    for extra in (["--actors", str(cpus + 1)], ["--num-gpus", "1"]):
        assert main(["backfill", "-w", str(ws_path), "--model", model, "--engine", "ray", *extra]) == 1, extra
        err = one_line_error(capsys)
        assert f"{extra[0]} {extra[1]}: the Ray cluster has" in err, err
        assert _state(ws_path) == before  # no run, no vector set, no scale-jobs folder
