"""Backfill into the workspace on Ray, and detached Ray jobs on a real cluster (``ray start --head``).

The written vectors are compared with a local ``embed`` of the same items (1e-6), the order with
the planner's partial backfill (a seeded permutation of the gallery, derived here without the
code under test), and a job submitted by one process is followed and recorded by another.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ray_head_fixtures import CLIENT_PORTS, ray_head, wait_for_listener  # noqa: F401 - a fixture
from report_fixtures import DemoCase, demo_case

from embridge.core.cli.main import main as cli
from embridge.core.embed import embed_items
from embridge.core.errors import InputError
from embridge.core.formatting import count_words
from embridge.core.l2 import l2_normalize
from embridge.core.scale import detached_jobs
from embridge.core.scale.backfill_workspace import backfill, backfill_ids
from embridge.core.store import Workspace

NEW = "new-cnn"


@pytest.fixture(scope="module")
def case(demo_workspace_path: Path, tmp_path_factory: pytest.TempPathFactory) -> DemoCase:
    return demo_case(demo_workspace_path, tmp_path_factory)


@pytest.fixture
def ws_path(case: DemoCase, tmp_path: Path) -> Path:
    target = tmp_path / "ws"
    shutil.copytree(case.path, target)
    return target


def planner_ids_by_hand(ws: Workspace, fraction: float) -> np.ndarray:
    """The report's random backfill policy (seed 0) over the whole gallery, cut at the fraction."""
    from embridge.core.report.backfill_curve import backfill_order

    gallery = ws.gallery_ids()
    return gallery[backfill_order("random", len(gallery), seed=0)[: int(round(fraction * len(gallery)))]]


def set_vectors(ws: Workspace, set_id: int) -> tuple[np.ndarray, np.ndarray]:
    ids, vectors = ws.open_vector_set(set_id)
    return np.asarray(ids), np.asarray(vectors, dtype=np.float32)


def local_vectors(ws: Workspace, ids: np.ndarray) -> np.ndarray:
    info = embed_items(ws, NEW, ids, device="cpu", name="local-reference")
    return set_vectors(ws, int(info["id"]))[1]


def test_ray_backfill_writes_the_planners_items_like_a_local_embed(ws_path: Path, ray_cluster: object,
                                                                   tmp_path: Path) -> None:
    with Workspace.open(ws_path) as ws:
        ids = backfill_ids(ws, "planner", fraction=0.3, device="cpu")
        expected = planner_ids_by_hand(ws, 0.3)
        assert len(ids) == 299 and np.array_equal(ids, expected)
        store = f"parquet://{tmp_path / 'store'}/new_vectors"
        r = backfill(ws, NEW, ids, engine="ray", order="planner", chunk=64, store=store)
        got_ids, got = set_vectors(ws, r.vector_set)
        assert np.array_equal(got_ids, expected)  # written with their ids, in the planner's order
        np.testing.assert_allclose(got, local_vectors(ws, ids), atol=1e-6)
        run = ws.runs("backfill")[-1]
        assert run["status"] == "completed" and run["metrics"]["vector_set"] == r.vector_set
        assert run["config"]["engine"] == "ray" and run["config"]["items"] == 299
        # the report and plan read a model's vectors through the workspace: the backfilled items have them
        assert set(expected.tolist()) <= set(ws.ids_with_vectors(NEW).tolist())
        keys = [it["key"] for it in ws.items(ids=expected)]  # the store's points are keyed by item key
    from embridge.core.connectors import open_store

    with open_store(store) as target:
        points = {}
        for batch in target.read_batches(100):
            points.update(zip(batch.ids, batch.vectors, strict=True))
            assert {p["embridge_space"] for p in batch.payloads} == {NEW}
    assert sorted(points) == sorted(keys)
    np.testing.assert_allclose(np.stack([points[k] for k in keys]), l2_normalize(got), atol=1e-6)  # as migrate writes


def test_a_growing_backfill_embeds_only_the_items_without_the_models_vectors(ws_path: Path, tmp_path: Path) -> None:
    """A quarter, then half of the gallery in the planner's order, then all of it: each run embeds only
    what the model holds no vectors for (the evaluation sample and earlier backfills are copied), and
    every set equals a fresh embedding of its items; a store gets every item, copied ones included."""
    from embridge.core.connectors import open_store

    store = f"parquet://{tmp_path / 'store'}/new_vectors"
    with Workspace.open(ws_path) as ws:
        held = set(ws.ids_with_vectors(NEW).tolist())
        for fraction in (0.25, 0.5, None):
            ids = backfill_ids(ws, "stored") if fraction is None else \
                backfill_ids(ws, "planner", fraction=fraction, device="cpu")
            r = backfill(ws, NEW, ids, order="stored" if fraction is None else "planner",
                         store=store if fraction == 0.25 else None)
            if fraction == 0.25:
                with open_store(store) as target:
                    assert target.count() == len(ids)
            fresh = [i for i in ids.tolist() if i not in held]
            assert r.items == len(ids) and r.embedded == len(fresh) and 0 < r.embedded < r.items
            assert ws.runs("backfill")[-1]["metrics"]["embedded"] == len(fresh)
            got_ids, got = set_vectors(ws, r.vector_set)
            assert np.array_equal(got_ids, ids)
            np.testing.assert_allclose(got, local_vectors(ws, ids), atol=1e-6)
            held |= set(ids.tolist())


def test_a_resumed_backfill_counts_only_what_it_embedded(ws_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A backfill stopped after some chunks and run again said it embedded every item of the job, those the
    stopped run had embedded (its finished chunks, taken as they are) included."""
    from embridge.core.errors import Cancelled

    with Workspace.open(ws_path) as ws:
        ids = backfill_ids(ws, "stored")
        fresh = int((~np.isin(ids, ws.ids_with_vectors(NEW))).sum())
        seen: list[int] = []

        def stop_after_some_chunks() -> bool:
            return len(seen) >= 3

        with pytest.raises(Cancelled):
            backfill(ws, NEW, ids, chunk=50, should_stop=stop_after_some_chunks,
                     on_progress=lambda done, total, info: seen.append(done))
        r = backfill(ws, NEW, ids)  # another --chunk (the default): its stage goes on in its own chunks
        assert 0 < r.resumed < fresh and r.resumed % 50 == 0  # whole chunks of the stopped run
        assert ws.runs("backfill")[-1]["config"]["chunk"] == 50
        assert r.embedded == fresh - r.resumed and r.items == len(ids)
        metrics = ws.runs("backfill")[-1]["metrics"]
        assert metrics["embedded"] == r.embedded and metrics["resumed"] == r.resumed
        got_ids, got = set_vectors(ws, r.vector_set)
        np.testing.assert_allclose(got, local_vectors(ws, ids), atol=1e-6)  # the kept chunks are right too
    capsys.readouterr()
    assert cli(["runs", "-w", str(ws_path), "--kind", "backfill", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)  # runs --json carried no backfill counts at all
    shown = listed[-1]["metrics"] if isinstance(listed, list) else listed["runs"][-1]["metrics"]
    assert shown["embedded"] == r.embedded and shown["resumed"] == r.resumed and shown["count"] == r.items
    assert cli(["runs", "-w", str(ws_path), "--kind", "backfill"]) == 0  # the backfill line's own wording
    assert count_words(r.items, r.embedded, r.resumed) in capsys.readouterr().out


def test_unknown_order_and_bad_detach_are_one_line(ws_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    with Workspace.open(ws_path) as ws, pytest.raises(InputError, match="--order"):
        backfill_ids(ws, "largest")
    # usage errors: one line naming the option and exit status 2, as argparse gives for a bad value
    assert cli(["backfill", "-w", str(ws_path), "--model", NEW, "--detach"]) == 2
    assert "--detach: submits a job to a Ray cluster; it needs --engine ray" in capsys.readouterr().err
    for option in (["--fraction", "0.3"], ["--run", "1"]):  # a planner option without the planner's order
        assert cli(["backfill", "-w", str(ws_path), "--model", NEW, *option]) == 2
        assert f"{option[0]}: chooses the planner's partial backfill: it needs --order planner" in capsys.readouterr().err
    for option in (["--ray-address", "127.0.0.1:1"], ["--actors", "2"]):  # a local run would ignore them
        assert cli(["backfill", "-w", str(ws_path), "--model", NEW, *option]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"{option[0]}: " in err and "it needs --engine ray" in err, err
    # a share that rounds to no item was refused only after the plan had measured and recorded a report
    with Workspace.open(ws_path) as ws:
        reports = len(ws.runs("report"))
    for share in ("1e-300", "0.0004"):
        assert cli(["backfill", "-w", str(ws_path), "--model", NEW, "--order", "planner", "--fraction", share]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"--fraction: {share} of the " in err and "is no item" in err, err
    with Workspace.open(ws_path) as ws:
        assert len(ws.runs("report")) == reports
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert cli(["backfill", "-w", str(ws_path), "--model", NEW, "--engine", "ray", "--detach"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--ray-address" in err
    with Workspace.open(ws_path) as ws:
        assert ws.runs("backfill") == []  # nothing was recorded for a refused submission


def test_the_other_ray_port_kind_is_refused_at_once(ws_path: Path, capsys: pytest.CaptureFixture[str],
                                                   ray_head: str) -> None:  # noqa: F811
    """The head's Ray Client port given without ray:// passed the address check, and Ray then spent 22-32 s
    before failing; the GCS port given with ray:// likewise. Each is named, with the address to give."""
    host, client_port = ray_head.rsplit(":", 1)[0], CLIENT_PORTS[ray_head]
    wait_for_listener(host, client_port)  # the head starts its client server after its GCS
    for address, says in ((f"{host}:{client_port}", f"is a Ray Client server, not a cluster's GCS; give it as "
                                                    f"ray://{host}:{client_port}"),
                          (f"ray://{ray_head}", f"is a cluster's GCS, which Ray Client does not serve; give it "
                                                f"without ray:// ({ray_head})")):
        started = time.monotonic()  # in a process of its own: a Ray session open here would be reused
        done = subprocess.run([sys.executable, "-m", "embridge.core.cli.main", "backfill", "-w", str(ws_path),
                               "--model", NEW, "--engine", "ray", "--ray-address", address],
                              capture_output=True, text=True, timeout=300, check=False)
        err = done.stderr.strip()
        assert done.returncode == 1 and len(err.splitlines()) == 1, err
        assert f"--ray-address {address}: this port {says}" in err, err
        assert time.monotonic() - started < 30  # well before Ray's own failure, start-up included
    from embridge.core.scale.engine import check_reachable

    check_reachable(ray_head)  # the GCS port as HOST:PORT and the client port with ray:// pass
    check_reachable(f"ray://{host}:{client_port}")
    with Workspace.open(ws_path) as ws:
        assert ws.runs("backfill") == []


def test_a_second_backfill_of_the_same_items_is_refused_while_the_first_runs(
        ws_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Both would stage the same items in one folder: the second is refused as busy and records nothing."""
    from embridge.core.errors import WorkspaceBusyError
    from embridge.core.scale.backfill_workspace import (
        items_to_embed,
        stage_folder,
        stage_key,
        workspace_model_spec,
    )
    from embridge.core.store.file_lock import exclusive_lock

    with Workspace.open(ws_path) as ws:
        ids = ws.gallery_ids()[:40]
        stage = stage_folder(ws, stage_key(NEW, items_to_embed(ws, NEW, ids), workspace_model_spec(ws, NEW)))
        with exclusive_lock(stage.with_name(stage.name + ".lock"), lambda: AssertionError("the test holds it")):
            with pytest.raises(WorkspaceBusyError, match=f"another backfill of model '{NEW}' with these items"):
                backfill(ws, NEW, ids)
            assert ws.runs("backfill") == [] and not stage.exists()
        result = backfill(ws, NEW, ids)  # once the first has finished, it runs
        assert result.items == 40 and [r["status"] for r in ws.runs("backfill")] == ["completed"]
    assert not (ws_path / "scale-jobs").exists() or not any((ws_path / "scale-jobs").iterdir())


def test_a_rerun_of_a_finished_backfill_reuses_its_vector_set_and_fills_the_store_once(
        ws_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from embridge.core.connectors import open_store

    store = f"parquet://{tmp_path / 'store'}/new_vectors"
    argv = ["backfill", "-w", str(ws_path), "--model", NEW, "--order", "planner", "--fraction", "0.05", "--json"]
    assert cli(argv) == 0
    first = json.loads(capsys.readouterr().out)
    with Workspace.open(ws_path) as ws:
        sets_before = [s["id"] for s in ws.vector_sets(NEW)]
        ids, vectors = set_vectors(ws, first["vector_set"])
    assert cli([*argv, "--to-store", store]) == 0  # the store is named only on the rerun
    again = json.loads(capsys.readouterr().out)
    assert again["reused"] is True and again["vector_set"] == first["vector_set"] and first["reused"] is False
    assert cli([*argv, "--to-store", store]) == 0  # and a third time: the store is unchanged
    capsys.readouterr()
    assert cli([*argv[:-1], "--name", "other"]) == 0  # the reused set keeps its name, and says so
    out = capsys.readouterr().out
    assert f"vector set {first['vector_set']} ('backfill') reused" in out and "--name other names no new set" in out
    with Workspace.open(ws_path) as ws:
        assert [s["id"] for s in ws.vector_sets(NEW)] == sets_before
        runs = ws.runs("backfill")
        assert [r["metrics"].get("reused", False) for r in runs] == [False, True, True, True]
    with open_store(store) as target:
        batches = list(target.read_batches(1000))
    with Workspace.open(ws_path) as ws:
        keys = [it["key"] for it in ws.items(ids=ids)]
    got_ids = [i for b in batches for i in b.ids]
    assert sorted(got_ids) == sorted(keys)  # every point once, keyed by its item's key
    points = dict(zip(got_ids, np.concatenate([b.vectors for b in batches]), strict=True))
    np.testing.assert_allclose(np.stack([points[k] for k in keys]), l2_normalize(vectors), atol=1e-6)


def _embridge(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "embridge.core.cli.main", *args], capture_output=True, text=True,
                          timeout=600, check=False)


def test_detached_job_outlives_its_submitter_and_is_recorded_on_reattach(ws_path: Path, ray_head: str) -> None:  # noqa: F811
    # submitted from a child process that exits right after
    done = _embridge("backfill", "-w", str(ws_path), "--model", NEW, "--order", "planner", "--fraction", "0.3",
                     "--engine", "ray", "--ray-address", ray_head, "--detach", "--chunk", "32", "--json")
    assert done.returncode == 0, done.stderr
    submitted = json.loads(done.stdout)
    run_id = submitted["run_id"]
    with Workspace.open(ws_path) as ws:
        run = ws.run(run_id)
        assert run["status"] == "running" and run["config"]["job_id"] == submitted["job_id"]
        assert [j.run_id for j, _ in detached_jobs.ray_jobs(ws, active_only=True)] == [run_id]
        ws.rename_model(NEW, "renamed")  # while the job runs: it records under the model's new name
        seen: list[tuple[int, int, dict]] = []
        final = detached_jobs.attach(ws, detached_jobs.find_job(ws, run_id), lambda d, t, i: seen.append((d, t, i)))
        assert final.state == "completed"
        run = ws.run(run_id)
        assert run["status"] == "completed" and run["method"] == "renamed"
        assert run["metrics"]["vector_set"] in [s["id"] for s in ws.vector_sets("renamed")]
        ws.rename_model("renamed", NEW)
        ids, got = set_vectors(ws, run["metrics"]["vector_set"])
        expected = planner_ids_by_hand(ws, 0.3)
        assert np.array_equal(ids, expected)
        np.testing.assert_allclose(got, local_vectors(ws, expected), atol=1e-6)
        assert seen[-1][0] == seen[-1][1] == 299
        assert any(isinstance(i.get("items_per_s"), float) for _, _, i in seen)  # a rate was streamed back
        assert not Path(detached_jobs.find_job(ws, run_id).stage).exists()  # its staging folder is gone
        n_sets = len(ws.vector_sets(NEW))
    # a second watcher (the CLI here) finds it recorded and records nothing twice
    listed = _embridge("jobs", "list", "-w", str(ws_path), "--json")
    assert json.loads(listed.stdout)["jobs"][0]["status"]["state"] == "completed"
    status = _embridge("jobs", "status", "-w", str(ws_path), "--run", str(run_id))
    assert status.returncode == 0 and "completed, 299/299 items" in status.stdout
    with Workspace.open(ws_path) as ws:
        assert len(ws.vector_sets(NEW)) == n_sets
    # a detached rerun for the same items embeds nothing and stores no second set (it submitted a whole job)
    again = _embridge("backfill", "-w", str(ws_path), "--model", NEW, "--order", "planner", "--fraction", "0.3",
                      "--engine", "ray", "--ray-address", ray_head, "--detach", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["reused"] and json.loads(again.stdout)["vector_set"] == run["metrics"]["vector_set"]
    with Workspace.open(ws_path) as ws:
        assert len(ws.vector_sets(NEW)) == n_sets and not detached_jobs.ray_jobs(ws, active_only=True)


def actor_alive(address: str, namespace: str, name: str) -> bool:
    probe = ("import sys\nfrom embridge.core.scale.engine import match_cluster_auth\nmatch_cluster_auth()\n"
             "import ray\nray.init(address=sys.argv[1], namespace=sys.argv[2], log_to_driver=False)\n"
             "try:\n    ray.get_actor(sys.argv[3]); print('alive')\nexcept ValueError:\n    print('gone')\n")
    out = subprocess.run([sys.executable, "-c", probe, address, namespace, name], capture_output=True, text=True,
                         timeout=120, check=True)
    return out.stdout.strip().endswith("alive")


def test_cancel_stops_the_ray_job_and_records_it(ws_path: Path, ray_head: str,  # noqa: F811
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with Workspace.open(ws_path) as ws:
        # one item per chunk: the job runs for seconds, and is cancelled as soon as the cluster runs it
        job = detached_jobs.submit_backfill(ws, NEW, ws.gallery_ids(), address=ray_head, chunk=1)
        assert detached_jobs.status(ws, job).state == "running"
        sets_before = len(ws.vector_sets(NEW))
        deadline = time.monotonic() + 60
        while detached_jobs.read_status(job).done < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        seen = detached_jobs.read_status(job).done
        assert seen >= 2
        final = detached_jobs.cancel(ws, job)
        assert final.state == "cancelled"
        assert ws.run(job.run_id)["status"] == "cancelled"
        # how far it had come stays readable after the cancel (it read 0 once recorded)
        assert seen <= final.done < job.items and detached_jobs.status(ws, job).done == final.done
        assert len(ws.vector_sets(NEW)) == sets_before  # nothing of a cancelled job is recorded
    from embridge.core.cli.main import main

    assert main(["jobs", "status", "--workspace", str(ws_path), "--run", str(job.run_id)]) == 0
    said = capsys.readouterr().out
    assert ": cancelled, " in said and "vector set" not in said, said  # it stored none ('vector set None')
    end = time.monotonic() + 30
    while actor_alive(job.address, job.namespace, job.job_id) and time.monotonic() < end:
        time.sleep(1)
    assert not actor_alive(job.address, job.namespace, job.job_id)  # the job is gone from the cluster


def _job_on_a_gone_cluster(ws_path: Path, job_id: str) -> tuple[int, Path]:
    """A detached backfill run of 10 items recorded as submitted to an address where nothing listens any more
    (the cluster that was there is gone), with its empty stage folder: its run id and stage."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    with Workspace.open(ws_path) as ws:
        stage = Path(ws.root) / detached_jobs.STAGE_DIR / job_id
        run_id = ws.start_run("backfill", NEW, {"engine": "ray", "detached": True, "job_id": job_id, "address": address,
                                                "namespace": "embridge-test", "items": 10,
                                                "stage": stage.relative_to(ws.root).as_posix()})
    stage.mkdir(parents=True)
    return run_id, stage


def test_cancel_of_a_job_whose_cluster_is_gone_records_it_at_once(ws_path: Path) -> None:
    """With the cluster dead, `jobs cancel` waited its grace, then 180 s for the cluster, failed, and left
    the run 'running'. It asks the address first: nothing answers, so the run is recorded as cancelled."""
    run_id, stage = _job_on_a_gone_cluster(ws_path, "backfill-gone-0001")
    (stage / "status.json").write_text(json.dumps({"state": "running", "done": 3, "total": 10,  # its last report
                                                   "heartbeat": time.time()}))
    done = subprocess.run([sys.executable, "-m", "embridge.core.cli.main", "jobs", "cancel", "-w", str(ws_path),
                           "--run", str(run_id), "--json"], capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"]["state"] == "cancelled"
    with Workspace.open(ws_path) as ws:
        run = ws.run(run_id)
        assert run["status"] == "cancelled" and "did not answer" in run["error"] and run["metrics"]["done"] == 3
    assert not stage.exists()


def test_jobs_list_says_an_ended_job_is_not_recorded_yet(ws_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`jobs list` read the cluster's 'completed' while `runs` still said running, and nothing said why."""
    run_id, stage = _job_on_a_gone_cluster(ws_path, "backfill-ended-0001")
    (stage / "status.json").write_text(json.dumps({"state": "failed", "done": 3, "total": 10,
                                                   "heartbeat": time.time(), "error": "an actor died"}))
    assert cli(["jobs", "list", "-w", str(ws_path)]) == 0
    said = capsys.readouterr().out
    assert (f"run {run_id}: backfill-ended-0001 on " in said and ": failed (3/10 items); not recorded in the "
            f"workspace yet ('runs' lists it as running): 'embridge jobs status --run {run_id}' records it" in said)
    assert cli(["jobs", "status", "-w", str(ws_path), "--run", str(run_id)]) == 0
    capsys.readouterr()
    assert cli(["jobs", "list", "-w", str(ws_path)]) == 0
    assert "not recorded" not in capsys.readouterr().out  # recorded now: the two agree


def test_transform_through_ray_client_equals_the_local_engine(case: DemoCase, ws_path: Path, ray_head: str,  # noqa: F811
                                                              tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """`transform --engine ray --ray-address ray://HOST:10001`, as docs/scale-out.md gives it, failed with
    "unexpected AttributeError: 'Worker' object has no attribute 'core_worker'" (Ray Data needs the driver's
    own core worker, which a Ray Client driver lacks); it runs one task per partition there."""
    from scale_fixtures import write_partitions

    from embridge.core.bundle import export_bundle

    with Workspace.open(ws_path) as ws:
        export_bundle(ws, tmp_path / "affine.zip", [case.run_id])
    vectors = np.random.default_rng(4).standard_normal((300, 64)).astype(np.float32)
    write_partitions(tmp_path / "in", vectors, parts=3)
    host, client_port = ray_head.rsplit(":", 1)[0], CLIENT_PORTS[ray_head]
    wait_for_listener(host, client_port)
    outputs = {}
    for engine, extra in (("local", []), ("client", ["--engine", "ray", "--ray-address", f"ray://{host}:{client_port}"])):
        code = cli(["transform", "--bundle", str(tmp_path / "affine.zip"), "--from", str(tmp_path / "in"),
                    "--to", str(tmp_path / engine), *extra, "--json"])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert json.loads(out)["rows"] == 300
        outputs[engine] = sorted((tmp_path / engine).glob("*.parquet"))
    assert [f.name for f in outputs["client"]] == [f.name for f in outputs["local"]] and len(outputs["local"]) == 3
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(outputs["local"], outputs["client"], strict=True))


def test_a_workspace_the_clusters_workers_cannot_see_is_named(ws_path: Path, ray_head: str,  # noqa: F811
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A detached job on a workspace path the workers do not see (not on shared storage) failed with 400
    characters of the actor's coloured traceback, naming neither the folder nor the cause."""
    monkeypatch.chdir(ws_path.parent)
    seen_here = Path("/proc/self/cwd") / ws_path.name  # this process's folder: a worker's is another one
    done = _embridge("backfill", "-w", str(seen_here), "--model", NEW, "--engine", "ray", "--ray-address", ray_head,
                     "--detach")
    lines = [line for line in done.stderr.splitlines() if line.startswith("embridge:")]
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert "cannot read the stage folder" in lines[0] and "storage every node sees" in lines[0], lines[0]
    assert "Traceback" not in lines[0] and "\\x1b" not in lines[0]
    with Workspace.open(ws_path) as ws:
        run = ws.runs("backfill")[-1]
        assert run["status"] == "failed" and "cannot read the stage folder" in run["error"]


def test_a_job_that_never_reported_and_whose_cluster_is_gone_is_lost_not_followed_for_ever(ws_path: Path) -> None:
    """Without its status file a job read 'submitted' for ever: `jobs attach` polled it until killed."""
    import os

    run_id, stage = _job_on_a_gone_cluster(ws_path, "backfill-silent-0001")
    with Workspace.open(ws_path) as ws:
        job = detached_jobs.find_job(ws, run_id)
        assert detached_jobs.read_status(job).state == "submitted"  # just submitted: it may wait for resources
        past = time.time() - detached_jobs.LOST_AFTER_S - 5
        os.utime(stage, (past, past))
        assert detached_jobs.read_status(job).state == "lost"
    done = subprocess.run([sys.executable, "-m", "embridge.core.cli.main", "jobs", "attach", "-w", str(ws_path),
                           "--run", str(run_id)], capture_output=True, text=True, timeout=90)
    errors = [line for line in done.stderr.splitlines() if line.startswith("embridge: error:")]
    assert done.returncode == 1 and len(errors) == 1, done.stderr
    assert "the Ray job failed: the job never reported in" in errors[0] and "no Ray cluster answers" in errors[0]
    with Workspace.open(ws_path) as ws:
        assert ws.run(run_id)["status"] == "failed" and not stage.exists()


def test_a_run_id_the_workspace_lacks_is_named_as_the_options_mistake(ws_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["jobs", "status", "-w", str(ws_path), "--run", "99"], ["report", "-w", str(ws_path), "--run", "99"],
                 ["bundle", "export", "-w", str(ws_path), "--run", "99", "--out", str(ws_path.parent / "b.zip")]):
        assert cli(argv) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"embridge: error: --run: names run 99, which the workspace does not hold (see 'embridge "
                       f"{'jobs list' if argv[0] == 'jobs' else 'runs'}')"], err  # it named the workspace folder
    assert not (ws_path.parent / "b.zip").exists()


def test_a_detached_pool_the_cluster_cannot_hold_is_refused_before_it_is_submitted(
        ws_path: Path, ray_head: str) -> None:  # noqa: F811
    """It was submitted (exit 0) and failed on the cluster."""
    done = subprocess.run([sys.executable, "-m", "embridge.core.cli.main", "backfill", "-w", str(ws_path),
                           "--model", NEW, "--engine", "ray", "--ray-address", ray_head, "--detach", "--num-gpus",
                           "1"], capture_output=True, text=True, timeout=300, check=False)
    err = done.stderr.strip()
    assert done.returncode == 1 and err.splitlines()[-1].endswith(
        "--num-gpus 1: the Ray cluster has 0 GPUs; leave --num-gpus out to embed on its CPUs"), err
    with Workspace.open(ws_path) as ws:
        assert ws.runs("backfill") == []
    assert not (ws_path / "scale-jobs").exists() or not any((ws_path / "scale-jobs").iterdir())
