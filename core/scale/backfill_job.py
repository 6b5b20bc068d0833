"""The cluster side of a detached backfill: a named, detached Ray actor that outlives its submitter.

The actor runs :func:`embridge.core.scale.backfill_embed.embed_dataset` on the job's staged items (in a
thread, so it answers pings while it works) and reports through files in the job's stage folder,
which the submitter, a later ``embridge jobs`` command or the app read without joining the cluster:

- ``status.json``: state (running/completed/failed/cancelled), items done of total, items/s, ETA,
  the error, and a heartbeat rewritten every few seconds (a stale heartbeat means the job was lost);
- ``cancel``: created by a cancel request; the job stops after its chunks in flight and says so.

When the job ends, the actor removes itself from the cluster. If its worker dies, Ray restarts it
and the job resumes after its finished chunks. ``python -m embridge.core.scale.backfill_job launch|kill``
starts or stops such an actor from a short-lived process, so no long-lived process (the app) holds
a Ray connection.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from embridge.core.errors import Cancelled
from embridge.core.scale.engine import match_cluster_auth
from embridge.core.store.files import atomic_write_text

STATUS_FILE = "status.json"
CANCEL_FILE = "cancel"
JOB_FILE = "job.json"
HEARTBEAT_S = 2.0


def write_status(stage: Path, **fields: Any) -> None:
    atomic_write_text(stage / STATUS_FILE, json.dumps({**fields, "heartbeat": time.time()}))


class BackfillJob:
    """Detached actor body: embeds the stage's items on an actor pool, reporting into the stage."""

    def __init__(self, stage: str) -> None:
        self.stage = Path(stage)
        self.job = json.loads((self.stage / JOB_FILE).read_text(encoding="utf-8"))
        self.state: dict[str, Any] = {"state": "running", "done": 0, "total": int(self.job["items"]),
                                      "items_per_s": None, "eta_s": None, "error": None}
        self._lock = threading.Lock()
        self._ended = threading.Event()
        self._report()
        threading.Thread(target=self._heartbeat, daemon=True).start()
        threading.Thread(target=self._run, daemon=True).start()

    def ping(self) -> str:
        return self.state["state"]

    def _report(self, **changes: Any) -> None:
        with self._lock:
            self.state.update(changes)
            write_status(self.stage, **self.state)

    def _heartbeat(self) -> None:
        while not self._ended.wait(HEARTBEAT_S):
            self._report()

    def _progress(self, done: int, chunks: int, info: dict[str, Any]) -> None:
        self._report(done=int(info.get("items", 0)), items_per_s=info.get("items_per_s"), eta_s=info.get("eta_s"))

    def _cancel_requested(self) -> bool:
        return (self.stage / CANCEL_FILE).exists()

    def _run(self) -> None:
        from embridge.core.scale.backfill_embed import embed_dataset

        job = self.job
        try:
            embed_dataset(job["spec"], str(self.stage / "items"), str(self.stage / "vectors"), engine="ray",
                          chunk=job["chunk"], batch_size=job["batch_size"], actors=job.get("actors"),
                          num_gpus=job.get("num_gpus", 0.0), on_progress=self._progress,
                          should_stop=self._cancel_requested, role=job.get("role"), own_stage=True)
            final = {"state": "completed", "done": self.state["total"], "eta_s": 0}
        except Cancelled:
            final = {"state": "cancelled"}
        except Exception as exc:  # any failure ends the job; its text is what the user sees
            final = {"state": "failed", "error": f"{type(exc).__name__}: {exc}"}
        self._ended.set()
        self._report(**final)
        self._leave()

    def _leave(self) -> None:
        """Free the cluster's resources: the job's actor exits once its status is written."""
        import ray

        try:
            ray.kill(ray.get_runtime_context().current_actor, no_restart=True)
        except Exception:  # noqa: S110 - already going away
            pass


def launch(address: str, namespace: str, name: str, stage: str, timeout_s: float = 120.0) -> None:
    """Start the detached actor ``name`` on the cluster and return once it is running."""
    import ray

    ray.init(address=address, namespace=namespace, log_to_driver=False)
    try:
        seen = ray.get(ray.remote(num_cpus=0)(_stage_seen).remote(stage), timeout=timeout_s)
        if seen is not None:  # the actor would die reading its job file, in a traceback naming nothing
            raise RuntimeError(f"the cluster's node {seen} cannot read the stage folder {stage} (the workspace's "
                               "folder as this machine names it); a detached job needs the workspace on storage "
                               "every node sees under the same path")
        cls = ray.remote(BackfillJob).options(name=name, lifetime="detached", num_cpus=0, max_restarts=3,
                                              max_task_retries=3)
        actor = cls.remote(stage)
        ray.get(actor.ping.remote(), timeout=timeout_s)
    finally:
        ray.shutdown()


def _stage_seen(stage: str) -> str | None:
    """None when this node reads the stage's job file, else the node's host name."""
    import socket

    return None if os.path.isfile(os.path.join(stage, JOB_FILE)) else socket.gethostname()


def kill(address: str, namespace: str, name: str) -> bool:
    """Stop the actor ``name`` (and with it the pool it owns); False when it is already gone."""
    import ray

    ray.init(address=address, namespace=namespace, log_to_driver=False)
    try:
        try:
            actor = ray.get_actor(name, namespace=namespace)
        except ValueError:
            return False
        ray.kill(actor, no_restart=True)
        return True
    finally:
        ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="backfill_job")
    parser.add_argument("action", choices=["launch", "kill"])
    parser.add_argument("--address", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--stage")
    args = parser.parse_args(argv)
    match_cluster_auth()
    try:
        if args.action == "launch":
            launch(args.address, args.namespace, args.name, args.stage)
        else:
            kill(args.address, args.namespace, args.name)
    except Exception as exc:  # reported to the submitting process as one line on stderr
        sys.stderr.write(f"{type(exc).__name__}: {' '.join(str(exc).split())[:400]}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
