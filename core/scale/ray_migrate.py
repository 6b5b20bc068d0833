"""``migrate --engine ray``: a store migration whose transform runs on Ray Data, for stores with partitions.

Stores that keep a collection as a partitioned dataset (a LanceDB table: its Lance fragments; a
Parquet store: its files) are transformed partition by partition on Ray, as ``embridge transform
--engine ray`` does, into a staging folder beside the store. The driver then writes each staged
partition into the shadow collection through the store's connector (a partition cut short by a crash is
deleted by id before it is written again, so it lands once), records it in the migration's checkpoint, and finally
verifies the shadow and moves the alias exactly as the local migration does
(:func:`embridge.core.connectors.migration.verify_migration`, :func:`~embridge.core.connectors.migration.switch_alias`).
Both halves resume: finished partitions are neither transformed nor written again.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from embridge.core.connectors.arrow_common import table_to_batch
from embridge.core.connectors.check import missing_error, unfinished_served
from embridge.core.connectors.connector import SPACE_FIELD, Batch, Connector, VectorStoreError, path_uri
from embridge.core.connectors.job_lock import job_lock
from embridge.core.connectors.migration import (
    MigrationResult,
    joined_lines,
    space_names,
    switch_alias,
    verify_migration,
)
from embridge.core.connectors.migration_checkpoint import other_engines_shadow, ray_staging, resumable_state
from embridge.core.connectors.migration_fingerprint import comparable
from embridge.core.connectors.source_checks import SeenIds, check_source_spaces
from embridge.core.connectors.store_pair import collection_read, open_pair, state_key
from embridge.core.connectors.targets import alias_to_switch, writable_target_alias
from embridge.core.connectors.transform import load_transform
from embridge.core.errors import InputError
from embridge.core.progress import ProgressFn, StopFn, check_stop, no_progress
from embridge.core.scale.layer import layer_fingerprint
from embridge.core.scale.output_folder import partition_stamps, stamps_like
from embridge.core.scale.partitions import open_source

PARTITIONED = ("lancedb", "parquet")


def dataset_uri(source: Connector) -> str:
    """The partitioned dataset behind a source collection (an alias is followed)."""
    if source.uri.scheme == "parquet":
        return path_uri("parquet", source.folder)  # type: ignore[attr-defined]
    if source.uri.scheme == "lancedb":
        name = source.alias_target(source.collection) or source.collection
        return path_uri("lance", Path(source.root) / f"{name}.lance")  # type: ignore[attr-defined]
    raise InputError("--engine", f"{source.describe()}: --engine ray migrates stores whose collections are "
                     f"partitioned datasets ({', '.join(s + '://' for s in PARTITIONED)}); use --engine local")


def migrate_on_ray(bundle: str | Path, source_uri: str, target_uri: str, *, switch: bool = False,
                   alias: str | None = None, ray_address: str | None = None, num_cpus: int | None = None,
                   on_progress: ProgressFn | None = None, should_stop: StopFn | None = None) -> MigrationResult:
    """Migrate ``source_uri`` into the shadow ``target_uri`` with the transform on Ray; see the module doc."""
    from embridge.core.scale.engine import check_reachable
    from embridge.core.scale.gallery_transform import transform_gallery

    report = on_progress or no_progress
    transform = load_transform(bundle)
    alias = alias_to_switch(alias, target_uri, switch)  # an option error, found before any store is opened
    address = ray_address or os.environ.get("RAY_ADDRESS")
    if address:  # before a checkpoint is written beside the store: a refused address leaves nothing there
        check_reachable(address)
    source, target = open_pair(source_uri, target_uri, (bundle,))
    try:
        writable_target_alias(target, alias)
        data = dataset_uri(source)
        if not source.exists():
            raise missing_error(source, "--from")
        unfinished = unfinished_served(source, collection_read(source))
        if unfinished is not None:  # a shadow still being written: its migration would serve part of a gallery
            raise VectorStoreError(f"{unfinished}; nothing was written")
        made = check_source_spaces(source, transform)
        if source.dim() != transform.in_dim:
            raise VectorStoreError(f"{source.describe()}: holds {source.dim()}-d vectors, the bundle "
                                   f"{transform.path} maps {transform.in_dim}-d {transform.old_space} vectors")
        staging = ray_staging(target)
        if staging is None:
            raise InputError("--to", f"{target.describe()}: --engine ray stages partitions beside the store, "
                             "which needs a local store folder")
        key, total = f"ray-migrate-{target.collection}", source.count()
        # one lock for both engines: a second migration into this target, on either, is refused while this one runs
        with job_lock(target, state_key(target)):
            # a partition changed in place since the start is another migration
            earlier = target.load_state(key)
            recorded = (earlier or {}).get("fingerprint") or {}
            fingerprint = {"layer": layer_fingerprint(bundle), "source": data, "target": target.collection,
                           "source_count": total, **_source_stamps(data, recorded)}
            other_engines_shadow(target, state_key(target), "local")
            state = resumable_state(target, key, fingerprint)
            if state is None:  # a fresh start: partitions staged by another job (a changed source, a lost record) go
                if earlier is None or comparable(earlier.get("fingerprint")) != fingerprint:
                    shutil.rmtree(staging, ignore_errors=True)  # those of this very job (stopped before a write) stay
                state = {"fingerprint": fingerprint, "loaded": [], "written": 0, "status": "running"}
            target.save_state(key, state)
            names = space_names(transform)
            started = time.perf_counter()
            resumed_from = int(state["written"])
            status = "already complete"
            if state["status"] == "running":
                _drop_unmarked_staging(staging)
                transform_gallery(bundle, data, str(staging), engine="ray", ray_address=ray_address, num_cpus=num_cpus,
                                  id_col=source.id_col, vec_col=source.vec_col,  # type: ignore[attr-defined]
                                  on_progress=lambda i, n, info: report(i, 2 * n, {"stage": "transforming"}),
                                  should_stop=should_stop)
                _load(source, target, staging, names["adapted"], transform.out_dim, state, key, report, should_stop)
                status = "completed"
            # the rest under the lock too: a second run would build the index and move the alias beside this one
            indexed = target.index_like(source)  # a store that trains its vector index on written data: made now
            seconds = time.perf_counter() - started
            verification = verify_migration(transform, source, target, names, None)
            if not verification.ok:
                raise VectorStoreError(f"{target.describe()}: verification failed: {verification.target_count} points "
                                       f"written for {verification.source_count} in the source, spaces "
                                       f"{verification.spaces}")
            if state["status"] != "complete":
                state["status"] = "complete"
                target.save_state(key, state)
                shutil.rmtree(staging, ignore_errors=True)
            result = MigrationResult(source.describe(), target.describe(), target.collection, status, total,
                                     int(state["written"]) - resumed_from if status == "completed" else 0, resumed_from,
                                     0, seconds, verification, time.perf_counter() - started - seconds, spaces=names,
                                     warning=joined_lines(transform.warning, source.lossy_note(), made, *target.made_notes,
                                                          verification.lengths_note, indexed))
            if switch and alias:
                _unchanged_since_start(data, fingerprint, target)
                result.previous = switch_alias(target, alias, target.collection)
                result.switched, result.alias = True, alias
            return result
    finally:
        target.close()
        source.close()


def _source_stamps(data: str, recorded: Any = None) -> dict[str, Any]:
    """The dataset's version and its partitions' stamps: any write to it changes one of them (in the form of
    the ``recorded`` fingerprint's stamps, where an earlier version began the migration)."""
    partitions = open_source(data)
    recorded = recorded.get("source_partitions") if isinstance(recorded, dict) else None
    return {"source_version": partitions.version,
            "source_partitions": stamps_like(partition_stamps(partitions), recorded)}


def _unchanged_since_start(data: str, fingerprint: dict[str, Any], target: Connector) -> None:
    """Refuse to move an alias onto a shadow whose source was written since the migration started (a partition
    changed, added or removed, or a new Lance version): the shadow would serve what the source no longer holds."""
    if any(fingerprint[key] != value for key, value in _source_stamps(data, fingerprint).items()):
        raise VectorStoreError(f"{target.describe()}: the source {data} was written since the migration started, "
                               "so the shadow may not hold what it holds now; the alias was not moved: drop "
                               f"'{target.collection}' and migrate again")


def _drop_unmarked_staging(staging: Path) -> None:
    """Staging an earlier version began records no space marker, which a transform now refuses to resume as
    another job's: it is only this job's intermediate files, so it is transformed again (the points already
    loaded stay, and are not loaded twice)."""
    from embridge.core.scale.output_folder import begun_unmarked

    if begun_unmarked(staging):
        shutil.rmtree(staging, ignore_errors=True)


def _load(source: Connector, target: Connector, staging: Path, space: str, dim: int, state: dict[str, Any],
          key: str, report: ProgressFn, should_stop: StopFn | None) -> None:
    """Write each staged partition not yet recorded into the shadow, recording each once written."""
    import pyarrow.parquet as pq

    files = sorted(p for p in staging.glob("*.parquet") if not p.name.startswith("."))
    done = set(state["loaded"])
    created = target.exists()
    pending = state.get("pending")
    if created and pending and pending not in done and (staging / pending).is_file():  # cut short, or not recorded
        target.delete_ids(pq.read_table(staging / pending, columns=[source.id_col]).column(0).to_pylist())  # type: ignore[attr-defined]
    seen = SeenIds()  # a repeated or null id is refused before its partition is written, as in a local migration
    for file in files:
        if file.name in done:
            seen.ids.update(str(i) for i in pq.read_table(file, columns=[source.id_col]).column(0).to_pylist())  # type: ignore[attr-defined]
    for i, file in enumerate(files):
        check_stop(should_stop)
        if file.name in done:
            continue
        batch = table_to_batch(pq.read_table(file), source.id_col, source.vec_col, None)  # type: ignore[attr-defined]
        seen.check(source, batch)
        out = Batch(list(batch.ids), batch.vectors, [{**p, SPACE_FIELD: space} for p in batch.payloads])
        if not created:
            target.create(dim, like=source, sample=out)
            created = True
        state["pending"] = file.name  # a crash from here on: its points are deleted before it is written again
        target.save_state(key, state)
        target.write(out)
        state["pending"] = None
        state["loaded"] = [*state["loaded"], file.name]
        state["written"] = int(state["written"]) + len(out)
        target.save_state(key, state)
        report(len(files) + i + 1, 2 * len(files), {"stage": "writing"})
    if not created:
        target.create(dim, like=source, sample=None)
