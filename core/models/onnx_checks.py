"""What an ONNX export must declare so that Embridge can feed it batches of token ids.

An input with a fixed size, a non-integer input, or an output of the wrong rank would otherwise
fail inside onnxruntime halfway through an embedding; these are refused when the model is opened,
with one line naming ``model.onnx``. The same rules are applied to what the model returns at run time,
since an export may leave its shapes undeclared.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from embridge.core.errors import CheckpointError

FED_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_INT_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}
POOLED_NAMES = ("sentence_embedding", "pooler_output_sentence")
TOKEN_NAMES = ("last_hidden_state", "token_embeddings")
FLOAT_TYPES = ("tensor(float)", "tensor(float16)", "tensor(double)", "tensor(bfloat16)")


def _shape_text(shape: Any) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def input_types(model_file: Path, inputs: list[Any]) -> dict[str, type]:
    """The integer dtype each input takes; refuses unknown names, fixed sizes and non-integer inputs."""
    names = [i.name for i in inputs]
    unknown = [n for n in names if n not in FED_INPUTS]
    if "input_ids" not in names or unknown:
        raise CheckpointError(model_file, f"takes inputs {', '.join(names)}; Embridge feeds input_ids, "
                              "attention_mask and token_type_ids")
    types = {}
    for item in inputs:
        if item.type not in _INT_TYPES:
            raise CheckpointError(model_file, f"input {item.name} takes {item.type}; Embridge feeds integer "
                                  "token ids (int64)")
        shape = list(item.shape or ())
        if shape and len(shape) != 2:
            raise CheckpointError(model_file, f"input {item.name} has shape {_shape_text(shape)}; Embridge "
                                  "feeds (batch, tokens)")
        if any(isinstance(s, int) for s in shape):
            raise CheckpointError(model_file, f"input {item.name} has the fixed shape {_shape_text(shape)}; "
                                  "Embridge feeds (batch, tokens) of any size: export with dynamic axes")
        types[item.name] = _INT_TYPES[item.type]
    return types


def pick_outputs(model_file: Path, outputs: list[Any]) -> tuple[str | None, str | None]:
    """(pooled output, token-state output) names; refuses a declared rank that cannot be either."""
    by_name = {o.name: list(o.shape or ()) for o in outputs}
    pooled = next((n for n in POOLED_NAMES if n in by_name), None)
    tokens = next((n for n in TOKEN_NAMES if n in by_name), None)
    if tokens is None:
        tokens = next((n for n, shape in by_name.items() if len(shape) == 3), None)
    if pooled is not None and by_name[pooled] and len(by_name[pooled]) != 2:
        raise CheckpointError(model_file, f"output {pooled} has rank {len(by_name[pooled])}; a sentence "
                              "embedding must be (batch, dim)")
    if pooled is None and tokens is not None and by_name[tokens] and len(by_name[tokens]) != 3:
        raise CheckpointError(model_file, f"output {tokens} has rank {len(by_name[tokens])}; token states "
                              "must be (batch, tokens, dim)")
    if pooled is None and tokens is None:
        raise CheckpointError(model_file, "has no token-state output (last_hidden_state) and no "
                              "sentence_embedding output")
    types = {o.name: o.type for o in outputs}
    for name in (pooled, tokens):
        if name is not None and types[name] not in FLOAT_TYPES:
            raise CheckpointError(model_file, f"output {name} is {types[name]}; an embedding must be floating "
                                  "point")
    return pooled, tokens


def check_run_output(model_file: Path, name: str, out: np.ndarray, rows: int, pooled: bool) -> np.ndarray:
    """An output of the declared kind: (rows, dim) pooled, or (rows, tokens, dim) token states."""
    rank = 2 if pooled else 3
    if out.ndim != rank or out.shape[0] != rows:
        kind = "(batch, dim)" if pooled else "(batch, tokens, dim)"
        raise CheckpointError(model_file, f"output {name} has shape {_shape_text(out.shape)} for a batch of "
                              f"{rows}; expected {kind}")
    if out.dtype.kind != "f":
        raise CheckpointError(model_file, f"output {name} returns {out.dtype} values; an embedding must be "
                              "floating point")
    return out
