"""New-model vectors attached during a migration: which points get them, in which order.

A partial backfill gives real new-model vectors to some points and the bundle's transform to the
rest (both live in the new space). ``random`` picks a seeded random subset; ``planner`` picks the
points the bundle serves worst first, largest residual ``‖h(o) − n‖`` between the transformed old
vector and the real new one, the same policy the partial-backfill report calls largest_residual.
"""

from __future__ import annotations

import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embridge.core.connectors.connector import Connector, PointId
from embridge.core.connectors.transform import StoreTransform
from embridge.core.errors import InputError
from embridge.core.l2 import l2_normalize, zero_rows
from embridge.core.progress import ProgressFn, StopFn, check_stop, no_progress
from embridge.core.store.vector_matrix import check_finite

ORDERS = ("random", "planner")


@dataclass
class NewVectors:
    """Real new-model vectors by point id (ids compared as text, as stores differ in id types)."""

    path: Path
    index: dict[str, int]
    vectors: np.ndarray

    def lookup(self, pid: PointId) -> int | None:
        return self.index.get(str(pid))


def read_new_vectors(path: str | Path, dim: int, option: str = "--new-vectors") -> NewVectors:
    """An ``.npz`` with arrays ``ids`` (point ids) and ``vectors`` (n, dim) of the new model."""
    from embridge.core.paths import check_regular

    file = check_regular(path, f"{option} file", folders=False)  # a FIFO would block the read for good
    try:
        data = np.load(file, mmap_mode="r", allow_pickle=False)  # an .npy is mapped, not read, to be refused
        if isinstance(data, np.ndarray):  # a plain .npy: vectors without the point ids they belong to
            del data
            raise InputError(file, f"{option} needs an .npz with arrays 'ids' and 'vectors', not a plain .npy "
                             "array (it holds no point ids): save both with numpy.savez(FILE, ids=..., vectors=...)")
        with data:
            if "ids" not in data or "vectors" not in data:
                raise InputError(file, f"{option} needs an .npz with arrays 'ids' and 'vectors' (found {list(data)})")
            ids, raw = data["ids"], data["vectors"]
            if ids.ndim != 1 or ids.dtype.kind not in "iuUS":  # an id of (n, 1) read as the text '[1186]'
                raise InputError(file, f"{option}: 'ids' must be one row of integers or text, got {ids.dtype} of "
                                 f"shape {ids.shape}")
            if raw.dtype.kind not in "fiu":  # text or objects would be parsed as numbers, or fail half-way
                raise InputError(file, f"{option}: vectors must be floats or integers, got {raw.dtype}")
            vectors = np.asarray(raw, dtype=np.float32)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # EOFError: an empty file
        if isinstance(exc, InputError):
            raise
        raise InputError(file, f"unreadable {option} file ({'it is empty' if isinstance(exc, EOFError) else exc})") from exc
    if vectors.ndim != 2 or vectors.shape[1] != dim or len(ids) != len(vectors):
        raise InputError(file, f"expected {len(ids)} new-model vectors of dimension {dim}, got shape {vectors.shape}")
    check_finite(vectors, str(file))
    keys = [str(i) for i in ids.tolist()]
    zero = zero_rows(vectors)
    if len(zero):  # written L2-normalised, as every point: a zero vector has no direction to write
        raise InputError(file, f"the new-model vector of id {keys[int(zero[0])]!r} is all zeros ({len(zero)} such "
                         "vectors): it has no direction; leave the point out of the file or re-embed it")
    index = {k: n for n, k in enumerate(keys)}
    if len(index) != len(keys):
        twice, times = next((k, n) for k, n in Counter(keys).items() if n > 1)
        repeats = len(keys) - len(index)
        raise InputError(file, f"id {twice!r} appears {times} times in the new-model vectors ({repeats} "
                         f"repeated {'id' if repeats == 1 else 'ids'} in all); give each point one vector")
    return NewVectors(file, index, vectors)


def choose_backfill(order: str, new: NewVectors, budget: int | None, source: Connector, transform: StoreTransform,
                    batch_size: int, seed: int = 0, on_progress: ProgressFn | None = None,
                    should_stop: StopFn | None = None) -> set[str]:
    """The ids (as text) that get their real new vector: the first ``budget`` in the chosen order."""
    if order not in ORDERS:
        raise InputError("--order", f"unknown order '{order}' (use {' or '.join(ORDERS)})")
    keys = list(new.index)
    take = len(keys) if budget is None else max(0, min(int(budget), len(keys)))
    if order == "random":
        chosen = np.random.default_rng(seed).permutation(len(keys))[:take]
        return {keys[i] for i in chosen}
    report = on_progress or no_progress
    residual = np.full(len(keys), -1.0)
    total, done = source.count(), 0
    for batch in source.read_batches(batch_size):
        check_stop(should_stop)
        rows = [(n, new.lookup(pid)) for n, pid in enumerate(batch.ids)]
        rows = [(n, r) for n, r in rows if r is not None]
        if rows:
            at, where = np.array([n for n, _ in rows]), np.array([r for _, r in rows])
            adapted = l2_normalize(transform.apply(batch.vectors[at]))
            residual[where] = np.linalg.norm(adapted - l2_normalize(new.vectors[where], str(new.path)), axis=1)
        done += len(batch)
        report(done, total, {"stage": "ordering the backfill"})
    order_rows = np.argsort(-residual, kind="stable")[:take]
    return {keys[i] for i in order_rows if residual[i] >= 0}


def unmatched_warning(new: NewVectors | None, backfill: int | None, attached: int, points: int) -> str | None:
    """A warning when fewer points got real new vectors than were asked for (``--backfill``, else every id
    of ``--new-vectors``): a file with fewer vectors than that (none at all included), or ids that are not
    the source's point ids, would otherwise pass as a finished partial backfill, whatever the order.
    ``points``: how many the source holds (asking for more than that is asking for all of them)."""
    if new is None:
        return None
    held = len(new.index)
    if held == 0:
        asked = f" where {backfill} were asked for (--backfill {backfill})" if backfill is not None else ""
        return (f"WARNING: 0 points got real new vectors{asked}: {new.path} holds no new-model vectors, so every "
                "point went through the bundle")
    wanted = min(held if backfill is None else int(backfill), points)  # --backfill N is at most N of the points
    if attached >= wanted:
        return None
    asked = f"--backfill {backfill}" if backfill is not None else f"all {held} ids of --new-vectors"
    reasons = []
    if held < wanted:
        reasons.append(f"{new.path} holds only {held} new-model vectors")
    if attached < min(wanted, held):
        reasons.append(f"the other ids of {new.path} name no point of the source, whose points went through the "
                       "bundle instead: check that those ids are the source's point ids")
    return f"WARNING: {attached} points got real new vectors where {wanted} were asked for ({asked}); " + \
        "; ".join(reasons)
