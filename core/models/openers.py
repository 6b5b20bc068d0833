"""Opening a checkpoint of a known kind onto a device, in eval mode.

TorchScript files and ``torch.export`` programs carry the model's own code, and opening one runs
that code's graph: only open them from a source you trust. ``state_dict`` checkpoints are read with
``torch.load(weights_only=True)`` and run only our built-in architectures.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from embridge.core.errors import CheckpointError
from embridge.core.model_kinds import KINDS
from embridge.core.models.builtin import build_model
from embridge.core.models.checkpoint_reader import (
    check_declared_sizes,
    declared_shape,
    first_line,
    load_weights,
    read_state_checkpoint,
)
from embridge.core.models.spec import require_exists
from embridge.core.models.text_folders import TEXT_KINDS
from embridge.core.models.vectors_only import VectorTable

DECLARATION_FILE = "embridge.json"  # optional TorchScript extra file: {"input_shape": [...], "modality": ...}


@dataclass
class Opened:
    """A model opened in memory plus the facts its file revealed."""

    module: Any
    input_shape: tuple[int, ...] | None = None
    modality: str | None = None
    arch: str | None = None
    arch_config: dict[str, Any] = field(default_factory=dict)
    fixed_batch: int | None = None


def open_model(kind: str, path: str | Path, device: torch.device, arch: str | None = None,
               arch_config: Mapping[str, Any] | None = None, pooling: str | None = None) -> Opened:
    """Load a checkpoint of a known kind onto ``device`` in eval mode (``pooling``: text folders only)."""
    p = require_exists(path)
    if kind == "torchscript":
        return _open_torchscript(p, device)
    if kind == "export":
        return _open_export(p, device)
    if kind == "state_dict":
        ckpt = read_state_checkpoint(p, arch, arch_config)
        check_declared_sizes(build_model(ckpt.arch, ckpt.arch_config, p, device="meta")[0], ckpt, p)
        module, shape = build_model(ckpt.arch, ckpt.arch_config, p)
        load_weights(module, ckpt, p)
        if ckpt.input_shape and ckpt.input_shape != shape:
            raise CheckpointError(p, f"checkpoint declares input shape {ckpt.input_shape} but architecture "
                                  f"'{ckpt.arch}' with its config takes {shape}")
        return Opened(module.eval().to(device), shape, ckpt.modality, ckpt.arch, ckpt.arch_config)
    if kind == "vectors":
        return Opened(VectorTable.load(p), (), "vector")
    if kind in TEXT_KINDS:
        from embridge.core.models.text_encoders import open_text_encoder

        if not p.is_dir():
            raise CheckpointError(p, f"a model of kind {kind} is a folder, not a file")
        return Opened(open_text_encoder(kind, p, str(device), pooling), (), "text")
    raise CheckpointError(p, f"unknown model kind '{kind}'; use one of {', '.join(KINDS)}")


def _open_torchscript(path: Path, device: torch.device) -> Opened:
    extra = {DECLARATION_FILE: ""}
    try:
        module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except (RuntimeError, ValueError, OSError) as exc:
        raise CheckpointError(path, f"not a loadable TorchScript file: unreadable, truncated or another "
                              f"format ({first_line(exc)})") from exc
    declared: dict[str, Any] = {}
    if extra[DECLARATION_FILE]:
        try:
            declared = json.loads(extra[DECLARATION_FILE])
        except ValueError as exc:
            raise CheckpointError(path, f"its {DECLARATION_FILE} is not valid JSON") from exc
        if not isinstance(declared, dict):
            raise CheckpointError(path, f"its {DECLARATION_FILE} must be a JSON object, not {type(declared).__name__}")
    shape = declared_shape(path, declared.get("input_shape"), f"its {DECLARATION_FILE} 'input_shape'")
    return Opened(module.eval(), shape, declared.get("modality"))


@contextmanager
def tensors_only() -> Iterator[None]:
    """Every ``torch.load`` in the block reads tensors and plain containers only: ``torch.export.load`` reads
    a program's pickles (sample inputs, constants) safely first and, when that fails, again unsafely, which
    ran code a tampered archive put there; torch's own switch turns the second attempt into the first."""
    key, before = "TORCH_FORCE_WEIGHTS_ONLY_LOAD", os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    os.environ[key] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def _open_export(path: Path, device: torch.device) -> Opened:
    if not zipfile.is_zipfile(path):
        raise CheckpointError(path, "not a torch.export program (.pt2 archive): unreadable or truncated")
    try:
        with tensors_only():
            program = torch.export.load(str(path))
        if device.type != "cpu":
            from torch.export.passes import move_to_device_pass

            program = move_to_device_pass(program, device)
    except Exception as exc:  # deserialisation raises many types for damaged archives
        raise CheckpointError(path, f"not a loadable torch.export program ({first_line(exc)})") from exc
    inputs = program.graph_signature.user_inputs
    if len(inputs) != 1:
        raise CheckpointError(path, f"the program takes {len(inputs)} inputs; an embedder takes one batch tensor")
    node = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == inputs[0])
    shape = tuple(node.meta["val"].shape)
    if any(not isinstance(s, int) for s in shape[1:]):
        raise CheckpointError(path, f"only the batch dimension may be dynamic; the input shape is {shape}")
    fixed = int(shape[0]) if isinstance(shape[0], int) else None
    return Opened(program.module(), tuple(int(s) for s in shape[1:]), fixed_batch=fixed)
