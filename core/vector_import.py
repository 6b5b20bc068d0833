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

from core.errors import ImportDataError, VectorFileError
from core.qrels import QrelLines, store_qrels
from core.store import Workspace
from core.store.schema import DOC_NAMESPACE, QUERY_NAMESPACE
from core.vector_attach import coverage, key_index, without_stored, write_coverage
from core.vector_files import VectorFile


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
    sides = [(vf.keys, DOC_NAMESPACE, split)]
    if vf.query_keys is not None:
        sides.append((vf.query_keys, QUERY_NAMESPACE, "query"))
    records = []
    for keys, namespace, item_split in sides:
        fallback = namespace == DOC_NAMESPACE and vf.query_keys is None
        if _side_exists(ws, src, key_index(ws, namespace, fallback), keys, namespace, model is not None):
            continue
        records += [{"key": k, "modality": "vector", "split": item_split, "source": str(src)} for k in keys]
    info, skipped = None, 0
    try:
        with ws.transaction():
            created = ws.add_items(records, source=str(src)) if records else []
            if model:
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


def _side_exists(ws: Workspace, src: Path, index: dict[str, int], keys: list[str], namespace: str,
                 attach: bool) -> bool:
    """True when every key names an existing item (and vectors may be attached), False when none does."""
    existing = [k for k in keys if k in index]
    if not existing:
        return False
    what = "query keys" if namespace == QUERY_NAMESPACE else "keys"
    if len(existing) < len(keys):
        new = [k for k in keys if k not in index]
        raise ImportDataError(src, f"{len(existing)} {what} already exist in the workspace, e.g. "
                              f"{', '.join(sorted(existing)[:5])}, and {len(new)} do not, e.g. "
                              f"{', '.join(new[:5])}; a vectors import either adds new items or attaches "
                              "vectors to existing ones")
    if not attach:
        raise ImportDataError(src, f"{len(existing)} {what} already exist in the workspace, e.g. "
                              f"{', '.join(sorted(existing)[:5])}; pass --model NAME to attach vectors to them")
    return True
