"""A migration's verification: counts, every point's space, and a sample of written vectors recomputed.

Run at the end of every migration (and of a Ray one), and again by a rerun of a complete one: the
sample is the source's first points, each written vector compared with the bundle's transform of
the source's (or, for a point given a real new vector, with that vector).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from embridge.core.connectors.backfill_order import NewVectors
from embridge.core.connectors.connector import SPACE_FIELD, Connector, VectorStoreError
from embridge.core.connectors.migration_result import Verification
from embridge.core.connectors.transform import StoreTransform
from embridge.core.l2 import l2_normalize
from embridge.core.vector_lengths import unit_output_note


class ForeignShadowError(VectorStoreError):
    """The target holds vectors this migration did not write: its refusal gives its own remedy."""


VERIFY_SAMPLE = 256
VERIFY_RTOL, VERIFY_ATOL = 1e-4, 1e-5


def unit_row(vector: np.ndarray, source: Any) -> np.ndarray:
    """A new-model vector as written: L2-normalised, like the transformed points beside it."""
    return l2_normalize(np.asarray(vector, np.float32)[None, :], str(source))[0]



def verify_migration(transform: StoreTransform, source: Connector, target: Connector, names: dict[str, str],
                     new: NewVectors | None) -> Verification:
    """Counts, every point's space, and a sample of written vectors recomputed from the source."""
    source_count = source.count()
    target_count = target.count() if target.exists() else 0
    spaces = target.space_counts() if target_count else {}
    # the sample is read from the source, whose ids have their own types (a Chroma shadow holds them as text)
    originals = next(iter(source.read_batches(VERIFY_SAMPLE)), None) if target_count else None
    diff = 0.0
    checked = checked_new = 0
    if originals is not None:
        sample = target.read_ids(list(originals.ids))
        if len(sample) != len(originals):
            raise VectorStoreError(f"{target.describe()}: {len(originals) - len(sample)} source points are not in "
                                   "the shadow")
        written = {str(i): (v, p) for i, v, p in zip(sample.ids, sample.vectors, sample.payloads, strict=True)}
        expected = transform.apply(originals.vectors)
        unit = target.normalises()
        for n, pid in enumerate(originals.ids):
            vec, payload = written[str(pid)]
            want = expected[n]
            if payload.get(SPACE_FIELD) == names["new"] and new is not None:
                row = new.lookup(pid)
                if row is not None:
                    want = unit_row(new.vectors[row], new.path)
                    checked_new += 1
            if vec.shape != want.shape:  # the target's column is not this migration's output
                raise ForeignShadowError(f"{target.describe()}: point {pid!r} holds a {vec.size}-d vector where the "
                                       f"bundle's transform gives {want.size}-d ones; it was not written by this "
                                       "migration (drop it, or migrate into another collection)")
            if unit:  # compare directions: cosine collections may hand back normalised vectors
                want, vec = l2_normalize(np.stack([want, vec]), f"{target.describe()}: point {pid!r}")
            if not np.allclose(vec, want, rtol=VERIFY_RTOL, atol=VERIFY_ATOL):
                raise VectorStoreError(f"{target.describe()}: point {pid!r} holds a vector that is not the bundle's "
                                       f"transform of the source (max abs difference {np.max(np.abs(vec - want)):.3g})")
            diff = max(diff, float(np.max(np.abs(vec - want))) if len(want) else 0.0)
            checked += 1
    lengths = unit_output_note(originals.vectors, source.metric()) if originals is not None else None
    return Verification(source_count, target_count, spaces, checked, diff, transform.probes, checked_new, lengths)
