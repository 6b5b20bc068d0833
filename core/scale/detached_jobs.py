"""Detached Ray jobs of a workspace: submit, follow, cancel, and record them like local runs.

A detached job is a workspace run (kind ``backfill``) whose work happens on a Ray cluster in a
named, detached actor (:mod:`embridge.core.scale.backfill_job`) in a namespace of its own per workspace, so
it outlives the command or the app that submitted it. The run row carries the job's id, the
cluster address and the stage folder (under the workspace's ``scale-jobs/``, which must be on
storage the cluster's workers see); any later process reattaches by the run's id, reads the job's
progress from the stage, and when the job has ended records its result in the workspace: the
vectors as the model's vector set and the run as completed, failed or cancelled. Recording happens
once, in one transaction, however many processes watch the job.

Talking to the cluster (start, stop) happens in a short-lived child process, so neither the CLI's
nor the app's process keeps a Ray connection or Ray's threads.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embridge.core.credentials import hidden
from embridge.core.errors import Cancelled, InputError
from embridge.core.progress import ProgressFn, StopFn, no_progress
from embridge.core.scale import backfill_job
from embridge.core.scale.backfill_job import CANCEL_FILE, JOB_FILE, STATUS_FILE
from embridge.core.scale.backfill_workspace import (
    STAGE_DIR,
    check_targets,
    finished_set,
    items_progress,
    record_vectors,
    stage_items,
    text_role,
    workspace_model_spec,
)
from embridge.core.scale.engine import EngineError, check_reachable, import_ray

TERMINAL = ("completed", "failed", "cancelled", "lost")
LOST_AFTER_S = 60.0  # a running job whose heartbeat is older than this is lost (cluster gone)
HOST_PREFIX = "ray:"  # a run's host on the cluster: never judged by this machine's process table


@dataclass(frozen=True)
class RayJob:
    """Where a detached job runs and what it writes; read back from its workspace run."""

    run_id: int
    job_id: str
    address: str
    namespace: str
    stage: str
    model: str
    items: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class JobStatus:
    """A job's state as last reported by the cluster, or as recorded in the workspace."""

    state: str  # submitted | running | completed | failed | cancelled | lost
    done: int = 0
    total: int = 0
    items_per_s: float | None = None
    eta_s: float | None = None
    error: str | None = None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    def info(self) -> dict[str, Any]:
        """As a progress ``info`` dict (what the CLI's progress line and the jobs panel show)."""
        info: dict[str, Any] = {"stage": f"on Ray: {self.state}"}
        if self.items_per_s is not None:
            info.update(items_per_s=self.items_per_s, eta_s=self.eta_s)
        return info

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def namespace_for(ws: Any) -> str:
    """One Ray namespace per workspace, so job names never clash across workspaces."""
    return "embridge-" + hashlib.sha256(os.fsencode(Path(ws.root).resolve())).hexdigest()[:12]


def cluster_address(address: str | None) -> str:
    """A detached job needs a running cluster to outlive this process: --ray-address or RAY_ADDRESS."""
    import_ray(address)  # refused before a job stages items or records a run: its child process failed there
    address = address or os.environ.get("RAY_ADDRESS") or None
    if not address or address in ("local", "auto"):
        raise InputError("--ray-address", "a detached job needs a running Ray cluster: give its address "
                         "(--ray-address HOST:PORT or RAY_ADDRESS), e.g. one started with 'ray start --head'")
    check_reachable(address)
    return address


def _control(action: str, job: RayJob, timeout_s: float = 180.0) -> subprocess.CompletedProcess:
    """Run ``backfill_job launch|kill`` in a child process (its own short Ray connection)."""
    cmd = [sys.executable, "-m", backfill_job.__name__, action, "--address", job.address,
           "--namespace", job.namespace, "--name", job.job_id, "--stage", job.stage]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise EngineError(f"--ray-address {job.address}: the cluster did not answer within {timeout_s:.0f} s") from exc


def check_detached_store(store: str | None) -> None:
    """Refuse a ``--to-store`` URI holding a secret for a detached job: settling the job writes the store
    through the URI its run records, and no record keeps a password."""
    if store and hidden(store) != store:
        raise InputError("--to-store", "holds a password or key, which a detached backfill would have to record in "
                         "the workspace to write the store once the job ends; give it through $PGPASSWORD or "
                         "~/.pgpass instead, or run the backfill without --detach")


def reuse_if_finished(ws: Any, model: str, ids: np.ndarray, *, address: str | None, order: str = "stored",
                      store: str | None = None, name: str = "backfill") -> Any:
    """A rerun of a finished backfill, recorded as reused without submitting anything (a detached job
    embedded everything again into a second, identical vector set); None when there is work to submit."""
    if finished_set(ws, model, np.asarray(ids, dtype=np.int64)) is None:
        return None
    from embridge.core.scale.backfill_workspace import backfill

    return backfill(ws, model, ids, engine="ray", ray_address=address, order=order, store=store, name=name)


def submit_backfill(ws: Any, model: str, ids: np.ndarray, *, address: str | None, order: str = "stored",
                    chunk: int = 4096, batch_size: int = 256, actors: int | None = None, num_gpus: float = 0.0,
                    store: str | None = None, name: str = "backfill",
                    should_stop: StopFn | None = None) -> RayJob:
    """Stage ``ids`` and start their backfill as a detached job; returns once the cluster runs it."""
    check_detached_store(store)
    address = cluster_address(address)
    spec = workspace_model_spec(ws, model)
    check_targets(ws, store, name, model, ids)
    ids = np.asarray(ids, dtype=np.int64)
    config = {"engine": "ray", "detached": True, "order": order, "items": int(len(ids)), "chunk": chunk,
              "store": store, "name": name, "num_gpus": num_gpus, "address": address}
    run_id = ws.start_run("backfill", model, config)
    job_id = f"backfill-{run_id}-{uuid.uuid4().hex[:8]}"
    stage = Path(ws.root) / STAGE_DIR / job_id
    job = RayJob(run_id, job_id, address, namespace_for(ws), str(stage), model, int(len(ids)))
    try:
        stage_items(ws, spec, ids, stage / "items", should_stop)
        np.save(stage / "ids.npy", ids)
        (stage / JOB_FILE).write_text(json.dumps({"spec": spec, "items": int(len(ids)), "chunk": chunk,
                                                  "batch_size": batch_size, "actors": actors,
                                                  "num_gpus": num_gpus, "role": text_role(spec)}))
        ws.update_run(run_id, config={**config, "job_id": job_id, "namespace": job.namespace,
                                      "stage": stage.relative_to(ws.root).as_posix()},
                      host=HOST_PREFIX + address, pid=None)
        done = _control("launch", job)
        if done.returncode != 0:
            raise EngineError(f"--ray-address {address}: cannot start the job on the cluster: "
                              f"{done.stderr.strip().splitlines()[-1] if done.stderr.strip() else 'no reason given'}")
    except BaseException as exc:
        ws.finish_run(run_id, "cancelled" if isinstance(exc, Cancelled) else "failed", error=str(exc) or None)
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return job


def job_of_run(ws: Any, run: dict[str, Any]) -> RayJob | None:
    config = run.get("config") or {}
    if not config.get("detached") or not config.get("job_id"):
        return None
    return RayJob(int(run["id"]), config["job_id"], config["address"], config["namespace"],
                  str(Path(ws.root) / config["stage"]), str(run.get("method")), int(config.get("items", 0)))


def ray_jobs(ws: Any, active_only: bool = False) -> list[tuple[RayJob, dict[str, Any]]]:
    """The workspace's detached jobs with their run rows (only those not yet recorded as ended)."""
    out = []
    for run in ws.runs("backfill"):
        job = job_of_run(ws, run)
        if job is not None and (not active_only or run["status"] == "running"):
            out.append((job, run))
    return out


def find_job(ws: Any, run_id: int) -> RayJob:
    if not ws.has_run(run_id):
        raise InputError("--run", f"names run {run_id}, which the workspace does not hold (see 'embridge jobs list')")
    job = job_of_run(ws, ws.run(run_id))
    if job is None:
        raise InputError("--run", f"run {run_id} is not a job submitted to Ray")
    return job


def read_status(job: RayJob) -> JobStatus:
    """The job's progress as its actor last wrote it; 'lost' when its heartbeat stopped."""
    path = Path(job.stage) / STATUS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return _unreported(job)
    except (OSError, ValueError) as exc:
        return JobStatus("running", 0, job.items, error=f"{path}: unreadable ({exc})")
    state = str(data.get("state", "running"))
    error = data.get("error")
    if state == "running" and time.time() - float(data.get("heartbeat", 0)) > LOST_AFTER_S:
        state, error = "lost", f"the job stopped reporting for over {LOST_AFTER_S:.0f} s (is the cluster at {job.address} still up?)"
    return JobStatus(state, int(data.get("done", 0)), int(data.get("total", job.items)), data.get("items_per_s"),
                     data.get("eta_s"), error)


def _unreported(job: RayJob) -> JobStatus:
    """A job whose actor has not written its status yet: submitted, while it may still be waiting for the
    cluster's resources; lost once its stage folder is gone, or once it has been silent for
    ``LOST_AFTER_S`` and nothing answers at its address (``attach`` waited for ever, ``status`` said
    'submitted')."""
    stage = Path(job.stage)
    try:
        silent = time.time() - stage.stat().st_mtime
    except OSError:
        return JobStatus("lost", 0, job.items, error=f"{stage}: the job's stage folder is gone, so it cannot "
                         "report or deliver its vectors")
    if silent > LOST_AFTER_S:
        try:
            check_reachable(job.address)
        except EngineError as exc:
            return JobStatus("lost", 0, job.items, error=f"the job never reported in {silent:.0f} s, and {exc}")
    return JobStatus("submitted", 0, job.items)


def status(ws: Any, job: RayJob) -> JobStatus:
    """The recorded ending when the run has one, else the cluster's latest report."""
    run = ws.run(job.run_id)
    if run["status"] != "running":
        done = (run.get("metrics") or {}).get("done", 0)  # how far a cancelled or failed job had come
        return JobStatus(run["status"], job.items if run["status"] == "completed" else int(done or 0), job.items,
                         error=run.get("error"))
    return read_status(job)


def settle(ws: Any, job: RayJob, current: JobStatus) -> dict[str, Any] | None:
    """Record an ended job in the workspace once: its vectors and the run's ending. Returns the metrics."""
    if not current.terminal:
        return None
    with ws.transaction():
        run = ws.run(job.run_id)
        if run["status"] != "running":  # another process recorded it first
            return run.get("metrics") or None
        config = run.get("config") or {}
        if current.state == "completed":
            ids = np.load(Path(job.stage) / "ids.npy", allow_pickle=False)
            info = record_vectors(ws, job.model, ids, Path(job.stage) / "vectors",
                                  name=config.get("name") or "backfill", store=config.get("store"))
            metrics = {"vector_set": info["id"], "count": info["count"], "dim": info["dim"]}
            ws.finish_run(job.run_id, "completed", metrics=metrics)
        else:
            metrics = None
            status_name = "cancelled" if current.state == "cancelled" else "failed"
            ws.finish_run(job.run_id, status_name, error=current.error or f"the Ray job ended {current.state}",
                          metrics={"done": current.done})
    if current.state == "lost":  # silent, not necessarily gone: it must not go on into a stage removed under it
        _stop_if_reachable(job)
    shutil.rmtree(job.stage, ignore_errors=True)
    return metrics


def _stop_if_reachable(job: RayJob) -> None:
    """Kill a lost job's actor where its cluster still answers (a stalled node); a cluster gone took it along."""
    try:
        check_reachable(job.address)
        _control("kill", job, timeout_s=60.0)
    except EngineError:
        pass


def cancel(ws: Any, job: RayJob, grace_s: float = 30.0) -> JobStatus:
    """Stop the job: it finishes its chunks in flight and ends; if it does not say so, its actor is killed."""
    current = status(ws, job)
    if current.terminal:
        settle(ws, job, current)
        return status(ws, job)
    stage = Path(job.stage)
    (stage / CANCEL_FILE).touch()
    try:  # a cluster that is gone cannot stop the job, nor run it: asking it would take minutes to fail
        check_reachable(job.address)
    except EngineError as exc:
        settle(ws, job, JobStatus("cancelled", current.done, current.total,
                                  error=f"cancelled; the cluster did not answer, so the job was not seen to stop ({exc})"))
        return status(ws, job)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        current = read_status(job)
        if current.terminal:
            break
        time.sleep(0.2)
    if not current.terminal:
        _control("kill", job)
        current = JobStatus("cancelled", current.done, current.total, error="cancelled (the job was stopped)")
    if current.state == "completed":  # it finished before the request was seen: keep its work
        settle(ws, job, current)
    else:
        settle(ws, job, JobStatus("cancelled", current.done, current.total, error="cancelled"))
    return status(ws, job)


def attach(ws: Any, job: RayJob, on_progress: ProgressFn | None = None, should_stop: StopFn | None = None,
           detach: Callable[[], bool] | None = None, interval_s: float = 0.5) -> JobStatus:
    """Follow the job until it ends and record it; ``should_stop`` cancels it, ``detach`` only stops watching.

    Returns the final status (or the current one when detached); a cancel raises :class:`Cancelled`.
    """
    progress = on_progress or no_progress
    report = items_progress(progress, job.items)
    while True:
        current = status(ws, job)
        report(current.done, current.total, {"items": current.done, **current.info()})
        if current.terminal:
            settle(ws, job, current)
            final = status(ws, job)
            if final.state == "cancelled":
                raise Cancelled(f"the Ray job of run {job.run_id} was cancelled")
            if final.state != "completed":
                raise EngineError(f"run {job.run_id}: the Ray job {final.state}: {final.error}")
            return final
        if detach is not None and detach():
            return current
        if should_stop is not None and should_stop():
            cancel(ws, job)
            raise Cancelled(f"the Ray job of run {job.run_id} was cancelled")
        time.sleep(interval_s)
