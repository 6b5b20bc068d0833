"""A migration's record of the source points it has copied, so that a resume can tell the source changed.

A checkpoint's cursor and count say where to continue, not whether the points before the cursor are
still the ones that were copied: a point edited, removed or moved in the source between a kill and
the resume would leave the shadow holding a vector or payload the source no longer has. So each
copied batch's ids, vectors and payloads are hashed as read, and the checkpoint keeps the chain of
those hashes (one value, whatever the size of the source) and the batch size they were read with.
A resume reads the copied part of the source again with that batch size and recomputes the chain
before it writes anything; a different chain refuses the resume.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from embridge.core.connectors.connector import Batch, Connector, VectorStoreError

CHAIN = "source_chain"
READ_BATCH = "read_batch"


def batch_digest(batch: Batch) -> str:
    """sha256 of a batch's ids, float32 vectors and payloads (keys sorted), in the order read."""
    digest = hashlib.sha256("\0".join(map(str, batch.ids)).encode())
    digest.update(np.ascontiguousarray(batch.vectors, dtype=np.float32).data)
    digest.update(json.dumps(batch.payloads, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def extend_chain(chain: str, digest: str) -> str:
    return hashlib.sha256(f"{chain}:{digest}".encode()).hexdigest()


def start_record(state: dict[str, Any], batch_size: int) -> None:
    """Make a new checkpoint keep the chain (an empty one: nothing copied yet)."""
    state[CHAIN], state[READ_BATCH] = "", int(batch_size)


def read_batch_size(state: dict[str, Any], asked: int) -> int:
    """The batch size to read with: the one the checkpoint's chain was recorded with, if any."""
    return int(state.get(READ_BATCH) or asked)


def record_batch(state: dict[str, Any], digest: str) -> None:
    """Add a written batch to the chain (a checkpoint from before chains were kept has none to extend)."""
    if CHAIN in state:
        state[CHAIN] = extend_chain(state[CHAIN], digest)


def check_copied_unchanged(source: Connector, target: Connector, state: dict[str, Any],
                           outcome: str = "nothing more was written") -> None:
    """Refuse a resume (or a switch, or a rerun's verification) when the points already copied are no
    longer those the source holds; ``outcome`` says what was left undone."""
    chain, written = state.get(CHAIN), int(state.get("written") or 0)
    if chain is None or written == 0:
        return
    got, count = "", 0
    source.refresh()  # the source as it is now, not the snapshot the copy read
    reader = source.read_batches(int(state[READ_BATCH]))
    try:
        for batch in reader:
            got, count = extend_chain(got, batch_digest(batch)), count + len(batch)
            if count >= written:
                break
    finally:
        reader.close()
    if count != written or got != chain:
        raise VectorStoreError(f"{source.describe()}: changed since the migration into {target.describe()} started "
                               f"(points among the {written} it has copied were edited, removed, added or moved); "
                               f"{outcome}: drop '{target.collection}' to migrate again from the start (while "
                               "the source takes no writes, for a copy of all of them), or migrate into another target")
