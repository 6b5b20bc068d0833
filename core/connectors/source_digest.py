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
from collections.abc import Iterator
from typing import Any

import numpy as np

from embridge.core.connectors.connector import Batch, Connector, VectorStoreError

CHAIN = "source_chain"
READ_BATCH = "read_batch"
LENGTHS = "batch_lengths"  # the copied batches' sizes, run-length coded: [[size, times], ...]


class SourceChangedError(VectorStoreError):
    """The points a migration copied are no longer those the source holds (not a passing read error)."""


def batch_digest(batch: Batch) -> str:
    """sha256 of a batch's ids, float32 vectors and payloads (keys sorted), in the order read."""
    digest = hashlib.sha256("\0".join(map(str, batch.ids)).encode())
    digest.update(np.ascontiguousarray(batch.vectors, dtype=np.float32).data)
    digest.update(json.dumps(batch.payloads, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def extend_chain(chain: str, digest: str) -> str:
    return hashlib.sha256(f"{chain}:{digest}".encode()).hexdigest()


def start_record(state: dict[str, Any], batch_size: int) -> None:
    """Make a new checkpoint keep the chain (an empty one: nothing copied yet) and its batches' sizes."""
    state[CHAIN], state[READ_BATCH], state[LENGTHS] = "", int(batch_size), []


def read_batch_size(state: dict[str, Any], asked: int) -> int:
    """The batch size to read with: the one the checkpoint's chain was recorded with, if any."""
    return int(state.get(READ_BATCH) or asked)


def record_batch(state: dict[str, Any], digest: str, size: int) -> None:
    """Add a written batch to the chain (a checkpoint from before chains were kept has none to extend)."""
    if CHAIN in state:
        state[CHAIN] = extend_chain(state[CHAIN], digest)
    lengths = state.get(LENGTHS)
    if isinstance(lengths, list):
        if lengths and lengths[-1][0] == size:
            lengths[-1][1] += 1
        else:
            lengths.append([int(size), 1])


def _rebatched(batches: Iterator[Batch], lengths: list[list[int]]) -> Iterator[Batch]:
    """``batches`` cut again into the recorded sizes: a store may split one read into other batches than
    the copy's (Parquet starts a read from a cursor at a row group), and the chain hashes whole batches."""
    ids: list[Any] = []
    vectors: list[np.ndarray] = []
    payloads: list[dict[str, Any]] = []
    sizes = (size for size, times in lengths for _ in range(times))
    want = next(sizes, None)
    for batch in batches:
        ids += list(batch.ids)
        vectors.append(np.asarray(batch.vectors, dtype=np.float32))
        payloads += list(batch.payloads)
        while want is not None and len(ids) >= want:
            stacked = np.concatenate(vectors) if len(vectors) > 1 else vectors[0]
            yield Batch(ids[:want], stacked[:want], payloads[:want])
            ids, payloads, vectors = ids[want:], payloads[want:], [stacked[want:]]
            want = next(sizes, None)
        if want is None:
            return
    if ids:  # fewer points than were copied: a batch short of its size, which the chain cannot match
        yield Batch(ids, np.concatenate(vectors), payloads)


def check_copied_unchanged(source: Connector, target: Connector, state: dict[str, Any],
                           outcome: str = "nothing more was written") -> None:
    """Refuse a resume (or a switch, or a rerun's verification) when the points already copied are no
    longer those the source holds; ``outcome`` says what was left undone. A checkpoint of an earlier
    version recorded no batch sizes: it is compared in its batch size, except for a store whose reads
    from a cursor come in other batches (Parquet), where it cannot be compared and is passed over."""
    chain, written = state.get(CHAIN), int(state.get("written") or 0)
    if chain is None or written == 0 or (not state.get(LENGTHS) and not source.even_batches):
        return
    got, count = "", 0
    source.refresh()  # the source as it is now, not the snapshot the copy read
    reader = source.read_batches(int(state[READ_BATCH]))
    lengths = state.get(LENGTHS)
    batches = _rebatched(reader, lengths) if isinstance(lengths, list) and lengths else reader
    try:
        for batch in batches:
            got, count = extend_chain(got, batch_digest(batch)), count + len(batch)
            if count >= written:
                break
    except ValueError:  # vectors of another width now: not what was copied
        got = ""
    finally:
        reader.close()
    if count != written or got != chain:
        raise SourceChangedError(f"{source.describe()}: changed since the migration into {target.describe()} "
                                 f"started (points among the {written} it has copied were edited, removed, added or "
                                 f"moved); {outcome}: drop '{target.collection}' to migrate again from the start "
                                 "(while the source takes no writes, for a copy of all of them), or migrate into "
                                 "another target")
