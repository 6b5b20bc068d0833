"""``embridge backfill`` (re-embed the gallery into the workspace, locally or on Ray, optionally
detached) and ``embridge jobs list|status|attach|cancel`` for detached Ray jobs."""

from __future__ import annotations

import argparse
from typing import Any

from embridge.core.cli.engine_flags import add_engine_flags
from embridge.core.cli.main import add_common
from embridge.core.cli.option_types import BACKFILL_SHARE, PATH, RUN_ID, number
from embridge.core.errors import UsageError
from embridge.core.formatting import count_words
from embridge.core.progress import StderrProgress
from embridge.core.store import Workspace

Result = tuple[dict[str, Any], str]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backfill", help="re-embed gallery items with a model into the workspace (all, or the "
                                        "planner's partial backfill); --engine ray runs on a cluster, "
                                        "--detach leaves the job running there")
    add_common(p)
    p.add_argument("--model", required=True, help="workspace model to embed with (usually the new one)")
    p.add_argument("--order", choices=["stored", "planner"], default="stored",
                   help="stored: every gallery item; planner: the plan's partial backfill, in its order")
    p.add_argument("--run", type=RUN_ID, help="training run to plan from with --order planner (default: latest)")
    p.add_argument("--fraction", type=BACKFILL_SHARE,
                   help="with --order planner: backfill this share of the gallery (above 0, at most 1)")
    p.add_argument("--chunk", type=number(int, low=1, high=10**8), default=4096, help="items per task (default 4096)")
    p.add_argument("--batch", type=number(int, low=1, high=10**6), default=256, help="items per model batch")
    p.add_argument("--actors", type=number(int, low=1, high=100_000), help="actors in the Ray pool (default: one per CPU)")
    p.add_argument("--num-gpus", type=number(float, low=0, high=64), default=0.0, help="GPUs per actor (default 0)")
    p.add_argument("--to-store", type=PATH, metavar="URI", help="also upsert the vectors into this store (e.g. qdrant:///path?collection=c)")
    p.add_argument("--name", default="backfill", help="name of the vector set written (default backfill)")
    p.add_argument("--detach", action="store_true", help="with --engine ray: submit and return; follow it with "
                                                         "'embridge jobs attach'")
    add_engine_flags(p)
    p.set_defaults(handler=cmd_backfill)

    p = sub.add_parser("jobs", help="detached Ray jobs of the workspace: list, status, attach, cancel")
    add_common(p)
    p.add_argument("action", choices=["list", "status", "attach", "cancel"])
    p.add_argument("--run", type=RUN_ID, help="the job's run id (status, attach, cancel)")
    p.set_defaults(handler=cmd_jobs)


def cmd_backfill(args: argparse.Namespace) -> Result:
    from embridge.core.scale.backfill_workspace import backfill, backfill_ids, workspace_model_spec

    if args.detach and args.engine != "ray":
        raise UsageError("--detach", "submits a job to a Ray cluster; it needs --engine ray")
    if args.order != "planner" and (args.fraction is not None or args.run is not None):
        given = "--fraction" if args.fraction is not None else "--run"
        raise UsageError(given, "chooses the planner's partial backfill: it needs --order planner (--order "
                                "stored backfills every gallery item)")
    if args.detach:
        from embridge.core.scale.detached_jobs import check_detached_store

        check_detached_store(args.to_store)
    with Workspace.open(args.workspace) as ws:
        if args.detach or ws.model(args.model).get("kind") != "vectors":  # an unknown one first, before the items
            workspace_model_spec(ws, args.model)  # (an embeddings-only model may copy the vectors it holds)
        ids = backfill_ids(ws, args.order, run_id=args.run, fraction=args.fraction, model=args.model)
        options = {"order": args.order, "chunk": args.chunk, "batch_size": args.batch, "actors": args.actors,
                   "num_gpus": args.num_gpus, "store": args.to_store, "name": args.name}
        reused = None
        if args.detach:
            from embridge.core.scale.detached_jobs import reuse_if_finished

            reused = reuse_if_finished(ws, args.model, ids, address=args.ray_address, order=args.order,
                                       store=args.to_store, name=args.name)
        if args.detach and reused is None:
            from embridge.core.scale.detached_jobs import submit_backfill
            from embridge.core.scale.engine import check_pool_fits

            check_pool_fits(args.ray_address, args.actors, args.num_gpus)  # before the job is submitted
            job = submit_backfill(ws, args.model, ids, address=args.ray_address, **options)
            return job.to_dict(), (f"submitted run {job.run_id} ({job.items} items) to Ray at {job.address} as "
                                   f"{job.job_id}; follow it with: embridge jobs attach -w {args.workspace} "
                                   f"--run {job.run_id}")
        r = reused or backfill(ws, args.model, ids, engine=args.engine, ray_address=args.ray_address,
                               on_progress=StderrProgress("backfill"), **options)
    done = (f"{r.items} items already backfilled with {r.model}: vector set {r.vector_set} ('{r.set_name}') reused, "
            "nothing embedded" + (f" (--name {args.name} names no new set)" if args.name != r.set_name else "")
            if r.reused else f"backfilled {r.items} items with {r.model} on {r.engine} ({r.order} order) "
            f"-> vector set {r.vector_set} ('{r.set_name}')"
            + (f"; {count_words(r.items, r.embedded, r.resumed)}"
               if r.embedded is not None and r.embedded < r.items else ""))
    return r.to_dict(), done + (f", and into {r.store}" if r.store else "")


def _unrecorded(row: dict[str, Any]) -> str:
    """A job the cluster reports ended that the workspace has not recorded yet (`runs` still lists it running)."""
    if row["run_status"] != "running" or row["status"]["state"] in ("submitted", "running"):
        return ""
    return (f"; not recorded in the workspace yet ('runs' lists it as running): 'embridge jobs status --run "
            f"{row['run_id']}' records it")


def cmd_jobs(args: argparse.Namespace) -> Result:
    from embridge.core.scale import detached_jobs

    if args.action == "list" and args.run is not None:
        raise UsageError("--run", "names one job for status, attach or cancel; jobs list shows them all")
    if args.action != "list" and args.run is None:
        raise UsageError("--run", f"jobs {args.action} needs the job's run id")
    with Workspace.open(args.workspace) as ws:
        if args.action == "list":
            rows = [{**job.to_dict(), "status": detached_jobs.status(ws, job).to_dict(), "run_status": run["status"]}
                    for job, run in detached_jobs.ray_jobs(ws)]
            lines = [f"run {r['run_id']}: {r['job_id']} on {r['address']}: {r['status']['state']} "
                     f"({r['status']['done']}/{r['status']['total']} items)" + _unrecorded(r) for r in rows]
            return {"jobs": rows}, "\n".join(lines) or "no Ray jobs in this workspace"
        job = detached_jobs.find_job(ws, args.run)
        if args.action == "status":
            current = detached_jobs.status(ws, job)
            if current.terminal:
                detached_jobs.settle(ws, job, current)
                current = detached_jobs.status(ws, job)
        elif args.action == "cancel":
            current = detached_jobs.cancel(ws, job)
        else:
            try:
                current = detached_jobs.attach(ws, job, StderrProgress(f"run {job.run_id}"))
            except KeyboardInterrupt:
                current = detached_jobs.status(ws, job)
                return {**job.to_dict(), "status": current.to_dict(), "detached": True}, (
                    f"stopped watching run {job.run_id}; the job keeps running on the cluster")
        run = ws.run(job.run_id)
    text = f"run {job.run_id} ({job.job_id}): {current.state}, {current.done}/{current.total} items"
    if current.error and current.state != "completed":
        text += f": {current.error}"
    if (run.get("metrics") or {}).get("vector_set") is not None:  # a cancelled or lost job stored none
        text += f"; vector set {run['metrics']['vector_set']}"
    return {**job.to_dict(), "status": current.to_dict(), "metrics": run.get("metrics") or {}}, text
