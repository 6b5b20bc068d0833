"""Embed a dataset of items with a model, locally or on a pool of Ray actors (GPU actors with --num-gpus).

The input is a partitioned Parquet dataset with an id column and an input column (a fixed-size list
of floats for array models, a string for text models). Items are taken in the given order (the
planner's order for a partial backfill) and cut into chunks; each chunk is embedded by one actor
(the model is loaded once per actor) and written as ``chunk-NNNNN.parquet`` with (id, vector), under
a temporary name then renamed, so a rerun skips finished chunks. Progress reports items/s and ETA.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embridge.core.connectors.arrow_common import reading_parquet
from embridge.core.connectors.parquet import plain_vectors
from embridge.core.errors import InputError
from embridge.core.models.spec import checkpoint_sha256
from embridge.core.paths import check_folder_target, check_output, check_regular
from embridge.core.progress import ProgressFn, StopFn, check_stop, no_progress
from embridge.core.scale.engine import (
    MAX_RESTARTS,
    check_engine,
    import_ray,
    pool_fits,
    ray_session,
)
from embridge.core.scale.gallery_transform import list_partitions, parquet_dir
from embridge.core.scale.item_checks import (
    check_item_schemas,
    check_order,
    check_rows,
    check_unique,
    id_array,
    items_fingerprint,
    order_fingerprint,
)
from embridge.core.scale.output_folder import (
    first_missing,
    read_marker,
    remove_half_written,
    take_back,
    write_marker,
)
from embridge.core.scale.partitions import dataset_params

STATE_FILE = "_embridge_embed.json"


@dataclass(frozen=True)
class EmbedResult:
    engine: str
    target: str
    items: int
    chunks: int
    written: int
    skipped: int
    seconds: float
    zero_vectors: int = 0  # items whose vector is all zeros (no direction: no search finds them), any chunk
    zero_vector_example: int | str | None = None  # the first such item's id

    @property
    def items_per_s(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "items_per_s": self.items_per_s}


def read_items(folder: Path, id_col: str, input_col: str) -> tuple[np.ndarray, Any, list[str]]:
    """All ids and inputs of the dataset (inputs: float32 rows or a list of texts), and the files read
    (``name:size``, what markers of earlier versions named a job's source by).

    Every partition's schema is checked before any rows are read, and every row before any chunk is
    embedded: a null or repeated id or a null input is named by partition file and row.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = list_partitions(folder)
    stamps = [f"{f.name}:{f.stat().st_size}" for f in files]
    check_item_schemas(files, id_col, input_col)
    tables = []
    for file in files:
        with reading_parquet(file, as_input=True):
            table = pq.read_table(file, columns=[id_col, input_col])
        check_rows(file, table, id_col, input_col)
        tables.append(table)
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:  # uint64 ids past 2^63 - 1 beside signed ones, say
        types = ", ".join(sorted({str(t.schema.field(id_col).type) for t in tables}))
        raise InputError(folder, f"the partitions' '{id_col}' columns ({types}) have no common type "
                         f"({str(exc).splitlines()[0]}); write every partition's ids as one type") from exc
    if table.num_rows == 0:
        raise InputError(folder, f"holds no items: its {len(files)} partition{'s' * (len(files) != 1)} "
                         f"{'are' if len(files) != 1 else 'is'} empty")
    rows = [t.num_rows for t in tables]
    ids = id_array(table.column(id_col).to_pylist(), files, rows)
    check_unique(ids, files, rows)
    col = table.column(input_col).combine_chunks()
    if pa.types.is_dictionary(col.type):  # texts dictionary-encoded (pandas categories, repeated values)
        col = col.dictionary_decode()
    if pa.types.is_fixed_size_list(col.type):
        inputs: Any = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(col), -1)
    elif pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        inputs = col.to_pylist()
    else:
        raise InputError(folder, f"column '{input_col}' is neither a fixed-size list of floats nor text")
    return ids, inputs, stamps


def ordered(ids: np.ndarray, inputs: Any, order: np.ndarray | None) -> tuple[np.ndarray, Any]:
    """The items in ``order`` (ids, e.g. the planner's backfill order; None: as stored)."""
    if order is None:
        return ids, inputs
    order = check_order(order, ids)
    pos = {v: i for i, v in enumerate(ids.tolist())}
    missing = [v for v in order.tolist() if v not in pos]
    if missing:
        raise InputError("--order", f"{len(missing)} {'id is' if len(missing) == 1 else 'ids are'} not in the "
                         f"dataset (first: {missing[0]})")
    rows = np.asarray([pos[v] for v in order.tolist()], dtype=np.int64)
    return ids[rows], inputs[rows] if isinstance(inputs, np.ndarray) else [inputs[i] for i in rows]


ModelRef = str | Path | Mapping[str, Any]  # a model file or folder, or a workspace model's spec


class ChunkEmbedder:
    """Holds one loaded model; embeds chunks and writes each as one Parquet file (a Ray actor body).

    ``role`` is the prompt role of text inputs ("document" for gallery items, as a local embed uses).
    """

    def __init__(self, model: ModelRef, device: str, batch_size: int, role: str | None = None) -> None:
        from embridge.core.models import load_model

        # a workspace model's spec: its stored checkpoint is refused once it changed, as embed does
        self.model = (load_model(model, device, verify=True) if isinstance(model, Mapping)
                      else load_model(str(model), device))
        self.batch_size = batch_size
        self.role = role

    def embed(self, ids: np.ndarray, inputs: Any, target: str) -> int:
        """Embed one chunk and publish it (the local engine): the items written, 0 for a chunk already there."""
        return publish_chunk(self.stage(ids, inputs, target), target, len(ids))

    def stage(self, ids: np.ndarray, inputs: Any, target: str) -> str | None:
        """Embed one chunk into a hidden file beside ``target`` and return its path (None: already there).

        On Ray the driver renames it, in job order: a killed actor's process may still finish a write after
        its task was declared dead, and only a rename makes a chunk count, so nothing is published after a
        cancel returns.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        from embridge.core.connectors.arrow_common import vector_array
        from embridge.core.embed import embed_array

        if os.path.exists(target):
            return None
        shape = tuple(self.model.spec.input_shape or ())
        if isinstance(inputs, np.ndarray) and len(shape) > 1:  # image rows travel flattened
            inputs = inputs.reshape(len(inputs), *shape)
        vectors = embed_array(self.model, inputs, self.batch_size, device=self.model.device, role=self.role)
        tmp = str(Path(target).parent / f".{Path(target).name}.tmp-{os.getpid()}")
        table = pa.table({"id": pa.array(ids), "vector": vector_array(vectors)})
        pq.write_table(table, tmp, **plain_vectors(table.column_names, "vector"))
        return tmp


def publish_chunk(staged: str | None, target: str, n: int) -> int:
    """Rename a staged chunk into place: the items it holds, 0 when nothing was staged (already there)."""
    if staged is None:
        return 0
    os.replace(staged, target)
    return n


def embed_dataset(model: ModelRef, source: str, target: str, *, engine: str = "local",
                  order: np.ndarray | None = None, chunk: int = 4096, batch_size: int = 256,
                  actors: int | None = None, num_gpus: float = 0.0, ray_address: str | None = None,
                  id_col: str = "id", input_col: str = "input", on_progress: ProgressFn | None = None,
                  should_stop: StopFn | None = None, role: str | None = None,
                  own_stage: bool = False) -> EmbedResult:
    """Embed ``source`` items (in ``order``) into ``target`` chunk files on ``engine``; resumable by chunk.

    ``target`` is checked as every output is (never a workspace, inside one, holding one, or an
    input), except for ``own_stage``: a workspace backfill's stage folder inside its own workspace.
    A run refused or stopped before its first chunk leaves no output folder and no checkpoint.
    """
    check_engine(engine)
    if num_gpus and engine == "local":  # this machine's GPU, named by the option that asked for it (as backfill)
        from embridge.core.jobs import check_device_option

        check_device_option("cuda", "--num-gpus")
    on_progress = on_progress or no_progress
    dataset_params(source, "--from")  # a parameter it does not take (?id=, a typo) is named, not ignored
    dataset_params(target, "--to")
    src, dst = parquet_dir(source, "--from"), parquet_dir(target, "--to")
    if dst.resolve() == src.resolve() or src.resolve() in dst.resolve().parents:
        raise InputError("--to", f"{dst}: the output folder must not be the input folder or inside it")
    if not own_stage:
        check_output(dst, label="--to", inputs=(src, None if isinstance(model, Mapping) else model), below=True)
        check_folder_target(dst, "--to")
    ids, inputs, files = read_items(src, id_col, input_col)
    ids, inputs = ordered(ids, inputs, order)
    model_key = str(model.get("sha256")) if isinstance(model, Mapping) else str(Path(model).resolve())
    state = {"model": model_key, "source": str(src.resolve()), "chunk": chunk, "id": id_col, "input": input_col,
             "order": order_fingerprint(order), "n": len(ids),
             "items": items_fingerprint(ids, inputs)}
    if not isinstance(model, Mapping) and Path(model).exists():  # a file replaced at the same path is another model
        check_regular(model, "checkpoint")  # a FIFO would block the hash for good
        state["model_sha256"] = checkpoint_sha256(model)
    shape = list(model.get("input_shape") or []) if isinstance(model, Mapping) else []
    if shape:  # the same weights read at another input shape give other vectors: another job
        state["input_shape"] = shape
        width = int(np.prod(shape))
        if isinstance(inputs, np.ndarray) and inputs.ndim == 2 and inputs.shape[1] != width:
            raise InputError("--input-shape", f"{'x'.join(map(str, shape))} takes {width} values per item, but the "
                             f"column '{input_col}' holds {inputs.shape[1]}")
    if role is not None and not (isinstance(inputs, np.ndarray) and inputs.dtype.kind in "fiu"):
        state["role"] = role  # texts under another prompt give other vectors: another job
    worker = ChunkEmbedder(model, "cuda" if num_gpus else "cpu", batch_size, role) if engine == "local" else None
    if worker is None and not isinstance(model, Mapping):
        # a checkpoint whose input shape cannot be told is refused here in one line, as the local engine
        # refuses it, not in each actor's constructor (a text model takes texts: not loaded here for it)
        from embridge.core.models import describe_model, infer_kind
        from embridge.core.models.text_folders import TEXT_KINDS

        if infer_kind(str(model)) not in TEXT_KINDS:
            describe_model(str(model))
    fresh, made = _prepare(dst, state, files, role_implied=own_stage)
    try:
        return _embed(model, dst, ids, inputs, chunk, worker, engine, actors, num_gpus, batch_size, ray_address,
                      on_progress, should_stop, role)
    except BaseException:
        if fresh and not any(dst.glob("chunk-*.parquet")):
            take_back(dst, made)  # nothing embedded yet: no output folder, no checkpoint
        raise


def _embed(model: ModelRef, dst: Path, ids: np.ndarray, inputs: Any, chunk: int, worker: ChunkEmbedder | None,
           engine: str, actors: int | None, num_gpus: float, batch_size: int, ray_address: str | None,
           on_progress: ProgressFn, should_stop: StopFn | None, role: str | None) -> EmbedResult:
    bounds = [(a, min(a + chunk, len(ids))) for a in range(0, len(ids), chunk)]
    jobs = [(ids[a:b], inputs[a:b], str(dst / f"chunk-{i:05d}.parquet")) for i, (a, b) in enumerate(bounds)]
    began = time.perf_counter()
    done_items = 0

    def report(n_done: int, i: int) -> None:
        rate = n_done / max(time.perf_counter() - began, 1e-9)
        on_progress(i, len(jobs), {"stage": "embed", "items": n_done, "items_per_s": rate,
                                   "eta_s": (len(ids) - n_done) / rate if rate > 0 else None})

    if all(os.path.exists(job[2]) for job in jobs):  # a finished job: nothing to start, on either engine
        written = [0] * len(jobs)
        report(len(ids), len(jobs))
    elif worker is not None:
        written = []
        for i, job in enumerate(jobs):
            check_stop(should_stop)
            written.append(worker.embed(*job))
            done_items += len(job[0])
            report(done_items, i + 1)
    else:
        written = _on_ray(model, jobs, actors, num_gpus, batch_size, ray_address, report, should_stop, role)
    remove_half_written(dst)  # left by a run killed mid-write, or by an actor killed mid-chunk (it was retried)
    n_written = sum(1 for w in written if w)
    zeros, example = _zero_vectors([job[2] for job in jobs])
    return EmbedResult(engine, str(dst), sum(written), len(jobs), n_written, len(jobs) - n_written,
                       time.perf_counter() - began, zeros, example)


def _zero_vectors(chunks: list[str]) -> tuple[int, int | str | None]:
    """(all-zero vectors in the job's chunks, the first one's id): said beside the result as ``embed`` says
    it, since bundles and migrations refuse such vectors later. Read back from every chunk, those of an
    earlier run included (a small cost beside the embedding that wrote them)."""
    import pyarrow.parquet as pq

    from embridge.core.l2 import zero_rows

    count, example = 0, None
    for chunk in chunks:
        table = pq.read_table(chunk, columns=["id", "vector"])
        vec = table.column("vector").combine_chunks()
        if not len(vec):
            continue
        rows = zero_rows(vec.flatten().to_numpy(zero_copy_only=False).reshape(len(vec), -1))
        if len(rows) and example is None:
            example = table.column("id")[int(rows[0])].as_py()
        count += int(len(rows))
    return count, example


def _prepare(dst: Path, state: dict[str, Any], files: list[str], role_implied: bool = False) -> tuple[bool, Path | None]:
    """Start the output folder, or check an existing one is this job's; (fresh, made) as for a transform.

    The job is its model (and a model file's sha256), columns, chunk size, order and the exact items
    in that order, so a chunk is never resumed from a source rewritten in place or by another model
    saved at the same path. A marker written before the items were part
    of it named the source's files by name and size (``files``), and is taken on those terms.
    """
    marker = dst / STATE_FILE
    if marker.exists():
        before = read_marker(marker)
        if isinstance(before, dict) and "model_sha256" not in before and "model_sha256" in state:
            before = {**before, "model_sha256": state["model_sha256"]}  # written before models were hashed
        if isinstance(before, dict) and "role" not in before and "role" in state and role_implied:
            before = {**before, "role": state["role"]}  # a workspace backfill's stage, written before roles were kept
        if _older_marker_of(before, state, files):
            write_marker(marker, state)
        elif before != state:
            was = _chunk_of(before)
            if was is not None and {**before, "chunk": state["chunk"]} == state:
                n_chunks = -(-int(state["n"]) // was)
                if all((dst / f"chunk-{i:05d}.parquet").exists() for i in range(n_chunks)):
                    raise InputError("--chunk", f"{dst} holds this job, finished in chunks of {was} items; its "
                                     f"output is complete (run it with --chunk {was} to take it as it is), or "
                                     f"choose a new --to folder")
                raise InputError("--chunk", f"{dst} holds this job stopped part way in chunks of {was} items; run it "
                                 f"again with --chunk {was} to resume it, or choose a new --to folder")
            raise InputError("--to", f"{dst}: holds the output of another embedding job; choose a new folder")
        return False, None
    if dst.exists() and any(dst.iterdir()):
        raise InputError("--to", f"{dst}: exists and is not the output of an earlier run of this job")
    made = first_missing(dst)
    dst.mkdir(parents=True, exist_ok=True)
    write_marker(marker, state)
    return True, made


def staged_chunk(dst: Path, chunk: int) -> int:
    """The chunk size of the job stopped part way in ``dst`` (a resume continues in its chunks), else ``chunk``."""
    marker = dst / STATE_FILE
    was = _chunk_of(read_marker(marker)) if marker.is_file() else None
    return chunk if was is None else was


def _chunk_of(marker: Any) -> int | None:
    """The chunk size a job's marker records (None for a marker that records none)."""
    was = marker.get("chunk") if isinstance(marker, dict) else None
    return was if isinstance(was, int) and not isinstance(was, bool) and was > 0 else None


def _older_marker_of(before: Any, state: dict[str, Any], files: list[str]) -> bool:
    """Whether ``before`` is an earlier version's marker (source files by name and size) of this job."""
    return before == {**{k: v for k, v in state.items() if k != "items"}, "files": files}


def _on_ray(model: ModelRef, jobs: list[tuple], actors: int | None, num_gpus: float, batch_size: int,
            address: str | None, report: Any, should_stop: StopFn | None, role: str | None = None) -> list[int]:
    """An ActorPool of model holders (one GPU each with ``num_gpus``); chunks in order, results in order."""
    ray = import_ray(address)
    from ray.util import ActorPool

    with ray_session(address) as session:
        pool_fits(ray.cluster_resources(), actors, num_gpus)
        n_actors = max(1, min(actors or session.cpus, len(jobs)))
        actor_cls = ray.remote(num_cpus=1, num_gpus=num_gpus, max_restarts=MAX_RESTARTS, max_task_retries=MAX_RESTARTS)(ChunkEmbedder)
        ref = model if isinstance(model, Mapping) else str(model)
        holders = [actor_cls.remote(ref, "cuda" if num_gpus else "cpu", batch_size, role) for _ in range(n_actors)]
        pool = ActorPool(holders)
        results, done = [], 0
        submitted: list[Any] = []

        def submit(actor: Any, job: Any) -> Any:
            submitted.append(actor.stage.remote(*job))
            return submitted[-1]

        try:
            for i, staged in enumerate(pool.map(submit, jobs)):
                results.append(publish_chunk(staged, jobs[i][2], len(jobs[i][0])))
                done += len(jobs[i][0])
                report(done, i + 1)
                check_stop(should_stop)
        finally:
            for actor in holders:  # a cancel stops the work in flight too
                ray.kill(actor, no_restart=True)
            # ray.kill returns at once: wait until every submitted chunk has finished or died with its
            # actor; a chunk staged but not yet published stays hidden and is removed below or by a rerun
            ray.wait(submitted, num_returns=len(submitted), timeout=60)
            remove_half_written(Path(jobs[0][2]).parent)
        return results
