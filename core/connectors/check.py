"""``embridge check``: which space each point of a store is in, and quality only where it means something.

A store whose points are in more than one model version is *half-migrated*: a query can only be
compared with points of its own space, so a quality number for the whole store depends on how it is
served. ``check_store`` refuses it then unless told the serving space (``served_as``), and measures
quality on the points that space can reach, saying what share of the store that is. Spaces of one
model version (a new model's own vectors and the bundle's transform of old ones) count as one.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embridge.core.connectors import open_store
from embridge.core.connectors.connector import (
    METRICS,
    SPACE_FIELD,
    Batch,
    Connector,
    VectorStoreError,
    path_uri,
    space_key,
)
from embridge.core.connectors.migration_fingerprint import same_source
from embridge.core.connectors.targets import made_pending_move
from embridge.core.errors import EmbridgeError, InputError
from embridge.core.l2 import l2_normalize

UNMARKED = "(unmarked)"


def model_version(space: str) -> str:
    """The model version of a space value: ``v3@bundle:...`` and ``v3`` are both ``v3``."""
    return space.split("@", 1)[0] if space else UNMARKED


@dataclass
class StoreQuality:
    served_as: str
    label_field: str
    points: int
    reachable_share: float  # of the gallery: the store's points, or the source's while a migration into it is unfinished
    top1_label_agreement: float
    queries: int = 0  # how many of the points were sampled as queries (``--sample``)
    gallery: int = 0  # the points reachable_share is a share of
    metric: str = "cosine"  # how the neighbours were ranked: the store index's metric (cosine where none says)
    metric_from_store: bool = False  # the store said its metric (else cosine, Embridge's own)


@dataclass
class StoreCheck:
    store: str
    serves: str | None
    count: int
    spaces: dict[str, int]
    versions: dict[str, int]
    state: str  # empty | single | half-migrated | unmarked
    migration: dict[str, Any] | None = None
    quality: StoreQuality | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        lines = [f"{self.store}: {self.count} points, {self.state}"]
        if self.serves:
            lines.append(f"  alias of collection '{self.serves}'")
        for space, n in sorted(self.spaces.items(), key=lambda kv: -kv[1]):
            lines.append(f"  {n:>10}  {space or UNMARKED}")
        if self.migration:  # a checkpoint says complete or not; a stopped run and a live one look alike there
            status = self.migration["status"]
            if self.migration.get("source_changed"):  # a rerun cannot mend it: it is refused the same way
                status = (f"{'complete' if status == 'complete' else 'unfinished'}, but its source changed after "
                          "points were copied (drop the collection to migrate again from the start, or put the "
                          "source back as it was)")
            elif status != "complete":
                status = "unfinished (running, or stopped: run the same migration again to finish it)"
            lines.append(f"  migration into it: {status}, {self.migration['written']} of "
                         f"{self.migration['total']} points written")
        if self.quality:
            q = self.quality
            lines.append(f"  quality served as {q.served_as}: top-1 '{q.label_field}' agreement "
                         f"{q.top1_label_agreement:.3f} by {METRICS[q.metric]}{_metric_source(q)} "
                         f"for {q.queries} sampled queries among the {q.points} points "
                         f"that carry '{q.label_field}' ({q.reachable_share:.0%} of {reach_of(self, q)} are "
                         f"{q.served_as})")
        lines += [f"  {note}" for note in self.notes]
        return "\n".join(lines)


def _metric_source(quality: StoreQuality) -> str:
    return " (as the store's index ranks)" if quality.metric_from_store else " (no index says how the store ranks)"


def reach_of(check: StoreCheck, quality: StoreQuality) -> str:
    """What a quality's reachable share is of: the store's points, or the source's of an unfinished migration."""
    if quality.gallery > check.count:
        return f"the source's {quality.gallery} points (the migration into this store is unfinished)"
    return "the store's points"


def _unfinished_total(check: StoreCheck) -> int:
    """The source's point count while the migration into this store is unfinished, else the store's count."""
    migration = check.migration or {}
    total = migration.get("total")
    if migration.get("status") != "complete" and isinstance(total, int) and total > check.count:
        return total
    return check.count


def switched_from(store: Connector, alias: str, collection: str) -> str | None:
    """The collection ``alias`` served before its last recorded move to ``collection``, if any (a move from
    ``collection`` to itself, which earlier versions recorded for a switch already made, is no move)."""
    record = store.load_state(store.alias_key(alias)) or {}
    made = made_pending_move(store, alias, record)  # a move the store made before its record was finished
    if made is not None and made["to"] == collection:
        return made.get("from")
    history = record.get("history") or []
    return next((move.get("from") for move in reversed(history)
                 if move.get("to") == collection and move.get("from") != collection), None)


def served_versions(store: Connector, previous: str | None, spaces: dict[str, int] | None = None,
                    collection: str | None = None) -> dict[str, int]:
    """How many of the restored collection's points are in each model version: the encoder queries need again.

    A user's own collection carries no space marker; when the collection served before was migrated from
    this one (``collection``, the store's own by default; ``spaces``: its counts, read when not given), its
    unmarked points are in that migration's old model version (as the migration took them).
    """
    return versions_of(store.space_counts() if spaces is None else spaces,
                       unmarked_version(store, previous, collection))


def versions_of(spaces: dict[str, int], unmarked: str) -> dict[str, int]:
    """Point counts by model version, from counts by space value (``unmarked``: the version of points without one)."""
    versions: dict[str, int] = {}
    for space, n in spaces.items():
        version = model_version(space) if space else unmarked
        versions[version] = versions.get(version, 0) + n
    return versions


def unmarked_version(store: Connector, previous: str | None, collection: str | None = None) -> str:
    """:func:`migration_out_of`'s version alone."""
    return migration_out_of(store, previous, collection)[0]


def migration_out_of(store: Connector, previous: str | None,
                     collection: str | None = None) -> tuple[str, str | None]:
    """The model version of the points of ``collection`` (the store's own by default) that carry no space
    marker, and the collection that migration wrote: the old model of the migration from it, found by walking
    back from ``previous`` (the collection served before) through the sources of the migrations that wrote each
    collection on the way (v3 was migrated from v2, v2 from this one), so a rollback over two steps names it as
    one over one step does; else (UNMARKED, None)."""
    wanted, seen = collection or store.collection, set()
    step = Path(previous).name if previous else None  # an alias that is a link: the folder's name
    while step and step not in seen and len(seen) < 64:
        seen.add(step)
        state, _ = migration_state(store, step)
        fingerprint = (state or {}).get("fingerprint") or {}
        source = fingerprint.get("source_collection")
        if source == wanted:  # the migration from this collection: its old model, if it read this very store
            version = ((state or {}).get("spaces") or {}).get("old")
            return (str(version), step) if version and same_source(fingerprint, store.location()) else (UNMARKED, None)
        step = str(source) if source else None  # no migration wrote it: nothing further back is known
    return UNMARKED, None


def check_store(uri: str, label_field: str | None = None, served_as: str | None = None,
                sample: int = 2000, seed: int = 0) -> StoreCheck:
    store = open_store(uri, "--uri")
    try:
        return _check(store, label_field, served_as, sample, seed)
    finally:
        store.close()


def missing_error(store: Connector, option: str) -> EmbridgeError:
    """The one line for a collection that is not there; a Parquet URI naming one of a dataset's files rather
    than its folder is told so, as the store would only say there is no such collection."""
    folder = getattr(store, "folder", None)
    if store.scheme == "parquet" and isinstance(folder, Path) and folder.is_file():
        return InputError(option, f"{folder} is a file; a parquet:/// URI names the dataset's folder: give "
                          f"{path_uri('parquet', folder.parent)}")
    served = _alias_of_missing(store)
    if served is not None:  # the alias still names a collection dropped since (a link left dangling)
        return VectorStoreError(f"{store.describe()}: '{store.collection}' is an alias of '{served}', which no "
                                f"longer exists; point it at a collection that does (embridge rollback --to URI "
                                f"--alias {store.collection})")
    return VectorStoreError(f"{store.describe()}: {store.missing()}")


def check_named_columns(store: Connector, count: int) -> None:
    """Refuse a URI whose ``?id=`` or ``?vector=`` names a column a collection of ``count`` points lacks,
    by reading its first point as import and migrate would: counting alone reads no column."""
    if count:
        store.dim()
        next(iter(store.read_batches(1)), None)


def _alias_of_missing(store: Connector) -> str | None:
    try:
        return store.alias_target(store.collection) if store.supports_alias else None
    except (VectorStoreError, OSError):
        return None


def migration_state(store: Connector, collection: str) -> tuple[dict[str, Any] | None, str | None]:
    """(the checkpoint of a migration that wrote ``collection``, or None; why it cannot be read, or None).
    A migration on Ray keeps its checkpoint under a key of its own: read where no local one is."""
    try:
        return store.load_state(f"migrate-{collection}") or store.load_state(f"ray-migrate-{collection}"), None
    except VectorStoreError as exc:
        return None, exc.args[0] if exc.args else str(exc)


def unfinished_reason(migration: dict[str, Any] | None, problem: str | None) -> str | None:
    """Why a collection with this checkpoint must not be served yet (a migration is still writing it), or None."""
    if problem is not None:
        return f"the checkpoint of the migration that writes it cannot be read ({problem})"
    if migration and migration.get("status") != "complete":
        total = (migration.get("fingerprint") or {}).get("source_count")
        done = f"has written part of it ({migration.get('written')} of {total} points)"
        if migration.get("source_changed"):
            return (f"a migration {done} whose source changed after it had copied points, so it cannot be "
                    "finished: drop the collection to migrate again from the start, or put the source back as "
                    "it was")
        if migration.get("refused"):
            return (f"an unfinished migration {done} and stopped on a point of the source it must not copy "
                    f"({migration['refused']}); mend the source, then run the same migration again to finish it")
        return (f"an unfinished migration (running, or stopped) {done}; run the same migration again to finish it "
                "('embridge migrate' with the same options, or Migrate in the app)")
    return None


def changed_since(migration: dict[str, Any] | None, held: int) -> str | None:
    """Why a migrated collection no longer holds what its migration wrote, or None.

    A finished migration wrote exactly its checkpoint's count; an unfinished one at least that many (a
    batch written before its checkpoint moved may be there too). Fewer points, or more once finished,
    were removed or added outside the migration: a live collection's own writes, or a loss. Said, not
    refused: the application serving the collection may have written to it on purpose.
    """
    if not migration:
        return None
    written = int(migration.get("written") or 0)
    complete = migration.get("status") == "complete"
    if held < written or (complete and held != written):
        how = "removed" if held < written else "added"
        return (f"its migration wrote {written} points but it holds {held}: points were {how} outside the "
                "migration")
    return None


def unfinished_migration(store: Connector, collection: str) -> str | None:
    """:func:`unfinished_reason` for ``collection``'s checkpoint in ``store``."""
    return unfinished_reason(*migration_state(store, collection))


def unfinished_served(store: Connector, served: str) -> str | None:
    """Why ``served``, the collection ``store`` reads (its own, or the one its alias names: ``collection_read``),
    holds only part of a gallery: a migration still writing it, said with the store's name; None when whole or
    never migrated into."""
    if not store.writable:  # no migration writes a faiss index
        return None
    name = Path(served).name  # a Parquet alias is a link, possibly to a folder elsewhere: its name keys the checkpoint
    unfinished = unfinished_reason(*migration_state(store.checkpoint_holder(served), name))
    if unfinished is None:
        return None
    named = re.search(rf"(?<![\w.-]){re.escape(name)}(?![\w.-])", store.describe())  # a Parquet path ends with it
    through = "" if named else f"'{name}': "  # named once
    return f"{store.describe()}: {through}{unfinished}"


def _check(store: Connector, label_field: str | None, served_as: str | None, sample: int, seed: int) -> StoreCheck:
    if not store.exists():
        raise missing_error(store, "--uri")
    aliased = store.alias_target(store.collection) if store.supports_alias else None
    served = aliased or store.collection  # checked through an alias: the collection it serves
    # the checkpoint before the points: a migration still writing only adds, so what it had written by its
    # checkpoint is all there when they are counted, and fewer points mean points removed
    migration, problem = migration_state(store.checkpoint_holder(served), Path(served).name)  # a link: its name
    spaces = {k: v for k, v in store.space_counts().items()}
    count = sum(spaces.values())  # one reading: a store being written holds more at each call
    check_named_columns(store, count)
    # through an alias moved back to a migration's source: its unmarked points are read as `rollback` reads them
    previous = switched_from(store, store.collection, aliased) if aliased else None
    unmarked, migrated_into = migration_out_of(store, previous, aliased)
    versions = versions_of(spaces, unmarked)
    if count == 0:
        state = "empty"
    elif len(versions) > 1:
        state = "half-migrated"
    elif UNMARKED in versions:
        state = "unmarked"
    else:
        state = "single"
    result = StoreCheck(store.describe(), aliased, count, spaces, versions, state)
    if spaces.get("") and UNMARKED not in versions:
        result.notes.append(f"its {spaces['']} unmarked points are read as {next(iter(versions))}'s: the "
                            f"migration from it into '{migrated_into}' took them as that model version's")
    if migration:
        result.migration = {"status": migration.get("status"), "written": migration.get("written"),
                            "total": migration.get("fingerprint", {}).get("source_count"),
                            "source_changed": bool(migration.get("source_changed"))}
    unfinished = unfinished_reason(migration, problem)
    if unfinished is not None:
        result.state = "half-migrated"
        result.notes.append(f"'{served}': {unfinished}")
    changed = changed_since(migration, count)
    if changed is not None:
        result.migration["changed"] = changed  # type: ignore[index]  # set above: there is a checkpoint
        result.notes.append(f"'{served}': {changed} (the application's own writes, or a loss: a rerun of "
                            "the migration refuses it)")
    if state == "half-migrated":
        parts = ", ".join(f"{n} in {v}" for v, n in sorted(versions.items()))
        result.notes.append(f"points of several model versions ({parts}); a query reaches only its own")
    if label_field:
        result.quality = _quality(store, result, label_field, served_as, sample, seed, unmarked)
    return result


def _quality(store: Connector, check: StoreCheck, label_field: str, served_as: str | None, sample: int,
             seed: int, unmarked: str = UNMARKED) -> StoreQuality:
    """Top-1 label agreement among the points of the version served (``unmarked``: the version points
    without a space marker are read as, as their count in ``check.versions`` reads them)."""
    if check.state == "half-migrated" and not served_as:
        raise InputError("--served-as", f"{check.store} is half-migrated ({', '.join(f'{n} in {v}' for v, n in sorted(check.versions.items()))}); "
                         "its quality depends on how it is served: pass --served-as with the model version queries use")
    if not check.versions:  # an empty collection: nothing to measure, whatever it is served as
        raise InputError("--label-field", f"{check.store} holds no points to measure")
    version = served_as or next(iter(check.versions), UNMARKED)
    if version == UNMARKED.strip("()"):  # --served-as unmarked: points no migration wrote (the old model's),
        version = unmarked  # read as that migration's old model through an alias moved back to its source
    if version not in check.versions:
        raise InputError("--served-as", f"no points of '{version}' in {check.store} (versions: "
                         f"{', '.join(sorted(check.versions))})")
    vectors, labels = [], []
    for batch in store.read_batches(4096):
        for vec, payload in zip(batch.vectors, batch.payloads, strict=True):
            space = space_key(payload.get(SPACE_FIELD))
            if (model_version(space) if space else unmarked) == version and payload.get(label_field) is not None:
                vectors.append(vec)
                labels.append(str(payload[label_field]))
    if len(vectors) < 2:
        raise InputError("--label-field", f"fewer than two points of '{version}' carry the field '{label_field}'")
    said = store.metric()
    metric = said or "cosine"
    x = np.stack(vectors)
    x = l2_normalize(x, f"{store.describe()} ('{version}' points)") if metric == "cosine" else x.astype(np.float64)
    lab = np.asarray(labels)
    rng = np.random.default_rng(seed)
    queries = rng.choice(len(x), size=min(sample, len(x)), replace=False)
    hits = 0
    for start in range(0, len(queries), 64 if metric == "l1" else 512):
        q = queries[start:start + (64 if metric == "l1" else 512)]
        scores = _scores(x[q], x, metric)
        scores[np.arange(len(q)), q] = -np.inf  # leave the query itself out
        hits += int((lab[np.argmax(scores, axis=1)] == lab[q]).sum())
    gallery = _unfinished_total(check)
    return StoreQuality(version, label_field, len(x), check.versions[version] / gallery, hits / len(queries),
                        len(queries), gallery, metric, said is not None)


def _scores(q: np.ndarray, x: np.ndarray, metric: str) -> np.ndarray:
    """Higher is nearer, ranked as ``metric`` ranks: cosine and dot by the product (rows already unit for
    cosine), l2 by minus the squared distance (its query's own length ranks nothing), l1 by minus the distance."""
    if metric == "l2":
        return 2 * (q @ x.T) - (x * x).sum(axis=1)
    if metric == "l1":
        return -np.abs(q[:, None, :] - x[None, :, :]).sum(axis=2)
    return q @ x.T


def check_one_version(batch: Batch, spaces: dict[str, int], store: Connector) -> None:
    """Count the batch's space-field values into ``spaces``; refuse a store whose points are of more than one
    model version (a half-migrated one, as ``embridge check`` names it): a model's vectors are of one space."""
    for payload in batch.payloads:
        value = space_key(payload.get(SPACE_FIELD))
        spaces[value] = spaces.get(value, 0) + 1
    versions: dict[str, int] = {}
    for value, n in spaces.items():
        versions[model_version(value)] = versions.get(model_version(value), 0) + n
    if len(versions) > 1:
        parts = ", ".join([f"{v} ({n} points so far)" for v, n in sorted(versions.items())[:5]] + (
            [f"and {len(versions) - 5} more"] if len(versions) > 5 else []))  # one line a reader can take in
        raise VectorStoreError(f"{store.describe()}: holds points of several model versions ({parts}; field "
                               f"'{SPACE_FIELD}'), which no one model's vectors can be; import a collection of one "
                               "version (embridge check --uri names them), or finish its migration first; "
                               "nothing was imported")
