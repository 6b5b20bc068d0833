"""Adding a model to a workspace, composed once for ``embridge model add`` and the app's Models page.

Both front ends pass what the user typed; the rules (a valid name, a positive input shape, no
second copy of a stored checkpoint) and their messages live here, so a bad value is refused the
same way wherever it is typed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embridge.core.errors import CheckpointError, InputError, UsageError
from embridge.core.paths import irregular_kind
from embridge.core.progress import ProgressFn, no_progress
from embridge.core.store import Workspace

SHAPE_OPTION = "--input-shape"
_SIGNED_DIGITS = re.compile(r"[+-]?[0-9]+")  # what int() reads, in ASCII digits only


def parse_input_shape(raw: str | None, option: str = SHAPE_OPTION) -> tuple[int, ...] | None:
    """'1,28,28', '1x28x28' or '(1, 28, 28)' -> (1, 28, 28); empty or None -> None (inferred later).

    Every dimension must be a positive integer in ASCII digits (``int`` would read full-width or Arabic-Indic
    digits too): anything else is refused before any work, naming ``option`` (exit status 2 on the command line).
    """
    if raw is None:
        return None
    text = raw.strip().replace("x", ",").replace("(", "").replace(")", "")
    if not text:
        return None
    parts = text.split(",")
    if len(parts) > 1 and not parts[-1].strip():  # a tuple's trailing comma: '(8,)'
        parts = parts[:-1]
    if not all(_SIGNED_DIGITS.fullmatch(part.strip()) for part in parts):  # '1,,16' is a missing size, not none
        raise UsageError(option, f"expected integers like 1,28,28, got '{raw.strip()}'")
    shape = tuple(int(part) for part in parts)
    if not shape or min(shape) <= 0:
        raise UsageError(option, f"expected positive integers like 1,28,28, got '{raw.strip()}'")
    return shape


@dataclass(frozen=True)
class AddedModel:
    """What adding a model stored: its workspace row and the spec read from the checkpoint."""

    row: dict[str, Any]
    spec: dict[str, Any]
    restored: bool = False  # the checkpoint put back a stored model's missing or changed copy; nothing added

    def to_dict(self) -> dict[str, Any]:
        data = {k: self.row[k] for k in ("name", "role", "kind", "modality", "dim", "params", "sha256", "path")}
        data.update({k: self.spec.get(k) for k in ("query_prompt", "document_prompt", "pooling")})
        return data

    def line(self) -> str:
        from embridge.core.prompts import prompts_text

        r = self.row
        if self.restored:
            return (f"restored the stored copy of model {r['name']} from {r['source_path']} (the same checkpoint: "
                    f"sha256 {str(r['sha256'])[:12]}); no model was added")
        line = f"added model {r['name']} ({r['kind']}, {r['modality']}, dim {r['dim']}, role {r['role']})"
        described = prompts_text(self.spec)
        return line + (f"; {described}" if described else "")


def _check_stored_file(ws: Workspace, path: str | Path, text: Any, reading: bool = False) -> None:
    """A file already stored as a model, given without settings that would make it another one (text
    settings; ``reading``: an input shape or architecture given), is refused before it is described:
    describing may first ask for an input shape it does not need."""
    from embridge.core.models.manage import TEXT_SETTINGS, check_not_duplicate
    from embridge.core.models.spec import checkpoint_sha256

    p = Path(path)
    if reading or any(getattr(text, key, None) is not None for key in TEXT_SETTINGS) or not p.is_file():
        return
    try:
        size = p.stat().st_size
        stored = {Path(m["path"]).stat().st_size for m in ws.models()
                  if m.get("path") and Path(m["path"]).is_file()}
        if size not in stored:  # no stored file of this size: no need to hash it twice
            return
        sha = checkpoint_sha256(p)
    except OSError:
        return  # describing the checkpoint names what is wrong with it
    plain = [row["spec"] for row in ws.models_with_sha256(sha)
             if not any((row.get("spec") or {}).get(key) for key in TEXT_SETTINGS)]
    if plain:
        check_not_duplicate(ws, plain[0], path)


def _refuse_linked_folders(path: Path) -> None:
    """A model folder is copied whole into the workspace: a link to a folder inside it would be copied with
    everything it holds (a whole environment, say), and its files hashed apart from the folder's own, so the
    stored copy never matched its checksum. Links to files (a Hugging Face cache's snapshot) are read as files."""
    if not path.is_dir():
        return
    for top, folders, files in os.walk(path):  # links are not followed
        for name in folders:
            inside = Path(top) / name
            if inside.is_symlink():
                raise CheckpointError(inside, f"is a symbolic link to the folder {os.readlink(inside)}; a model "
                                      "folder is copied whole into the workspace: copy that folder in instead")
        for name in files:  # a device read as a file: /dev/zero copied without end, /dev/null stored empty
            inside = Path(top) / name
            kind = irregular_kind(inside)  # (a dangling link is None: the folder's hash names it)
            if kind is not None:
                what = f"a symbolic link to {os.readlink(inside)}, which is {kind}" if inside.is_symlink() else kind
                raise CheckpointError(inside, f"is {what}, not a regular file; a model folder holds files only")


def _restore_copy(ws: Workspace, name: str, path: str | Path, progress: ProgressFn) -> AddedModel | None:
    """Put back model ``name``'s stored copy from ``path`` when that copy is missing or changed and ``path``
    holds the very checkpoint the model was added from (its sha256); None when there is nothing to mend."""
    from embridge.core.models.spec import checkpoint_sha256, checkpoint_unchanged
    from embridge.core.paths import check_regular

    row = ws.model(name)
    if not row.get("file") or not row.get("sha256"):
        return None  # a vectors-only model references its file: nothing was copied
    stored = Path(str(row["path"]))
    if stored.exists() and checkpoint_unchanged(stored, str(row["sha256"])):
        return None
    if not Path(path).exists():
        return None
    check_regular(path, "checkpoint")  # a FIFO would block the hash for good
    _refuse_linked_folders(Path(path))  # what the copy would follow and the hash pass over: refused as at add
    if checkpoint_sha256(path) != row["sha256"]:
        return None
    progress(1, 2, {"stage": "restoring the stored copy"})
    ws.restore_model_copy(name, path)
    progress(2, 2, {"stage": "restored"})
    return AddedModel({**ws.model(name), "source_path": str(Path(path).resolve())}, dict(row.get("spec") or {}),
                      restored=True)


def _restore_any_copy(ws: Workspace, path: str | Path, progress: ProgressFn) -> AddedModel | None:
    """Mend the damaged copy of whichever stored model ``path`` is the checkpoint of (by its sha256)."""
    from embridge.core.models.spec import checkpoint_sha256
    from embridge.core.paths import check_regular

    try:
        check_regular(path, "checkpoint")
        sha256 = checkpoint_sha256(path)
    except (InputError, OSError):  # nothing to mend from: the refusal that sent here is the one to say
        return None
    for model in ws.models_with_sha256(sha256):
        restored = _restore_copy(ws, str(model["name"]), path, progress)
        if restored is not None:
            return restored
    return None


def add_model(ws: Workspace, path: str | Path, name: str, role: str = "other", *, kind: str | None = None,
              arch: str | None = None, arch_config: Mapping[str, Any] | None = None,
              input_shape: str | tuple[int, ...] | None = None, text: Any = None,
              on_progress: ProgressFn | None = None) -> AddedModel:
    """Check the name, describe (load and probe) the checkpoint, refuse a duplicate, then store it.

    ``input_shape`` may be the text the user typed; it is parsed by :func:`parse_input_shape`.
    """
    from embridge.core.models import describe_model
    from embridge.core.models.manage import check_not_duplicate, duplicate_of
    from embridge.core.paths import check_name

    progress = on_progress or no_progress
    check_name(name, "--name")  # before the checkpoint is even opened
    if ws.has_model(name):
        restored = _restore_copy(ws, name, path, progress)  # 'add the checkpoint again' mends a damaged copy
        if restored is not None:
            return restored
        raise InputError("--name", f"a model named '{name}' already exists; choose another name")
    _check_stored_file(ws, path, text, reading=any(v is not None for v in (input_shape, arch, arch_config)))
    _refuse_linked_folders(Path(path))
    shape = parse_input_shape(input_shape) if isinstance(input_shape, str) else input_shape
    if shape is not None:
        parse_input_shape(",".join(str(s) for s in shape))  # the same rule for a shape given as numbers
    progress(0, 2, {"stage": "inspecting the checkpoint"})
    try:
        spec = describe_model(path, kind=kind, name=name, arch=arch, arch_config=arch_config,
                              input_shape=shape, text=text).to_dict()
    except InputError:  # e.g. no input shape given: a stored model's own damaged copy needs none to be mended
        restored = _restore_any_copy(ws, path, progress)
        if restored is None:
            raise
        return restored
    twin = duplicate_of(ws, spec)
    if twin is not None:  # the same checkpoint under another name: mended if its copy is damaged, else refused
        restored = _restore_copy(ws, twin, path, progress)
        if restored is not None:
            return restored
    check_not_duplicate(ws, spec, path)
    progress(1, 2, {"stage": "copying it into the workspace"})
    row = ws.add_model(name, role, spec, path)
    progress(2, 2, {"stage": "added"})
    return AddedModel(row, spec)
