"""``backfill --to-store``: the re-embedded vectors as points of a vector store, exactly once, by item key.

A point's id is the item's key (the id it had in the store it was imported from; a key that is a
plain integer is written as that integer, as stores key points), never the workspace's own row id.
Each point names its model in the space field (``embridge_space``), as a migration's real new-model
points do. The collection must be new, or one that backfills of this model wrote: a collection with
points of another space (a gallery of the old model, a migration's shadow, points of unknown origin)
is refused before anything is embedded, since writing there would mix spaces or overwrite payloads
the user keeps. Stores whose writes append (Parquet, LanceDB) have the points' ids deleted first,
so a rerun replaces its points instead of adding them again.
"""

from __future__ import annotations

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


def check_store_target(target: Any, model: str) -> None:
    """Refuse a collection a backfill of ``model`` must not write into (see the module docstring)."""
    from embridge.core.connectors.check import unfinished_migration
    from embridge.core.connectors.connector import SPACE_FIELD

    if not target.exists():
        return
    unfinished = unfinished_migration(target, target.collection)
    if unfinished is not None:
        raise InputError("--to-store", f"{target.describe()}: {unfinished}; give a new collection")
    other = {space or "(none)": n for space, n in target.space_counts().items() if space != model}
    if other:
        held = ", ".join(f"{n} with {space}" for space, n in sorted(other.items()))
        raise InputError("--to-store", f"{target.describe()}: holds points a backfill of '{model}' did not write "
                         f"(field '{SPACE_FIELD}': {held}); give a new collection, so that none of them is mixed "
                         "with or overwritten by the new vectors")


def write_store(uri: str, model: str, pids: list[int | str], vectors: np.ndarray, batch_rows: int = 4096) -> None:
    """Write (id, vector) points of ``model`` into ``uri`` once each (creating the collection)."""
    from embridge.core.connectors import Batch, open_store
    from embridge.core.connectors.connector import SPACE_FIELD

    with open_store(uri, "--to-store") as target:
        check_store_target(target, model)
        payloads = [{SPACE_FIELD: model} for _ in pids]
        if not target.exists():
            target.create(vectors.shape[1], sample=Batch(pids[:1], vectors[:1], payloads[:1]))
        elif target.count():
            target.delete_ids(list(pids))  # a rerun's points replace themselves, also in append-only stores
        for start in range(0, len(pids), batch_rows):
            rows = slice(start, start + batch_rows)
            target.write(Batch(pids[rows], vectors[rows], payloads[rows]))


def check_store_option(ws: Any, store: str, model: str) -> None:
    """``--to-store`` before anything is staged: writable, not a workspace, and a collection it may write."""
    from embridge.core.connectors import open_store
    from embridge.core.connectors.targets import check_store_output

    try:
        check_store_output(store, "--to-store", inputs=(Path(ws.root),))
        with open_store(store, "--to-store") as target:
            if not target.writable:
                raise InputError("--to-store", f"{store}: {target.describe()} is read-only in Embridge; "
                                 "give a store it can write (e.g. qdrant://, lancedb://, parquet://)")
            check_store_target(target, model)
    except InputError as exc:
        if (exc.source or "").startswith("--to-store"):
            raise
        raise InputError("--to-store", str(exc)) from exc
