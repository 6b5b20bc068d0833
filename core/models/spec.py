"""What the workspace records about a model, and how a checkpoint's kind is recognised.

A :class:`ModelSpec` is plain data (it converts to and from a JSON-able dict) so the store can keep
it in SQLite and a bundle manifest can repeat it. Kinds are told apart by suffix first and, for
ambiguous suffixes such as ``.pt``, by the entries of the zip archive torch writes, which we list
without unpickling anything.
"""

from __future__ import annotations

import zipfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from embridge.core.errors import CheckpointError, InputError
from embridge.core.paths import check_regular
from embridge.core.store.files import sha256_file, sha256_tree

MODALITIES = ("image", "text", "vector")
ROLES_BY_SPLIT = {"query": "query"}  # every other split is embedded as a document


@dataclass(frozen=True)
class ModelSpec:
    """Identity and interface of an embedding model (input shape excludes the batch dimension)."""

    name: str
    kind: str
    modality: str
    input_shape: tuple[int, ...]
    dim: int
    params: int
    sha256: str
    path: str
    arch: str | None = None
    arch_config: dict[str, Any] = field(default_factory=dict)
    has_classifier: bool = False
    query_prompt: str = ""
    document_prompt: str = ""
    pooling: str | None = None

    def prompt_for(self, role: str | None) -> str:
        """The text prepended for a role: "query", "document", or None for no prompt."""
        return self.query_prompt if role == "query" else self.document_prompt if role == "document" else ""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["input_shape"] = list(self.input_shape)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        """Rebuild from :meth:`to_dict` output; unknown keys (added by newer versions) are ignored."""
        known = {f.name for f in fields(cls)}
        missing = {"name", "kind", "modality", "dim", "sha256", "path"} - set(data)
        if missing:
            raise CheckpointError(data.get("path"), f"model record lacks {', '.join(sorted(missing))}")
        values = {k: v for k, v in data.items() if k in known}
        values["input_shape"] = tuple(int(s) for s in values.get("input_shape") or ())
        values["arch_config"] = dict(values.get("arch_config") or {})
        values.setdefault("params", 0)
        return cls(**values)


def checkpoint_sha256(path: str | Path) -> str:
    """sha256 of a checkpoint file, or of a model folder's files (names and contents)."""
    p = Path(path)
    return sha256_tree(p) if p.is_dir() else sha256_file(p)


# what mends a stored copy deleted or changed by hand (see embridge.core.models.adding)
RESTORE_ADVICE = ("add the checkpoint it was added from again ('embridge model add --name {name} --path ORIGINAL') "
                  "to restore it")


def check_stored_copy(path: str | Path, sha256: str, name: str) -> None:
    """Refuse a model's stored checkpoint copy that is missing or changed since it was added, with the advice
    that mends it (adding the original checkpoint again restores the copy)."""
    from embridge.core.errors import CheckpointError

    advice = RESTORE_ADVICE.format(name=name)
    if not Path(path).exists():  # a stored copy deleted by hand
        raise CheckpointError(path, "the model's checkpoint is missing (deleted or moved since the model was added); "
                              + advice)
    if not checkpoint_unchanged(path, sha256):
        raise CheckpointError(path, f"file changed since the model was added (sha256 differs); {advice}")


def checkpoint_unchanged(path: str | Path, sha256: str) -> bool:
    """The checkpoint still holds what was added (``sha256``). A file checked before and untouched since
    (same inode, size and times) is not hashed again, so every process that runs or reads a stored
    model can afford the check; a folder is hashed whole."""
    from embridge.core.errors import IntegrityError
    from embridge.core.store.file_checks import verified_sha256

    p = Path(path)
    if p.is_dir():
        return sha256_tree(p) == sha256
    try:
        verified_sha256(p, sha256)
    except IntegrityError:
        return False
    return True


def require_exists(path: str | Path) -> Path:
    """The checkpoint path, refused when missing, empty, or neither a regular file nor a folder (a FIFO)."""
    p = Path(path)
    if not p.exists():
        try:
            p.stat()
        except OSError as exc:  # a link whose target is gone, or a loop of links, is not "not found"
            if p.is_symlink():
                raise CheckpointError(p, f"is a link that cannot be followed ({exc.strerror})") from None
        raise CheckpointError(p, "file not found")
    try:
        check_regular(p, "checkpoint")
    except InputError as exc:
        raise CheckpointError(p, exc.problem) from None
    if p.is_file() and p.stat().st_size == 0:
        raise CheckpointError(p, "file is empty")
    return p


def infer_kind(path: str | Path) -> str:
    """Guess a checkpoint's kind from its suffix or, for ``.pt``-like files, its archive entries."""
    p = require_exists(path)
    if p.is_dir():
        from embridge.core.models.text_folders import folder_kind

        return folder_kind(p)
    suffix = p.suffix.lower()
    if suffix == ".npz":
        return "vectors"
    if suffix == ".npy":
        raise CheckpointError(p, "an embeddings-only model is one .npz file with arrays 'ids' and 'vectors'")
    if suffix == ".onnx":  # ONNX is read as a text-model folder: model.onnx beside its tokenizer
        raise CheckpointError(p, "an ONNX file alone is not a model Embridge reads: give the folder holding "
                              "model.onnx with its tokenizer and config (an ONNX text model), or export the "
                              "network to TorchScript or torch.export")
    if suffix == ".pt2":
        return "export"
    if suffix in (".ts", ".torchscript"):
        return "torchscript"
    return _kind_from_archive(p)


def _kind_from_archive(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return "state_dict"  # legacy torch.save format; loading it says whether it is valid
    tails = {n.split("/", 1)[1] if "/" in n else n for n in names}
    if "constants.pkl" in tails or any(t.startswith("code/") for t in tails):
        return "torchscript"
    if "archive_format" in tails or any(t.startswith("models/") for t in tails):
        return "export"
    return "state_dict"


def role_of_split(split: str | None) -> str:
    """Items of split "query" get the query prompt; gallery (and every other split) the document prompt."""
    return ROLES_BY_SPLIT.get(split or "", "document")


def modality_for_shape(shape: tuple[int, ...]) -> str:
    """Vectors are 1-D inputs; 2-D (H, W) and 3-D (C, H, W) inputs are images."""
    return "vector" if len(shape) == 1 else "image"
