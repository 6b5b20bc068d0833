"""Describing checkpoints of every kind and running them on one batch.

Trust: TorchScript files and ``torch.export`` programs carry the model's own code, and loading
one runs that code's graph; only load them from a source you trust (see :mod:`embridge.core.models.openers`).

:func:`describe_model` opens a checkpoint on the CPU, works out its input shape, and probes it with
a small dummy batch, so a model that rejects its inputs, returns something other than a 2-D
matrix, or produces NaN is caught when it is added rather than halfway through a gallery.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embridge.core.device import resolve_device
from embridge.core.errors import CheckpointError, InputError
from embridge.core.keys import char_name, odd_text_char
from embridge.core.model_kinds import KINDS
from embridge.core.models.builtin import classifier_weights, count_params
from embridge.core.models.forward_errors import failure_reason, first_layer_hint, first_weight
from embridge.core.models.openers import Opened, open_model
from embridge.core.models.probe_checks import same_beside_others, same_twice
from embridge.core.models.spec import (
    MODALITIES,
    ModelSpec,
    check_stored_copy,
    checkpoint_sha256,
    infer_kind,
    modality_for_shape,
    require_exists,
)
from embridge.core.models.text_folders import TEXT_KINDS, check_pooling, folder_prompts
from embridge.core.models.text_room import check_length_room, check_prompt_room
from embridge.core.prompts import TextOptions
from embridge.core.vector_spread import one_direction

_PROBE_TEXTS = ("a probe sentence", "another, slightly longer probe sentence")
MAX_INPUT_VALUES = 50_000_000  # per item: a 4,000 x 4,000 x 3 image is 48M


def check_output(out: Any, rows: int, source: str | Path, dim: int | None = None) -> np.ndarray:
    """The model's output as a float32 (rows x dim) matrix, or a CheckpointError saying what is wrong."""
    if isinstance(out, torch.Tensor):  # numpy has no bfloat16: that one is widened first
        out = out.detach().cpu()
        out = (out.float() if out.dtype == torch.bfloat16 else out).numpy()
    if isinstance(out, np.ndarray):
        if np.iscomplexobj(out):
            raise CheckpointError(source, f"the model returned complex values ({out.dtype}); an embedder must return "
                                  "real vectors (casting would drop the imaginary part)")
        with np.errstate(over="ignore", invalid="ignore"):
            arr = out.astype(np.float32, copy=False)
        # only a wider float can overflow in the cast; the finite scans run only then, off the float32 path
        if out.dtype.kind == "f" and out.dtype.itemsize > 4 and not np.isfinite(arr).all() and np.isfinite(out).all():
            raise CheckpointError(source, "the model output holds values beyond the float32 range (±3.4e38) "
                                  "vectors are stored in")
    else:
        raise CheckpointError(source, f"the model returned {type(out).__name__}; an embedder must return "
                              "one 2-D tensor (batch x dim)")
    if arr.ndim != 2:
        raise CheckpointError(source, f"the model output has shape {tuple(arr.shape)}; an embedder must "
                              "return a 2-D (batch x dim) tensor")
    if arr.shape[0] != rows:
        raise CheckpointError(source, f"the model returned {arr.shape[0]} rows for a batch of {rows}")
    if dim and arr.shape[1] != dim:
        raise CheckpointError(source, f"the model returned dimension {arr.shape[1]}, recorded as {dim}")
    if arr.shape[1] == 0:
        raise CheckpointError(source, "the model returned vectors of dimension 0; an embedder must return at least "
                              "one value per item")
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        raise CheckpointError(source, f"the model output holds NaN or inf values ({int(bad.sum())} of {rows} rows)")
    return arr


def _eval_mode(module: torch.nn.Module) -> torch.nn.Module:
    """Switch to eval mode; exported programs refuse the call (they were traced in their final mode)."""
    try:
        module.eval()
    except NotImplementedError:
        pass
    return module


class LoadedModel:
    """A model ready to embed on one device; weights are read on first use (see module docstring)."""

    def __init__(self, spec: ModelSpec, device: torch.device, opened: Opened | None = None,
                 verify: bool = False) -> None:
        self.spec = spec
        self.device = device
        self._opened = opened
        self._verify = verify

    @classmethod
    def from_module(cls, module: torch.nn.Module, input_shape: Sequence[int] = (), name: str = "module",
                    device: torch.device | None = None) -> LoadedModel:
        """Wrap a module already in memory (tests, benchmarks, the demo); it is not copied."""
        shape = tuple(int(s) for s in input_shape)
        spec = ModelSpec(name=name, kind="module", modality=modality_for_shape(shape) if shape else "vector",
                         input_shape=shape, dim=0, params=count_params(module), sha256="",
                         path=f"<in-memory model {name}>")
        dev = device or next((p.device for p in module.parameters()), torch.device("cpu"))
        return cls(spec, dev, Opened(_eval_mode(module).to(dev)))

    def on(self, device: torch.device) -> LoadedModel:
        """This model on ``device``: itself, a moved in-memory module, or a lazy reload from the file."""
        if device == self.device:
            return self
        if self.spec.kind == "module":
            return LoadedModel.from_module(self.module, self.spec.input_shape, self.spec.name, device)
        return LoadedModel(self.spec, device, verify=self._verify)

    @property
    def opened(self) -> Opened:
        if self._opened is None:
            if self._verify:
                check_stored_copy(self.spec.path, self.spec.sha256, self.spec.name)
            self._opened = open_model(self.spec.kind, self.spec.path, self.device, self.spec.arch,
                                      self.spec.arch_config, self.spec.pooling)
        return self._opened

    @property
    def module(self) -> Any:
        return self.opened.module

    def classifier_weights(self) -> np.ndarray | None:
        return classifier_weights(self.module)

    def lookup(self, keys: Sequence[str]) -> np.ndarray:
        """Vectors of an embeddings-only model for the given item keys."""
        if self.spec.kind != "vectors":
            raise CheckpointError(self.spec.path, "only embeddings-only (vectors) models look items up by key")
        return self.module.lookup(keys)

    @property
    def is_text(self) -> bool:
        return self.spec.kind in TEXT_KINDS

    def embed_texts(self, texts: Sequence[str], role: str | None = None, batch_size: int = 64,
                    on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        """Embeddings of texts with the prompt of ``role`` ("query", "document" or None for none).

        Texts are batched by length inside the call (see :mod:`embridge.core.models.text_encoders`);
        ``on_batch(n)`` is called after each batch of n texts.
        """
        if not self.is_text:
            raise CheckpointError(self.spec.path, f"model {self.spec.name} takes {self.spec.modality} input "
                                  "(a tensor), not text")
        texts = list(texts)
        if any(not isinstance(t, str) for t in texts):
            raise CheckpointError(self.spec.path, f"model {self.spec.name} takes a list of texts")
        out = self.module.embed_texts(texts, self.spec.prompt_for(role), max(1, batch_size), on_batch)
        return check_output(out, len(texts), self.spec.path, self.spec.dim)

    def embed_batch(self, inputs: torch.Tensor | np.ndarray | Sequence[str], role: str | None = None) -> np.ndarray:
        """Embeddings (float32, batch x dim) of one batch, checked for shape and finiteness."""
        if self.spec.kind == "vectors":
            raise CheckpointError(self.spec.path, "an embeddings-only model looks items up by key; use lookup()")
        rows = len(inputs)
        if self.is_text:
            return self.embed_texts(inputs, role, batch_size=max(1, rows))
        if not isinstance(inputs, torch.Tensor | np.ndarray):
            raise CheckpointError(self.spec.path, f"model {self.spec.name} takes {self.spec.modality} input "
                                  "(a tensor), not text")
        x = torch.as_tensor(inputs).to(self.device)
        try:
            with torch.inference_mode():
                out = self._forward(x)
        except Exception as exc:  # the model's own code may raise anything (TorchScript: torch.jit.Error)
            given, taken = tuple(x.shape[1:]), tuple(self.spec.input_shape or ())
            if taken and given != taken:  # the data's shape is the odd one: say so, not the model's
                raise CheckpointError(self.spec.path, f"the model takes inputs of shape {taken}, not rows of shape "
                                      f"{given} (a batch {tuple(x.shape)})") from exc
            if len(x) > 2 and self._runs_in_pairs(x):  # every row is fine: the batch's size is not
                raise CheckpointError(self.spec.path, f"the model runs on a batch of 2 rows but fails on a batch "
                                      f"of {len(x)} ({failure_reason(exc)}); it may have been traced or exported for one "
                                      "batch size: export it with a dynamic batch dimension, or embed with "
                                      "--batch-size 2") from exc
            raise CheckpointError(self.spec.path, f"the model rejects inputs of shape {self.spec.input_shape} "
                                  f"(a batch {tuple(x.shape)}): {failure_reason(exc)}"
                                  f"{first_layer_hint(self.module)}") from exc
        return check_output(out, rows, self.spec.path, self.spec.dim)

    def _runs_in_pairs(self, x: torch.Tensor) -> bool:
        """Whether the model runs on every row of ``x`` taken two at a time (the probe's batch at add): a
        model failing on some rows' content fails here too, one traced for one batch size does not."""
        starts = [*range(0, len(x) - 1, 2), *([len(x) - 2] if len(x) % 2 else [])]
        try:
            with torch.inference_mode():
                for start in starts:
                    self._forward(x[start:start + 2])
        except Exception:  # the model's own code may raise anything
            return False
        return True

    def _forward(self, x: torch.Tensor) -> Any:
        """Run the module; programs exported with a fixed batch get padded batches of that size."""
        fixed = self.opened.fixed_batch
        if fixed is None or len(x) == fixed:
            return self.module(x)
        parts = []
        for start in range(0, len(x), fixed):
            chunk = x[start:start + fixed]
            real = len(chunk)
            if real < fixed:
                chunk = torch.cat([chunk, chunk[-1:].expand(fixed - real, *chunk.shape[1:])])
            out = self.module(chunk)
            if not isinstance(out, torch.Tensor):
                return out  # check_output explains
            parts.append(out[:real])
        return torch.cat(parts)


def _text_settings(p: Path, kind: str, text: TextOptions) -> dict[str, Any]:
    """Spec fields of a text model, or an error when text options are given for another kind."""
    given = [flag for flag, value in (("query prompt", text.query_prompt), ("document prompt", text.document_prompt),
                                      ("pooling", text.pooling)) if value is not None]
    for option, prompt in (("--query-prompt", text.query_prompt), ("--document-prompt", text.document_prompt)):
        bad = odd_text_char(prompt or "")
        if bad is not None:  # it is put before every text, where item texts may not hold one either
            raise InputError(option, f"{prompt[:40]!r} holds the {char_name(bad)}; a prompt is plain text")
    if kind not in TEXT_KINDS:
        if given:
            raise CheckpointError(p, f"a {given[0]} applies to text models only, this is {kind}")
        return {}
    if kind == "sentence_transformers" and text.pooling is not None:
        raise CheckpointError(p, "a sentence-transformers folder pools as its own modules say; "
                              "pooling applies to transformers and ONNX folders")
    own = folder_prompts(p)
    return {"query_prompt": own.query if text.query_prompt is None else text.query_prompt,
            "document_prompt": own.document if text.document_prompt is None else text.document_prompt,
            "pooling": None if kind == "sentence_transformers" else check_pooling(p, text.pooling)}


def _inspect(path: str | Path, kind: str | None, name: str | None, arch: str | None,
             arch_config: Mapping[str, Any] | None, input_shape: Sequence[int] | None,
             modality: str | None, text: TextOptions | None = None) -> tuple[ModelSpec, Opened]:
    p = require_exists(path)
    kind = kind or infer_kind(p)
    if kind not in KINDS:
        raise CheckpointError(p, f"unknown model kind '{kind}'; use one of {', '.join(KINDS)}")
    if (arch or arch_config) and kind != "state_dict":
        raise CheckpointError(p, f"an architecture applies to state_dict checkpoints only, this is {kind}")
    settings = _text_settings(p, kind, text or TextOptions())
    cpu = torch.device("cpu")
    opened = open_model(kind, p, cpu, arch, arch_config, settings.get("pooling"))
    graph_pools = getattr(opened.module, "pooled_output", None)
    if kind == "onnx" and graph_pools is not None:  # the export pools inside its graph: no pooling of ours
        if text is not None and text.pooling is not None:
            raise CheckpointError(p, f"this ONNX export pools inside its graph (its output {graph_pools}); "
                                  "pooling applies to exports of token states (last_hidden_state)")
        settings["pooling"] = None
    shape = _settle_shape(p, kind, opened, input_shape)
    chosen = modality or opened.modality or modality_for_shape(shape)
    if chosen not in MODALITIES:
        raise CheckpointError(p, f"unknown modality '{chosen}'; use one of {', '.join(MODALITIES)}")
    if chosen == "text" and kind not in TEXT_KINDS:  # it takes arrays: it could never embed a text
        raise CheckpointError(p, f"declares the text modality, but a {kind} model takes arrays, not texts; text "
                              "models are sentence-transformers, transformers or ONNX folders")
    spec = ModelSpec(name=name or p.stem, kind=kind, modality=chosen, input_shape=shape, dim=0,
                     params=count_params(opened.module), sha256=checkpoint_sha256(p), path=str(p.resolve()),
                     arch=opened.arch, arch_config=dict(opened.arch_config),
                     has_classifier=classifier_weights(opened.module) is not None, **settings)
    return replace(spec, dim=_probe(LoadedModel(spec, cpu, opened))), opened


def _settle_shape(path: Path, kind: str, opened: Opened, given: Sequence[int] | None) -> tuple[int, ...]:
    wanted = tuple(int(s) for s in given) if given else None
    found = opened.input_shape
    if kind == "vectors" or kind in TEXT_KINDS:
        return ()
    if found is not None and wanted is not None and wanted != found:
        raise CheckpointError(path, f"the model takes input shape {found}, not {wanted}")
    shape = wanted or found
    if shape is None:
        weight = first_weight(opened.module)
        if weight is not None and weight.ndim == 2:
            return (int(weight.shape[1]),)  # a first linear layer fixes a vector input
        raise CheckpointError(path, "cannot tell the model's input shape; give it (--input-shape, or Input shape "
                              "when adding a model in the app), e.g. 1,28,28 for 28x28 grayscale images"
                              f"{first_layer_hint(opened.module)}")
    if any(s <= 0 for s in shape):
        raise CheckpointError(path, f"invalid input shape {shape}")
    if int(np.prod(shape, dtype=np.float64)) > MAX_INPUT_VALUES:  # the probe batch alone would not fit
        where = "--input-shape" if wanted else str(path)
        raise InputError(where, f"input shape {','.join(map(str, shape))} is {int(np.prod(shape, dtype=np.float64)):,} "
                         f"values per item, more than {MAX_INPUT_VALUES:,}; give the shape one item has")
    return shape


def _probe(model: LoadedModel) -> int:
    """Run a dummy batch and return the output dimension (errors name the file)."""
    spec = model.spec
    if spec.kind == "vectors":
        model.module.check_values()
        return model.module.dim
    if model.is_text:
        return _probe_text(model)
    batch = model.opened.fixed_batch or 2
    gen = torch.Generator().manual_seed(0)
    probe = torch.rand((batch, *spec.input_shape), generator=gen)
    first = model.embed_batch(probe)
    outputs = first if batch > 1 else np.concatenate(
        [first, model.embed_batch(torch.rand((batch, *spec.input_shape), generator=gen))])
    if one_direction(outputs, minimum=2):  # no direction to search by, for any item
        found = "all-zero vectors" if not outputs.any() else "vectors of a single direction"
        raise CheckpointError(spec.path, f"the model returns {found} for different random inputs, so items could "
                              "not be told apart by cosine similarity (zero or constant weights?)")
    same_twice(first, model.embed_batch(probe), spec.path)
    if batch > 1:  # the first item again, beside other items: seven, or as many as a traced batch size allows
        others = torch.rand((7, *spec.input_shape), generator=gen)
        try:
            again = model.embed_batch(torch.cat([probe[:1], others]))[0]
        except Exception:  # noqa: BLE001 - a program traced for one batch size fails on another in any way
            again = model.embed_batch(torch.cat([probe[:1], others[:batch - 1]]))[0]
        same_beside_others(first[0], again, spec.path)
    return int(first.shape[1])


def _probe_text(model: LoadedModel) -> int:
    """Output width of a text model, the same for texts of different token lengths, alone and batched."""
    source = getattr(model.module, "source", model.spec.path)
    check_length_room(model.module, source)
    check_prompt_room(model.module, model.spec, source)
    try:
        single = [model.embed_texts([text], "query", batch_size=1) for text in _PROBE_TEXTS]
    except (CheckpointError, InputError):
        raise
    except Exception as exc:  # the tokenizer's or the model's own code may raise anything
        raise CheckpointError(source, f"the model cannot embed a probe text: {failure_reason(exc)}") from exc
    same_twice(single[0], model.embed_texts(_PROBE_TEXTS[:1], "query", batch_size=1), source)
    both = model.embed_texts(list(_PROBE_TEXTS), "query", batch_size=2)  # the shorter text padded
    widths = [*(int(out.shape[1]) for out in single), int(both.shape[1])]
    if len(set(widths)) > 1:
        raise CheckpointError(source, f"the model's output width depends on its input ({widths[0]} and "
                              f"{widths[1]} for two texts of different token lengths, {widths[2]} for both "
                              "in one batch); an embedder must return one width")
    # no one-direction check here, as for images: two probe texts may both be unknown words to a small vocabulary
    for alone, beside in zip(single, both, strict=True):  # padding or a batch statistic must change nothing
        same_beside_others(alone[0], beside, source)
    return widths[0]


def describe_model(path: str | Path, kind: str | None = None, name: str | None = None, *,
                   arch: str | None = None, arch_config: Mapping[str, Any] | None = None,
                   input_shape: Sequence[int] | None = None, modality: str | None = None,
                   text: TextOptions | None = None) -> ModelSpec:
    """Open, inspect and probe a checkpoint; ``kind`` is inferred when None (see module docstring).

    ``text`` sets a text model's prompts and pooling (defaults: what its folder says).
    """
    return _inspect(path, kind, name, arch, arch_config, input_shape, modality, text)[0]


def load_model(path_or_spec: str | Path | ModelSpec | Mapping[str, Any], device: str | torch.device = "auto",
               *, verify: bool = False, kind: str | None = None, name: str | None = None,
               arch: str | None = None, arch_config: Mapping[str, Any] | None = None,
               input_shape: Sequence[int] | None = None, modality: str | None = None,
               text: TextOptions | None = None) -> LoadedModel:
    """A :class:`LoadedModel` on ``device``; from a spec the weights load lazily on first use.

    A path is described first (options as in :func:`describe_model`); ``verify`` re-checks a
    spec's sha256 before loading, catching a checkpoint changed since it was added.
    """
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    if isinstance(path_or_spec, Mapping):
        path_or_spec = ModelSpec.from_dict(dict(path_or_spec))
    if isinstance(path_or_spec, ModelSpec):
        return LoadedModel(path_or_spec, dev, verify=verify)
    spec, opened = _inspect(path_or_spec, kind, name, arch, arch_config, input_shape, modality, text)
    return LoadedModel(spec, dev, opened if dev.type == "cpu" else None)
