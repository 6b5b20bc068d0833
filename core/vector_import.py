"""``embridge import --format vectors``: new items from a vector file, or vectors for existing ones.

Each side of the file (documents by ``ids``, queries by ``query_ids``) either names no item yet,
and its keys become new items (queries of split 'query'), or names only existing items, and with
``--model`` its vectors are attached to them; a side naming some existing items and some new ones
is refused, since that is almost always a mismatch of key formats. With ``--model`` the vectors are
streamed into one vector set of that model (a file without ``query_ids`` may name query items in
``ids``, by keys no document has); items already holding vectors of the model keep
them, so the workspace stores each vector once. Everything is one transaction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from embridge.core.errors import ImportDataError, VectorFileError
from embridge.core.qrels import QrelLines, store_qrels
from embridge.core.store import Workspace
from embridge.core.store.schema import DOC_NAMESPACE, QUERY_NAMESPACE
from embridge.core.vector_attach import Coverage, Segment, coverage, key_ids, without_stored, write_coverage
from embridge.core.vector_files import MatrixReader, VectorFile


def import_vector_file(ws: Workspace, src: Path, split: str | None, model: str | None,
                       ids_path: str | Path | None, qrels: QrelLines | None = None,
                       qrels_seed: int = 0) -> dict[str, Any]:
    """Import or attach one vector file (see the module docstring); returns a summary dict."""
    vf = VectorFile.open(src, Path(ids_path) if ids_path else None)
    if model:
        dim = ws.model(model).get("dim")  # fail before writing when the model is unknown or gives other dims
        if isinstance(dim, int) and dim > 0 and vf.dim != dim:
            raise VectorFileError(src, f"{vf.dim}-d vectors, but model '{model}' gives {dim}-d vectors")
    else:
        for reader in (vf.vectors, vf.query_vectors):
            for _ in reader.blocks() if reader is not None else ():
                pass  # checks every row is finite, as an import with a model would
    sides = [(vf.keys, vf.vectors, DOC_NAMESPACE, split)]
    if vf.query_keys is not None and vf.query_vectors is not None:
        sides.append((vf.query_keys, vf.query_vectors, QUERY_NAMESPACE, "query"))
    records: list[dict[str, Any]] = []
    fresh: list[tuple[MatrixReader, int, int]] = []  # sides that become new items: reader, first record, count
    for keys, reader, namespace, item_split in sides:
        fallback = namespace == DOC_NAMESPACE and vf.query_keys is None
        if _side_exists(ws, src, key_ids(ws, keys, namespace, fallback), keys, namespace, model is not None):
            continue
        fresh.append((reader, len(records), len(keys)))
        records += [{"key": k, "modality": "vector", "split": item_split, "source": str(src)} for k in keys]
    info, skipped = None, 0
    try:
        with ws.transaction():
            created = ws.add_items(records, source=str(src)) if records else []
            if model:
                if len(fresh) == len(sides):  # every row is a new item: its id is known, nothing is stored yet
                    ids = np.asarray(created, dtype=np.int64)
                    cover = Coverage([Segment(r, np.arange(n), ids[at:at + n]) for r, at, n in fresh], [], 0)
                else:
                    cover, skipped = without_stored(ws, model, coverage(ws, vf))
                if cover.count:
                    info = write_coverage(ws, model, cover, name=split or src.stem)
            stored = store_qrels(ws, qrels, qrels_seed) if qrels is not None else None
    except BaseException:
        if info is not None:  # registered in the rolled-back transaction: its files belong to nobody
            for rel in (info["file"], info["ids_file"]):
                (ws.root / rel).unlink(missing_ok=True)
        raise
    return {"path": str(src), "format": "vectors", "count": len(created), "split": split,
            "vector_set": info["id"] if info else None, "attached": info["count"] if info else 0,
            "already_stored": skipped, "qrels": stored.to_dict() if stored else None}


def _side_exists(ws: Workspace, src: Path, ids: np.ndarray, keys: list[str], namespace: str,
                 attach: bool) -> bool:
    """True when every key names an existing item (and vectors may be attached), False when none does."""
    known = ids >= 0
    if not known.any():
        return False
    existing = [keys[i] for i in np.flatnonzero(known).tolist()]
    what = "query keys" if namespace == QUERY_NAMESPACE else "keys"
    if len(existing) < len(keys):
        new = [keys[i] for i in np.flatnonzero(~known).tolist()]
        raise ImportDataError(src, f"{len(existing)} {what} already exist in the workspace, e.g. "
                              f"{', '.join(sorted(existing)[:5])}, and {len(new)} do not, e.g. "
                              f"{', '.join(new[:5])}; a vectors import either adds new items or attaches "
                              "vectors to existing ones")
    if not attach:
        raise ImportDataError(src, f"{len(existing)} {what} already exist in the workspace, e.g. "
                              f"{', '.join(sorted(existing)[:5])}; pass --model NAME to attach vectors to them")
    return True
