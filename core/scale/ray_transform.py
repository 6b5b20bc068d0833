"""The dataset transform on Ray Data: a ``map_batches`` over the unfinished partitions on an actor pool.

The Ray dataset's rows are partitions (:class:`embridge.core.scale.partitions.Partition`), one block each, so
the map runs one partition per call: each actor loads the bundle's layer once (numpy or onnxruntime,
no torch for linear kinds), reads its partition (a Parquet file or a Lance fragment), maps the vector
column in batches and writes the partition's output file under a temporary name, then renames it.
Rows are not re-blocked by Ray, which is what keeps the output identical to the local engine and
resumable by finished partition (Ray Data's own readers cut and merge blocks freely). An actor whose
process dies is restarted and its partition retried (Ray Data's policy for actor pools); a
half-written temporary file is never output, and a retried partition writes the same bytes.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import numpy as np

from embridge.core.progress import ProgressFn, StopFn, check_stop
from embridge.core.scale.engine import MAX_RESTARTS, import_ray, ray_session
from embridge.core.scale.gallery_transform import PartitionResult, finished_rows, transform_partition

RESULT_FIELDS = ("name", "rows", "seconds", "skipped", "runtime", "torch_loaded")


@contextmanager
def quiet_ray_data_errors() -> Iterator[None]:
    """Ray Data logs a failed task's remote traceback before raising it; the raised error is the report.

    The ``ray.data`` logger's level is restored on the way out, so a host program's own Ray Data
    pipelines log as before.
    """
    import logging

    logger = logging.getLogger("ray.data")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


class PartitionMapper:
    """Ray Data actor body: transforms each partition of a batch and returns one result row each."""

    def __init__(self, bundle: str, id_col: str, vec_col: str, output: str = "parquet",
                 marker: str | None = None) -> None:
        from embridge.core.scale.layer import loaded_layer

        self.bundle, self.id_col, self.vec_col, self.output, self.marker = bundle, id_col, vec_col, output, marker
        loaded_layer(bundle)  # load and verify once per actor, before the first partition

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = []
        for i in range(len(batch["name"])):
            part = {k: batch[k][i].item() if hasattr(batch[k][i], "item") else batch[k][i]
                    for k in ("name", "kind", "path", "fragment")}
            results.append(transform_partition(self.bundle, part, str(batch["target"][i]), self.id_col,
                                               self.vec_col, output=self.output, marker=self.marker))
        return {f: np.asarray([getattr(r, f) for r in results]) for f in RESULT_FIELDS}


def transform_on_ray(jobs: list[tuple], address: str | None, num_cpus: int | None, on_progress: ProgressFn,
                     should_stop: StopFn | None, output: str = "parquet") -> list[PartitionResult]:
    """Run ``jobs`` (bundle, partition, target, id, vector, space marker) writing ``output`` (parquet or lance) as a Ray
    Data pipeline; results by partition."""
    ray = import_ray(address)
    done = [PartitionResult(job[1].name, 0, 0.0, skipped=True) for job in jobs if os.path.exists(job[2])]
    todo = [job for job in jobs if not os.path.exists(job[2])]
    if not todo:
        return done
    bundle, id_col, vec_col, marker = todo[0][0], todo[0][3], todo[0][4], todo[0][5]
    if (address or "").strip().startswith("ray://"):  # Ray Data cannot run through Ray Client: plain tasks
        with ray_session(address, num_cpus):
            return _in_job_order(done + _with_tasks(ray, todo, on_progress, len(jobs), len(done), should_stop,
                                                    output), jobs, done, output)
    with ray_session(address, num_cpus) as session:
        import ray.data

        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.execution_options.verbose_progress = False
        ctx.raise_original_map_exception = True  # a bad row's own error, not Ray Data's wrapper around it
        rows = [{**job[1].to_row(), "target": job[2]} for job in todo]
        ds = ray.data.from_items(rows, override_num_blocks=len(rows))
        workers = max(1, min(len(rows), session.cpus))
        # a worker restarted three times at most, as everywhere else (Ray Data's default restarts it for ever, so a
        # partition that kills its worker every time, one too big for its memory, would never end the job)
        with warnings.catch_warnings():  # Ray 2.60 warns that such options will move; none other sets them yet
            warnings.simplefilter("ignore", DeprecationWarning)
            mapped = ds.map_batches(PartitionMapper, fn_constructor_args=(bundle, id_col, vec_col, output, marker),
                                    batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1,
                                    zero_copy_batch=True, max_restarts=MAX_RESTARTS, max_task_retries=MAX_RESTARTS)
        results = list(done)
        # a stop request leaves the iterator, which stops the pipeline; renamed partitions stay finished
        with quiet_ray_data_errors():  # a failure is reported once, as one line, by the caller
            for row in mapped.iter_rows():
                results.append(PartitionResult(str(row["name"]), int(row["rows"]), float(row["seconds"]),
                                               bool(row["skipped"]), str(row["runtime"]),
                                               bool(row["torch_loaded"])))
                on_progress(len(results), len(jobs), {"stage": "transform"})
                check_stop(should_stop)
    return _in_job_order(results, jobs, done, output)


def _in_job_order(results: list[PartitionResult], jobs: list[tuple], done: list[PartitionResult],
                  output: str) -> list[PartitionResult]:
    """``results`` in the order of ``jobs``. A partition found finished that was not finished before the run
    (``done``) was written by this run: by a worker that died after its rename and was retried. It counts
    as written, with the rows its output holds (read from it here, on this rare path alone), not as done
    before."""
    before = {r.name for r in done}
    order = {job[1].name: i for i, job in enumerate(jobs)}
    target = {job[1].name: str(job[2]) for job in jobs}
    return sorted((replace(r, skipped=False, rows=finished_rows(target[r.name], output))
                   if r.skipped and r.name not in before else r for r in results), key=lambda r: order[r.name])


def _with_tasks(ray: Any, todo: list[tuple], on_progress: ProgressFn, total: int, first: int,
                should_stop: StopFn | None, output: str) -> list[PartitionResult]:
    """One Ray task per partition, for a cluster reached through Ray Client (``ray://``), where a Ray
    Data pipeline fails (its operators need the driver's own core worker). Each task writes its
    partition under a temporary name and renames it, as the pipeline's actors do, so a retried task
    writes the same bytes; a stop cancels the tasks not yet finished."""
    task = ray.remote(num_cpus=1, max_retries=3)(transform_partition)
    pending = {task.remote(job[0], job[1].to_row(), job[2], job[3], job[4], output=output, marker=job[5]): job
               for job in todo}
    results: list[PartitionResult] = []
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                pending.pop(ref)
                results.append(ray.get(ref))
                on_progress(first + len(results), total, {"stage": "transform"})
                check_stop(should_stop)
    finally:
        for ref in pending:
            ray.cancel(ref)
    return results
