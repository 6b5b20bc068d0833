"""Attaching a vector file's rows to workspace items: documents by key, queries by query key.

Both ``embridge import --format vectors --model NAME`` on existing items and ``embed`` with a
vectors-only model come here. The file is streamed (see :mod:`embridge.core.vector_files`) into one
resumable vector set, so neither the file nor the set is ever held in memory whole, and items that
already hold this model's vectors are skipped, so the workspace keeps one copy of each vector.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from embridge.core import vector_files
from embridge.core.errors import InputError
from embridge.core.l2 import zero_rows
from embridge.core.progress import ProgressFn, StopFn, check_stop, no_progress
from embridge.core.store import Workspace
from embridge.core.store.schema import DOC_NAMESPACE, QUERY_NAMESPACE
from embridge.core.store.vector_set_health import held_ids
from embridge.core.vector_files import MatrixReader, VectorFile

WRITE_BLOCKS = 4  # read blocks per durable write (24 MB of 384-d rows): each write costs a flush and a record


@dataclass(frozen=True)
class Segment:
    """Rows of one matrix of the file (ascending) and the items they become, aligned."""

    reader: MatrixReader
    rows: np.ndarray
    item_ids: np.ndarray


@dataclass(frozen=True)
class Coverage:
    """Which workspace items a vector file covers."""

    segments: list[Segment]
    unknown_keys: list[str]  # keys of the file naming no item (documents, then queries)
    unknown_count: int

    @property
    def count(self) -> int:
        return int(sum(len(s.rows) for s in self.segments))

    def item_ids(self) -> np.ndarray:
        return np.concatenate([s.item_ids for s in self.segments]) if self.segments else np.zeros(0, np.int64)


def key_index(ws: Workspace, namespace: str, with_queries: bool = False) -> dict[str, int]:
    """key -> item id for one key namespace (one query; 1M keys take about 100 MB).

    ``with_queries`` lets document keys fall back to query items whose key no document has: a file
    without ``query_ids`` may cover queries by their keys in ``ids``, as before queries had their own
    namespace.
    """
    rows = ws.key_index(namespace)
    if not with_queries:
        return rows
    return {**ws.key_index(QUERY_NAMESPACE), **rows}


def key_ids(ws: Workspace, keys: list[str], namespace: str, with_queries: bool = False) -> np.ndarray:
    """Item id of each key (-1 for none), as :func:`key_index` resolves them.

    Keys naming fewer than half the items are looked up through the key index, 500 a query (about
    1 µs a key); for more, reading the whole namespace once (about 0.5 µs an item) is cheaper.
    """
    if len(keys) * 2 >= ws.item_count():
        index = key_index(ws, namespace, with_queries)
        return np.fromiter((index.get(k, -1) for k in keys), dtype=np.int64, count=len(keys))
    found = ws.find_keys(keys, namespace, with_queries)
    return np.fromiter((found.get(k, -1) for k in keys), dtype=np.int64, count=len(keys))


@dataclass(frozen=True)
class FileSide:
    """One side of a vector file (documents by ``ids``, or queries by ``query_ids``) and the items its
    keys name (-1 for none)."""

    keys: list[str]
    reader: MatrixReader
    namespace: str
    item_ids: np.ndarray


def file_sides(ws: Workspace, vf: VectorFile) -> list[FileSide]:
    """The file's sides with their keys resolved; a file without ``query_ids`` may name query items
    in ``ids`` by keys no document has."""
    has_queries = vf.query_keys is not None and vf.query_vectors is not None
    parts = [(vf.keys, vf.vectors, DOC_NAMESPACE)]
    if has_queries:
        parts.append((vf.query_keys, vf.query_vectors, QUERY_NAMESPACE))
    return [FileSide(keys, reader, namespace,
                     key_ids(ws, keys, namespace, with_queries=namespace == DOC_NAMESPACE and not has_queries))
            for keys, reader, namespace in parts]


def coverage(ws: Workspace, vf: VectorFile, wanted: np.ndarray | None = None) -> Coverage:
    """The file's rows that name workspace items (only ``wanted`` ids when given), in file order."""
    segments, unknown, unknown_count = [], [], 0
    for side in file_sides(ws, vf):
        ids = side.item_ids
        known = ids >= 0
        unknown_count += int((~known).sum())
        unknown.extend(side.keys[i] for i in np.flatnonzero(~known)[:5].tolist())
        keep = known & np.isin(ids, wanted) if wanted is not None else known
        rows = np.flatnonzero(keep)
        if len(rows):
            segments.append(Segment(side.reader, rows, ids[rows]))
    return Coverage(segments, unknown[:5], unknown_count)


def without_stored(ws: Workspace, model: str, cover: Coverage) -> tuple[Coverage, int]:
    """Drop items that already hold vectors of ``model`` in an intact set; returns the rest and how many
    were dropped."""
    stored = held_ids(ws, model)  # a damaged set's items are stored again
    kept, dropped = [], 0
    for seg in cover.segments:
        keep = ~np.isin(seg.item_ids, stored)
        dropped += int((~keep).sum())
        if keep.any():
            kept.append(Segment(seg.reader, seg.rows[keep], seg.item_ids[keep]))
    return Coverage(kept, cover.unknown_keys, cover.unknown_count), dropped


def write_coverage(ws: Workspace, model: str, cover: Coverage, name: str, resume_key: str | None = None,
                   on_progress: ProgressFn | None = None, should_stop: StopFn | None = None,
                   ids_checked: bool = False) -> dict[str, Any]:
    """Stream the covered rows into one vector set of ``model`` and register it; ``ids_checked``: the
    cover's item ids were resolved inside the caller's open write transaction."""
    if not cover.segments:
        raise InputError(f"model '{model}'", "no rows to store")
    first = cover.segments[0].reader
    dtype = first.storage_dtype if all(s.reader.storage_dtype == first.storage_dtype
                                       for s in cover.segments) else "float32"
    writer = ws.vector_set_writer(model, cover.item_ids(), first.dim, dtype, name=name, resume_key=resume_key,
                                  ids_checked=ids_checked)
    progress = on_progress or no_progress
    total, offset = cover.count, 0
    block_rows = vector_files.BLOCK_ROWS * WRITE_BLOCKS
    zeros, zero_item = 0, -1  # all-zero rows stored (said, as embed says those a model gives)
    try:
        for seg in cover.segments:
            for start, block in seg.reader.take(seg.rows, block_rows):
                check_stop(should_stop)
                at = offset + start
                if at + len(block) > writer.done_rows:  # rows a resumed run already holds are not rewritten
                    writer.write(at, block)
                found = zero_rows(block)
                if len(found) and not zeros:
                    zero_item = int(seg.item_ids[start + int(found[0])])
                zeros += len(found)
                progress(at + len(block), total, {"model": model})
            offset += len(seg.rows)
        info = writer.commit()
        if zeros:
            info.update(zero_vectors=zeros, zero_vector_example=str(ws.items(ids=[zero_item])[0]["key"]))
        return info
    except BaseException as exc:
        from embridge.core.errors import Cancelled

        if resume_key is None or not isinstance(exc, Cancelled | KeyboardInterrupt):
            writer.abort()
        writer.release()  # the rows written so far stay for the next run
        raise


def embed_with_vectors_file(ws: Workspace, model: str, spec: Any, item_ids: np.ndarray, name: str,
                            resume_key: str, on_progress: ProgressFn | None = None,
                            should_stop: StopFn | None = None, resume: bool = True) -> dict[str, Any]:
    """``embed`` with a vectors-only model: store exactly the requested items its file covers.

    Requested items the file lacks are left without vectors (counted in ``not_covered``); items
    already holding this model's vectors are not stored again (``already_stored``). Returns the new
    vector set's info, or the model's newest set with ``written`` 0 when nothing was new.
    """
    from embridge.core.errors import CheckpointError, VectorFileError
    from embridge.core.models.spec import checkpoint_unchanged, require_exists
    from embridge.core.store.vector_set_health import held_ids

    wanted = np.asarray(item_ids, dtype=np.int64)
    held = held_ids(ws, model)
    if len(held) and np.isin(wanted, held).all():  # every item holds its vectors: the file is not read
        sets = ws.vector_sets(model)
        return {**sets[-1], "written": 0, "already_stored": int(len(wanted)), "held_in": [int(v["id"]) for v in sets]}
    path = require_exists(spec.path)
    if spec.sha256 and not checkpoint_unchanged(path, spec.sha256):
        raise CheckpointError(path, "file changed since the model was added (sha256 differs)")
    try:
        vf = VectorFile.open(path)
    except VectorFileError as exc:
        raise CheckpointError(path, exc.problem) from exc
    cover = coverage(ws, vf, wanted=np.asarray(item_ids, dtype=np.int64))
    if not cover.count:
        raise CheckpointError(path, f"none of the {len(item_ids)} items to embed has a vector in this file "
                              "(documents are looked up in 'ids', queries in 'query_ids')")
    fresh, skipped = without_stored(ws, model, cover)
    extra = {"not_covered": int(len(item_ids) - cover.count), "already_stored": skipped}
    if not fresh.count:
        newest = ws.vector_sets(model)[-1]
        return {**newest, "written": 0, **extra}
    if not resume:
        ws.vector_set_writer(model, fresh.item_ids(), vf.dim, fresh.segments[0].reader.storage_dtype,
                             name=name, resume_key=resume_key).abort()
    try:
        info = write_coverage(ws, model, fresh, name, resume_key, on_progress, should_stop)
    except VectorFileError as exc:
        raise CheckpointError(path, exc.problem) from exc
    return {**info, "written": info["count"], **extra}
