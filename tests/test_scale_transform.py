"""The dataset transform on Ray Data against the local engine: Parquet and Lance inputs, linear (numpy)
and ONNX layers, a killed worker, a resumed run, the command line, and a worker without torch."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bundle_fixtures import build_upgrade_workspace
from scale_fixtures import WorkerKiller, read_partitions, write_lance, write_partitions

from embridge.core.bundle import export_bundle, load_bundle
from embridge.core.cli.main import main
from embridge.core.errors import Cancelled, InputError
from embridge.core.scale.gallery_transform import transform_gallery

MAPPER = "MapWorker(MapBatches(PartitionMapper))"


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from embridge.core.store import Workspace

    root = tmp_path_factory.mktemp("scale_transform")
    up = build_upgrade_workspace(root / "ws", with_report=False)
    with Workspace.open(up["path"]) as ws:
        export_bundle(ws, root / "linear.zip", [up["runs"]["v3_to_v1"]])  # procrustes: numpy runtime
        export_bundle(ws, root / "fct.zip", [up["runs"]["fct"]])  # an MLP: onnx runtime
        export_bundle(ws, root / "fusion.zip", [up["runs"]["fusion"]])  # two inputs
    return {**up, "linear": root / "linear.zip", "fct": root / "fct.zip", "fusion": root / "fusion.zip"}


def file_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.parquet"))}


def assert_identical_outputs(a: Path, b: Path) -> None:
    """Same partition files, byte for byte (so bitwise the same vectors, ids and payload)."""
    fa, fb = file_bytes(a), file_bytes(b)
    assert fa.keys() == fb.keys() and fa
    for name in fa:
        assert fa[name] == fb[name], f"{name} differs between the engines"


def test_linear_layer_on_ray_data_is_bitwise_local_and_torch_free(ray_cluster: Any, bundles: dict,
                                                                  tmp_path: Path) -> None:
    v3 = np.tile(bundles["vectors"]["v3"], (3, 1))
    write_partitions(tmp_path / "in", v3, parts=5, first_id=7)
    ray_run = transform_gallery(bundles["linear"], f"parquet://{tmp_path / 'in'}",
                                f"parquet://{tmp_path / 'ray'}", engine="ray")
    local = transform_gallery(bundles["linear"], str(tmp_path / "in"), str(tmp_path / "local"))
    assert local.runtimes == ["numpy"] and local.rows == ray_run.rows
    assert (ray_run.written, ray_run.rows, ray_run.runtimes) == (5, len(v3), ["numpy"])
    assert not ray_run.torch_loaded, "a Ray worker imported torch to apply a linear layer"
    assert_identical_outputs(tmp_path / "local", tmp_path / "ray")
    out = read_partitions(tmp_path / "ray")
    vectors = np.concatenate([o[1] for o in out.values()])
    np.testing.assert_array_equal(np.concatenate([o[0] for o in out.values()]), np.arange(len(v3)) + 7)
    np.testing.assert_allclose(vectors, load_bundle(bundles["linear"])(v3, normalise_output=True), atol=1e-6, rtol=0)
    assert vectors.shape[1] == bundles["vectors"]["v1"].shape[1]
    # the layer really moves the vectors: new->old through it lands near the old vectors
    v1 = np.tile(bundles["vectors"]["v1"], (3, 1))
    cos = np.sum(vectors * v1, axis=1) / np.linalg.norm(vectors, axis=1) / np.linalg.norm(v1, axis=1)
    assert np.median(cos) > 0.5


def test_worker_applies_a_linear_layer_where_torch_cannot_be_imported(bundles: dict, tmp_path: Path) -> None:
    """What a Ray worker runs, in a fresh process whose ``import torch`` fails."""
    write_partitions(tmp_path / "in", bundles["vectors"]["v3"], parts=1)
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from embridge.core.scale.partitions import open_source\n"
        "from embridge.core.scale.gallery_transform import transform_partition\n"
        f"part = open_source({str(tmp_path / 'in')!r}).partitions[0]\n"
        f"r = transform_partition({str(bundles['linear'])!r}, part, {str(tmp_path / 'out.parquet')!r})\n"
        "print(r.runtime, r.rows, r.torch_loaded)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["numpy", str(len(bundles["vectors"]["v3"])), "False"]
    got = read_partitions(tmp_path)["out.parquet"][1]
    np.testing.assert_allclose(got, load_bundle(bundles["linear"])(bundles["vectors"]["v3"], normalise_output=True), atol=1e-6, rtol=0)


def test_killed_worker_on_a_lance_input_is_retried_and_output_unchanged(ray_cluster: Any, bundles: dict,
                                                                        tmp_path: Path) -> None:
    v1 = np.tile(bundles["vectors"]["v1"], (10, 1))
    write_lance(tmp_path / "db", "gallery", v1, fragments=6)
    killer = WorkerKiller(MAPPER + ".", timeout=120)  # an actor busy with a partition
    killer.start()
    ray_run = transform_gallery(bundles["fct"], f"lancedb://{tmp_path / 'db'}?table=gallery",
                                str(tmp_path / "ray"), engine="ray")
    killer.stop.set()
    killer.join()
    assert killer.killed is not None, "no transform actor was seen running, so none was killed"
    local = transform_gallery(bundles["fct"], f"lance://{tmp_path / 'db' / 'gallery.lance'}", str(tmp_path / "local"))
    assert ray_run.rows == local.rows == len(v1) and ray_run.written == local.written == 6
    assert ray_run.runtimes == ["onnx"]
    assert_identical_outputs(tmp_path / "local", tmp_path / "ray")
    out = read_partitions(tmp_path / "ray")
    assert sorted(out) == [f"fragment-{i:06d}.parquet" for i in range(6)]
    np.testing.assert_array_equal(np.concatenate([o[0] for o in out.values()]), np.arange(len(v1)))
    np.testing.assert_allclose(np.concatenate([o[1] for o in out.values()]), load_bundle(bundles["fct"])(v1, normalise_output=True),
                               atol=1e-6, rtol=0)
    assert not list((tmp_path / "ray").glob(".*.tmp-*"))


def test_a_transform_worker_is_restarted_three_times_at_most(ray_cluster: Any, bundles: dict, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray Data restarts a map actor for ever by default: a partition that kills its worker every time (one
    too big for its memory) never ended the job (six kills in a row, and it went on). Its actors are now
    asked for three restarts, as the backfill's are; a worker killed once is still restarted and the
    output is the local engine's. (Killing every restart in a test races Ray's own scheduling: by hand,
    `--num-cpus 1` with each new worker killed ends after four kills, in the one line of remote_errors.)"""
    import ray.data

    from embridge.core.scale.engine import MAX_RESTARTS

    asked: list[dict[str, Any]] = []
    real = ray.data.Dataset.map_batches

    def recorded(self: Any, fn: Any, **kwargs: Any) -> Any:
        asked.append(kwargs)
        return real(self, fn, **kwargs)

    monkeypatch.setattr(ray.data.Dataset, "map_batches", recorded)
    v1 = np.tile(bundles["vectors"]["v1"], (10, 1))
    write_partitions(tmp_path / "in", v1, parts=6)
    killer = WorkerKiller(MAPPER + ".", timeout=120)
    killer.start()
    ray_run = transform_gallery(bundles["fct"], str(tmp_path / "in"), str(tmp_path / "ray"), engine="ray")
    killer.stop.set()
    killer.join()
    assert [(a.get("max_restarts"), a.get("max_task_retries")) for a in asked] == [(MAX_RESTARTS, MAX_RESTARTS)]
    assert MAX_RESTARTS == 3 and ray_run.rows == len(v1)
    transform_gallery(bundles["fct"], str(tmp_path / "in"), str(tmp_path / "local"))
    assert_identical_outputs(tmp_path / "local", tmp_path / "ray")


def test_ray_transform_resumes_by_finished_partition(ray_cluster: Any, bundles: dict, tmp_path: Path) -> None:
    write_lance(tmp_path / "db", "g", np.tile(bundles["vectors"]["v1"], (4, 1)), fragments=5)
    src, dst = f"lance://{tmp_path / 'db' / 'g.lance'}", str(tmp_path / "out")
    seen = []

    def stop_after_first(*_: Any) -> None:
        seen.append(1)

    with pytest.raises(Cancelled):
        transform_gallery(bundles["fct"], src, dst, engine="ray", on_progress=stop_after_first,
                          should_stop=lambda: len(seen) >= 1)
    finished = sorted(p.name for p in (tmp_path / "out").glob("*.parquet"))
    assert len(finished) >= 1
    if len(finished) == 5:  # every partition finished before the stop was seen: a kill would lose the rest
        for name in finished[3:]:
            (tmp_path / "out" / name).unlink()
        finished = finished[:3]
    before = {name: (tmp_path / "out" / name).stat().st_mtime_ns for name in finished}
    (tmp_path / "out" / ".fragment-000004.parquet.tmp-1").write_bytes(b"half written by a killed run")
    resumed = transform_gallery(bundles["fct"], src, dst, engine="ray")
    assert (resumed.skipped, resumed.written) == (len(finished), 5 - len(finished))
    assert {name: (tmp_path / "out" / name).stat().st_mtime_ns for name in finished} == before
    transform_gallery(bundles["fct"], src, str(tmp_path / "local"))
    assert_identical_outputs(tmp_path / "local", tmp_path / "out")
    assert not list((tmp_path / "out").glob(".*.tmp-*"))
    # the source changed (a new fragment): the old output folder is refused, not mixed
    write_lance(tmp_path / "db", "g", bundles["vectors"]["v1"][:5], fragments=1, append=True)
    with pytest.raises(InputError, match="another transform"):
        transform_gallery(bundles["fct"], src, dst, engine="ray")


def test_a_re_export_of_the_same_layer_resumes_and_another_layer_is_refused(bundles: dict, tmp_path: Path) -> None:
    from embridge.core.store import Workspace

    write_partitions(tmp_path / "in", bundles["vectors"]["v3"], parts=4)
    src, dst = str(tmp_path / "in"), str(tmp_path / "out")
    seen: list[int] = []
    with pytest.raises(Cancelled):
        transform_gallery(bundles["linear"], src, dst, on_progress=lambda *_: seen.append(1),
                          should_stop=lambda: len(seen) >= 2)
    done = sorted(p.name for p in (tmp_path / "out").glob("*.parquet"))
    assert 1 <= len(done) < 4
    again = tmp_path / "again.zip"  # the same run exported once more: other bytes, the same layer
    with Workspace.open(bundles["path"]) as ws:
        export_bundle(ws, again, [bundles["runs"]["v3_to_v1"]])
    assert again.read_bytes() != bundles["linear"].read_bytes()
    resumed = transform_gallery(again, src, dst)
    assert (resumed.skipped, resumed.written) == (len(done), 4 - len(done))
    transform_gallery(bundles["linear"], src, str(tmp_path / "whole"))
    assert_identical_outputs(tmp_path / "whole", tmp_path / "out")
    other = tmp_path / "other.zip"  # another layer of the same input width
    with Workspace.open(bundles["path"]) as ws:
        export_bundle(ws, other, [bundles["runs"]["v3_to_v2"]])
    with pytest.raises(InputError, match=r"another transform \(other layer\)"):
        transform_gallery(other, src, dst)


def test_an_fct_re_export_with_other_torchscript_bytes_resumes(bundles: dict, tmp_path: Path) -> None:
    import os
    import zipfile

    def export(out: Path, seed: str) -> str:  # TorchScript names and ids vary with the process's hash seed
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, "-m", "embridge.core.cli.main", "bundle", "export", "--workspace",
                        str(bundles["path"]), "--run", str(bundles["runs"]["fct"]), "--out", str(out)],
                       check=True, env=env, capture_output=True)
        with zipfile.ZipFile(out) as zf:
            return json.loads(zf.read("manifest.json"))["files"]["adapter.pt"]["sha256"]

    first, second = tmp_path / "a.zip", tmp_path / "b.zip"
    assert export(first, "1") != export(second, "2")  # the same layer, other TorchScript bytes
    write_partitions(tmp_path / "in", bundles["vectors"]["v1"], parts=3)
    src, dst = str(tmp_path / "in"), str(tmp_path / "out")
    transform_gallery(first, src, dst)
    (tmp_path / "out" / "part-001.parquet").unlink()  # as if stopped before this partition
    resumed = transform_gallery(second, src, dst)
    assert (resumed.skipped, resumed.written) == (2, 1)
    transform_gallery(first, src, str(tmp_path / "whole"))
    assert_identical_outputs(tmp_path / "whole", tmp_path / "out")


def test_transform_command_on_ray_with_lance_and_refusals(ray_cluster: Any, bundles: dict, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    write_lance(tmp_path / "db", "docs", bundles["vectors"]["v3"], fragments=2)
    args = ["transform", "--bundle", str(bundles["linear"]), "--from", f"lancedb://{tmp_path / 'db'}?table=docs"]
    assert main([*args, "--to", f"parquet://{tmp_path / 'out'}", "--engine", "ray", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["rows"], data["written"], data["engine"], data["runtimes"]) == \
        (len(bundles["vectors"]["v3"]), 2, "ray", ["numpy"])
    assert main(["transform", "--bundle", str(bundles["linear"]), "--from", f"lance://{tmp_path / 'nope.lance'}",
                 "--to", str(tmp_path / "o2")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--from" in err[0] and "no such Lance dataset" in err[0]
    assert main([*args, "--to", str(tmp_path / "o3"), "--vector-column", "emb"]) == 1
    assert "no 'emb' column (columns: id, vector, label)" in capsys.readouterr().err  # 'id' is there
    assert main(["transform", "--bundle", str(bundles["fusion"]), "--from", f"lancedb://{tmp_path / 'db'}?table=docs",
                 "--to", str(tmp_path / "o4")]) == 1
    assert "needs two inputs" in capsys.readouterr().err
    assert not (tmp_path / "o4").exists() and not (tmp_path / "o3").exists()
    (tmp_path / "afile").write_text("not a dataset")
    assert main([*args, "--to", f"lance://{tmp_path / 'afile'}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--to" in err[0] and "is a file" in err[0]
    assert (tmp_path / "afile").read_text() == "not a dataset"


def test_a_bad_row_on_ray_is_the_local_engines_one_line(ray_cluster: Any, bundles: dict, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The worker's InputError reaches the driver as itself (not Ray's remote traceback), exit 1."""
    vectors = bundles["vectors"]["v3"][:30].copy()
    vectors[25, 0] = np.nan
    write_partitions(tmp_path / "in", vectors, parts=3)
    lines = {}
    import ray.data  # noqa: F401  (its import sets the logger's level: the one a host program has)

    level = logging.getLogger("ray.data").level
    for engine in ("local", "ray"):
        code = main(["transform", "--bundle", str(bundles["linear"]), "--from", str(tmp_path / "in"),
                     "--to", str(tmp_path / engine), "--engine", engine])
        err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("embridge:")]
        assert code == 1 and len(err) == 1, err
        lines[engine] = err[0].replace(str(tmp_path / engine), "OUT")
    assert lines["ray"] == lines["local"]
    assert "part-002.parquet: row 5 of column 'vector' (id 25) holds NaN or inf values" in lines["ray"]
    # Ray Data's own log of the failure was silenced for the pipeline only, not for the host program
    assert logging.getLogger("ray.data").level == level


def test_an_all_zero_row_is_refused_as_a_migration_refuses_it(bundles: dict, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    vectors = bundles["vectors"]["v3"][:30].copy()
    vectors[[4, 6]] = 0.0  # no direction: the output would be the layer's bias alone
    write_partitions(tmp_path / "in", vectors, parts=1)
    code = main(["transform", "--bundle", str(bundles["linear"]), "--from", str(tmp_path / "in"),
                 "--to", str(tmp_path / "out")])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("embridge:")]
    assert code == 1 and len(err) == 1, err
    assert "row 4 of column 'vector' (id 4) is an all-zero vector (2 such rows)" in err[0]
    assert not list((tmp_path / "out").glob("*.parquet"))  # no partition written


def test_an_address_where_no_cluster_answers_is_one_line_at_once(bundles: dict, tmp_path: Path) -> None:
    """Ray's own connect retries for minutes; a plain TCP try refuses the address first."""
    import socket

    from embridge.core.scale.detached_jobs import cluster_address
    from embridge.core.scale.engine import EngineError

    with socket.socket() as probe:  # a port nothing listens on once this closes
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    write_partitions(tmp_path / "in", bundles["vectors"]["v3"][:20], parts=1)
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        done = subprocess.run([sys.executable, "-m", "embridge.core.cli.main", "transform", "--bundle",
                               str(bundles["linear"]), "--from", str(tmp_path / "in"), "--to", str(tmp_path / "out"),
                               "--engine", "ray", "--ray-address", address], capture_output=True, text=True,
                              timeout=120, cwd=Path(__file__).resolve().parents[1])
        err = [line for line in done.stderr.splitlines() if line.startswith("embridge:")]
        assert done.returncode == 1 and err == [f"embridge: error: --ray-address {address}: no Ray cluster answers "
                                                 "there (Connection refused); start one with 'ray start --head' or "
                                                 "check the address"], done.stderr
        assert not (tmp_path / "out").exists()
    with pytest.raises(EngineError, match="no Ray cluster answers there"):
        cluster_address(f"127.0.0.1:{port}")  # a detached job is refused before anything is recorded


def test_user_errors_survive_the_trip_from_a_worker() -> None:
    import pickle

    from embridge.core.errors import CheckpointError, user_error

    err = CheckpointError("m.pt", "the model output holds NaN or inf values")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is CheckpointError and (back.source, back.problem, str(back)) == (err.source, err.problem, str(err))

    class Wrapper(Exception):  # how Ray delivers a task's error: the original as ``cause``
        def __init__(self, cause: BaseException) -> None:
            super().__init__("remote traceback ...")
            self.cause = cause

    assert user_error(Wrapper(back)) is back and user_error(ValueError("bug")) is None
    try:
        raise InputError("--to", "outer") from InputError("x", "inner")
    except InputError as outer:
        assert user_error(outer) is outer  # a user error raised from another is itself


def test_command_starts_its_own_local_ray_when_no_cluster_is_named(bundles: dict, tmp_path: Path) -> None:
    """No --ray-address and no RAY_ADDRESS: the command starts a local Ray for the job and stops it."""
    import os

    write_partitions(tmp_path / "in", bundles["vectors"]["v3"], parts=2)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run([sys.executable, "-m", "embridge.core.cli.main", "transform", "--bundle", str(bundles["linear"]),
                           "--from", str(tmp_path / "in"), "--to", str(tmp_path / "ray"), "--engine", "ray",
                           "--num-cpus", "1", "--json"], capture_output=True, text=True, timeout=600, env=env,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads(done.stdout)
    assert (data["engine"], data["written"], data["runtimes"], data["torch_loaded"]) == ("ray", 2, ["numpy"], False)
    transform_gallery(bundles["linear"], str(tmp_path / "in"), str(tmp_path / "local"))
    assert_identical_outputs(tmp_path / "local", tmp_path / "ray")


def lance_rows(path: Path) -> Any:
    import lance

    return lance.dataset(str(path)).to_table()


def test_lance_output_is_committed_once_resumes_and_matches_the_local_engine(ray_cluster: Any, bundles: dict,
                                                                             tmp_path: Path) -> None:
    """A Lance output: fragments per partition, one commit at the end, a stop then a resume on Ray, the
    same table as the local engine and as the Parquet output, readable as a LanceDB table."""
    import lancedb
    import pyarrow as pa
    import pyarrow.parquet as pq

    v1 = np.tile(bundles["vectors"]["v1"], (4, 1))
    write_partitions(tmp_path / "in", v1, parts=5)
    src, dst = str(tmp_path / "in"), tmp_path / "db" / "docs_v2.lance"
    seen: list[int] = []
    with pytest.raises(Cancelled):
        transform_gallery(bundles["fct"], src, f"lance://{dst}", engine="ray", on_progress=lambda *_: seen.append(1),
                          should_stop=lambda: len(seen) >= 1)
    assert not (dst / "_versions").exists(), "a stopped transform committed a partial dataset"
    markers = sorted((dst / "_embridge_fragments").glob("*.json"))
    assert len(markers) >= 1
    if len(markers) >= 4:  # (nearly) every partition finished before the stop was seen: redo some
        for marker in markers[3:]:
            marker.unlink()
    (dst / "data" / "half-written-by-a-killed-run.lance").write_bytes(b"\0" * 64)
    resumed = transform_gallery(bundles["fct"], src, f"lancedb://{tmp_path / 'db'}?table=docs_v2", engine="ray")
    assert resumed.output == "lance" and resumed.dataset_version == 1
    assert resumed.skipped + resumed.written == 5 and resumed.written >= 2 and resumed.runtimes == ["onnx"]
    local = transform_gallery(bundles["fct"], src, f"lance://{tmp_path / 'local.lance'}")
    parquet = transform_gallery(bundles["fct"], src, str(tmp_path / "pq"))
    assert local.rows == parquet.rows == len(v1)
    got = lance_rows(dst)
    assert got.equals(lance_rows(tmp_path / "local.lance")), "the Ray and local Lance outputs differ"
    pq_rows = pa.concat_tables([pq.read_table(f) for f in sorted((tmp_path / "pq").glob("*.parquet"))])
    assert got.equals(pq_rows)
    vec = got.column("vector").combine_chunks()
    np.testing.assert_allclose(vec.flatten().to_numpy().reshape(len(vec), -1), load_bundle(bundles["fct"])(v1, normalise_output=True),
                               atol=1e-6, rtol=0)
    assert not (dst / "data" / "half-written-by-a-killed-run.lance").exists()
    assert lancedb.connect(str(tmp_path / "db")).open_table("docs_v2").count_rows() == len(v1)
    again = transform_gallery(bundles["fct"], src, f"lance://{dst}")
    assert (again.written, again.skipped, again.dataset_version) == (0, 5, 1)
    # an existing Lance dataset that is not this transform's output is refused, not overwritten
    write_lance(tmp_path / "db", "gallery", v1[:10], fragments=1)
    with pytest.raises(InputError, match="not the output of an earlier run"):
        transform_gallery(bundles["fct"], src, f"lancedb://{tmp_path / 'db'}?table=gallery")
    assert lance_rows(tmp_path / "db" / "gallery.lance").num_rows == 10


@pytest.mark.parametrize("odd", ["width", "subfolder", "other suffix"])
def test_odd_partition_or_subfolder_is_named_before_any_partition_is_written(
        bundles: dict, tmp_path: Path, odd: str, capsys: pytest.CaptureFixture[str]) -> None:
    v3 = bundles["vectors"]["v3"]
    write_partitions(tmp_path / "in", v3, 4)
    if odd == "width":  # sorts last: the first four partitions would be written before it is read
        write_partitions(tmp_path / "odd", v3[:, :8], 1)
        (tmp_path / "odd" / "part-000.parquet").rename(tmp_path / "in" / "part-999.parquet")
        named = ["part-999.parquet", "8-d"]
    elif odd == "subfolder":  # hive-style partition folder
        write_partitions(tmp_path / "in" / "part=1", v3, 1)
        named = ["part=1", "subfolder"]
    else:  # its rows were left out while every other partition was transformed
        (tmp_path / "in" / "part-003.parquet").rename(tmp_path / "in" / "part-003.pq")
        named = ["part-003.pq", "not a .parquet file"]
    before = file_bytes(tmp_path / "in")
    code = main(["transform", "--bundle", str(bundles["linear"]), "--from", f"parquet://{tmp_path / 'in'}",
                 "--to", f"parquet://{tmp_path / 'out'}"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert all(n in err for n in named), err
    assert not (tmp_path / "out").exists()
    assert file_bytes(tmp_path / "in") == before


@pytest.mark.parametrize(("ids", "named"), [
    ([[0, 1, 2], [3, 1, 4]], "part-001.parquet: row 1: id 1 appears more than once in the dataset; ids must be"),
    ([[0, 1, 1], [3, 4, 5]], "part-000.parquet: row 2: id 1 appears more than once in the dataset; ids must be"),
    ([[0, 1, 2], [3, None, 5]], "part-001.parquet: row 1 of column 'id' is a null id (1 such rows)"),
])
def test_null_or_repeated_ids_are_refused_before_any_partition_is_written(
        bundles: dict, tmp_path: Path, ids: list, named: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The output is upserted by id (migrate), so an id held twice or a null id would lose rows there."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    v3 = bundles["vectors"]["v3"]
    (tmp_path / "in").mkdir()
    for i, part in enumerate(ids):
        rows = v3[3 * i:3 * i + 3].astype(np.float32)
        pq.write_table(pa.table({"id": pa.array(part, pa.int64()),
                                 "vector": pa.FixedSizeListArray.from_arrays(pa.array(rows.ravel()), rows.shape[1])}),
                       tmp_path / "in" / f"part-{i:03d}.parquet")
    code = main(["transform", "--bundle", str(bundles["linear"]), "--from", str(tmp_path / "in"),
                 "--to", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and named in err, err
    assert not (tmp_path / "out").exists()


def test_a_damaged_lance_partition_record_is_one_line_naming_it(bundles: dict, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A finished partition's record cut short by hand: one line naming it, exit 1; deleting it redoes it."""
    write_partitions(tmp_path / "in", bundles["vectors"]["v1"], parts=3)
    dst = tmp_path / "out.lance"
    seen: list[int] = []
    with pytest.raises(Cancelled):
        transform_gallery(bundles["fct"], str(tmp_path / "in"), f"lance://{dst}", on_progress=lambda *_: seen.append(1),
                          should_stop=lambda: len(seen) >= 1)
    (marker,) = sorted((dst / "_embridge_fragments").glob("*.json"))[:1]
    marker.write_text(marker.read_text()[:20])
    capsys.readouterr()
    args = ["transform", "--bundle", str(bundles["fct"]), "--from", str(tmp_path / "in"), "--to", f"lance://{dst}"]
    assert main(args) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("embridge:")]
    assert len(err) == 1 and f"{marker}: the record of a finished partition cannot be read" in err[0], err
    marker.unlink()
    assert main(args) == 0
    assert lance_rows(dst).num_rows == len(bundles["vectors"]["v1"])


def test_a_committed_lance_output_takes_a_changed_and_an_added_partition(bundles: dict, tmp_path: Path) -> None:
    """The rerun failed for good ('Dataset already exists') after editing the output's records; it redoes
    the changed and the added partitions and commits what a fresh run of the new source commits."""
    import pyarrow.parquet as pq

    files = write_partitions(tmp_path / "in", bundles["vectors"]["v1"][:150], parts=3)
    dst = tmp_path / "out.lance"
    transform_gallery(bundles["fct"], str(tmp_path / "in"), f"lance://{dst}")
    import lance

    first = lance.dataset(str(dst))
    before = first.to_table()
    pq.write_table(pq.read_table(files[1]).slice(0, 20), files[1])  # a partition rewritten with fewer rows
    write_partitions(tmp_path / "more", bundles["vectors"]["v1"][150:200], parts=1, first_id=150)
    (tmp_path / "more" / "part-000.parquet").rename(tmp_path / "in" / "part-003.parquet")  # and one added
    again = transform_gallery(bundles["fct"], str(tmp_path / "in"), f"lance://{dst}")
    assert again.written == 2 and again.skipped == 2
    fresh = tmp_path / "fresh.lance"
    transform_gallery(bundles["fct"], str(tmp_path / "in"), f"lance://{fresh}")
    got, want = lance_rows(dst), lance_rows(fresh)
    assert got.num_rows == 50 + 20 + 50 + 50 and got.equals(want)
    # the first version stays whole: a reader holding it (a server, a checkout) reads on; the commit removed
    # only files no version references (its data files were deleted, and reading it failed)
    assert lance.dataset(str(dst), version=first.version).to_table().equals(before)
    assert first.to_table().equals(before)


def test_partitions_of_other_columns_are_refused_for_a_lance_output(bundles: dict, tmp_path: Path) -> None:
    """Columns in another order, an int32 id beside int64 ones or an extra column: the fragments were
    committed under the first partition's schema, exit 0, and the dataset could not be read back."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for change, says in (("order", "its columns are in another order than part-000.parquet's (label, vector, id "
                                   "against id, vector, label)"),
                         ("int32", "column 'id' is int32 but part-000.parquet has int64"),
                         ("extra", "its columns differ from part-000.parquet's (it has note)")):
        files = write_partitions(tmp_path / change, bundles["vectors"]["v1"][:90], parts=3)
        table = pq.read_table(files[2])
        table = {"order": lambda t: t.select(["label", "vector", "id"]),
                 "int32": lambda t: t.set_column(0, "id", t["id"].cast(pa.int32())),
                 "extra": lambda t: t.append_column("note", pa.array(["x"] * t.num_rows))}[change](table)
        pq.write_table(table, files[2])
        dst = tmp_path / f"{change}.lance"
        with pytest.raises(InputError, match=f"part-002.parquet: {re.escape(says)}; a Lance output holds one schema"):
            transform_gallery(bundles["fct"], str(tmp_path / change), f"lance://{dst}")
        assert not dst.exists()
        assert transform_gallery(bundles["fct"], str(tmp_path / change), str(tmp_path / f"{change}-pq")).written == 3


def test_columns_named_on_the_source_uri_are_the_ones_transformed(bundles: dict, tmp_path: Path) -> None:
    """`?vector=emb&id=key` on --from was ignored: the `vector` column was transformed, exit 0. The
    URI's columns are used as --vector-column/--id-column would be, and a parameter it does not take
    (a typo among them) is refused naming it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    v3 = bundles["vectors"]["v3"][:50].astype(np.float32)
    (tmp_path / "in").mkdir()
    column = pa.FixedSizeListArray.from_arrays
    pq.write_table(pa.table({"id": pa.array(range(50), pa.int64()), "key": [f"k{i}" for i in range(50)],
                             "vector": column(pa.array(np.zeros_like(v3).ravel() + 1), v3.shape[1]),
                             "emb": column(pa.array(v3.ravel()), v3.shape[1])}), tmp_path / "in" / "part-0.parquet")
    src = f"parquet://{tmp_path / 'in'}"
    by_uri = transform_gallery(bundles["linear"], f"{src}?vector=emb&id=key", str(tmp_path / "by_uri"))
    by_option = transform_gallery(bundles["linear"], src, str(tmp_path / "by_option"), id_col="key", vec_col="emb")
    assert by_uri.rows == by_option.rows == 50
    assert_identical_outputs(tmp_path / "by_uri", tmp_path / "by_option")
    for source, target, option in ((f"{src}?colection=x", tmp_path / "a", "--from"),
                                   (src, f"parquet://{tmp_path / 'b'}?id=key", "--to")):
        with pytest.raises(InputError, match="does not take") as refused:
            transform_gallery(bundles["linear"], source, str(target))
        assert str(refused.value).startswith(option) and not Path(str(target).split("?")[0].removeprefix("parquet://")).exists()
    with pytest.raises(InputError, match="give one"):
        transform_gallery(bundles["linear"], f"{src}?vector=emb", str(tmp_path / "c"), vec_col="vector")


def test_a_float64_value_beyond_float32_is_named_as_such(bundles: dict, tmp_path: Path) -> None:
    """1e300 in a float64 column became inf on the cast: a RuntimeWarning line and 'NaN or inf values'."""
    import warnings

    import pyarrow as pa
    import pyarrow.parquet as pq

    from embridge.core.errors import EmbridgeError

    v = bundles["vectors"]["v3"][:20].astype(np.float64)
    v[3, 5] = 1e300
    (tmp_path / "in").mkdir()
    pq.write_table(pa.table({"id": pa.array(range(20), pa.int64()), "vector": pa.FixedSizeListArray.from_arrays(
        pa.array(v.ravel()), v.shape[1])}), tmp_path / "in" / "part-0.parquet")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning on the way
        with pytest.raises(EmbridgeError, match=r"row 3: point 3 holds 1e\+300, a value beyond the float32 range"):
            transform_gallery(bundles["linear"], str(tmp_path / "in"), str(tmp_path / "out"))


def test_a_null_inside_a_vector_is_named_as_a_null(bundles: dict, tmp_path: Path) -> None:
    """A null element became NaN on the way to numpy and was reported as 'NaN or inf values'."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    v = bundles["vectors"]["v3"][:20].astype(np.float32)
    values = v.ravel().tolist()
    values[2 * v.shape[1] + 5] = None
    (tmp_path / "in").mkdir()
    pq.write_table(pa.table({"id": pa.array(range(100, 120), pa.int64()), "vector": pa.FixedSizeListArray.from_arrays(
        pa.array(values, pa.float32()), v.shape[1])}), tmp_path / "in" / "part-0.parquet")
    with pytest.raises(InputError, match=r"row 2 of column 'vector' \(id 102\) holds a null value inside its vector"):
        transform_gallery(bundles["linear"], str(tmp_path / "in"), str(tmp_path / "out"))


def test_an_address_where_something_else_listens_is_one_line_in_seconds(bundles: dict, tmp_path: Path) -> None:
    """A web server (a dashboard, say) or a socket that never answers on the --ray-address port passed the
    TCP check, and Ray then retried for minutes."""
    import socket
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from embridge.core.scale.engine import EngineError, check_reachable

    web = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)  # accepts, never answers
    try:
        for port in (web.server_address[1], silent.getsockname()[1]):
            began = time.monotonic()
            with pytest.raises(EngineError, match="something listens there but does not answer as a Ray cluster"):
                check_reachable(f"127.0.0.1:{port}")
            assert time.monotonic() - began < 15
    finally:
        web.shutdown()
        web.server_close()
        silent.close()


def test_a_grpc_server_that_is_not_ray_is_refused_at_once() -> None:
    """A gRPC server of another kind passed the probes: Ray retried it for 20-30 s, logging each try."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    import grpc

    from embridge.core.scale.engine import EngineError, check_reachable

    server = grpc.server(ThreadPoolExecutor(max_workers=2))  # no service: every method is unimplemented
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
            began = time.monotonic()
            with pytest.raises(EngineError, match="a gRPC server answers there, but neither as a Ray cluster's GCS "
                                                  "nor as a Ray Client server"):
                check_reachable(address)
            assert time.monotonic() - began < 15
    finally:
        server.stop(None)


def test_a_gcs_reached_only_through_the_loopback_is_refused_where_ray_would_connect_elsewhere() -> None:
    """Ray swaps 127.0.0.1 for this machine's own IP: a tunnel bound to the loopback passed the probes, and Ray
    then retried the other address for minutes. (A machine whose own IP is the loopback has nothing to swap.)"""
    import time
    from concurrent.futures import ThreadPoolExecutor

    import grpc
    from ray._private.services import canonicalize_bootstrap_address

    from embridge.core.scale.engine import EngineError, check_reachable

    server = grpc.server(ThreadPoolExecutor(max_workers=2))  # answers the GCS method only, on 127.0.0.1 only
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("ray.rpc.NodeInfoGcsService", {
        "GetClusterId": grpc.unary_unary_rpc_method_handler(lambda request, context: b"")})])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        own = canonicalize_bootstrap_address(f"127.0.0.1:{port}").rpartition(":")[0]
        began = time.monotonic()
        if own == "127.0.0.1":
            check_reachable(f"127.0.0.1:{port}")
        else:
            with pytest.raises(EngineError, match=rf"Ray connects to a local address through this machine's own IP, "
                                                  rf"{re.escape(own)}, and nothing answers on port {port} there"):
                check_reachable(f"127.0.0.1:{port}")
        assert time.monotonic() - began < 15
    finally:
        server.stop(None)


def test_relative_dataset_paths_on_ray_are_the_callers(ray_cluster: Any, bundles: dict, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Ray's workers run in their own folder: a relative --from was read there ("is not a readable
    Parquet file"), and the output written there. Paths are the caller's, as with the local engine."""
    write_partitions(tmp_path / "in", bundles["vectors"]["v3"], parts=2)
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    for engine in ("local", "ray"):
        assert main(["transform", "--bundle", str(bundles["linear"]), "--from", "../in", "--to", f"out-{engine}",
                     "--engine", engine, "--json"]) == 0, capsys.readouterr().err
        assert json.loads(capsys.readouterr().out)["rows"] == len(bundles["vectors"]["v3"])
    files = {engine: sorted((tmp_path / "here" / f"out-{engine}").glob("*.parquet")) for engine in ("local", "ray")}
    assert [f.name for f in files["ray"]] == [f.name for f in files["local"]] and len(files["ray"]) == 2
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(files["local"], files["ray"], strict=True))


def test_a_bad_row_of_a_lance_dataset_is_named_with_its_fragment(bundles: dict, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Row numbers count within a fragment: "row 5" of the second fragment named another item."""
    from scale_fixtures import write_lance

    vectors = bundles["vectors"]["v3"][:30].copy()
    vectors[20] = 0.0  # row 5 of the second of two fragments of 15 rows
    write_lance(tmp_path / "db", "docs", vectors, fragments=2)
    code = main(["transform", "--bundle", str(bundles["linear"]), "--from", f"lance://{tmp_path / 'db' / 'docs.lance'}",
                 "--to", str(tmp_path / "out")])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("embridge:")]
    assert code == 1 and len(err) == 1, err
    assert "docs.lance (fragment 1): row 5 of column 'vector' (id 20) is an all-zero vector" in err[0], err[0]


@pytest.mark.parametrize("case", ["strings", "booleans", "NUL id"])
def test_vectors_that_are_not_numbers_and_ids_holding_nul_are_one_line(
        bundles: dict, tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A list of strings failed deep in numpy as an unexpected error and a list of booleans was read as
    0.0 and 1.0 without a word; an id 'a\\0' was called a repeat of 'a' (numpy drops trailing NULs)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    v3 = bundles["vectors"]["v3"][:3]
    values = {"strings": pa.array(np.full(v3.size, "0.5").tolist()), "booleans": pa.array((v3 > 0).ravel().tolist()),
              "NUL id": pa.array(v3.ravel().astype(np.float32))}[case]
    ids = pa.array(["a", "a\0", "b"]) if case == "NUL id" else pa.array([1, 2, 3])
    (tmp_path / "in").mkdir()
    pq.write_table(pa.table({"id": ids, "vector": pa.FixedSizeListArray.from_arrays(values, v3.shape[1])}),
                   tmp_path / "in" / "p0.parquet")
    code = main(["transform", "--bundle", str(bundles["linear"]), "--from", str(tmp_path / "in"),
                 "--to", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "unexpected" not in err, err
    said = {"strings": "column 'vector' is a fixed-size list of string, not of floats",
            "booleans": "column 'vector' is a fixed-size list of bool, not of floats",
            "NUL id": "p0.parquet: row 1: id 'a\\x00' holds a NUL character"}[case]
    assert said in err, err
    assert not (tmp_path / "out").exists()


def test_a_lance_source_changed_during_a_transform_is_read_as_of_its_listed_version(
        bundles: dict, tmp_path: Path) -> None:
    """Each fragment was read at the dataset's newest version: rows deleted and fragments compacted while the
    job ran gave an output mixing two versions under the first one's tag, and a compacted fragment crashed
    the job (an unexpected AttributeError)."""
    import lance

    v1 = bundles["vectors"]["v1"]
    path = write_lance(tmp_path / "db", "gallery", v1, fragments=6)

    def change_it(done: int, total: int, info: dict) -> None:
        if done == 2:
            dataset = lance.dataset(str(path))
            dataset.delete("id % 3 = 0")
            dataset.optimize.compact_files(target_rows_per_fragment=10_000)  # every fragment merged into one

    run = transform_gallery(bundles["fct"], f"lance://{path}", str(tmp_path / "out"), on_progress=change_it)
    assert run.written == 6 and lance.dataset(str(path)).count_rows() < len(v1)
    got = read_partitions(tmp_path / "out")
    ids = np.concatenate([got[name][0] for name in sorted(got)])
    vectors = np.concatenate([got[name][1] for name in sorted(got)])
    np.testing.assert_array_equal(ids, np.arange(len(v1)))  # every row of the version listed, in order
    np.testing.assert_allclose(vectors, load_bundle(bundles["fct"])(v1, normalise_output=True), atol=1e-6, rtol=0)
