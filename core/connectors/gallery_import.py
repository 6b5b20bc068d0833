"""``embridge import --from URI``: a stored gallery and its (old model's) vectors into a workspace.

Two streaming passes with bounded memory. The first adds the points as items, one transaction per
batch, keyed by the point id (label and text from the named payload fields, the rest as metadata).
The second writes the vectors through the workspace's resumable vector-set writer, in the same
order. An interrupted import resumes: items already imported from this store are skipped, and the
vector writer continues from its last flushed row.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from embridge.core.connectors import open_store
from embridge.core.connectors.connector import SPACE_FIELD, Batch, Connector, VectorStoreError
from embridge.core.errors import ImportDataError
from embridge.core.progress import ProgressFn, StopFn, check_stop, no_progress
from embridge.core.store import Workspace


@dataclass
class StoreImportResult:
    uri: str
    store: str
    count: int
    new_items: int
    model: str
    dim: int
    vector_set: int
    split: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _plain(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return value.tolist() if hasattr(value, "tolist") else str(value)


def _records(batch: Batch, source: str, split: str | None, label_field: str | None,
             text_field: str | None) -> list[dict[str, Any]]:
    out = []
    for pid, payload in zip(batch.ids, batch.payloads, strict=True):
        text = payload.get(text_field) if text_field else None
        if text_field and text is None:
            raise ImportDataError(source, f"point {pid!r} has no '{text_field}' field (--text-field)")
        skip = {label_field, text_field}
        out.append({"key": str(pid), "label": payload.get(label_field) if label_field else None,
                    "text": str(text) if text is not None else None, "modality": "text" if text is not None else "vector",
                    "split": split, "source": source,
                    "metadata": {k: _plain(v) for k, v in payload.items() if k not in skip and k != SPACE_FIELD}})
    return out


def _ensure_model(ws: Workspace, name: str, dim: int, uri: str) -> None:
    known = {m["name"]: m for m in ws.models()}
    if name in known:
        if known[name].get("dim") not in (None, 0, dim):
            raise ImportDataError(uri, f"{dim}-d vectors, but model '{name}' gives {known[name]['dim']}-d vectors")
        return
    role = "other" if any(m["role"] == "old" for m in known.values()) else "old"
    spec = {"name": name, "kind": "vectors", "modality": "vector", "dim": dim,
            "sha256": hashlib.sha256(f"store:{uri}:{name}".encode()).hexdigest(), "source": uri}
    ws.add_model(name, role, spec, None)


def import_from_store(ws: Workspace, uri: str, model: str | None = None, label_field: str | None = None,
                      text_field: str | None = None, split: str | None = "gallery", batch_size: int = 4096,
                      on_progress: ProgressFn | None = None, should_stop: StopFn | None = None) -> StoreImportResult:
    """See the module docstring."""
    report = on_progress or no_progress
    store = open_store(uri, "--from")
    try:
        return _import(ws, store, uri, model, label_field, text_field, split, batch_size, report, should_stop)
    finally:
        store.close()


def _import(ws: Workspace, store: Connector, uri: str, model: str | None, label_field: str | None,
            text_field: str | None, split: str | None, batch_size: int, report: ProgressFn,
            should_stop: StopFn | None) -> StoreImportResult:
    if not store.exists():
        raise VectorStoreError(f"{store.describe()}: no such collection")
    total, dim = store.count(), store.dim()
    if total == 0 or not dim:
        raise ImportDataError(uri, "the collection holds no points")
    name = model or f"{store.collection}-vectors"
    _ensure_model(ws, name, dim, uri)
    source = f"store:{uri}"
    new_items = done = 0
    for batch in store.read_batches(batch_size):  # pass 1: items
        check_stop(should_stop)
        records = _records(batch, source, split, label_field, text_field)
        keys = [r["key"] for r in records]
        ours = ws.existing_keys(keys, source=source)
        fresh = [r for r in records if r["key"] not in ours]
        if fresh:
            ws.add_items(fresh, source=uri)
            new_items += len(fresh)
        done += len(batch)
        report(done, 2 * total, {"stage": "items"})
    ids = ws.item_ids(source=source)
    if len(ids) != total:
        raise VectorStoreError(f"{store.describe()}: {total} points, but {len(ids)} items came from it; the store "
                               "changed during the import")
    set_name = split or store.collection
    if new_items == 0:  # imported before: the same set again would only duplicate it
        for existing in ws.vector_sets(name):
            if existing["name"] == set_name and existing["count"] == total:
                return StoreImportResult(uri, store.describe(), total, 0, name, dim, int(existing["id"]), split)
    writer = ws.vector_set_writer(name, ids, dim, name=set_name,
                                  resume_key=f"store-{hashlib.sha256(source.encode()).hexdigest()[:16]}")
    try:
        row = 0
        for batch in store.read_batches(batch_size):  # pass 2: vectors, in the same order
            check_stop(should_stop)
            end = row + len(batch)
            if end > writer.done_rows:
                expected = ws.keys_of(ids[row:end])
                if expected != [str(i) for i in batch.ids]:
                    raise VectorStoreError(f"{store.describe()}: the store's order changed during the import; "
                                           "run it again")
                writer.write(row, batch.vectors)
            row = end
            report(total + row, 2 * total, {"stage": "vectors"})
        info = writer.commit()
    except VectorStoreError:
        writer.abort()
        raise
    return StoreImportResult(uri, store.describe(), total, new_items, name, dim, int(info["id"]), split)
