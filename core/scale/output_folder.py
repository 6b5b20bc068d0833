"""The output folder of a dataset transform: its marker, and what a rerun may keep of it.

A transform's folder holds a marker naming the job (bundle, source, columns, output kind) and, per
source partition, the size and modification time its file had when the job last ran. A rerun of the
same job keeps every finished partition whose source file is unchanged; the output of a partition
whose file changed or went away is removed before anything else, so the folder never mixes old and
new inputs, and partitions that appeared are simply more work. A folder made by another job is
refused with what differs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from embridge.core.errors import InputError
from embridge.core.paths import remove_no_follow
from embridge.core.scale.partitions import SourceDataset

STATE_FILE = "_embridge_transform.json"
MARKS_KEY = "marks"  # in a job's state: its output rows say their space (an earlier version's did not)
_INPUT_KEYS = ("inputs", "partitions")  # "partitions": the name list older markers kept
_WHAT = {"layer_sha256": "layer", "bundle_sha256": "bundle (an older Embridge's marker)", "source": "source folder", "source_version": "source version",
         "id": "id column", "vector": "vector column", "output": "output kind",
         MARKS_KEY: "Embridge version (its output rows carry no embridge_space)"}


def partition_stamps(source: SourceDataset) -> dict[str, list[int] | None]:
    """Each partition's (size, mtime, ctime in ns); a Lance source's fragments are pinned by its version instead.

    The ctime, which no user tool sets back, tells a file rewritten at its size with its mtime restored
    (``cp -p``, ``touch -r``) from the one transformed before."""
    if source.kind != "parquet":
        return {p.name: None for p in source.partitions}
    stamps: dict[str, list[int] | None] = {}
    for part in source.partitions:
        st = os.stat(part.path)
        stamps[part.name] = [st.st_size, st.st_mtime_ns, st.st_ctime_ns]
    return stamps


def stamps_like(now: dict[str, Any], recorded: Any) -> dict[str, Any]:
    """``now``'s partition stamps in the form ``recorded`` (an earlier run's) has them: an older Embridge
    stamped (size, mtime) only, and its job must still resume, not read every partition as changed."""
    recorded = recorded if isinstance(recorded, dict) else {}
    return {name: stamp[:len(recorded[name])] if isinstance(stamp, list) and isinstance(recorded.get(name), list)
            else stamp for name, stamp in now.items()}


def _job(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k not in _INPUT_KEYS}


def _recorded_inputs(state: dict[str, Any]) -> dict[str, Any]:
    if isinstance(state.get("inputs"), dict):
        return state["inputs"]
    return {str(name): None for name in state.get("partitions", [])}  # an older marker: names only


def stale_partitions(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Partitions an earlier run recorded whose source file has since changed or gone away."""
    recorded = _recorded_inputs(before)
    current = stamps_like(now["inputs"], recorded)
    return sorted(name for name, stamp in recorded.items()
                  if name not in current or (stamp is not None and stamp != current[name]))


def _difference(before: dict[str, Any], now: dict[str, Any]) -> str:
    keys = sorted(set(_job(before)) | set(_job(now)))
    changed = [_WHAT.get(k, k) for k in keys if before.get(k) != now.get(k)]
    return ", ".join(changed) or "job"


def prepare_target(dst: Path, state: dict[str, Any],
                   output_of: Callable[[str], Path]) -> tuple[bool, Path | None, list[str]]:
    """Create the output folder, or check that an existing one belongs to this same job.

    Returns (fresh, made, replaced): whether this call started the output (wrote its marker), the
    topmost folder it created (None: none), so a refusal before any output can take back what it
    wrote, and the partitions whose earlier output was removed because their source file changed
    or went away.
    """
    if dst.exists() and not dst.is_dir():
        raise InputError("--to", f"{dst}: exists and is a file, not an output folder or dataset")
    marker = dst / STATE_FILE
    if marker.exists():
        before = read_marker(marker)
        if not isinstance(before, dict) or _job(before) != _job(state):
            what = _difference(before, state) if isinstance(before, dict) else "job"
            raise InputError("--to", f"{dst}: holds the output of another transform (other {what}); "
                             "choose a new folder")
        replaced = [name for name in stale_partitions(before, state) if output_of(name).exists()]
        for name in replaced:  # removed before the marker is updated, so a crash here only repeats it
            output_of(name).unlink()
        remove_half_written(dst)
        if before != state:
            write_marker(marker, state)
        return False, None, replaced
    if dst.exists() and any(dst.iterdir()):
        raise InputError("--to", f"{dst}: exists and is not the output of an earlier run of this transform")
    made = first_missing(dst)
    dst.mkdir(parents=True, exist_ok=True)
    remove_half_written(dst)
    write_marker(marker, state)
    return True, made, []


def read_marker(marker: Path) -> Any:
    """The job an output folder's marker names; one line when it cannot be read."""
    try:
        return json.loads(marker.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(marker, f"unreadable job marker ({exc}); choose a new folder") from exc


def begun_unmarked(folder: Path) -> bool:
    """Whether an output ``folder`` holds a job an earlier version began, whose rows carry no space marker (or a
    marker that is no job at all): :func:`prepare_target` refuses to resume it as another job's."""
    marker = folder / STATE_FILE
    before = read_marker(marker) if marker.exists() else None
    return before is not None and (not isinstance(before, dict) or MARKS_KEY not in before)


def write_marker(marker: Path, state: dict[str, Any]) -> None:
    """Write the marker under a temp name, then rename: a crash never leaves half a marker."""
    tmp = marker.with_name(f".{marker.name}.tmp")
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, marker)


def remove_half_written(dst: Path) -> None:
    """Remove the hidden temp files of outputs never renamed into place (a killed or cancelled run's)."""
    for stale in dst.glob(".*.tmp-*"):  # a partition a killed run left half written
        stale.unlink()


def first_missing(folder: Path) -> Path | None:
    """The topmost folder of ``folder``'s path that does not exist yet (None when it exists)."""
    if folder.exists():
        return None
    top = folder
    while not top.parent.exists() and top.parent != top:
        top = top.parent
    return top


def take_back(dst: Path, made: Path | None) -> None:
    """Remove what a run that wrote no output left: the folders it made, or what it put in an empty one."""
    if made is not None:
        remove_no_follow(made)
        return
    for entry in list(dst.iterdir()):
        remove_no_follow(entry)
