"""Reading ``state_dict`` checkpoints safely and explaining why a file cannot be read.

``torch.load`` is only ever called with ``weights_only=True``: a checkpoint that needs arbitrary
Python objects is refused, never executed. When torch's restricted unpickler rejects a file we
disassemble the pickle with :mod:`pickletools` (which runs nothing) to tell "needs code" apart
from "corrupt".
"""

from __future__ import annotations

import io
import pickle
import pickletools
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from embridge.core.errors import CheckpointError, first_line

NEEDS_CODE = ("refused: the file needs arbitrary code to load (pickle); "
              "save a state_dict or TorchScript instead")
_CODE_OPCODES = {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "NEWOBJ", "NEWOBJ_EX"}


@dataclass
class StateCheckpoint:
    """The parts of a ``state_dict`` checkpoint needed to rebuild the model."""

    arch: str
    arch_config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    modality: str | None = None
    input_shape: tuple[int, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def safe_torch_load(path: str | Path) -> Any:
    """``torch.load(weights_only=True)`` on CPU with every failure turned into a CheckpointError."""
    p = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch's notes on pickle protocols
            return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "unsupported global" in str(exc).lower() or _pickle_needs_code(p):
            raise CheckpointError(p, NEEDS_CODE) from exc
        raise CheckpointError(p, "not a readable PyTorch checkpoint (corrupt or another format)") from exc
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CheckpointError(p, f"unreadable or truncated checkpoint ({first_line(exc)})") from exc
    except (KeyError, IndexError, TypeError, AttributeError, MemoryError, RecursionError,
            UnicodeDecodeError, OverflowError) as exc:  # what torch's unpickler raises on other bytes
        raise CheckpointError(p, "not a valid PyTorch checkpoint (corrupt, truncated or another format: "
                              f"{type(exc).__name__})") from exc


def _pickle_needs_code(path: Path) -> bool:
    """True when the file (or the data.pkl of a torch zip) holds a well-formed pickle importing globals (a
    legacy ``torch.save`` file is several pickles in a row: the object's comes after a few small ones)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                data = archive.read(name) if name else b""
        else:
            data = path.read_bytes()
    except Exception:  # noqa: BLE001 - unreadable: not a well-formed pickle
        return False
    stream = io.BytesIO(data)
    for _ in range(8):
        try:
            if any(op.name in _CODE_OPCODES for op, _, _ in pickletools.genops(stream)):
                return True
        except Exception:  # noqa: BLE001 - the end of the pickles, or a parse failure: nothing more to read
            return False
        if stream.tell() >= len(data):
            return False
    return False


def read_state_checkpoint(path: str | Path, arch: str | None = None,
                          arch_config: Mapping[str, Any] | None = None) -> StateCheckpoint:
    """Read a format-1 checkpoint, or a bare state dict when ``arch`` and its config are given."""
    p = Path(path)
    obj = safe_torch_load(p)
    if not isinstance(obj, Mapping):
        raise CheckpointError(p, f"expected a dict of weights, found {type(obj).__name__}")
    if "format" in obj:
        return _format_one(p, obj, arch, arch_config)
    state = _tensor_dict(p, obj)
    if not arch:
        raise CheckpointError(p, "a bare state_dict: name its architecture (--arch mlp|small_cnn) and config")
    if not arch_config:
        raise CheckpointError(p, f"a bare state_dict: give the config of architecture '{arch}' "
                              "(e.g. input_dim, out_dim)")
    return StateCheckpoint(arch, dict(arch_config), state)


def _format_one(path: Path, obj: Mapping[str, Any], arch: str | None,
                arch_config: Mapping[str, Any] | None) -> StateCheckpoint:
    if obj.get("format") != 1:
        raise CheckpointError(path, f"unsupported checkpoint format {obj.get('format')!r} (this version reads 1)")
    stored_arch = obj.get("arch")
    if not isinstance(stored_arch, str):
        raise CheckpointError(path, "checkpoint lacks the architecture name ('arch')")
    if arch and arch != stored_arch:
        raise CheckpointError(path, f"checkpoint is architecture '{stored_arch}', not '{arch}'")
    config = obj.get("arch_config") or {}
    if not isinstance(config, Mapping):
        raise CheckpointError(path, "'arch_config' must be a dict")
    merged = {**config, **(arch_config or {})}
    shape = obj.get("input_shape")
    extra = {k: v for k, v in obj.items() if k not in ("format", "arch", "arch_config", "state_dict")}
    return StateCheckpoint(stored_arch, merged, _tensor_dict(path, obj.get("state_dict")),
                           obj.get("modality"), declared_shape(path, shape, "its 'input_shape'"), extra)


def declared_shape(path: Path, value: Any, where: str) -> tuple[int, ...] | None:
    """A checkpoint's own ``input_shape`` (``where`` names the field): a list of positive whole numbers, or
    absent; anything else is refused naming the file, not read as digits of a string."""
    if value is None or (isinstance(value, list | tuple) and not value):
        return None
    if not (isinstance(value, list | tuple) and all(isinstance(s, int) and not isinstance(s, bool) and s > 0
                                                     for s in value)):
        raise CheckpointError(path, f"{where} must be a list of positive whole numbers, got {str(value)[:60]!r}")
    return tuple(int(s) for s in value)


def _tensor_dict(path: Path, obj: Any) -> dict[str, torch.Tensor]:
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(path, "no state_dict (a non-empty dict of tensors) in the checkpoint")
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(path, f"state_dict entries that are not tensors: {', '.join(bad[:5])}")
    return dict(obj)


def check_declared_sizes(expected: torch.nn.Module, ckpt: StateCheckpoint, path: str | Path) -> None:
    """Compare the config's layer shapes (built on the meta device) with the file's tensors.

    Runs before the real model is built, so a tiny file whose config asks for huge layers is
    refused without allocating them.
    """
    want = {k: tuple(v.shape) for k, v in expected.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in ckpt.state_dict.items()}
    problems = [f"size mismatch for {k}: the file holds {have[k]}, the config asks for {want[k]}"
                for k in want if k in have and have[k] != want[k]]
    problems += [f"missing key {k}" for k in want if k not in have]
    problems += [f"unexpected key {k}" for k in have if k not in want]
    if problems:
        raise CheckpointError(path, f"weights do not fit architecture '{ckpt.arch}' with config "
                              f"{ckpt.arch_config}: {'; '.join(problems[:3])[:400]}")


def load_weights(module: torch.nn.Module, ckpt: StateCheckpoint, path: str | Path) -> None:
    """Strictly load weights, naming the mismatching keys or shapes."""
    try:
        module.load_state_dict(ckpt.state_dict, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise CheckpointError(path, f"weights do not fit architecture '{ckpt.arch}' with config "
                              f"{ckpt.arch_config}: {detail[:400]}") from exc
