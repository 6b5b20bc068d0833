"""Backfill a workspace's gallery with a new model on the local or the Ray engine.

The items to re-embed are the gallery (in stored order) or the planner's partial backfill: the
first β·n gallery items in the order of the plan's backfill policy: the policy and seed the report's
partial-backfill curve was measured with, drawn over the whole gallery (the curve orders the evaluation
sample, so where the sample is smaller than the gallery the two orders are alike, not the same items). The
items are staged as a Parquet dataset,
embedded by :func:`embridge.core.scale.backfill_embed.embed_dataset` (one chunk per task, on an actor pool
with ``engine="ray"``), and the vectors are written into the workspace through its transactional
vector-set writer, the path a local ``embed`` uses, so reports and plans see them; optionally they
are also upserted into a vector store through a connector.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from embridge.core.credentials import hidden
from embridge.core.errors import InputError, StoreError, UsageError, VectorFileError, WorkspaceBusyError
from embridge.core.paths import STAGE_FOLDER
from embridge.core.plan.plan_record import Plan
from embridge.core.progress import ProgressFn, StopFn, check_stop, no_progress
from embridge.core.scale.backfill_store import check_store_option, point_ids, write_store
from embridge.core.scale.engine import check_reachable, import_ray
from embridge.core.store.file_lock import exclusive_lock
from embridge.core.vector_spread import spread_problem

STAGE_DIR = STAGE_FOLDER  # under the workspace: staged items and chunk outputs of backfills
ORDERS = ("stored", "planner")
STAGE_PART_ROWS = 8192


@dataclass(frozen=True)
class BackfillResult:
    """What a finished backfill wrote: the vector set and, when asked, the store."""

    model: str
    items: int
    vector_set: int
    dim: int
    order: str
    engine: str
    store: str | None = None
    reused: bool = False  # the model already had a vector set of exactly these items: nothing was embedded
    set_name: str | None = None  # the vector set's name (a reused set keeps its own, whatever --name says)
    embedded: int | None = None  # items embedded by this run; the others' stored vectors were copied
    resumed: int = 0  # items an interrupted run of this backfill had embedded (its finished chunks, kept)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)



def workspace_model_spec(ws: Any, model: str, missing: int | None = None) -> dict[str, Any]:
    """The spec a local embed loads the model with (its workspace copy), as a plain dict for workers;
    ``missing``: how many items the model must embed (named when it cannot)."""
    from embridge.core.models import ModelSpec

    row = ws.model(model)
    if (row.get("spec") or {}).get("kind") == "vectors":  # checked first: a store's import records no file
        which = f"the {missing} items it holds no vectors for" if missing else "items"
        raise InputError("--model", f"'{model}' is an embeddings-only model: it has no network to embed {which}; "
                                    "attach the new vectors you have instead (embridge import --format vectors "
                                    f"--path FILE.npz --model {model})")
    spec = ModelSpec.from_dict(row["spec"])
    return replace(spec, name=model, path=row.get("path") or spec.path).to_dict()


def planner_order(ws: Any, plan: Plan) -> np.ndarray:
    """Gallery item ids the plan's partial backfill re-embeds, first re-embedded first.

    The report measured the partial-backfill curve with ``backfill_order(policy, n, seed)`` over the
    evaluation sample's rows; the same policy and seed over the whole gallery, cut at β·n, is the order to
    embed in (the same items as the curve's only where the sample is the whole gallery)."""
    from embridge.core.report.backfill_curve import backfill_order

    option = next((o for o in plan.options if o.get("name") == "partial_backfill"), None)
    if option is None:  # the plan's own words for why: its note on partial backfills, else its reason
        why = next((n for n in plan.notes if "partial" in n.lower() or "backfill order" in n), plan.reason)
        then = ("backfill every item with --order stored" if plan.recommendation == "full_backfill" else
                "it recommends no backfill; to re-embed every item anyway, use --order stored")
        raise InputError("--order planner", f"the plan recommends {plan.recommendation} and has no partial-backfill "
                         f"option to take an order from ({why.rstrip('.')}); {then}")
    policy, beta = option.get("policy"), float(option.get("fraction") or 0.0)
    gallery = ws.gallery_ids()
    if policy != "random":
        raise InputError("--order planner", f"the plan's backfill order '{policy}' needs every new vector first")
    seed = _report_seed(ws, plan.report_id)
    order = backfill_order(policy, len(gallery), seed)
    return gallery[order[: int(round(beta * len(gallery)))]]


def _report_seed(ws: Any, report_id: int | None) -> int:
    """The seed the report's curves were drawn with (its run's config; 0, the default, otherwise)."""
    import json

    if report_id is None:
        return 0
    row = ws.report(int(report_id))
    try:
        report = json.loads((Path(ws.root) / row["json_file"]).read_text(encoding="utf-8"))
        config = ws.run(int(report["report_run_id"])).get("config") or {}
    except (OSError, KeyError, TypeError, ValueError, StoreError):
        return 0
    return int(config.get("seed", 0))


def backfill_ids(ws: Any, order: str, *, run_id: int | None = None, fraction: float | None = None,
                 plan: dict[str, Any] | None = None, model: str | None = None, **plan_options: Any) -> np.ndarray:
    """The gallery ids to backfill in ``order`` ("stored": all, ascending; "planner": the plan's).

    With ``model`` and no ``fraction``, a planner's set no larger than ``model``'s latest backfill is refused:
    recorded as the newest backfill it would shrink (or keep) the gallery served by new vectors (a
    ``fraction`` asked for is recorded as asked)."""
    if order not in ORDERS:
        raise InputError("--order", f"unknown order '{order}' (use {' or '.join(ORDERS)})")
    if order == "stored":
        ids = ws.gallery_ids()
    else:
        if fraction is not None:  # before the plan measures its report: a share of no item is refused as it is
            _refuse_a_share_of_nothing(fraction, len(ws.gallery_ids()))
        if plan is None:
            from embridge.core.plan import plan_upgrade

            plan = plan_upgrade(ws, run_id, fraction, **plan_options)
        if model is not None and plan.new_model is not None and model != plan.new_model:
            raise InputError("--model", f"'{model}' is not the new model of the run the plan is for (run "
                             f"#{plan.run_id}, {plan.old_model} -> {plan.new_model}); the planner's order re-embeds "
                             f"the gallery with '{plan.new_model}' (or name another run with --run)")
        ids = planner_order(ws, plan)
        if model is not None and fraction is None:  # the plan's own choice, not a share asked for
            _refuse_a_step_back(ws, model, ids)
    if len(ids) == 0:
        raise InputError("--order", "no gallery items to backfill")
    return ids


def _refuse_a_share_of_nothing(fraction: float, gallery: int) -> None:
    if gallery and int(round(fraction * gallery)) == 0:
        raise UsageError("--fraction", f"{fraction:g} of the {gallery} gallery items is no item; ask for at least "
                         f"{1 / gallery:.2g} (one item)")


def _refuse_a_step_back(ws: Any, model: str, ids: np.ndarray) -> None:
    latest = ws.latest_backfill_run(model)
    if latest is None:
        return
    held = ws.vector_set_ids(int(latest["metrics"]["vector_set"]))
    if len(ids) and held.size >= ids.size:  # as the plan counts it: no more items served by new vectors
        raise InputError("--order", f"backfill run #{latest['id']} already re-embedded {held.size} gallery items "
                         f"with '{model}', at least the {ids.size} the plan's partial backfill takes; recorded as "
                         "the newest backfill it would serve no more new vectors than now, so nothing was done "
                         "(--order stored re-embeds every gallery item; --fraction records a smaller share "
                         "deliberately)")


def stage_items(ws: Any, spec: dict[str, Any], ids: np.ndarray, folder: Path,
                should_stop: StopFn | None = None) -> None:
    """Write the items' model inputs as Parquet parts (id, input) in ``ids`` order (texts or flat floats)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from embridge.core.models import ModelSpec, make_inputs

    model_spec = ModelSpec.from_dict(spec)
    folder.mkdir(parents=True, exist_ok=True)
    for part, start in enumerate(range(0, len(ids), STAGE_PART_ROWS)):
        check_stop(should_stop)
        chunk = ids[start:start + STAGE_PART_ROWS]
        by_id = {it["id"]: it for it in ws.items(ids=chunk)}
        inputs = make_inputs([by_id[int(i)] for i in chunk], model_spec)
        if isinstance(inputs, list):
            column = pa.array(inputs, pa.string())
        else:
            flat = np.asarray(inputs, dtype=np.float32).reshape(len(chunk), -1)
            column = pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), flat.shape[1])
        tmp = folder / f".part-{part:05d}.parquet.tmp"
        pq.write_table(pa.table({"id": pa.array(chunk, pa.int64()), "input": column}), tmp)
        tmp.replace(folder / f"part-{part:05d}.parquet")


def read_chunk_vectors(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """The (ids, vectors) of an embed-dataset output folder, chunk by chunk in order."""
    import pyarrow.parquet as pq

    ids, vectors = [], []
    for file in sorted(folder.glob("chunk-*.parquet")):
        table = pq.read_table(file)
        col = table.column("vector").combine_chunks()
        ids.append(table.column("id").to_numpy())
        vectors.append(col.flatten().to_numpy().astype(np.float32).reshape(len(col), col.type.list_size))
    if not ids:
        raise StoreError(f"{folder}: the backfill wrote no vectors")
    return np.concatenate(ids).astype(np.int64), np.concatenate(vectors)


def record_vectors(ws: Any, model: str, ids: np.ndarray, folder: Path, *, name: str = "backfill",
                   store: str | None = None, embedded: np.ndarray | None = None) -> dict[str, Any]:
    """Register the chunk outputs as ``model``'s vector set for ``ids`` (and upsert into ``store``).

    ``embedded``: the items the chunks hold (default: all of ``ids``); the others' vectors are the
    model's stored ones."""
    embedded = np.asarray(ids if embedded is None else embedded, np.int64)
    got_ids, fresh = read_chunk_vectors(folder) if len(embedded) else (embedded, None)
    if not np.array_equal(got_ids, embedded):
        raise StoreError(f"{folder}: the backfill output does not hold the {len(embedded)} items asked for, in "
                         "order")
    if len(embedded) == len(ids):
        vectors = fresh
    else:  # the embedded items' new vectors beside the others' stored ones, in the order of ids
        new = np.isin(ids, embedded)
        vectors = np.empty((len(ids), ws.vector_dim(model)), np.float32)
        vectors[~new] = ws.vectors_for(model, np.asarray(ids)[~new])
        if fresh is not None:
            vectors[new] = fresh
    problem = spread_problem(vectors)  # refused before the store is written, as the workspace refuses it
    if problem:
        raise VectorFileError(f"vectors of model '{model}'", problem)
    if store:
        write_store(store, model, point_ids(ws, np.asarray(ids, np.int64)), vectors)
    return ws.add_vector_set(model, ids, vectors, name=name)


def check_targets(ws: Any, store: str | None, name: str, model: str, ids: np.ndarray | None = None,
                  embed_ids: np.ndarray | None = None) -> None:
    """Refuse a bad --name or --to-store before any item is staged or embedded.

    Every item to embed (``embed_ids``, default all ``ids``) must hold a raw input (not have come as
    vectors alone); items whose vectors the model holds are copied. A store target must be
    writable, must not be, lie in or hold a workspace (this one or any
    other), and must be a new collection or one backfills of ``model`` wrote (see
    :mod:`embridge.core.scale.backfill_store`); a refusal found only after embedding would throw the
    whole run's work away.
    """
    from embridge.core.paths import check_name

    check_name(name, "--name")
    if ids is not None:
        _check_raw_inputs(ws, model, ids if embed_ids is None else embed_ids, len(ids))
    if store:
        check_store_option(ws, store, model, ids)


def items_to_embed(ws: Any, model: str, ids: np.ndarray) -> np.ndarray:
    """Those of ``ids`` (in their order) whose vectors ``model`` does not hold yet: the others' stored
    vectors are copied into the backfill's set, not embedded again (as ``embed`` skips them)."""
    ids = np.asarray(ids, np.int64)
    return ids[~np.isin(ids, ws.ids_with_vectors(model))]


def stage_folder(ws: Any, key: str) -> Path:
    return Path(ws.root) / STAGE_DIR / key


def stage_key(model: str, ids: np.ndarray, spec: dict[str, Any]) -> str:
    digest = hashlib.sha256(f"{model}\0{spec.get('sha256')}\0".encode() + np.asarray(ids, np.int64).tobytes())
    return f"backfill-{digest.hexdigest()[:16]}"


def backfill(ws: Any, model: str, ids: np.ndarray, *, engine: str = "local", order: str = "stored",
             chunk: int = 4096, batch_size: int = 256, actors: int | None = None, num_gpus: float = 0.0,
             ray_address: str | None = None, store: str | None = None, name: str = "backfill",
             on_progress: ProgressFn | None = None, should_stop: StopFn | None = None) -> BackfillResult:
    """Re-embed ``ids`` with ``model`` on ``engine`` and record them, as a ``backfill`` run of the workspace.

    Resumable: finished chunks of an interrupted or cancelled run are kept and skipped next time.
    """
    todo = items_to_embed(ws, model, ids)
    # an embeddings-only model can copy what it holds; only items it must embed need its network
    spec = workspace_model_spec(ws, model, len(todo)) if len(todo) else dict(ws.model(model).get("spec") or {})
    if num_gpus and engine == "local":  # this machine's GPU: refused before a store is opened or a run recorded
        from embridge.core.jobs import check_device_option

        check_device_option("cuda", "--num-gpus")
    check_targets(ws, store, name, model, ids, embed_ids=todo)
    address = ray_address or os.environ.get("RAY_ADDRESS")
    if engine == "ray":  # refused before any item is staged or a run recorded, as other commands do
        import_ray(address)  # Ray missing or broken
        if address:
            check_reachable(address)
        from embridge.core.scale.engine import check_pool_fits

        check_pool_fits(address, actors, num_gpus)  # a pool the cluster cannot hold: before a run is recorded
    stage = stage_folder(ws, stage_key(model, todo, spec))
    progress = on_progress or no_progress
    config = {"engine": engine, "order": order, "items": int(len(ids)), "chunk": chunk,
              "store": hidden(store) if store else None, "num_gpus": num_gpus}  # the record keeps no password

    def busy() -> Exception:
        return WorkspaceBusyError(f"{ws.root}: the workspace is busy (another backfill of model '{model}' with "
                                  "these items is running); try again when it has finished")

    with exclusive_lock(stage.with_name(stage.name + ".lock"), busy):  # one process per stage folder
        done = finished_set(ws, model, ids)
        if done is not None:  # a rerun of a finished backfill: its vectors are stored once, not twice
            return _reuse(ws, model, ids, done, config, engine, order, store)
        return _backfill_staged(ws, model, ids, todo, spec, stage, config, engine, order, chunk, batch_size,
                                actors, num_gpus, ray_address, store, name, progress, should_stop)


def _check_raw_inputs(ws: Any, model: str, ids: np.ndarray, total: int) -> None:
    """Refuse before any run is recorded when some items to embed (``ids``, of ``total`` to backfill) came
    as vectors alone: there is nothing to feed the model for them (the job failed on the first such item,
    leaving a failed run behind)."""
    bare = np.setdiff1d(np.asarray(ids, np.int64), ws.embeddable_gallery_ids(), assume_unique=False)
    if bare.size:
        (key,) = ws.keys_of(bare[:1])
        held = f"; {total - len(ids)} others hold its vectors and would be copied" if total > len(ids) else ""
        raise InputError("--model", f"{bare.size} of the {total} items to backfill with '{model}' came as vectors "
                         f"alone (item '{key}' among them{held}): they hold no text, image or array to embed; "
                         f"import their new vectors instead (embridge import --format vectors --path FILE.npz "
                         f"--model {model})")


def finished_set(ws: Any, model: str, ids: np.ndarray) -> dict[str, Any] | None:
    """A vector set of ``model`` holding exactly the items ``ids`` (in any order), or None."""
    wanted = np.sort(np.asarray(ids, np.int64))
    for info in ws.vector_sets(model):
        if int(info["count"]) == len(wanted) and np.array_equal(np.sort(ws.vector_set_ids(int(info["id"]))), wanted):
            return info
    return None


def _reuse(ws: Any, model: str, ids: np.ndarray, info: dict[str, Any], config: dict[str, Any], engine: str,
           order: str, store: str | None) -> BackfillResult:
    """Record a rerun that finds the items backfilled; a ``store`` gets the stored vectors (an upsert by id)."""
    from embridge.core.jobs import recorded_run

    with recorded_run(ws, "backfill", model, config) as record:
        if store:
            set_ids, matrix = ws.open_vector_set(int(info["id"]))
            row_of = {int(i): n for n, i in enumerate(np.asarray(set_ids))}
            rows = np.fromiter((row_of[int(i)] for i in ids), np.int64, len(ids))
            write_store(store, model, point_ids(ws, ids), np.asarray(matrix[rows], np.float32))
        record["metrics"] = {"vector_set": int(info["id"]), "count": int(info["count"]), "dim": int(info["dim"]),
                             "reused": True}
    return BackfillResult(model, int(len(ids)), int(info["id"]), int(info["dim"]), order, engine,
                          hidden(store) if store else None, reused=True,
                          set_name=info.get("name"), embedded=0)  # as a fresh run that embeds nothing says


def _backfill_staged(ws: Any, model: str, ids: np.ndarray, todo: np.ndarray, spec: dict[str, Any], stage: Path,
                     config: dict[str, Any], engine: str, order: str, chunk: int, batch_size: int,
                     actors: int | None, num_gpus: float, ray_address: str | None, store: str | None, name: str,
                     progress: ProgressFn, should_stop: StopFn | None) -> BackfillResult:
    """Embed ``todo`` (the items of ``ids`` the model holds no vectors for) and record a set of all ``ids``."""
    from embridge.core.jobs import recorded_run
    from embridge.core.scale.backfill_embed import embed_dataset, staged_chunk

    # the stage is the workspace's, not a folder the user chose: a backfill stopped part way goes on in its
    # own chunks whatever --chunk the rerun names (the stage is found by model and items alone)
    chunk = staged_chunk(stage / "vectors", chunk)
    config = {**config, "chunk": chunk}
    with recorded_run(ws, "backfill", model, config) as record:
        resumed = 0
        if len(todo):
            if not (stage / "items").is_dir():
                stage_items(ws, spec, todo, stage / "items.partial", should_stop)
                (stage / "items.partial").rename(stage / "items")
            done = embed_dataset(spec, str(stage / "items"), str(stage / "vectors"), engine=engine, chunk=chunk,
                          batch_size=batch_size, actors=actors, num_gpus=num_gpus, ray_address=ray_address,
                          on_progress=items_progress(progress, len(todo)), should_stop=should_stop,
                          role=text_role(spec), own_stage=True)
            resumed = int(len(todo)) - int(done.items)  # chunks a killed run finished are taken as they are
        info = record_vectors(ws, model, ids, stage / "vectors", name=name, store=store, embedded=todo)
        record["metrics"] = {"vector_set": info["id"], "count": info["count"], "dim": info["dim"],
                             "embedded": int(len(todo)) - resumed, **({"resumed": resumed} if resumed else {})}
    shutil.rmtree(stage, ignore_errors=True)
    return BackfillResult(model, int(len(ids)), int(info["id"]), int(info["dim"]), order, engine,
                          hidden(store) if store else None, set_name=name, embedded=int(len(todo)) - resumed, resumed=resumed)


def text_role(spec: dict[str, Any]) -> str | None:
    """Gallery items get the document prompt, as in a local embed."""
    return "document" if spec.get("modality") == "text" else None


def items_progress(progress: ProgressFn, total: int) -> ProgressFn:
    """embed_dataset reports chunks; report items (with its items/s and ETA) instead."""

    def report(done: int, chunks: int, info: dict[str, Any]) -> None:
        progress(int(info.get("items", done)), total, info)

    return report
