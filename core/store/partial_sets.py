"""Rows an interrupted embed left for its resume, dropped with the model they belong to.

A killed ``embed`` keeps its rows in ``vectors/.partial/`` (a file the size of the whole set) so that the
next run goes on from them. Once ``model remove`` has removed the model, nothing can resume them: a model
added again under the name with other settings writes under another key. Each writer records its model
in its progress file, and the files of a removed model are deleted, except while a writer holds them.
"""

from __future__ import annotations

import json
from pathlib import Path

from embridge.core.paths import is_real_dir
from embridge.core.store.file_lock import exclusive_lock


class _Busy(Exception):
    """A writer holds the rows' lock: they are its to resume."""


def drop_partials(partial_dir: Path, model: str) -> int:
    """Delete the resumable rows that model ``model`` left in ``partial_dir``; returns how many sets."""
    if not is_real_dir(partial_dir):
        return 0
    dropped = 0
    for state in sorted(partial_dir.glob("*.json")):
        try:
            owner = json.loads(state.read_text()).get("model")
        except (OSError, ValueError, AttributeError):
            continue
        if owner != model:
            continue
        key = state.name[:-len(".json")]
        try:
            with exclusive_lock(partial_dir / f"{key}.lock", _Busy):  # the writer's own lock: one at work keeps them
                for name in (f"{key}.json", f"{key}.npy", f"{key}.ids.npy"):
                    (partial_dir / name).unlink(missing_ok=True)
        except (_Busy, OSError):
            continue
        dropped += 1
    return dropped
