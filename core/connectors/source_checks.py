"""Refusals of source data a migration must not copy: null or repeated ids, non-finite vectors.

A repeated id would be written twice into append-only stores (or silently merged by upserting ones),
so the shadow could never match the source; each batch is checked before it is written, and the
message names the source store and the point, never the bundle that would otherwise fail on it.
"""

from __future__ import annotations

import numpy as np

from embridge.core.connectors.connector import Batch, Connector, VectorStoreError


class SeenIds:
    """The ids read so far in one run, to refuse an id the source holds twice."""

    def __init__(self) -> None:
        self.ids: set[str] = set()  # as text: a Chroma shadow hands back as text the ids it was given

    def add_written(self, target: Connector) -> None:
        """Count the ids a resumed run's shadow already holds as seen (a repeat may straddle the resume)."""
        if target.exists():
            for batch in target.read_batches(8192):
                self.ids.update(str(i) for i in batch.ids)

    def check(self, source: Connector, batch: Batch) -> None:
        """Raise for a null id, an id seen before, or a NaN/inf vector in ``batch``."""
        for pid in batch.ids:
            if pid is None:
                raise VectorStoreError(f"{source.describe()}: a point has a null id; every point needs a unique id")
            if str(pid) in self.ids:
                raise VectorStoreError(f"{source.describe()}: the id {pid!r} appears more than once; every point "
                                       "needs a unique id")
            self.ids.add(str(pid))
        finite = np.isfinite(batch.vectors).all(axis=1)
        if not finite.all():
            pid = batch.ids[int(np.argmin(finite))]
            raise VectorStoreError(f"{source.describe()}: point {pid!r} holds a NaN or inf vector value")
