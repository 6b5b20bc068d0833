"""Recognising text model folders as they travel, and refusing the ones that would run their own code.

Three layouts are read: a sentence-transformers folder (``modules.json``), a plain Hugging Face
transformers folder (``config.json`` + safetensors weights + tokenizer files) and an ONNX export
(``model.onnx`` or ``onnx/model.onnx`` + tokenizer files). Everything is checked from the files
alone, before any library opens them: a config with ``auto_map`` (custom modelling code) or a
``modules.json`` naming a module outside sentence-transformers is refused with one line, since
loading it would mean running code shipped with the model. Nothing is ever downloaded.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embridge.core.errors import CheckpointError
from embridge.core.keys import char_name, odd_text_char

TEXT_KINDS = ("sentence_transformers", "transformers", "onnx")
POOLINGS = ("mean", "cls", "last")
SENTENCE_TRANSFORMERS_MARKERS = ("modules.json", "config_sentence_transformers.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer.model", "vocab.json", "spiece.model")
ONNX_FILES = ("model.onnx", "onnx/model.onnx")
_CODE_CONFIGS = ("config.json", "tokenizer_config.json", "preprocessor_config.json", "processor_config.json")
_STANDARD_MODULE_PREFIX = "sentence_transformers."
_DOCUMENT_PROMPT_NAMES = ("document", "passage", "corpus")
_DECODER_TYPES = {"gpt2", "gpt_neo", "gptj", "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi",
                  "phi3", "opt", "bloom", "falcon"}
NO_REMOTE_CODE = "Embridge never runs code shipped with a model (trust_remote_code)"


def hub_offline() -> None:
    """Switch the Hugging Face libraries to local files only, before they are imported."""
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ[key] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:  # progress bars of the libraries would start tqdm's monitor thread, which outlives every job
        import tqdm

        tqdm.tqdm.monitor_interval = 0
    except ImportError:
        pass


def quiet_transformers() -> None:
    """No per-load progress bars from transformers on stderr (Embridge reports its own progress)."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(path, f"not valid JSON ({exc.__class__.__name__})") from exc


def read_object(path: Path) -> dict[str, Any]:
    """A JSON file that must hold an object (a config), or one line saying what it holds instead."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise CheckpointError(path, f"expected a JSON object, got a JSON {_json_type(data)}")
    return data


def _json_type(data: Any) -> str:
    names = {list: "list", str: "string", bool: "boolean", type(None): "null", int: "number", float: "number"}
    return names.get(type(data), type(data).__name__)


def folder_kind(folder: Path) -> str:
    """The kind of a model folder, or a one-line error saying what a model folder needs."""
    if any((folder / marker).is_file() for marker in SENTENCE_TRANSFORMERS_MARKERS):
        return "sentence_transformers"
    if onnx_file(folder) is not None or (folder / "onnx").is_dir():  # an export's own folder, model.onnx missing
        if (folder / "config.json").is_file() and any(folder.glob("*.safetensors")):  # which is meant is unknown
            raise CheckpointError(folder, "holds both an ONNX export and transformers weights (*.safetensors), "
                                  "which may differ (a fine-tuned copy beside an older export): say which to read "
                                  "with --kind onnx or --kind transformers")
        return "onnx"
    if (folder / "config.json").is_file():
        return "transformers"
    raise CheckpointError(folder, "not a model folder Embridge reads: expected a sentence-transformers folder "
                          "(modules.json), a transformers folder (config.json + model.safetensors) or an ONNX "
                          "export (model.onnx + tokenizer files)")


def onnx_file(folder: Path) -> Path | None:
    return next((folder / name for name in ONNX_FILES if (folder / name).is_file()), None)


def refuse_remote_code(folder: Path) -> None:
    """Raise when any config in ``folder`` asks for custom code (``auto_map``)."""
    for name in _CODE_CONFIGS:
        file = folder / name
        if file.is_file():
            data = read_json(file)
            if isinstance(data, dict) and data.get("auto_map"):
                raise CheckpointError(file, f"the model asks for remote code (auto_map); {NO_REMOTE_CODE}")


def require_tokenizer(folder: Path) -> None:
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise CheckpointError(folder, "no tokenizer files (tokenizer.json or vocab.txt); save the tokenizer "
                              "next to the model (tokenizer.save_pretrained)")


def require_weights(folder: Path) -> None:
    if onnx_file(folder) is not None and not any(folder.glob("*.safetensors")):
        raise CheckpointError(folder, "no model.safetensors (transformers weights); the folder holds an ONNX "
                              "export: add it with --kind onnx")
    if not (folder / "config.json").is_file():
        raise CheckpointError(folder, "no config.json; save the model with save_pretrained")
    if not any(folder.glob("*.safetensors")):
        legacy = [n for n in ("pytorch_model.bin", "tf_model.h5") if (folder / n).is_file()]
        if legacy:
            raise CheckpointError(folder, f"no safetensors weights (model.safetensors; {legacy[0]} is not read: "
                                  "re-save with safe_serialization=True)")
        raise CheckpointError(folder, "no weights: neither model.safetensors (a transformers folder) nor "
                              "model.onnx (an ONNX export) is there")


def check_transformers_folder(folder: Path) -> None:
    refuse_remote_code(folder)
    require_weights(folder)
    read_object(folder / "config.json")
    require_tokenizer(folder)
    check_length_settings(folder)


def check_onnx_folder(folder: Path) -> Path:
    refuse_remote_code(folder)
    model = onnx_file(folder)
    if model is None:
        raise CheckpointError(folder, "no model.onnx (looked for model.onnx and onnx/model.onnx)")
    require_tokenizer(folder)
    check_length_settings(folder)
    return model


# sequence-length settings a folder may carry: (file, key)
LENGTH_SETTINGS = (("tokenizer_config.json", "model_max_length"), ("sentence_bert_config.json", "max_seq_length"),
                   ("config.json", "max_position_embeddings"))


def length_setting(folder: Path, file: str, key: str) -> int | None:
    """A sequence-length setting of ``folder/file`` (None: not given), refused in one line naming the
    file unless it is a whole number of at least 1 (the loaders crash on anything else)."""
    path = folder / file
    if not path.is_file():
        return None
    data = read_json(path)
    value = data.get(key) if isinstance(data, dict) else None
    if value is None:
        return None
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not whole or value < 1:
        raise CheckpointError(path, f"{key} must be a whole number of at least 1, got {value!r}")
    return int(value)


def check_length_settings(folder: Path) -> None:
    for file, key in LENGTH_SETTINGS:
        length_setting(folder, file, key)


def check_sentence_transformers_folder(folder: Path) -> None:
    """Every module standard and present; a Transformer module's own folder checked like a plain one."""
    refuse_remote_code(folder)
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        raise CheckpointError(folder, "no modules.json; save the model with SentenceTransformer.save")
    modules = read_json(modules_file)
    if not isinstance(modules, list):
        raise CheckpointError(modules_file, "expected a JSON list of modules")
    for entry in modules:
        kind = str(entry.get("type", "")) if isinstance(entry, dict) else ""
        if not kind.startswith(_STANDARD_MODULE_PREFIX):
            raise CheckpointError(modules_file, f"names a non-standard module '{kind or entry}'; "
                                  f"{NO_REMOTE_CODE}")
        sub = folder / str(entry.get("path", ""))
        if not sub.is_dir():
            raise CheckpointError(modules_file, f"module '{kind.rsplit('.', 1)[-1]}' is missing its folder "
                                  f"'{entry.get('path')}'")
        if kind.endswith(".Transformer"):
            check_transformers_folder(sub)
        if kind.endswith(".Dense"):
            _check_dense_activation(sub / "config.json")


def _check_dense_activation(config: Path) -> None:
    """sentence-transformers runs a Dense module's activation only from ``torch.`` and replaces any other
    with Tanh, its warning unseen: the vectors would not be the model's own."""
    if not config.is_file():
        return  # sentence-transformers' own load names a Dense module without its config
    activation = read_object(config).get("activation_function")
    if activation is not None and not (isinstance(activation, str) and activation.startswith("torch.")):
        raise CheckpointError(config, f"activation_function {activation!r} is not a torch activation (torch.nn....); "
                              "sentence-transformers would run Tanh in its place")


def transformer_module_folders(folder: Path) -> list[Path]:
    """Folders of a sentence-transformers model's Transformer modules (checked by the folder check first)."""
    modules = read_json(folder / "modules.json")
    return [folder / str(e.get("path", "")) for e in modules
            if isinstance(e, dict) and str(e.get("type", "")).endswith(".Transformer")]


@dataclass(frozen=True)
class FolderPrompts:
    """Prompts a model folder ships (sentence-transformers ``prompts``); empty when it has none."""

    query: str = ""
    document: str = ""


def folder_prompts(folder: Path) -> FolderPrompts:
    file = folder / "config_sentence_transformers.json"
    if not file.is_file():
        return FolderPrompts()
    config = read_json(file)
    prompts = config.get("prompts") if isinstance(config, dict) else None
    if not isinstance(prompts, dict):
        return FolderPrompts()
    def text(name: str, value: Any) -> str:  # null is no prompt, as sentence-transformers reads it
        if value is not None and not isinstance(value, str):
            raise CheckpointError(file, f"prompt '{name}' is {type(value).__name__}, not text")
        bad = odd_text_char(value or "")
        if bad is not None:  # put before every text, as --query-prompt would be: checked as that option is
            raise CheckpointError(file, f"prompt '{name}' {value[:40]!r} holds the {char_name(bad)}; a prompt is "
                                  "plain text")
        return value or ""

    default = text(str(config.get("default_prompt_name")), prompts.get(config.get("default_prompt_name") or "", ""))
    document = next((text(n, prompts[n]) for n in _DOCUMENT_PROMPT_NAMES if n in prompts), default)
    return FolderPrompts(query=text("query", prompts.get("query", default)), document=document)


def default_pooling(folder: Path) -> str:
    """Pooling a folder implies: its sentence-transformers pooling config, last token for decoders, else mean."""
    pooling_config = folder / "1_Pooling" / "config.json"
    if pooling_config.is_file():
        found = _configured_pooling(pooling_config, read_object(pooling_config))
        if found:
            return found
    config_file = folder / "config.json"
    config = read_object(config_file) if config_file.is_file() else {}
    architectures = config.get("architectures") or []
    if config.get("is_decoder") or config.get("model_type") in _DECODER_TYPES \
            or any(str(a).endswith("ForCausalLM") for a in architectures):
        return "last"
    return "mean"


_POOLING_FLAGS = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean", "pooling_mode_lasttoken": "last"}
_POOLING_NAMES = {"cls": "cls", "mean": "mean", "lasttoken": "last"}


def _configured_pooling(file: Path, data: dict[str, Any]) -> str | None:
    """The pooling a sentence-transformers pooling config asks for, or None when it names none.

    A mode Embridge does not compute (max, weighted mean, mean divided by the square root of the
    length, several modes concatenated) is refused: reading it as mean pooling would give other
    vectors than the model's own, silently."""
    named = data.get("pooling_mode")
    asked = [key for key, value in data.items() if key.startswith("pooling_mode_") and value is True]
    if named is not None and str(named) not in _POOLING_NAMES:
        unsupported = f"pooling_mode '{named}'"
    elif len(asked) > 1 or any(key not in _POOLING_FLAGS for key in asked):
        unsupported = " and ".join(asked)
    else:
        found = _POOLING_NAMES.get(str(named)) if named is not None else _POOLING_FLAGS[asked[0]] if asked else None
        if found != "mean" or data.get("include_prompt", True) is not False:
            return found
        unsupported = "a mean that leaves the prompt's tokens out (include_prompt false)"
    raise CheckpointError(file, f"asks for {unsupported}, which Embridge does not compute (it pools by "
                          f"{', '.join(POOLINGS)}); pass --pooling to choose one of those knowingly")


def check_pooling(folder: Path, pooling: str | None) -> str:
    chosen = pooling or default_pooling(folder)
    if chosen not in POOLINGS:
        raise CheckpointError(folder, f"unknown pooling '{chosen}'; use one of {', '.join(POOLINGS)}")
    return chosen
