"""Refusals of source data a migration must not copy: null or repeated ids, non-finite or all-zero
vectors, and space markers Embridge did not write or that say the points are already migrated.

A repeated id would be written twice into append-only stores (or silently merged by upserting ones),
so the shadow could never match the source; each batch is checked before it is written, and the
message names the source store and the point, never the bundle that would otherwise fail on it.
"""

from __future__ import annotations

import re

import numpy as np

from embridge.core.connectors.connector import SPACE_FIELD, Batch, Connector, VectorStoreError
from embridge.core.connectors.transform import StoreTransform
from embridge.core.l2 import zero_rows

MARKER = re.compile(r".+@bundle:[0-9a-f]{12}")  # a transformed point: <model version>@bundle:<adapter sha>


def check_source_spaces(source: Connector, transform: StoreTransform) -> str | None:
    """Refuse a source whose space field says its points are not in the space this bundle maps from: the
    layer would read them as old-model vectors and write wrong vectors that look migrated.

    Embridge's values are a model version (a real vector of that model) and ``<version>@bundle:<sha>``
    (one transformed into that version's space). Points in the bundle's old model version (under any
    name it had) are migrated, as are unmarked ones (taken to be in the old space); points already in
    its new version would be transformed a second time; any other value names another model version,
    or a field Embridge did not write.

    Returns a note when some points are old-version vectors an earlier bundle made (not the real ones
    the bundle's numbers were measured on), else None.
    """
    return check_space_counts(source.space_counts(), source.describe(), transform)


def check_space_counts(counts: dict[str, int], where: str, transform: StoreTransform, verb: str = "migrate",
                       noun: str = "collection") -> str | None:
    """:func:`check_source_spaces` on the points per space value (``''`` unmarked) of the data ``where`` names
    (a store, or the dataset a transform reads: ``verb`` and ``noun`` then word the advice as 'transform a
    dataset')."""
    mapping = f"this bundle maps {transform.old_space} to {transform.new_space}"
    made: dict[str, int] = {}
    for value, n in sorted(counts.items()):
        if not value:
            continue
        marker = MARKER.fullmatch(value) is not None
        version = value.rsplit("@bundle:", 1)[0] if marker else value
        ours = marker and value.endswith(f"@bundle:{transform.adapter_sha256[:12]}")  # this very layer wrote it
        if transform.new_version(version) and transform.old_version(version) and not ours:
            raise VectorStoreError(f"{where}: {n} points say {value!r} (field '{SPACE_FIELD}'), and "
                                   f"{version!r} names both this bundle's new model and an earlier name of its old "
                                   f"model ({mapping}), so which space they are in cannot be told; {verb} a "
                                   f"{noun} that is not marked so, or rename one of the models")
        if transform.old_version(version) and not ours:
            if marker:
                made[value] = n
            continue
        if transform.new_version(version) or ours:
            raise VectorStoreError(f"{where}: {n} points are already in {transform.new_space} (field "
                                   f"'{SPACE_FIELD}' = {value!r}); this bundle would transform them a second time: "
                                   f"{verb} the {noun} of {transform.old_space} vectors they came from")
        if marker:
            raise VectorStoreError(f"{where}: {n} points are in {version} (field '{SPACE_FIELD}' = "
                                   f"{value!r}, transformed there by another bundle), but {mapping}: it would read "
                                   f"them as {transform.old_space} vectors; {verb} them with a bundle whose old "
                                   f"model is {version} (or a chain starting there)")
        raise VectorStoreError(f"{where}: the field '{SPACE_FIELD}' holds {value!r} ({n} points), which "
                               f"is not an Embridge space marker of {transform.old_space}: vectors of another model "
                               f"version, or a field Embridge did not write, and {mapping}; {verb} a {noun} of "
                               f"{transform.old_space} points (or unmarked ones), or use a bundle whose old model is "
                               f"{version}")
    if not made:
        return None
    values = ", ".join(repr(v) for v in sorted(made))
    return (f"note: {sum(made.values())} of the source's {sum(counts.values())} points are {transform.old_space} "
            f"vectors an earlier bundle made (field '{SPACE_FIELD}' = {values}), not real {transform.old_space} "
            "vectors; the bundle's numbers were measured on real ones, so they do not describe this gallery: import "
            "the store into a workspace (embridge import --from) and train and report against what it holds")


class SourceDataError(VectorStoreError):
    """A point of the source that a migration must not copy (the source must be mended, not the run)."""


class SeenIds:
    """The ids read so far in one run, to refuse an id the source holds twice (and, for a target whose
    id column holds one type, ids that mix integers and text)."""

    def __init__(self, one_id_type: bool = False) -> None:
        self.ids: set[str] = set()  # as text: a Chroma shadow hands back as text the ids it was given
        self.one_id_type = one_id_type
        self.first: object = None  # the first id read: its type is the column's

    def add_written(self, target: Connector) -> None:
        """Count the ids a resumed run's shadow already holds as seen (a repeat may straddle the resume)."""
        if target.exists():
            for batch in target.read_batches(8192):
                self.ids.update(str(i) for i in batch.ids)
                if self.first is None and len(batch):  # the shadow's id type holds for the rest of the run
                    self.first = batch.ids[0]

    def check(self, source: Connector, batch: Batch) -> None:
        """Raise for a null id, an id seen before, or a NaN/inf or all-zero vector in ``batch``."""
        for pid in batch.ids:
            if pid is None:
                raise SourceDataError(f"{source.describe()}: a point has a null id; every point needs a unique id")
            if str(pid) in self.ids:
                raise SourceDataError(f"{source.describe()}: the id {pid!r} appears more than once; every point "
                                      "needs a unique id")
            self.ids.add(str(pid))
            if self.first is None:
                self.first = pid
            elif self.one_id_type and isinstance(pid, str) != isinstance(self.first, str):
                raise SourceDataError(f"{source.describe()}: its ids mix integers and text ({self.first!r}, then "
                                      f"{pid!r}), and the target's id column holds one type; migrate into a store "
                                      "that keeps both (Qdrant), or give the points ids of one type")
        finite = np.isfinite(batch.vectors).all(axis=1)
        if not finite.all():
            pid = batch.ids[int(np.argmin(finite))]
            raise SourceDataError(f"{source.describe()}: point {pid!r} holds a NaN or inf vector value")
        zero = zero_rows(batch.vectors)
        if len(zero):
            pid = batch.ids[int(zero[0])]
            raise SourceDataError(f"{source.describe()}: point {pid!r} holds an all-zero vector, which has no "
                                  "direction to carry into the new space")
