"""Migrating a stored gallery to a new model's space through a bundle, without downtime.

The source collection is only read. Points stream through the bundle's forward transform (or, for
the points chosen for a partial backfill, take their real new-model vector) into a *shadow*
collection; every written point names its space in the ``embridge_space`` payload field. After the
last batch the shadow is verified (counts, the space of every point, and the written vectors of a
sample against the bundle applied to the source), and only then, with ``switch``, the alias moves to
it in one atomic step. ``rollback`` points the alias back.

Exactly once, across kill -9: a checkpoint (beside the store, or in the database for PostgreSQL)
records the source cursor and the count written. Before a batch is written its ids are recorded as
*pending*; after it is written the cursor advances and the pending mark is cleared. A resumed run
first deletes whatever a pending batch may have left in the shadow, then writes it again, so even
append-only stores end with every point exactly once. Running a finished migration again only
re-verifies it.

Throughput: a background thread reads and transforms the next batch while this one is written
(:class:`~embridge.core.connectors.prefetch.Prefetch`); writes and checkpoints stay in one thread, in order,
so the read-ahead changes nothing of the above.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from embridge.core.connectors.aliases import rollback_store, switch_alias
from embridge.core.connectors.backfill_order import (
    NewVectors,
    choose_backfill,
    read_new_vectors,
    unmatched_warning,
)
from embridge.core.connectors.check import missing_error, unfinished_served
from embridge.core.connectors.connector import SPACE_FIELD, Batch, Connector, VectorStoreError
from embridge.core.connectors.job_lock import job_lock
from embridge.core.connectors.migration_checkpoint import other_engines_shadow, resumable_state
from embridge.core.connectors.migration_fingerprint import read_columns
from embridge.core.connectors.migration_result import MigrationResult
from embridge.core.connectors.migration_verify import ForeignShadowError, unit_row, verify_migration
from embridge.core.connectors.prefetch import Prefetch
from embridge.core.connectors.source_checks import SeenIds, SourceDataError, check_source_spaces
from embridge.core.connectors.source_digest import (
    SourceChangedError,
    batch_digest,
    check_copied_unchanged,
    read_batch_size,
    record_batch,
    start_record,
)
from embridge.core.connectors.store_pair import collection_read, open_pair, state_key
from embridge.core.connectors.targets import (
    alias_to_switch,
    writable_target_alias,
)
from embridge.core.connectors.transform import StoreTransform, load_transform
from embridge.core.errors import Cancelled, EmbridgeError, InputError, UsageError
from embridge.core.heap import cap_malloc_arenas, release_free_memory
from embridge.core.progress import ProgressFn, StopFn, check_stop, no_progress

__all__ = ["migrate_store", "rollback_store", "switch_alias", "verify_migration"]

# Batches read and transformed ahead of the one being written: the read side runs while the store
# writes, and at most depth + 1 batches are in memory (the one being written, the next being made).
PREFETCH_DEPTH = 1


def space_names(transform: StoreTransform) -> dict[str, str]:
    """Payload values: real new-model vectors, and the bundle's transform of old ones."""
    return {"new": transform.new_space, "adapted": f"{transform.new_space}@bundle:{transform.adapter_sha256[:12]}",
            "old": transform.old_space}


BATCH_POINTS = 4096  # points read, transformed and written at a time unless --batch says otherwise


def migrate_store(bundle: str | Path, source_uri: str, target_uri: str, *, order: str = "random",
                  switch: bool = False, alias: str | None = None, batch_size: int = BATCH_POINTS,
                  new_vectors: str | Path | None = None, backfill: int | None = None, seed: int | None = None,
                  on_progress: ProgressFn | None = None, should_stop: StopFn | None = None) -> MigrationResult:
    """See the module docstring; raises EmbridgeError subclasses naming the option or store at fault."""
    if batch_size < 1:
        raise InputError("--batch", f"must be at least 1, got {batch_size}")
    if new_vectors is None and (order != "random" or backfill is not None or seed is not None):
        option = "--order" if order != "random" else "--backfill" if backfill is not None else "--seed"
        raise UsageError(option, "chooses which points get real new-model vectors; give those with "
                         "--new-vectors FILE.npz")
    alias = alias_to_switch(alias, target_uri, switch)  # an option error, found before any file or store is read
    seed = 0 if seed is None else seed
    report = on_progress or no_progress
    cap_malloc_arenas()  # before the stores' client libraries start their threads
    transform = load_transform(bundle)
    new = read_new_vectors(new_vectors, transform.out_dim) if new_vectors is not None else None
    source, target = open_pair(source_uri, target_uri, (bundle, new_vectors))
    try:
        writable_target_alias(target, alias)
        if switch and not target.supports_alias:
            target.set_alias(alias or "", target.collection)  # raises the store's own explanation
        return _run(transform, source, target, new, order, backfill, seed, batch_size, switch, alias,
                    report, should_stop)
    finally:
        target.close()
        source.close()


def _stopped_part_way(exc: EmbridgeError, target: Connector, written: int, total: int) -> EmbridgeError:
    """``exc``, saying what the target holds when a refusal came after some points were written (a NaN in
    a later batch of the source, say): the shadow is a resumable migration, not an empty store."""
    if written <= 0 or isinstance(exc, Cancelled):
        return exc
    mend = "mend the source and run" if isinstance(exc, SourceDataError) else "once that is mended, run"
    return VectorStoreError(f"{exc}; {target.describe()} now holds {written} of the {total} points of this "
                            f"unfinished migration: {mend} the same migration again (it resumes there), or drop that "
                            "collection")


def _source_unchanged(source: Connector, target: Connector, state: dict[str, Any], key: str, outcome: str) -> None:
    """:func:`check_copied_unchanged`; an unfinished migration's changed source is recorded in its checkpoint
    (``check`` then says a rerun cannot finish it, rather than to run it again), and cleared once the source
    is as copied. A passing read error is no change, and is not recorded."""
    try:
        check_copied_unchanged(source, target, state, outcome)
    except SourceChangedError:
        if state.get("status") != "complete":
            state["source_changed"] = True
            target.save_state(key, state)
        raise
    if state.pop("source_changed", None):
        target.save_state(key, state)


def _changed_since_copied(source: Connector, target: Connector, state: dict[str, Any]) -> str | None:
    """For a rerun of a complete migration: a note when the source no longer holds what was copied. The
    shadow may already serve, so the note names the change and no 'drop'."""
    try:
        check_copied_unchanged(source, target, state)
    except SourceChangedError:
        return (f"{source.describe()} changed since the migration copied it (points edited, removed, added or "
                f"moved): '{target.collection}' does not hold those changes; migrate into a new collection to take "
                "them")
    return None


def _fingerprint(transform: StoreTransform, source: Connector, target: Connector, total: int,
                 new: NewVectors | None, order: str, backfill: int | None, seed: int) -> dict[str, Any]:
    # the collection read, not an alias naming it: a rerun after the switch and a later check find it by name
    found = {"bundle": transform.adapter_sha256, "source": source.location(), "source_collection": collection_read(source),
             "target": target.collection, "source_count": total, "order": order, "backfill": backfill, "seed": seed,
             "new_vectors": hashlib.sha256(new.vectors.tobytes()).hexdigest() if new is not None else None}
    columns = read_columns(source)
    return {**found, "source_columns": columns} if columns else found  # as before when the URI names none


def _run(transform: StoreTransform, source: Connector, target: Connector, new: NewVectors | None, order: str,
         backfill: int | None, seed: int, batch_size: int, switch: bool, alias: str | None,
         report: ProgressFn, should_stop: StopFn | None) -> MigrationResult:
    if not source.exists():
        raise missing_error(source, "--from")
    unfinished = unfinished_served(source, collection_read(source))
    if unfinished is not None:  # a shadow still being written: its migration would serve part of a gallery
        raise VectorStoreError(f"{unfinished}; nothing was written")
    source.check_carried()  # before any checkpoint or shadow: vectors the shadow would lose are refused
    made = check_source_spaces(source, transform)  # before the width: a shadow given as the source is named as one
    dim = source.dim()
    if dim is None and source.count() == 0:
        dim = transform.in_dim  # no point to tell the width by: the shadow of an empty source is empty too
    if dim != transform.in_dim:
        raise VectorStoreError(f"{source.describe()}: holds {dim}-d vectors, the bundle {transform.path} maps "
                               f"{transform.in_dim}-d {transform.old_space} vectors")
    total = source.count()
    key = state_key(target)
    with job_lock(target, key):
        return _locked_run(transform, source, target, new, order, backfill, seed, batch_size, switch, alias, report,
                           should_stop, total, key, made)


def _locked_run(transform: StoreTransform, source: Connector, target: Connector, new: NewVectors | None, order: str,
                backfill: int | None, seed: int, batch_size: int, switch: bool, alias: str | None,
                report: ProgressFn, should_stop: StopFn | None, total: int, key: str,
                made: str | None = None) -> MigrationResult:
    fingerprint = _fingerprint(transform, source, target, total, new, order, backfill, seed)
    other_engines_shadow(target, f"ray-{key}", "ray")
    state = resumable_state(target, key, fingerprint)
    names = space_names(transform)
    started = time.perf_counter()
    saved = state is not None
    if state is None:  # recorded only once the first batch has passed its checks, just before the target is made
        state = {"fingerprint": fingerprint, "cursor": None, "written": 0, "pending": None, "status": "running",
                 "backfill_ids": None, "spaces": names}  # spaces: what a rollback to the source serves again
        start_record(state, batch_size)
    resumed_from, was_complete = int(state["written"]), state["status"] == "complete"
    if state["cursor"] is not None and not was_complete:  # a resume: the points copied must still be the source's
        _source_unchanged(source, target, state, key, "nothing more was written")
    if state["status"] == "running" and not copied(state):
        chosen: set[str] = set()
        if new is not None:
            if state.get("backfill_ids") is None:
                chosen = choose_backfill(order, new, backfill, source, transform, batch_size, seed, report, should_stop)
                state["backfill_ids"] = sorted(chosen)
                if saved:
                    target.save_state(key, state)
            chosen = set(state["backfill_ids"])
        try:
            _copy(transform, source, target, new, chosen, names, batch_size, state, key, total, report, should_stop)
        except EmbridgeError as exc:
            raise _stopped_part_way(exc, target, int(state["written"]), total) from exc
        status = "completed"
    else:
        status = "already complete"
    # a source written since it was read is no copy of it: checked before an alias moves onto the shadow,
    # and after every run of a store read without a snapshot (an offset read skips a point when one is deleted)
    moving = bool(switch and alias) and target.alias_target(alias or "") != target.collection
    changed = None
    if moving or (not was_complete and (status == "already complete" or not source.snapshot_reads)):
        _source_unchanged(source, target, state, key, "the alias was not moved" if moving else
                          "the shadow was left as it is")
    elif was_complete:  # a complete migration run again: it may serve already, so a change is said, not refused
        changed = _changed_since_copied(source, target, state)
    indexed = target.index_like(source)  # a store that trains its vector index on written data: made now
    seconds = time.perf_counter() - started
    try:
        verification = verify_migration(transform, source, target, names, new)
        if not verification.ok:
            raise VectorStoreError(f"{target.describe()}: verification failed: {verification.target_count} points "
                                   f"written for {verification.source_count} in the source, spaces "
                                   f"{verification.spaces}")
    except VectorStoreError as exc:  # this run's copy: a source written meanwhile is said so, with its remedy
        if was_complete or isinstance(exc, ForeignShadowError):  # a rerun's, or one that says its own remedy
            raise
        _source_unchanged(source, target, state, key, "the shadow was left as it is")
        raise VectorStoreError(f"{exc}; drop '{target.collection}' to migrate again from the start") from exc
    verify_seconds = time.perf_counter() - started - seconds
    if state["status"] != "complete" or state.get("source_changed"):
        state["status"] = "complete"
        state.pop("source_changed", None)  # a source restored since a refusal: complete as it is
        target.save_state(key, state)
    result = MigrationResult(source.describe(), target.describe(), target.collection, status, total,
                             int(state["written"]) - resumed_from if status == "completed" else 0, resumed_from,
                             len(state.get("backfill_ids") or []), seconds, verification, verify_seconds,
                             spaces=names, warning=joined_lines(transform.warning, source.lossy_note(), unmatched_warning(
                                 new, backfill, int(verification.spaces.get(names["new"], 0)), total), made,
                                 *target.made_notes, changed, verification.lengths_note, indexed))
    if switch and alias:
        result.previous = switch_alias(target, alias, target.collection)
        result.switched, result.alias = True, alias
    return result


def joined_lines(*lines: str | None) -> str | None:
    """A result's warnings and notes, one a line, or None."""
    return "\n".join(line for line in lines if line) or None


def copied(state: dict[str, Any]) -> bool:
    """Whether every batch is written: a rerun after a failed verification re-verifies, never re-copies."""
    return state.get("cursor") is None and int(state.get("written") or 0) > 0 and not state.get("pending")


def _copy(transform: StoreTransform, source: Connector, target: Connector, new: NewVectors | None,
          chosen: set[str], names: dict[str, str], batch_size: int, state: dict[str, Any], key: str, total: int,
          report: ProgressFn, should_stop: StopFn | None) -> None:
    batch_size = read_batch_size(state, batch_size)  # the chain's batches, so that a later resume can recompute it
    if state.get("pending"):
        target.delete_ids(list(state["pending"]))  # a batch cut short, or written but not yet recorded
        state["pending"] = None
        target.save_state(key, state)
    report(int(state["written"]), total, {"stage": "migrating"})
    seen = SeenIds(one_id_type=target.one_id_type)
    state.pop("refused", None)
    if state["cursor"] is not None:
        seen.add_written(target)

    def transformed(cursor: Any) -> Iterator[tuple[str, Batch]]:  # in the prefetch thread: reads and transforms
        for batch in source.read_batches(batch_size, cursor):
            seen.check(source, batch)
            if len(batch) and batch.vectors.shape[1] != transform.in_dim:  # the source's fault, not the bundle's
                raise VectorStoreError(f"{source.describe()}: point {batch.ids[0]!r} holds a "
                                       f"{batch.vectors.shape[1]}-d vector among {transform.in_dim}-d ones")
            yield batch_digest(batch), transform_batch(transform, batch, new, chosen, names)

    def store(read: tuple[str, Batch]) -> Batch:
        digest, out = read
        check_stop(should_stop)
        state["pending"] = list(out.ids)
        target.save_state(key, state)
        target.write(out)
        state.update(cursor=out.cursor, written=int(state["written"]) + len(out), pending=None)
        record_batch(state, digest, len(out))
        target.save_state(key, state)
        report(int(state["written"]), total, {"stage": "migrating"})
        release_free_memory()  # what the batch freed goes back to the system, not to an idle arena
        return out

    start = state["cursor"]
    if not target.exists():
        # the first batch is read here, before any read-ahead starts: making the target consults the
        # source (its schema, settings) and must not share the source's connection with a reader
        reader = transformed(start)
        first = next(reader, None)
        reader.close()
        # the checkpoint is written only now: a source refused by its first batch leaves none behind (or the
        # previous one as it was), while a target that exists always has the checkpoint that made it
        before = target.load_state(key)
        target.save_state(key, state)
        try:
            target.create(transform.out_dim, like=source, sample=first[1] if first else None)
        except BaseException:  # refused before anything was written: the checkpoint is taken back with it
            try:
                target.save_state(key, before)
            except Exception:  # noqa: BLE001 - a cleanup that fails too must not hide why the target was refused
                pass
            raise
        if first is None:  # an empty source still gets its (empty) shadow
            return
        try:
            if store(first).cursor is None:
                return
        except Cancelled:
            raise
        except Exception:  # the store refused the first batch (its ids, its payload): the target made here goes
            try:
                target.drop()
                target.save_state(key, before)
            except Exception:  # noqa: BLE001 - a cleanup that fails too must not hide why the batch was refused
                pass
            raise
        start = first[1].cursor
    try:
        with Prefetch(lambda: transformed(start), depth=PREFETCH_DEPTH, name="embridge-migrate-read") as batches:
            for read in batches:
                if store(read).cursor is None:
                    break
    except SourceDataError as exc:  # said by `check` and by every refusal to serve the half-written shadow
        state["refused"] = str(exc)
        target.save_state(key, state)
        raise


def transform_batch(transform: StoreTransform, batch: Batch, new: NewVectors | None, chosen: set[str],
                    names: dict[str, str]) -> Batch:
    """The batch in the new space: real new vectors for chosen ids, the bundle's transform for the rest."""
    vectors = transform.apply(batch.vectors)
    spaces = [names["adapted"]] * len(batch)
    if new is not None and chosen:
        for n, pid in enumerate(batch.ids):
            row = new.lookup(pid) if str(pid) in chosen else None
            if row is not None:
                vectors[n] = unit_row(new.vectors[row], new.path)
                spaces[n] = names["new"]
    payloads = [{**p, SPACE_FIELD: s} for p, s in zip(batch.payloads, spaces, strict=True)]
    return Batch(list(batch.ids), vectors, payloads, batch.cursor)
