"""``backfill --to-store``: the re-embedded vectors as points of a vector store, exactly once, by item key.

A point's id is the item's key (the id it had in the store it was imported from; a key that is a
plain integer is written as that integer, as stores key points), never the workspace's own row id.
Each point names its model in the space field (``embridge_space``), as a migration's real new-model
points do, and its vector is L2-normalised as a migration writes them. The collection must be new,
or one that backfills of this model wrote: a migration's collection, an existing empty one, one with
points of another space (a gallery of the old model, points of unknown origin) or another width is
refused before anything is embedded, since writing there would mix spaces or overwrite payloads the
user keeps; so are keys the store cannot take as point ids. Stores whose writes append (Parquet, LanceDB) have the points' ids deleted first,
so a rerun replaces its points instead of adding them again.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from embridge.core.errors import InputError


def point_ids(ws: Any, ids: np.ndarray) -> list[int | str]:
    """The store point id of each item: its key; integers when every key is one ("42", not "042"),
    since a collection keys its points by one type."""
    by_id = {int(it["id"]): str(it["key"]) for it in ws.items(ids=[int(i) for i in ids])}
    keys = [by_id[int(i)] for i in ids]
    if all(k.isascii() and k.isdecimal() and str(int(k)) == k for k in keys):
        return [int(k) for k in keys]
    return keys


def check_store_target(target: Any, model: str, pids: list[int | str] | None = None, dim: int | None = None) -> None:
    """Refuse a collection a backfill of ``model`` must not write into, or points it cannot take (see the
    module docstring): a migration's collection (finished or not), an existing empty one (its settings
    are not Embridge's to choose), one of other points or another width, ids of another type than those
    it holds, and ids the store cannot key by. Nothing is embedded before this."""
    from embridge.core.connectors.check import migration_state, unfinished_reason
    from embridge.core.connectors.connector import SPACE_FIELD

    if pids is not None:
        _check_ids_fit(target, pids)
    if not target.exists():
        return
    migration, problem = migration_state(target, target.collection)
    if migration is not None or problem is not None:
        why = unfinished_reason(migration, problem) or "a migration wrote it (its points are a served gallery)"
        raise InputError("--to-store", f"{target.describe()}: {why}; give a new collection")
    if not target.count():
        raise InputError("--to-store", f"{target.describe()}: already exists, empty; give a new collection (a "
                         "backfill creates its own, with the space field its points carry)")
    other = {space or "(none)": n for space, n in target.space_counts().items() if space != model and n}
    if other:
        held = ", ".join(f"{n} with {space}" for space, n in sorted(other.items()))
        raise InputError("--to-store", f"{target.describe()}: holds points a backfill of '{model}' did not write "
                         f"(field '{SPACE_FIELD}': {held}); give a new collection, so that none of them is mixed "
                         "with or overwritten by the new vectors")
    held_dim = target.dim()
    if dim is not None and held_dim not in (None, dim):
        raise InputError("--to-store", f"{target.describe()}: holds {held_dim}-d vectors; '{model}' gives {dim}-d ones")
    if pids:
        first = next(iter(target.read_batches(1)), None)
        held_ids = list(first.ids) if first is not None else []
        if held_ids and isinstance(held_ids[0], int) != isinstance(pids[0], int):
            kind = "integer" if isinstance(held_ids[0], int) else "text"
            raise InputError("--to-store", f"{target.describe()}: its points have {kind} ids, but these items' keys "
                             f"are not all {kind} (e.g. {pids[0]!r}); give a new collection")


def _check_ids_fit(target: Any, pids: list[int | str]) -> None:
    """Keys the store cannot take as point ids (Qdrant: unsigned integers or UUIDs) are named before embedding."""
    for pid in pids:
        problem = target.id_problem(pid)
        if problem is not None:
            raise InputError("--to-store", f"{target.describe()}: item key {pid!r} cannot be a point id there "
                             f"({problem}); backfill into another kind of store, or import the items with such keys")


def write_store(uri: str, model: str, pids: list[int | str], vectors: np.ndarray, batch_rows: int = 4096) -> None:
    """Write (id, vector) points of ``model`` into ``uri`` once each (creating the collection), each vector
    L2-normalised as a migration writes them (an all-zero one stays zero)."""
    from embridge.core.connectors import Batch, open_store
    from embridge.core.connectors.connector import SPACE_FIELD
    from embridge.core.l2 import l2_normalize

    vectors = l2_normalize(np.asarray(vectors, np.float32), f"vectors of model '{model}'")
    with open_store(uri, "--to-store") as target:
        existed = target.exists()
        if existed:
            check_store_target(target, model, pids, int(vectors.shape[1]))
        payloads = [{SPACE_FIELD: model} for _ in pids]
        if not existed:
            _check_ids_fit(target, pids)
            target.create(vectors.shape[1], sample=Batch(pids[:1], vectors[:1], payloads[:1]))
        else:
            target.delete_ids(list(pids))  # a rerun's points replace themselves, also in append-only stores
        for start in range(0, len(pids), batch_rows):
            rows = slice(start, start + batch_rows)
            target.write(Batch(pids[rows], vectors[rows], payloads[rows]))


def check_store_option(ws: Any, store: str, model: str, ids: np.ndarray | None = None) -> None:
    """``--to-store`` before anything is staged: writable, not a workspace, and a collection it may write
    the points of ``ids`` (their keys and the model's width) into."""
    from embridge.core.connectors import open_store
    from embridge.core.connectors.connector import StoreURI
    from embridge.core.connectors.targets import check_store_output

    parsed = StoreURI.parse(store, "--to-store")
    local = Path(parsed.path) if parsed.path and not parsed.netloc else None
    existed = local is None or local.exists() or local.is_symlink()
    try:
        check_store_output(store, "--to-store", inputs=(Path(ws.root),))
        with open_store(store, "--to-store") as target:
            if not target.writable:
                raise InputError("--to-store", f"{store}: {target.describe()} is read-only in Embridge; "
                                 "give a store it can write (e.g. qdrant://, lancedb://, parquet://)")
            dim = ws.model(model).get("dim")
            check_store_target(target, model, None if ids is None else point_ids(ws, ids),
                               int(dim) if dim else None)
    except InputError as exc:
        if not existed and local is not None and local.is_dir() and not local.is_symlink():
            shutil.rmtree(local, ignore_errors=True)  # what opening a new embedded store made, for a refused target
        if (exc.source or "").startswith("--to-store"):
            raise
        raise InputError("--to-store", str(exc)) from exc
