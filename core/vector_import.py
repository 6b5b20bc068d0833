"""``embridge import --format vectors``: new items from a vector file, or vectors for existing ones.

Each side of the file (documents by ``ids``, queries by ``query_ids``) either names no item yet,
and its keys become new items (queries of split 'query'), or names only existing items, and with
``--model`` its vectors are attached to them; a side naming some existing items and some new ones
is refused, since that is almost always a mismatch of key formats. With ``--model`` the vectors are
streamed into one vector set of that model (a file without ``query_ids`` may name query items in
``ids``, by keys no document has); items already holding vectors of the model keep
them, so the workspace stores each vector once. Keys are looked up in the namespace of the items
they name or become, as every importer does: ``ids`` imported with ``--split query`` among the
queries, so a query may share a document's key. Everything is one transaction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from embridge.core import stop_signals
from embridge.core.errors import ImportDataError, VectorFileError
from embridge.core.formatting import counted, for_example
from embridge.core.paths import name_from
from embridge.core.qrels import QrelLines, store_qrels
from embridge.core.store import Workspace
from embridge.core.store.items import QUERY_SPLIT, item_namespace
from embridge.core.store.schema import DOC_NAMESPACE, QUERY_NAMESPACE
from embridge.core.vector_attach import (
    Coverage,
    FileSide,
    Segment,
    file_sides,
    key_ids,
    without_stored,
    write_coverage,
)
from embridge.core.vector_files import VectorFile
from embridge.core.vector_lengths import vector_notes


def import_vector_file(ws: Workspace, src: Path, split: str | None, model: str | None,
                       ids_path: str | Path | None, qrels: QrelLines | None = None,
                       qrels_seed: int = 0) -> dict[str, Any]:
    """Import or attach one vector file (see the module docstring); returns a summary dict."""
    vf = VectorFile.open(src, Path(ids_path) if ids_path else None)
    if model:
        _check_own_file_unchanged(ws, model, src)
        dim = ws.model(model).get("dim")  # fail before writing when the model is unknown or gives other dims
        if isinstance(dim, int) and dim > 0 and vf.dim != dim:
            raise VectorFileError(src, f"{vf.dim}-d vectors, but model '{model}' gives {dim}-d vectors")
        vf.check_spread()  # as model add checks a vectors-only model's file: each member, naming it
    else:
        _check_every_row(vf)  # as an import with a model checks the rows it stores
    records: list[dict[str, Any]] = []
    info, skipped = None, 0
    try:
        # keys resolved inside it: the ids stay items until the vectors are registered; a stop signal that
        # arrives once the commit begins waits until the command ends (it then reads as done)
        with stop_signals.job_scope(), ws.transaction(result=True):
            sides = _sides(ws, vf, src, split, model is not None)
            segments: list[Segment | None] = []  # per side: its existing items, or None for new items
            for side in sides:
                if _side_exists(src, side, model is not None):
                    segments.append(Segment(side.reader, np.arange(len(side.keys)), side.item_ids))
                    continue
                segments.append(None)
                split_of = QUERY_SPLIT if side.namespace == QUERY_NAMESPACE else split
                records += [{"key": k, "modality": "vector", "split": split_of, "source": str(src)}
                            for k in side.keys]
            created = ws.add_items(records, source=str(src)) if records else []
            if model:
                ids, at, parts = np.asarray(created, dtype=np.int64), 0, []
                for side, segment in zip(sides, segments, strict=True):
                    if segment is None:  # new items: their ids are known and nothing is stored yet
                        segment = Segment(side.reader, np.arange(len(side.keys)), ids[at:at + len(side.keys)])
                        at += len(side.keys)
                    parts.append(segment)
                cover = Coverage(parts, [], 0)
                if any(s is not None for s in segments):
                    cover, skipped = without_stored(ws, model, cover)
                    if skipped:  # rows not stored are checked too: a broken file is refused, not passed over
                        _check_every_row(vf)
                if cover.count:
                    info = write_coverage(ws, model, cover, name=split or name_from(src.stem, "vectors"),
                                          ids_checked=True)
            stored = store_qrels(ws, qrels, qrels_seed) if qrels is not None else None
    except BaseException:
        if info is not None and not _registered(ws, info["file"]):  # rolled back: its files belong to nobody
            for rel in (info["file"], info["ids_file"]):
                (ws.root / rel).unlink(missing_ok=True)
        raise
    note = vector_notes(ws.open_vector_set(int(info["id"]), verify=False)[1]) if info else None
    return {"path": str(src), "format": "vectors", "count": len(created), "split": split,
            "vector_set": info["id"] if info else None, "attached": info["count"] if info else 0,
            "already_stored": skipped, "qrels": stored.to_dict() if stored else None, "note": note,
            **{k: info[k] for k in ("zero_vectors", "zero_vector_example") if info and k in info}}


def _check_own_file_unchanged(ws: Workspace, model: str, src: Path) -> None:
    """The model's own file (a vectors-only model references it where it lies) attached again must hold what
    was added: ``embed`` refuses it once it changed, and so does this path (other files may be attached)."""
    from embridge.core.models.spec import checkpoint_unchanged

    row = ws.model(model)
    own, sha = row.get("path"), (row.get("spec") or {}).get("sha256")
    if row.get("kind") != "vectors" or not own or not sha:
        return
    try:
        same = Path(own).resolve() == src.resolve()
    except OSError:
        return
    if same and not checkpoint_unchanged(src, sha):
        raise VectorFileError(src, f"the file of model '{model}' changed since the model was added (sha256 "
                              "differs), as embed refuses it too; add the changed file as another model")


def _check_every_row(vf: VectorFile) -> None:
    """Read every row of the file: a NaN, an inf or a wrong shape is refused naming the file and row."""
    for reader in (vf.vectors, vf.query_vectors):
        for _ in reader.blocks() if reader is not None else ():
            pass


def _sides(ws: Workspace, vf: VectorFile, src: Path, split: str | None, attach: bool) -> list[FileSide]:
    """The file's sides with their keys resolved in the namespace their items have or will have.

    ``ids`` of a file without ``query_ids`` imported as ``--split query`` become queries, so their
    keys are looked up among queries only: a query may share a document's key, as in a CSV or JSONL
    import. Imported as documents without ``--model``, they are looked up among documents only;
    with ``--model`` (attaching), a key no document has may name a query (see the module docstring).
    """
    namespace = item_namespace(split)
    if vf.query_keys is not None:
        if namespace == QUERY_NAMESPACE:
            raise ImportDataError(src, "--split query would make the file's 'ids' queries, but it holds "
                                  "'query_ids' for its queries ('ids' are documents); import it without "
                                  "--split query")
        return file_sides(ws, vf)
    if namespace == DOC_NAMESPACE and attach:
        return file_sides(ws, vf)
    return [FileSide(vf.keys, vf.vectors, namespace, key_ids(ws, vf.keys, namespace))]


def _registered(ws: Workspace, file: str) -> bool:
    """Whether a vector set with this file is stored: a stop that lands once the transaction has committed
    must not take the stored set's files away (the set would be listed with no vectors behind it)."""
    try:
        return ws.vector_file_registered(file)
    except Exception:  # noqa: BLE001 - the database itself failed: keep the files, a later open sweeps orphans
        return True


def _side_exists(src: Path, side: FileSide, attach: bool) -> bool:
    """True when every key names an existing item (and vectors may be attached), False when none does."""
    keys, known = side.keys, side.item_ids >= 0
    if not known.any():
        return False
    existing = [keys[i] for i in np.flatnonzero(known).tolist()]
    what = counted(len(existing), "query key" if side.namespace == QUERY_NAMESPACE else "key")
    exist = f"{what} already {'exists' if len(existing) == 1 else 'exist'} in the workspace{for_example(sorted(existing))}"
    if len(existing) < len(keys):
        new = [keys[i] for i in np.flatnonzero(~known).tolist()]
        raise ImportDataError(src, f"{exist}, and {len(new)} {'does' if len(new) == 1 else 'do'} not"
                              f"{for_example(new)}; a vectors import either adds new items or attaches "
                              "vectors to existing ones")
    if not attach:
        raise ImportDataError(src, f"{exist}; pass --model NAME to attach vectors to them")
    return True
