"""A migration's checkpoint in its target store: whether a run resumes it, starts afresh or is refused.

Each engine keeps its checkpoint under a key of its own (``migrate-X`` locally, ``ray-migrate-X`` on Ray);
a target one engine wrote is refused to the other rather than appended to or taken for a stranger's.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from embridge.core.connectors.connector import Connector, VectorStoreError
from embridge.core.connectors.migration_fingerprint import comparable, fingerprint_change


def resumable_state(target: Connector, key: str, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint of the migration into ``target`` that ``fingerprint`` names, None for a fresh one.

    A target holding another migration (other bundle, source or settings, or a changed source), or a
    collection Embridge did not start, is refused: a migration never writes into data it did not make.
    A checkpoint whose collection was dropped since starts afresh; one whose collection lost points it
    recorded is refused (resuming would leave those points missing).
    """
    state = target.load_state(key)
    if state is not None and not target.exists():
        state = None  # never made, or dropped since: nothing of that migration is left, start afresh
    if state is not None and int(state.get("written") or 0) > 0:
        if (held := target.count()) < int(state["written"]):
            raise VectorStoreError(f"{target.describe()}: its migration checkpoint records {int(state['written'])} "
                                   f"points written, but it holds {held}: points were removed outside the "
                                   "migration; drop the collection to start again, or choose another target")
    before = comparable(state.get("fingerprint")) if state is not None else None
    recounted = isinstance(before, dict) and before != fingerprint and \
        {**before, "source_count": fingerprint["source_count"]} == fingerprint  # the same migration, another count
    if recounted and state is not None and state.get("status") != "complete" and not int(state.get("written") or 0):
        before = state["fingerprint"] = fingerprint  # nothing copied yet: it starts on the source as it is now
        target.save_state(key, state)
    elif recounted and state is not None and state.get("status") != "complete":  # not to be finished
        target.save_state(key, {**state, "source_changed": True})  # so check says it as well
        raise VectorStoreError(f"{target.describe()}: its migration read a source of {before.get('source_count')} "
                               f"points, which holds {fingerprint['source_count']} now (points were added or "
                               "removed since); nothing more was written and no alias was moved: drop "
                               f"'{target.collection}' to migrate again from the start")
    elif recounted and state is not None:  # complete, and it may serve: the change is said, nothing dropped
        raise VectorStoreError(f"{target.describe()}: complete, of a source that held {before.get('source_count')} "
                               f"points then and holds {fingerprint['source_count']} now (points were added or "
                               "removed since); nothing was done and no alias was moved: it keeps the source as "
                               "copied; migrate into a new collection to take the change")
    if state is not None and before != fingerprint:
        raise VectorStoreError(f"{target.describe()}: holds a different migration ("
                               f"{fingerprint_change(state.get('fingerprint'), fingerprint)}); run it with the "
                               "same options, or drop it or choose another target")
    if state is not None and state.get("fingerprint") != fingerprint:  # an earlier version's kept the password
        state["fingerprint"] = fingerprint
        target.save_state(key, state)
    if state is None and target.exists():
        raise VectorStoreError(f"{target.describe()}: already exists and is not a migration Embridge started; "
                               "choose a new target collection")
    return state


def other_engines_shadow(target: Connector, other_key: str, engine: str) -> None:
    """Refuse a target that a migration on the other engine wrote (each engine keeps its checkpoint under a key
    of its own, so each took the other's shadow for one it could append to or one it did not start); that
    engine's checkpoint of a collection since dropped is removed, so ``check`` reads this one."""
    if target.load_state(other_key) is None:
        return
    if not target.exists():
        target.save_state(other_key, None)
        staging = ray_staging(target)
        if engine == "ray" and staging is not None:  # its partitions, staged before it was stopped, go with it
            shutil.rmtree(staging, ignore_errors=True)
        return
    raise VectorStoreError(f"{target.describe()}: written by a migration on the {engine} engine; run it with "
                           f"--engine {engine} to finish or verify it, or drop it or choose another target")


def ray_staging(target: Connector) -> Path | None:
    """The folder beside the store where a migration on Ray stages its transformed partitions (None for a
    store with no local folder, which such a migration refuses)."""
    state_dir = target.state_dir()
    return None if state_dir is None else Path(state_dir) / f".embridge-ray-{target.collection}"
