"""Rows an interrupted embed left for its resume, dropped with the model they belong to.

A killed ``embed`` keeps its rows in ``vectors/.partial/`` (a file the size of the whole set) so that the
next run goes on from them. Once ``model remove`` has removed the model, nothing can resume them: a model
added again under the name with other settings writes under another key. Each writer records its model
in its progress file, and the files of a removed model are deleted, except while a writer holds them.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from embridge.core.paths import is_real_dir


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
            fd = os.open(partial_dir / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a writer still at work keeps its files
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            for name in (f"{key}.json", f"{key}.npy", f"{key}.ids.npy"):
                (partial_dir / name).unlink(missing_ok=True)
            dropped += 1
        finally:
            os.close(fd)
    return dropped
