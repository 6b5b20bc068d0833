"""Embedding items with a model, in batches and chunks, into the workspace or into memory.

:func:`embed_items` streams a gallery through the model one chunk at a time (bounded memory) and
writes each finished chunk through the workspace's resumable vector-set writer. A run stopped by
the user (``should_stop``) or interrupted (Ctrl-C, a crash) keeps its completed chunks, and the
next run with the same model, items and set name continues after them. A run that fails (a
broken item, a model producing NaN) discards its partial file, since its rows cannot be trusted
to match a corrected rerun. Embeddings-only models copy the vectors their file holds for the
requested items instead (see :func:`embridge.core.vector_attach.embed_with_vectors_file`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embridge.core.device import resolve_device
from embridge.core.errors import Cancelled, DiskFullError, InputError
from embridge.core.l2 import zero_rows
from embridge.core.models import LoadedModel, ModelSpec, load_model, make_inputs
from embridge.core.models.spec import role_of_split
from embridge.core.progress import ProgressFn, StopFn, Throughput, check_stop, no_progress

ModelLike = LoadedModel | torch.nn.Module | ModelSpec | str | Path


def _as_loaded(model: ModelLike, device: str | torch.device) -> LoadedModel:
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    if isinstance(model, LoadedModel):
        return model.on(dev)
    if isinstance(model, torch.nn.Module):
        return LoadedModel.from_module(model, device=dev)
    return load_model(model, dev)


def _embed_rows(model: LoadedModel, inputs: Any) -> np.ndarray:
    """One batch: looked up by key for embeddings-only models, else run through the model."""
    return model.lookup(list(inputs)) if model.spec.kind == "vectors" else model.embed_batch(inputs)


def embed_array(model: ModelLike, inputs: np.ndarray | torch.Tensor | Sequence[str], batch_size: int = 256,
                device: str | torch.device = "auto", on_progress: ProgressFn | None = None,
                should_stop: StopFn | None = None, role: str | None = None) -> np.ndarray:
    """Embed an in-memory batch-first array (texts for text models, keys for vectors models).

    Returns float32 (N x dim); ``should_stop`` is checked before every batch. Texts get the prompt
    of ``role`` ("query" or "document"; None: no prompt) and are batched by length.
    """
    loaded = _as_loaded(model, device)
    progress = on_progress or no_progress
    total = len(inputs)
    if total == 0:
        raise InputError(loaded.spec.name, "nothing to embed (no inputs)")
    if batch_size < 1:
        raise InputError(loaded.spec.name, f"batch size must be positive, got {batch_size}")
    if loaded.is_text:
        meter = _BatchMeter(loaded.spec.name, 0, total, progress, should_stop)
        check_stop(should_stop)
        return loaded.embed_texts(list(inputs), role, batch_size, meter)
    out: np.ndarray | None = None
    for start in range(0, total, batch_size):
        check_stop(should_stop)
        stop = min(start + batch_size, total)
        block = _embed_rows(loaded, inputs[start:stop])
        if out is None:
            out = np.empty((total, block.shape[1]), dtype=np.float32)
        out[start:stop] = block
        progress(stop, total, {"model": loaded.spec.name})
    assert out is not None
    return out


def embed_items(workspace: Any, model_name: str, item_ids: Sequence[int] | np.ndarray, *, batch_size: int = 256,
                chunk_size: int = 4096, device: str | torch.device = "auto",
                on_progress: ProgressFn | None = None, should_stop: StopFn | None = None, resume: bool = True,
                name: str | None = None, dtype: str = "float32") -> dict[str, Any]:
    """Embed workspace items with a registered model and register the vector set (see module docstring).

    Returns the registered vector set's info. ``resume=False`` discards an earlier partial run.
    Raises :class:`Cancelled` when stopped; the completed chunks are kept for the next run.
    """
    row = workspace.model(model_name)
    spec = ModelSpec.from_dict(row["spec"])
    spec = replace(spec, name=model_name, path=row.get("path") or spec.path)
    ids = np.asarray(item_ids, dtype=np.int64)
    label = f"model '{model_name}'"
    if ids.ndim != 1 or len(ids) == 0:
        raise InputError(label, "no items to embed")
    if batch_size < 1 or chunk_size < 1:
        raise InputError(label, f"batch and chunk sizes must be positive (got {batch_size}, {chunk_size})")
    key_source_vectors = f"{model_name}\0{spec.sha256}\0{name or ''}".encode()
    if spec.kind == "vectors":
        from embridge.core.vector_attach import embed_with_vectors_file

        return embed_with_vectors_file(workspace, model_name, spec, ids, name or "vectors",
                                       "embed-" + hashlib.sha256(key_source_vectors).hexdigest()[:20],
                                       on_progress, should_stop, resume)
    held = _held_ids(workspace, model_name)
    todo = ids[~np.isin(ids, held)] if len(held) else ids  # items holding the model's vectors: not again
    skipped = int(len(ids) - len(todo))
    if len(todo) == 0:
        sets = workspace.vector_sets(model_name)  # the items' vectors may lie in several of them (a backfill's)
        return {**sets[-1], "written": 0, "already_stored": skipped, "held_in": [int(v["id"]) for v in sets]}
    ids = todo
    # everything that shapes the vectors (prompts, pooling, input shape), not only the weights: a model
    # removed and added again under its name with other settings must not resume the first one's rows
    settings = {k: v for k, v in spec.to_dict().items() if k not in ("name", "path")}
    key_source = f"{model_name}\0{spec.sha256}\0{name or ''}\0{dtype}\0{json.dumps(settings, sort_keys=True)}".encode()
    resume_key = "embed-" + hashlib.sha256(key_source).hexdigest()[:20]
    try:
        model = load_model(spec, device, verify=True)
        writer = workspace.vector_set_writer(model_name, ids, spec.dim, dtype, name=name, resume_key=resume_key)
    except Exception:
        # a `model remove` while the checkpoint loaded took its files and row: said as such, not as a damaged
        # checkpoint ("modules.json: not valid JSON") or a model never added
        workspace.check_model_kept(model_name, row)
        raise
    if not resume and writer.done_rows:
        writer.abort()
        writer = workspace.vector_set_writer(model_name, ids, spec.dim, dtype, name=name, resume_key=resume_key)
    progress = on_progress or no_progress
    total, first = len(ids), writer.done_rows
    throughput = Throughput(total, first)
    zeros = _ZeroRows()
    try:
        progress(first, total, {"model": model_name, "resumed_from": first})
        for chunk_start in range(first, total, chunk_size):
            check_stop(should_stop)
            items = workspace.items(ids=ids[chunk_start:chunk_start + chunk_size])
            block = _embed_chunk(model, items, chunk_start, total, batch_size, progress, should_stop, throughput)
            zeros.count(block, items)
            writer.write(chunk_start, block)
        info = writer.commit()
        if first:  # rows an interrupted run stored are counted from the file
            zeros.count_stored(info["path"], first, lambda rows: workspace.items(ids=ids[rows]))
        if zeros.n:
            info.update(zero_vectors=zeros.n, zero_vector_example=zeros.example)
        info.update(written=int(len(ids)), already_stored=skipped)  # the same keys whatever was held before
        if model.is_text and hasattr(model.module, "truncated"):  # what the texts lost (transformers and ONNX
            # folders, which Embridge tokenizes itself), said beside the result
            info.update(truncated=int(model.module.truncated), token_limit=int(model.module.max_length))
        if model.is_text and getattr(model.module, "unknown_only", 0):  # every text encoder counts these
            info.update(unknown_only=int(model.module.unknown_only), unknown_example=model.module.unknown_example)
        if first and ("truncated" in info or "unknown_only" in info):  # the encoder saw this run's texts only
            info.update(texts_counted=int(total - first))
        return info
    except (Cancelled, KeyboardInterrupt):
        writer.release()
        raise  # completed chunks stay on disk for the next run
    except DiskFullError as exc:  # the rows embedded so far are the costly part: kept for the next run
        writer.release()
        raise DiskFullError(f"{exc}; the {writer.done_rows} rows embedded so far are kept: free some space and "
                            "run the command again to go on from them") from exc
    except BaseException:
        writer.abort()
        raise


def _held_ids(workspace: Any, model_name: str) -> np.ndarray:
    """Ids of items with ``model_name``'s vectors in an intact set: a set whose file was deleted, cut short
    or changed by hand is embedded again, and the new set takes its place."""
    from embridge.core.store.vector_set_health import held_ids

    return held_ids(workspace, model_name)


class _ZeroRows:
    """Counts all-zero vectors a model gave (a bag of words reading no known word, say) and names the
    first item: such a vector has no direction, no cosine search finds it, and bundles and migrations
    refuse it, so ``embed`` says so instead of storing it silently."""

    def __init__(self) -> None:
        self.n, self.example = 0, ""

    def count(self, block: np.ndarray, items: list[dict[str, Any]]) -> None:
        zero = zero_rows(block)
        if len(zero) and not self.n:
            self.example = str(items[int(zero[0])]["key"])
        self.n += int(len(zero))

    def count_stored(self, path: str, rows: int, items_of: Callable[[np.ndarray], list[dict[str, Any]]]) -> None:
        stored, named = np.load(path, mmap_mode="r"), False
        for start in range(0, rows, 65_536):
            zero = zero_rows(stored[start:min(start + 65_536, rows)])
            if len(zero) and not named:  # these rows come before any this run embedded
                self.example, named = str(items_of(zero[:1] + start)[0]["key"]), True
            self.n += int(len(zero))


class _BatchMeter:
    """Called after each text batch: reports progress with items/s and ETA, and honours a stop request."""

    def __init__(self, model: str, done: int, total: int, progress: ProgressFn, should_stop: StopFn | None,
                 throughput: Throughput | None = None) -> None:
        self.model, self.done, self.total = model, done, total
        self.progress, self.should_stop = progress, should_stop
        self.throughput = throughput or Throughput(total, done)

    def __call__(self, rows: int) -> None:
        self.done += rows
        self.progress(self.done, self.total, {"model": self.model, **self.throughput.info(self.done)})
        if self.done < self.total:
            check_stop(self.should_stop)


def _embed_text_chunk(model: LoadedModel, items: list[dict[str, Any]], meter: _BatchMeter,
                      batch_size: int) -> np.ndarray:
    """Query items with the query prompt, the others with the document prompt, each batched by length."""
    texts = make_inputs(items, model.spec)
    roles = np.array([role_of_split(it.get("split")) for it in items])
    block: np.ndarray | None = None
    for role in ("query", "document"):
        idx = np.flatnonzero(roles == role)
        if len(idx) == 0:
            continue
        rows = model.embed_texts([texts[i] for i in idx], role, batch_size, meter)
        if block is None:
            block = np.empty((len(items), rows.shape[1]), dtype=np.float32)
        block[idx] = rows
    assert block is not None
    return block


def _embed_chunk(model: LoadedModel, items: list[dict[str, Any]], offset: int, total: int, batch_size: int,
                 progress: ProgressFn, should_stop: StopFn | None, throughput: Throughput) -> np.ndarray:
    if model.is_text:
        meter = _BatchMeter(model.spec.name, offset, total, progress, should_stop, throughput)
        return _embed_text_chunk(model, items, meter, batch_size)
    parts = []
    for start in range(0, len(items), batch_size):
        check_stop(should_stop)
        batch = items[start:start + batch_size]
        parts.append(model.embed_batch(make_inputs(batch, model.spec)))
        done = offset + start + len(batch)
        progress(done, total, {"model": model.spec.name, **throughput.info(done)})
    return np.concatenate(parts)


@dataclass(frozen=True)
class Whole:
    """Ids an evaluation sample takes all together or not at all: a judged query with the documents
    judged relevant to it, which cannot be scored with only part of them embedded."""

    ids: np.ndarray


def sample_ids(ids: np.ndarray, size: int | None, seed: int = 0,
               first: Sequence[np.ndarray | Whole] = ()) -> np.ndarray:
    """A seeded random sample of ``size`` ids in ascending order (all ids when size is None, 0 or too big).

    ``first``: groups of ids taken before the rest, in order: a :class:`Whole` group only when all of
    its ids not yet taken still fit (else it is passed over for the next), any other group as far as
    it fits (the group that crosses ``size`` is sampled). This is how an evaluation sample is drawn:
    the CLI's ``embed --sample`` and the Gallery page agree.
    """
    if not size or size >= len(ids):
        return ids
    rng = np.random.default_rng(seed)
    if not first:
        return np.sort(rng.choice(ids, size=size, replace=False))
    pool = np.unique(np.asarray(ids, dtype=np.int64))
    taken = np.zeros(pool.size, dtype=bool)  # by position in ``pool``: a judged query's group is a few ids
    count = 0
    for group in (*first, pool):
        room = size - count
        if room <= 0:
            break
        whole = isinstance(group, Whole)
        members = np.asarray(group.ids if whole else group, dtype=np.int64)
        at = np.minimum(np.searchsorted(pool, members), pool.size - 1)
        at = np.unique(at[pool[at] == members])
        at = at[~taken[at]]
        if at.size > room:
            if whole:
                continue
            at = rng.choice(at, size=room, replace=False)
        taken[at] = True
        count += at.size
    return pool[taken]


def judged_first(workspace: Any) -> list[np.ndarray | Whole]:
    """What an evaluation sample takes first, so it scores as many judged queries as its size allows.

    Every cell scores only queries the new model embedded, and new/new only those whose relevant
    documents it embedded too. So the sample first completes whole judged test queries, then dev
    ones, those with the fewest relevant documents first (a sample too small for all of them scores
    as many as fit, rather than holding part of every query's documents and completing none); then
    the judged queries of each split (test, dev, train) and their relevant documents as far as they fit.
    """
    if not workspace.has_judgments():
        return []
    j = workspace.judgments()
    relevant = j.grades > 0
    wholes: list[np.ndarray | Whole] = []
    rest: list[np.ndarray | Whole] = []
    for split in ("test", "dev", "train"):
        in_split = j.splits == split
        pairs = relevant & in_split
        queries, docs = j.query_ids[pairs], j.item_ids[pairs]
        if split != "train":  # train queries serve training, where part of a query's documents still counts
            order = np.lexsort((docs, queries))
            queries, docs = queries[order], docs[order]
            judged, starts, counts = np.unique(queries, return_index=True, return_counts=True)
            by_cost = np.argsort(counts, kind="stable")  # fewest relevant documents first; ties by query id
            wholes += [Whole(np.append(docs[starts[i]:starts[i] + counts[i]], judged[i])) for i in by_cost]
        rest += [np.unique(j.query_ids[in_split]), np.unique(docs)]
    return wholes + rest


def embed_recorded(workspace: Any, model_name: str, item_ids: Sequence[int] | np.ndarray, *,
                   config: dict[str, Any] | None = None, **options: Any) -> dict[str, Any]:
    """:func:`embed_items` recorded as an ``embed`` run, so a killed embed shows as interrupted.

    The CLI and the app both embed through this; ``config`` adds what the caller chose (split, sample).
    """
    from embridge.core.jobs import check_device_option, recorded_run

    _check_model(workspace, model_name)  # bad options are refused before a run is recorded
    if not isinstance(options.get("device", "auto"), torch.device):
        check_device_option(options.get("device", "auto"))
    if len(item_ids) == 0:
        raise InputError(f"model '{model_name}'", "no items to embed")
    run_config = {"model": model_name, "items": int(len(item_ids)), **(config or {}),
                  **{k: str(v) if k == "device" else v for k, v in options.items()
                     if k in ("batch_size", "chunk_size", "device", "dtype")}}
    with recorded_run(workspace, "embed", model_name, run_config) as record:
        info = embed_items(workspace, model_name, item_ids, **options)
        record["metrics"] = {"vector_set": info["id"], "count": info["count"], "dim": info["dim"]}
    return info


def _check_model(workspace: Any, model_name: str) -> None:
    """Refuse a model name the workspace does not hold, naming the option and the known models, and a
    model whose vectors came from a vector store (it has no file or network to embed anything with)."""
    if not workspace.has_model(model_name):
        known = ", ".join(m["name"] for m in workspace.models()) or "none"
        raise InputError("--model", f"no model named '{model_name}' in the workspace {workspace.root} "
                                    f"(known: {known})")
    row = workspace.model(model_name)
    spec = row.get("spec") or {}
    if spec.get("kind") == "vectors" and not (row.get("path") or spec.get("path")):
        held = f"holds the vectors imported from {spec['source']}" if spec.get("source") else "holds stored vectors"
        raise InputError("--model", f"'{model_name}' {held}: there is no model file to embed other items with, and "
                                    "the items it covers already have their vectors (see 'embridge info')")


def embed_split(workspace: Any, model_name: str, split: str | None = None, sample: int | None = None,
                seed: int = 0, **options: Any) -> dict[str, Any]:
    """Embed the items of ``split`` (every item when None), or a seeded sample of them, as a recorded run.

    With relevance judgments the sample takes the judged queries and documents first (see :func:`judged_first`),
    then the items already holding the model's vectors: asked again after the gallery grew, a sample of the
    same size is the one already embedded (not a fresh draw beside it), and a larger one adds to it.

    ``embridge embed`` and the app's Gallery page both call this, so the same choice embeds the same items.
    """
    ids = workspace.item_ids(split)
    if split and len(ids) == 0:
        splits = [name for name in workspace.split_counts() if name != "unassigned"]
        raise InputError("--split", f"no items in split '{split}'; the workspace's splits: "
                         + (", ".join(splits) or "none (no item has a split)"))
    first = [*judged_first(workspace), workspace.ids_with_vectors(model_name)] if sample else []
    ids = sample_ids(ids, sample, seed, first)
    return embed_recorded(workspace, model_name, ids, config={"split": split, "sample": sample}, **options)
