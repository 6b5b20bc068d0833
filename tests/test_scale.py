"""Scale-out engine: Ray results against the local engine on small data (one local Ray per session).

The kill tests run first, while the Ray workers are cold (each first task imports torch and faiss,
which leaves time to find and kill it); Ray must retry the task and the result must not change.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bundle_fixtures import build_upgrade_workspace
from scale_fixtures import WorkerKiller, read_partitions, write_partitions

from embridge.core.bundle import export_bundle, load_bundle
from embridge.core.cli.main import main
from embridge.core.errors import Cancelled, InputError
from embridge.core.evaluation.search import SearchConfig, search
from embridge.core.evaluation.topk_merge import merge_topk
from embridge.core.scale.gallery_transform import transform_gallery
from embridge.core.scale.sharded_search import shard_bounds, sharded_search
from embridge.core.store import Workspace


@pytest.fixture(scope="module")
def upgrade(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("scale")
    up = build_upgrade_workspace(root / "ws")
    with Workspace.open(up["path"]) as ws:
        export_bundle(ws, root / "fct.zip", [up["runs"]["fct"]])
    return {**up, "bundle": root / "fct.zip", "root": root}


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def gallery_with_ties(n: int = 3000, dim: int = 24, seed: int = 0) -> np.ndarray:
    """Random unit rows where every 7th row repeats an earlier one, so equal scores are common."""
    g = unit(np.random.default_rng(seed).standard_normal((n, dim)))
    g[7::7] = g[3:3 + len(g[7::7])]
    return g


def assert_same_search(a: tuple, b: tuple) -> None:
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_killed_transform_worker_is_retried_and_output_unchanged(ray_cluster: Any, upgrade: dict,
                                                                 tmp_path: Path) -> None:
    v1 = np.tile(upgrade["vectors"]["v1"], (20, 1))
    write_partitions(tmp_path / "in", v1, parts=6)
    killer = WorkerKiller("MapWorker(MapBatches(PartitionMapper)).", timeout=120)
    killer.start()
    ray_run = transform_gallery(upgrade["bundle"], f"parquet://{tmp_path / 'in'}", f"parquet://{tmp_path / 'ray'}",
                                engine="ray")
    killer.stop.set()
    killer.join()
    assert killer.killed is not None, "no transform worker was seen running, so none was killed"
    local = transform_gallery(upgrade["bundle"], str(tmp_path / "in"), str(tmp_path / "local"))
    assert ray_run.rows == local.rows == len(v1) and ray_run.written == 6
    for name, (ids, vectors, labels) in read_partitions(tmp_path / "local").items():
        r_ids, r_vectors, r_labels = read_partitions(tmp_path / "ray")[name]
        np.testing.assert_array_equal(ids, r_ids)
        np.testing.assert_array_equal(vectors, r_vectors)  # bitwise
        assert labels == r_labels
    assert not list((tmp_path / "ray").glob(".*.tmp-*"))


def test_killed_search_worker_is_retried_and_ranking_unchanged(ray_cluster: Any, tmp_path: Path) -> None:
    g = gallery_with_ties(20_000, 32, seed=1)
    np.save(tmp_path / "g.npy", g)
    q = unit(np.random.default_rng(2).standard_normal((3000, 32)))  # shard tasks long enough to be seen
    killer = WorkerKiller("search_shard")
    killer.start()
    sharded = sharded_search(q, np.load(tmp_path / "g.npy", mmap_mode="r"), 10, shards=6)
    killer.stop.set()
    killer.join()
    local = search(q, g, 10, config=SearchConfig(method="exact"))
    assert killer.killed is not None, "no search worker was seen running, so none was killed"
    assert_same_search(sharded, local[:2])


@pytest.mark.parametrize("k", [1, 10, 50])
def test_sharded_search_equals_one_index_with_ties_and_exclusions(ray_cluster: Any, k: int) -> None:
    g = gallery_with_ties()
    q = g[:400] + 0.0  # queries inside the gallery: each excludes itself, as in old/old
    exclude = np.arange(400)
    local = search(q, g, k, exclude, SearchConfig(method="exact"))
    for shards in (2, 5):
        ray_idx, ray_scores, info = search(q, g, k, exclude, SearchConfig(engine="ray", shards=shards))
        assert_same_search((ray_idx, ray_scores), local[:2])
        assert info.exact and info.params["engine"] == "ray"
    assert not (local[0] == exclude[:, None]).any()
    # the duplicated rows really tie, and the lower row wins as in the single index
    dup = local[1][:, :-1] == local[1][:, 1:]
    if k > 1:
        assert dup.any()
        assert (local[0][:, :-1][dup] < local[0][:, 1:][dup]).all()


def test_new_to_old_search_over_shards_matches(ray_cluster: Any) -> None:
    """Queries from another model's space (no exclusion), more shards than CPUs."""
    g = gallery_with_ties(2500, 16, seed=4)
    q = unit(np.random.default_rng(5).standard_normal((150, 16)))
    local = search(q, g, 20, config=SearchConfig(method="exact"))
    assert_same_search(sharded_search(q, g, 20, shards=7), local[:2])


def test_merge_topk_is_the_exact_top_k_of_the_union() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 6, size=(50, 90)).astype(np.float32)  # many ties
    ids = np.arange(90)
    parts = [(np.broadcast_to(ids[a:b], (50, b - a)), scores[:, a:b]) for a, b in shard_bounds(90, 4)]
    top = [(np.argsort(-p[1], axis=1, kind="stable")[:, :8]) for p in parts]
    idx, sc = merge_topk([np.take_along_axis(p[0], t, 1) for p, t in zip(parts, top, strict=True)],
                         [np.take_along_axis(p[1], t, 1) for p, t in zip(parts, top, strict=True)], 8)
    want = np.argsort(-scores, axis=1, kind="stable")[:, :8]  # stable: lower id first on ties
    np.testing.assert_array_equal(idx, want)
    np.testing.assert_array_equal(sc, np.take_along_axis(scores, want, 1))


def test_transform_equals_the_bundle_and_resumes_by_partition(ray_cluster: Any, upgrade: dict,
                                                               tmp_path: Path) -> None:
    v1 = upgrade["vectors"]["v1"]
    write_partitions(tmp_path / "in", v1, parts=5, first_id=100)
    calls = []

    def stop_after_two() -> bool:
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(Cancelled):
        transform_gallery(upgrade["bundle"], str(tmp_path / "in"), str(tmp_path / "out"), should_stop=stop_after_two)
    assert len(list((tmp_path / "out").glob("*.parquet"))) == 2
    resumed = transform_gallery(upgrade["bundle"], str(tmp_path / "in"), str(tmp_path / "out"), engine="ray")
    assert (resumed.skipped, resumed.written) == (2, 3)
    out = read_partitions(tmp_path / "out")
    ids = np.concatenate([o[0] for o in out.values()])
    vectors = np.concatenate([o[1] for o in out.values()])
    np.testing.assert_array_equal(ids, np.arange(len(v1)) + 100)
    np.testing.assert_allclose(vectors, load_bundle(upgrade["bundle"])(v1, normalise_output=True), atol=1e-6, rtol=0)
    again = transform_gallery(upgrade["bundle"], str(tmp_path / "in"), str(tmp_path / "out"))
    assert (again.skipped, again.written) == (5, 0)


@pytest.mark.parametrize("output", ["parquet", "lance"])
def test_a_partition_a_retried_worker_had_finished_counts_as_written_with_its_rows(upgrade: dict, tmp_path: Path,
                                                                                  output: str) -> None:
    """A worker killed after its partition's rename is retried; the retry finds the output there. That
    partition was written by this run, and was counted as 'already done' with 0 rows."""
    from types import SimpleNamespace

    from embridge.core.scale.gallery_transform import PartitionResult, finished_rows
    from embridge.core.scale.lance_output import marker_path
    from embridge.core.scale.ray_transform import _in_job_order

    v1 = upgrade["vectors"]["v1"]
    write_partitions(tmp_path / "in", v1, parts=3)
    target = f"lance://{tmp_path / 'out.lance'}" if output == "lance" else str(tmp_path / "out")
    transform_gallery(upgrade["bundle"], str(tmp_path / "in"), target)
    names = sorted(p.name for p in (tmp_path / "in").glob("*.parquet"))
    outputs = [marker_path(tmp_path / "out.lance", n) if output == "lance" else tmp_path / "out" / n for n in names]
    rows = [finished_rows(str(o), output) for o in outputs]
    assert sum(rows) == len(v1) and min(rows) > 0
    jobs = [("b", SimpleNamespace(name=n), str(o)) for n, o in zip(names, outputs, strict=True)]
    before = [PartitionResult(names[0], rows[0], 0.0, skipped=True)]  # finished before the run began
    found = [PartitionResult(n, 0, 0.0, skipped=True) for n in names[1:]]  # as the retried worker says
    counted = _in_job_order(list(reversed(before + found)), jobs, before, output)
    assert [(r.name, r.rows, r.skipped) for r in counted] == [(names[0], rows[0], True)] + [
        (n, r, False) for n, r in zip(names[1:], rows[1:], strict=True)]


def test_a_partition_rewritten_at_its_size_with_its_time_restored_is_transformed_again(upgrade: dict,
                                                                                       tmp_path: Path) -> None:
    """Resume compared a partition's size and mtime: new rows written at the same size, the mtime put back
    (``touch -r``, ``cp -p``), kept the output of the rows that were there before."""
    import os

    import pyarrow as pa
    import pyarrow.parquet as pq

    v1, bundle = upgrade["vectors"]["v1"][:40], upgrade["bundle"]
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()

    def write(vectors: np.ndarray) -> Path:
        flat = pa.array(vectors.astype(np.float32).ravel())
        table = pa.table({"id": pa.array(np.arange(len(vectors)), pa.int64()),
                          "vector": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1]),
                          "label": pa.array(["l"] * len(vectors))})
        pq.write_table(table, src / "part-000.parquet", compression="none", use_dictionary=False)
        return src / "part-000.parquet"

    part = write(v1)
    transform_gallery(bundle, str(src), str(dst))
    before = part.stat()
    write(-v1)  # other rows, the same bytes in number
    os.utime(part, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (part.stat().st_size, part.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    again = transform_gallery(bundle, str(src), str(dst))
    assert again.replaced == [part.name] and again.written == 1
    np.testing.assert_allclose(read_partitions(dst)[part.name][1], load_bundle(bundle)(-v1, normalise_output=True),
                               atol=1e-6, rtol=0)
    from embridge.core.scale.output_folder import STATE_FILE  # a marker an older version wrote: (size, mtime)

    state = json.loads((dst / STATE_FILE).read_text())
    assert len(state["inputs"][part.name]) == 3
    state["inputs"][part.name] = state["inputs"][part.name][:2]
    (dst / STATE_FILE).write_text(json.dumps(state))
    resumed = transform_gallery(bundle, str(src), str(dst))
    assert (resumed.replaced, resumed.skipped, resumed.written) == ([], 1, 0)  # resumed, not all done again


def test_rerun_after_the_source_changed_redoes_only_what_changed(upgrade: dict, tmp_path: Path) -> None:
    """A bad partition stops the run midway; once it is fixed, a finished one edited and another
    removed, the rerun keeps the untouched outputs, redoes the changed ones, drops the removed one,
    and the folder equals a fresh transform of the source as it is now."""
    from embridge.core.scale.output_folder import STATE_FILE

    v1, bundle = upgrade["vectors"]["v1"], upgrade["bundle"]
    src, dst = tmp_path / "in", tmp_path / "out"
    files = write_partitions(src, v1, parts=4, first_id=0)
    bad = v1[:10].copy()
    bad[3, 0] = np.nan
    write_partitions(tmp_path / "bad", bad, parts=1, first_id=10_000)
    (tmp_path / "bad" / "part-000.parquet").rename(src / "part-009.parquet")
    with pytest.raises(InputError, match="part-009.parquet.*NaN"):
        transform_gallery(bundle, str(src), str(dst))
    assert sorted(p.name for p in dst.glob("*.parquet")) == [f.name for f in files]
    kept = {f.name: (dst / f.name).stat().st_mtime_ns for f in files[:2]}

    (src / "part-009.parquet").unlink()  # the bad file goes away
    files[3].unlink()  # a finished partition goes away
    edited = v1[len(v1) // 2:len(v1) // 2 + 7] * -1.0  # a finished partition is rewritten in place
    write_partitions(tmp_path / "edit", edited, parts=1, first_id=50_000)
    (tmp_path / "edit" / "part-000.parquet").replace(files[2])
    again = transform_gallery(bundle, str(src), str(dst))
    assert again.replaced == [files[2].name, files[3].name]
    assert (again.skipped, again.written) == (2, 1)
    assert {name: (dst / name).stat().st_mtime_ns for name in kept} == kept
    assert sorted(p.name for p in dst.glob("*.parquet")) == [f.name for f in files[:3]]
    out = read_partitions(dst)
    np.testing.assert_array_equal(out[files[2].name][0], np.arange(7) + 50_000)
    np.testing.assert_allclose(out[files[2].name][1], load_bundle(bundle)(edited, normalise_output=True), atol=1e-6, rtol=0)
    fresh = transform_gallery(bundle, str(src), str(tmp_path / "fresh"))
    assert fresh.written == 3
    assert {n: (dst / n).read_bytes() for n in out} == {n: (tmp_path / "fresh" / n).read_bytes() for n in out}

    # a folder an older version marked (partition names only) is still resumed, not refused
    marker = dst / STATE_FILE
    state = json.loads(marker.read_text())
    state["partitions"] = sorted(state.pop("inputs"))
    marker.write_text(json.dumps(state))
    assert transform_gallery(bundle, str(src), str(dst)).skipped == 3
    with pytest.raises(InputError, match="row 5: id 'l0' appears more than once in the dataset"):  # labels repeat: not an id
        transform_gallery(bundle, str(src), str(dst), id_col="label")


def test_transform_command_and_its_refusals(ray_cluster: Any, upgrade: dict, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    write_partitions(tmp_path / "in", upgrade["vectors"]["v1"], parts=3)
    args = ["transform", "--bundle", str(upgrade["bundle"]), "--from", f"parquet://{tmp_path / 'in'}"]
    assert main([*args, "--to", f"parquet://{tmp_path / 'out'}", "--engine", "ray", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["rows"] == len(upgrade["vectors"]["v1"]) and data["engine"] == "ray"

    assert main([*args, "--to", f"parquet://{tmp_path / 'in' / 'sub'}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--to" in err[0] and "input folder" in err[0]
    other = tmp_path / "in2"
    write_partitions(other, upgrade["vectors"]["v1"][:5], parts=1)  # another source of the same width
    assert main(["transform", "--bundle", str(upgrade["bundle"]), "--from", str(other),
                 "--to", str(tmp_path / "out")]) == 1
    assert "another transform" in capsys.readouterr().err
    with pytest.raises(InputError, match="no 'emb' column \\(columns: "):
        transform_gallery(upgrade["bundle"], str(tmp_path / "in"), str(tmp_path / "o3"), vec_col="emb")


def test_report_on_ray_equals_the_local_report(ray_cluster: Any, upgrade: dict,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    run = str(upgrade["runs"]["v3_to_v1"])
    common = ["report", "--workspace", str(upgrade["path"]), "--run", run, "--bootstrap", "50", "--json"]
    results = []
    for engine in (["--engine", "local"], ["--engine", "ray", "--shards", "3"]):
        assert main([*common, *engine]) == 0
        results.append(json.loads(capsys.readouterr().out))
    local, ray_run = results
    assert ray_run["search"]["exact"] and local["cells"] == ray_run["cells"]
    assert all(c["top1"] > 0 for c in ray_run["cells"].values()) and local["verdicts"] == ray_run["verdicts"]


def test_search_options_that_need_the_ray_engine_or_exactness_are_refused_before_any_work(
        upgrade: dict, capsys: pytest.CaptureFixture[str]) -> None:
    """Without a cluster: the refusals come before Ray starts and before a report run is recorded."""
    from embridge.core.store import Workspace

    with Workspace.open(upgrade["path"]) as ws:
        runs_before = len(ws.runs())
    common = ["report", "--workspace", str(upgrade["path"]), "--run", str(upgrade["runs"]["v3_to_v1"])]
    for extra, said in ((["--shards", "3"], "--shards: splits the gallery across Ray workers; it needs --engine ray"),
                        (["--ray-address", "127.0.0.1:1"],  # ignored on a local run before: exit 0, run locally
                         "--ray-address: names the Ray cluster to run on; it needs --engine ray"),
                        (["--engine", "ray", "--ray-address", "127.0.0.1:1", "--search", "ivf"],
                         "--search: --engine ray searches shards exactly; 'ivf' is not available")):
        assert main([*common, *extra]) == 2  # a usage error, as argparse gives for a bad value
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and said in err, err
    with Workspace.open(upgrade["path"]) as ws:
        assert len(ws.runs()) == runs_before
