"""``embridge import --from URI``: a stored gallery and its (old model's) vectors into a workspace.

Two streaming passes with bounded memory. The first adds the points as items, one transaction per
batch, keyed by the point id (label and text from the named payload fields, the rest as metadata).
The second writes the vectors through the workspace's resumable vector-set writer, in the same
order. An interrupted import resumes: items already imported from this store are skipped, and the
vector writer continues from its last flushed row. The settings of a run are recorded in the
workspace with its first stored batch until it finishes, so a resume with another model, label or
text field, split or served collection is refused rather than finishing a gallery of mixed settings.

A refused import stores nothing: each batch is checked (finite vectors of one width, ids not seen
before in this run) before any of it is stored, a new model is registered in the same transaction
as its first batch, and a refusal later on (a bad batch further in, keys that already exist, a store
that changed) removes the items and the model this run added. Only a stopped or interrupted run
keeps its stored batches, for the next run to resume after.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embridge.core.connectors import open_store
from embridge.core.connectors.check import check_one_version, model_version, unfinished_served
from embridge.core.connectors.connector import SPACE_FIELD, Batch, Connector, VectorStoreError
from embridge.core.connectors.import_lock import one_import_of
from embridge.core.connectors.store_pair import collection_read
from embridge.core.errors import ImportDataError, InputError, StoreError
from embridge.core.keys import char_name, normalise_key, normalise_label, odd_text_char
from embridge.core.l2 import zero_rows
from embridge.core.paths import check_name, name_from
from embridge.core.progress import ProgressFn, StopFn, check_stop, no_progress
from embridge.core.store import Workspace
from embridge.core.store.import_keys import partial_vectors_key, resume_meta_key
from embridge.core.store.items import item_namespace
from embridge.core.vector_lengths import vector_notes

# Bad data or a bad request: the run takes back what it stored. A stop (Cancelled) or a busy or
# full workspace keeps the batches stored so far, which the next run resumes after.
REFUSALS = (InputError, VectorStoreError)
SETTINGS = (("model", "--model"), ("label_field", "--label-field"), ("text_field", "--text-field"),
            ("split", "--split"), ("served", "--from"))


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
    note: str | None = None  # e.g. the vectors came back approximate from a compressed index

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _plain(value: Any) -> Any:
    """A payload value as JSON can hold it: bytes as hex, times in ISO 8601, arrays as lists (else text)."""
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value).hex()
        if hasattr(value, "isoformat"):
            return value.isoformat()
        return value.tolist() if hasattr(value, "tolist") else str(value)


def _records(batch: Batch, source: str, split: str | None, label_field: str | None,
             text_field: str | None) -> list[dict[str, Any]]:
    out = []
    named = source.removeprefix("store:")  # refusals name the store's URI, as every other one does
    for pid, payload in zip(batch.ids, batch.payloads, strict=True):
        where = f"point {pid!r}"
        key = normalise_key(str(pid), named, where)
        if key != str(pid):  # migrations and checks find points by their id as the store spells it
            # both spelt out: 'cafe\u0301' and 'caf\xe9' read alike on a terminal
            raise ImportDataError(named, f"point {ascii(pid)}: an item key is NFC text without a byte-order mark "
                                  f"or outer spaces, and this id would be stored as {ascii(key)}; rename the point")
        text = payload.get(text_field) if text_field else None
        if text_field and text is None:
            raise ImportDataError(named, f"{where} has no '{text_field}' field (--text-field)")
        if text is not None and not isinstance(text, str):
            raise ImportDataError(named, f"{where}: its '{text_field}' field (--text-field) holds "
                                  f"{type(text).__name__} {text!r}, not text")
        if text is not None and (odd := odd_text_char(text)) is not None:  # as a JSONL or CSV text is checked
            raise ImportDataError(named, f"{where}: its '{text_field}' field (--text-field) holds the "
                                  f"{char_name(odd)}")
        label = normalise_label(payload.get(label_field), named, f"{where}, field '{label_field}' (--label-field)") \
            if label_field else None
        skip = {label_field, text_field}
        out.append({"key": key, "label": label,
                    "text": text, "modality": "text" if text is not None else "vector",
                    "split": split, "source": source,
                    "metadata": {k: _plain(v) for k, v in payload.items() if k not in skip and k != SPACE_FIELD}})
    return out


def _new_model(ws: Workspace, name: str, dim: int, uri: str, text_field: str | None) -> dict[str, Any] | None:
    """The spec of the vectors-only model to register, or None when ``name`` exists and can take the vectors.

    Store points bring vectors and payload, no raw inputs (images, or texts without ``--text-field``).
    Attaching them to a model that embeds raw inputs would make items no other model can embed, so
    that is refused: such vectors form a vectors-only model of their own.
    """
    known = {m["name"]: m for m in ws.models()}
    if name not in known:
        check_name(name, "--model")
        role = "other" if any(m["role"] == "old" for m in known.values()) else "old"
        return {"name": name, "kind": "vectors", "modality": "vector", "dim": dim,
                "sha256": hashlib.sha256(f"store:{uri}:{name}".encode()).hexdigest(), "source": uri, "role": role}
    found = known[name]
    if found.get("dim") not in (None, 0, dim):
        raise ImportDataError(uri, f"{dim}-d vectors, but model '{name}' gives {found['dim']}-d vectors")
    if found.get("kind") != "vectors" and not (text_field and found.get("modality") == "text"):
        raw = "texts (pass --text-field to import them)" if found.get("modality") == "text" else "raw inputs"
        raise InputError("--model", f"'{name}' is a {found.get('kind')} model that embeds {raw}, but the store's "
                         "points bring only vectors (no inputs for it or any other model to embed); give a new model "
                         "name to import them as a vectors-only model")
    return None


def import_from_store(ws: Workspace, uri: str, model: str | None = None, label_field: str | None = None,
                      text_field: str | None = None, split: str | None = "gallery", batch_size: int = 4096,
                      on_progress: ProgressFn | None = None, should_stop: StopFn | None = None) -> StoreImportResult:
    """See the module docstring."""
    report = on_progress or no_progress
    store = open_store(uri, "--from")
    try:
        with one_import_of(ws.root, store.uri, collection_read(store)):  # an alias and its collection are one
            # the URI as stored with the items and the model, and printed: never a password or key it holds
            return _import(ws, store, store.uri.recorded, model, label_field, text_field, split, batch_size, report,
                           should_stop)
    finally:
        store.close()



@dataclass
class _Run:
    """One import run: what it may add, and what it added so far (taken back on a refusal)."""

    ws: Workspace
    uri: str
    source: str
    model: str
    spec: dict[str, Any] | None  # the model to register with the first stored batch
    before: int  # the largest item id when the run began: later ids of this source are this run's
    settings: dict[str, Any] | None = None  # recorded with the first stored batch (None: an earlier run did)
    created: bool = False
    recorded: bool = False

    def register_with(self, records: list[dict[str, Any]]) -> list[int]:
        """Store a batch of items, and the new model and this run's settings with the first of them, in
        one transaction; the items' ids, in the order of ``records``."""
        with self.ws.transaction():
            self._register()
            if not records:
                return []
            ids = self.ws.add_items(records, source=self.uri)
            if self.settings is not None and not self.recorded:
                self.ws.set_meta(resume_meta_key(self.source), json.dumps(self.settings))
                self.recorded = True
            return ids

    def finish(self) -> None:
        """Forget the recorded settings: the import is whole, and a later one may use other settings."""
        if self.ws.meta(resume_meta_key(self.source)) is None:
            return  # an import run whole at once, or again: nothing to write
        try:
            self.ws.delete_meta(resume_meta_key(self.source))
        except StoreError:
            pass  # the workspace is busy: the import stands, and the next run of it with these options clears it

    def _register(self) -> None:
        """Register the new model, or join one another import registered since this one began (that one may
        yet be refused and take it back: the spec is kept to make it again); the role is decided now."""
        if self.spec is None or self.created:
            return
        if self.ws.has_model(self.model):
            _new_model(self.ws, self.model, int(self.spec["dim"]), self.uri, None)
            return
        role = "other" if any(m["role"] == "old" for m in self.ws.models()) else self.spec["role"]
        self.ws.add_model(self.model, role, {k: v for k, v in self.spec.items() if k != "role"}, None)
        self.created = True

    def take_back(self) -> None:
        """Remove the items this run stored and the model it registered (a refusal stores nothing)."""
        try:
            with self.ws.transaction():
                self.ws.take_back_items(self.source, self.before)
                if self.created:
                    self.ws.delete_model(self.model)
                if self.recorded:
                    self.ws.delete_meta(resume_meta_key(self.source))
        except StoreError:
            pass  # the workspace is busy: what is left is this source's resumable part, and the refusal is the news
        self.created = self.recorded = False


def _options(settings: dict[str, Any]) -> str:
    """The command-line options that repeat a run's settings, e.g. ``--model v1 --label-field label``."""
    parts = [f"--model {shlex.quote(str(settings.get('model')))}"]
    for field, option in SETTINGS[1:3]:
        if settings.get(field):
            parts.append(f"{option} {shlex.quote(str(settings[field]))}")
    if settings.get("split") not in (None, "gallery"):
        parts.append(f"--split {shlex.quote(str(settings['split']))}")
    return " ".join(parts)


def _said(option: str, value: Any) -> str:
    return f"{option} {shlex.quote(str(value))}" if value is not None else f"no {option}"


def _check_resume(ws: Workspace, uri: str, source: str, settings: dict[str, Any]) -> bool:
    """Refuse to resume an interrupted import of ``source`` with other settings; True when one is resumed.

    Its items are skipped and the rest imported, so other settings would finish a gallery half
    labelled (or split, or with vectors under another model) one way and half another.
    """
    raw = ws.meta(resume_meta_key(source))
    try:
        earlier = json.loads(raw) if raw is not None else None
    except ValueError:
        earlier = None
    if not isinstance(earlier, dict) or not ws.has_items_from(source):
        return False
    for field, option in SETTINGS:
        was, now = earlier.get(field), settings[field]
        if was == now:
            continue
        if field == "served":
            problem = (f"{uri} served the collection '{was}' when its import into this workspace was interrupted, "
                       f"and serves '{now}' now; point it at '{was}' again and re-run with the same options "
                       f"({_options(earlier)}) to finish that import")
        else:
            problem = (f"the import from {uri} into this workspace was interrupted, and it used {_said(option, was)} "
                       f"(this run: {_said(option, now)}); re-run with the same options ({_options(earlier)}) to "
                       "finish it, so that the whole gallery is imported alike (to import it with other options "
                       "instead, use a new workspace)")
        raise InputError(option, problem + "; nothing was imported")
    return True


def _check_points(batch: Batch, uri: str, dim: int) -> None:
    """Refuse a batch before any of it is stored: vectors of the collection's width, all finite, none all zero."""
    if batch.vectors.shape[1] != dim:
        raise ImportDataError(uri, f"{batch.vectors.shape[1]}-d vectors among {dim}-d ones")
    bad = np.flatnonzero(~np.isfinite(batch.vectors).all(axis=1))
    if len(bad):
        raise ImportDataError(uri, f"point {batch.ids[int(bad[0])]!r} holds NaN or inf values; nothing was "
                              "imported")
    zero = zero_rows(batch.vectors)
    if len(zero):
        raise ImportDataError(uri, f"point {batch.ids[int(zero[0])]!r} holds an all-zero vector (no direction to "
                              "compare by); nothing was imported")


def _made_note(spaces: dict[str, int], total: int, model: str) -> str | None:
    """A note when points are vectors a bundle made (``<version>@bundle:<sha>``), not the model's own, or
    carry a space field naming another version than ``model``: perhaps a field of the user's own, which
    the import does not keep as metadata (Embridge writes model versions there)."""
    made = {v: n for v, n in spaces.items() if "@bundle:" in v}
    named = sorted({model_version(v) for v in spaces if v} - {model})
    if not made and named:
        return (f"the points' field '{SPACE_FIELD}' names {', '.join(repr(v) for v in named)}, where Embridge "
                f"records the model version of a point; they were imported as '{model}' vectors and the field "
                "was not kept as metadata (a field of your own by that name: rename it in the store)")
    if not made:
        return None
    version = model_version(next(iter(made)))
    return (f"{sum(made.values())} of the {total} points are {version} vectors a bundle made (field '{SPACE_FIELD}' "
            f"= '{version}@bundle:...'), not {version}'s own: numbers measured on this gallery describe what the "
            "store serves, not the model itself")


def _import(ws: Workspace, store: Connector, uri: str, model: str | None, label_field: str | None,
            text_field: str | None, split: str | None, batch_size: int, report: ProgressFn,
            should_stop: StopFn | None) -> StoreImportResult:
    if not store.exists():
        raise VectorStoreError(f"{store.describe()}: {store.missing()}")
    named = [o for o, f in (("--label-field", label_field), ("--text-field", text_field)) if f]
    if named and not store.has_payload:  # refused before a point is read: no point could have the field
        raise ImportDataError(uri, f"{store.describe()} holds vectors only, no fields: {named[0]} names nothing")
    read = collection_read(store)
    unfinished = unfinished_served(store, read)
    if unfinished is not None:  # a shadow still being written holds part of the gallery, in two spaces
        raise VectorStoreError(f"{unfinished}; nothing was imported")
    served = Path(read).name  # a Parquet alias is a link, possibly to a folder elsewhere: its name keys a resume
    total, dim = store.count(), store.dim()
    if total == 0 or not dim:
        raise ImportDataError(uri, "the collection holds no points")
    name = model or name_from(f"{store.collection}-vectors", "store-vectors")  # a collection's name may hold spaces
    source = f"store:{uri}"
    settings = {"model": name, "label_field": label_field, "text_field": text_field, "split": split,
                "served": served}
    resumed = _check_resume(ws, uri, source, settings)
    spec = _new_model(ws, name, dim, uri, text_field)
    before = ws.last_item_id()
    run = _Run(ws, uri, source, name, spec, before, None if resumed else settings)
    try:
        return _stream(run, store, label_field, text_field, split, batch_size, total, dim, report, should_stop)
    except REFUSALS:
        run.take_back()
        raise


def _stream(run: _Run, store: Connector, label_field: str | None, text_field: str | None, split: str | None,
            batch_size: int, total: int, dim: int, report: ProgressFn, should_stop: StopFn | None
            ) -> StoreImportResult:
    ws, uri, source, name = run.ws, run.uri, run.source, run.model
    namespace = item_namespace(split)
    new_items = done = labelled = 0
    spaces: dict[str, int] = {}
    read_order: list[np.ndarray] = []  # the points' items as the store reads them: the vector set's rows
    for batch in store.read_batches(batch_size):  # pass 1: items
        check_stop(should_stop)
        _check_points(batch, uri, dim)
        check_one_version(batch, spaces, store)
        records = _records(batch, source, split, label_field, text_field)
        labelled += sum(r["label"] is not None for r in records)
        ours = ws.existing_keys([r["key"] for r in records], source=source)
        found = ws.find_keys(sorted(ours), namespace) if ours else {}  # items of an earlier (or stopped) run
        again = [k for k, i in found.items() if i > run.before]
        if again:
            raise ImportDataError(uri, f"the point id {again[0]!r} occurs more than once in the collection")
        fresh = [r for r in records if r["key"] not in ours]
        if fresh:
            found.update(zip((r["key"] for r in fresh), run.register_with(fresh), strict=True))
            new_items += len(fresh)
        read_order.append(np.array([found[r["key"]] for r in records], dtype=np.int64))
        done += len(batch)
        report(done, total, {"stage": "items", "pass": "1 of 2"})
    if label_field and not labelled:  # a misspelt field would import an unlabelled gallery without a word
        raise ImportDataError(uri, f"no point has a '{label_field}' field (--label-field); check its spelling")
    if run.spec is not None and not ws.has_model(name):  # every item came from an earlier, stopped run
        run.register_with([])
    # rows in the store's own order, so a store that gained points before the earlier ones (or lost some)
    # since an earlier import is imported as it is now; items of points it no longer holds keep their vectors
    ids = np.concatenate(read_order) if read_order else np.zeros(0, dtype=np.int64)
    if len(ids) != total:
        raise VectorStoreError(f"{store.describe()}: {total} points counted, but {len(ids)} read; the store "
                               "changed during the import; run it again")
    set_name = split or store.collection
    made = _made_note(spaces, total, name)
    if new_items == 0:  # imported before: the same set again would only duplicate it
        for existing in ws.vector_sets(name):
            if existing["name"] == set_name and existing["count"] == total:
                run.finish()
                return StoreImportResult(uri, store.describe(), total, 0, name, dim, int(existing["id"]), split,
                                         "; ".join(n for n in (store.lossy_note(), made) if n) or None)
    writer = ws.vector_set_writer(name, ids, dim, name=set_name,
                                  resume_key=partial_vectors_key(source))
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
            report(row, total, {"stage": "vectors", "pass": "2 of 2"})  # each pass counts the points once
        info = writer.commit()
    except REFUSALS:
        writer.abort()
        raise
    finally:
        writer.release()  # after a stop or a kill-like error the rows written so far stay for a resume
    run.finish()
    stored = ws.open_vector_set(int(info["id"]), verify=False)[1]
    notes = [n for n in (store.lossy_note(), made, vector_notes(stored, store.metric())) if n]
    return StoreImportResult(uri, store.describe(), total, new_items, name, dim, int(info["id"]), split,
                             "; ".join(notes) or None)
