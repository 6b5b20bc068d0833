"""Refusing transformers weights that do not fill the model their config describes.

transformers fills a tensor the weights file lacks (or holds at another shape) with random values
and only logs a table about it, so such a folder would embed differently in every process. Here
the model is loaded with ``output_loading_info=True`` and ``ignore_mismatched_sizes=True``, the
library's own report is kept off stderr, and its missing and mismatched keys become one line naming
the weights file. Tensors the file holds beyond what the model needs (a task head, say) are never
read and are allowed; a missing pooler is allowed too, since Embridge reads token states only, and so
is a missing decoder of an encoder-decoder config, whose encoder alone embeds.
A tokenizer that can produce token ids beyond the model's embedding table is refused as well.
Before any of that, the parameters the config describes are counted on PyTorch's meta device and
compared with the values the weights files' headers declare, so a small folder whose config asks
for a huge model (more than ``UNFILLED_LIMIT`` values the files cannot fill) is refused without
allocating it; smaller gaps are named tensor by tensor after the load.
"""

from __future__ import annotations

import logging
import math
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from embridge.core.errors import CheckpointError, first_line

HARMLESS_MISSING = ("pooler.",)
_SHOWN = 3
# torch's notice when a config sizes a layer at zero (intermediate_size 0): the check that follows says
# what is wrong in one line, and the notice printed before it broke that line's contract
warnings.filterwarnings("ignore", message="Initializing zero-element tensors is a no-op", category=UserWarning)

UNFILLED_LIMIT = 64 << 20  # values (256 MiB of float32) a config may ask for beyond what the files hold


@contextmanager
def quiet_loading() -> Iterator[None]:
    """transformers' and sentence-transformers' loading reports and warnings kept off stderr (such as
    "Default prompt name is set to ..."); Embridge reports problems in one line."""
    st_logger = logging.getLogger("sentence_transformers")
    st_level = st_logger.level
    st_logger.setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        try:
            yield
        finally:
            st_logger.setLevel(st_level)
        return
    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)
        st_logger.setLevel(st_level)


def weights_file(folder: Path) -> Path:
    """The safetensors file (or shard index) transformers reads in ``folder``, for error messages."""
    for name in ("model.safetensors", "model.safetensors.index.json"):
        if (folder / name).exists():
            return folder / name
    found = sorted(folder.glob("*.safetensors"))
    return found[0] if found else folder / "model.safetensors"


def _names(keys: Iterable[str]) -> str:
    listed = sorted(keys)
    more = f" and {len(listed) - _SHOWN} more" if len(listed) > _SHOWN else ""
    return ", ".join(listed[:_SHOWN]) + more


def _shape(shape: Any) -> str:
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


def harmless_prefixes(decoder_unused: bool) -> tuple[str, ...]:
    """Tensor names a file may leave out without changing the embeddings: the pooler, and the decoder
    of an encoder-decoder config (T5 and kin), whose encoder alone embeds."""
    return HARMLESS_MISSING + (("decoder.", "lm_head.") if decoder_unused else ())


def check_loading_info(folder: Path, info: Mapping[str, Any], decoder_unused: bool = False,
                       loaded: Iterable[str] = ()) -> None:
    """Raise one line naming the weights file when tensors the config needs are missing or mis-shaped.

    ``decoder_unused``: an encoder-decoder config (T5 and kin), whose encoder alone embeds (as
    sentence-transformers runs it), so a decoder the file leaves out is never read either.
    """
    harmless = harmless_prefixes(decoder_unused)
    file = weights_file(folder)
    mismatched = sorted(info.get("mismatched_keys") or (), key=lambda m: str(m[0]))
    if mismatched:
        key, in_file, expected = mismatched[0]
        more = f" (and {len(mismatched) - 1} more tensors)" if len(mismatched) > 1 else ""
        raise CheckpointError(file, f"does not match config.json: tensor {key} has shape {_shape(in_file)} in "
                              f"the file but the config needs {_shape(expected)}{more}")
    missing = [k for k in info.get("missing_keys") or () if not str(k).startswith(harmless)]
    if missing:
        raise CheckpointError(file, f"lacks {len(missing)} tensor{'s' if len(missing) > 1 else ''} that config.json needs ({_names(missing)}); "
                              "they would be filled with random values")
    left_out = _layers_left_out(info.get("unexpected_keys") or (), loaded)
    if left_out:
        raise CheckpointError(file, f"holds {len(left_out)} tensor{'s' if len(left_out) > 1 else ''} of layers "
                              f"config.json leaves out ({_names(left_out)}); the model would embed without them. "
                              "Use the config.json these weights were saved with")
    errors = info.get("error_msgs") or ()
    if errors:
        raise CheckpointError(file, f"cannot be loaded ({first_line(RuntimeError(errors[0]))})")


_INDEX = re.compile(r"(?<=\.)\d+(?=\.)")


def _layers_left_out(unexpected: Iterable[str], loaded: Iterable[str]) -> list[str]:
    """Unused tensors of a numbered layer the model has others of (``encoder.layer.1.*`` beside a loaded
    ``encoder.layer.0.*``): a config with fewer layers than the file, not a task head the model never runs."""
    patterns = {_INDEX.sub("#", key) for key in loaded}
    out = []
    for key in map(str, unexpected):
        shape = _INDEX.sub("#", key)
        if shape != key and (shape in patterns or shape.partition(".")[2] in patterns):  # a base-model prefix
            out.append(key)
    return out


def _stored_values(folder: Path) -> int | None:
    """How many values the folder's safetensors files hold, read from their headers (None: no
    readable file; loading then reports the problem in its own words)."""
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    total = 0
    try:
        for file in files:
            with safe_open(str(file), framework="np") as stored:
                total += sum(math.prod(stored.get_slice(key).get_shape()) for key in stored.keys())
    except Exception:  # safetensors raises several types for damaged headers
        return None
    return total if files else None


MAX_LAYERS = 1024  # a config asking for 10⁵ layers took minutes and gigabytes to count on the meta device


def check_model_size(folder: Path) -> None:
    """Refuse a config describing far more parameters than the weights files hold, before allocating any."""
    import torch
    from transformers import AutoConfig, AutoModel

    stored = _stored_values(folder)
    if stored is None:
        return
    with quiet_loading():
        try:
            config = AutoConfig.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
        except Exception:  # the load itself reports a config it cannot build, in one line
            return
        layers = getattr(config, "num_hidden_layers", None)
        if isinstance(layers, int) and layers < 1:  # the bare embedding table would be the "model"
            raise CheckpointError(folder / "config.json", f"num_hidden_layers is {layers}; an encoder has at least "
                                  "one layer")
        if isinstance(layers, int) and layers > MAX_LAYERS:  # built one module a layer even on the meta device
            raise CheckpointError(folder / "config.json", f"num_hidden_layers is {layers:,}; the deepest models have "
                                  f"a few hundred, and more than {MAX_LAYERS:,} are refused before they are built")
        try:
            with torch.device("meta"):
                model = AutoModel.from_config(config, trust_remote_code=False)
        except Exception:  # the load itself reports a config it cannot build, in one line
            return
    harmless = harmless_prefixes(bool(getattr(config, "is_encoder_decoder", False)))
    needed = sum(p.numel() for name, p in model.named_parameters() if not name.startswith(harmless))
    if needed - stored > UNFILLED_LIMIT:
        raise CheckpointError(weights_file(folder), f"holds {stored:,} values but config.json describes a model "
                              f"of {needed:,} parameters; the config does not belong to these weights")


def load_checked_model(folder: Path) -> Any:
    """``AutoModel`` of a transformers folder whose weights fill every tensor its config needs."""
    from transformers import AutoModel

    check_model_size(folder)
    refuse_unread_weights(folder)
    with quiet_loading():
        try:
            model, info = AutoModel.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False,
                                                    use_safetensors=True, ignore_mismatched_sizes=True,
                                                    output_loading_info=True)
        except Exception as exc:  # transformers raises many types for broken folders
            raise CheckpointError(folder, f"cannot load the transformers model ({first_line(exc)})") from exc
    check_loading_info(folder, info, decoder_unused=bool(getattr(model.config, "is_encoder_decoder", False)),
                       loaded=model.state_dict().keys())
    return model


def refuse_unread_weights(folder: Path) -> None:
    """transformers reads ``model.safetensors``, or the shards its ``model.safetensors.index.json`` names:
    another weights file beside them (a fine-tuned copy, a LoRA adapter) would be ignored without a word."""
    import json

    index = folder / "model.safetensors.index.json"
    read = {"model.safetensors"}
    if index.is_file() and not (folder / "model.safetensors").is_file():  # a whole file wins over an index
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map")
        except (OSError, ValueError, AttributeError):
            weight_map = None  # a broken index is transformers' to refuse when it loads
        read = {str(v) for v in weight_map.values()} if isinstance(weight_map, dict) else set()
    others = sorted(p.name for p in folder.glob("*.safetensors") if p.name not in read)
    if others and any((folder / name).is_file() for name in read):
        raise CheckpointError(folder / others[0], f"is a weights file transformers does not read (it reads "
                              f"{', '.join(sorted(read))}); move it out of the folder, or make it the model's "
                              "model.safetensors, so the vectors come from the weights meant")


def embedding_rows(model: Any) -> int | None:
    """Rows of the model's input embedding table, or None when the model does not expose one."""
    try:
        table = model.get_input_embeddings()
    except (AttributeError, NotImplementedError):
        return None
    rows = getattr(table, "num_embeddings", None)
    return int(rows) if rows else None


def tokenizer_size(tokenizer: Any) -> int:
    """How many token ids the tokenizer can produce (its largest id + 1)."""
    size = len(tokenizer)
    try:
        size = max(size, max(tokenizer.get_vocab().values(), default=-1) + 1)
    except (AttributeError, TypeError, ValueError):
        pass
    return int(size)


def check_vocabulary(folder: Path, tokenizer: Any, rows: int | None) -> None:
    """Refuse a tokenizer whose ids run past the model's embedding table (they would fail mid-embedding)."""
    if rows is None:
        return
    size = tokenizer_size(tokenizer)
    if size > rows:
        raise CheckpointError(folder, f"the tokenizer has {size} tokens but the model's embedding table has "
                              f"{rows} rows; the tokenizer does not belong to this model")


def check_transformer_module(folder: Path) -> None:
    """Check a sentence-transformers Transformer module's folder the way a transformers folder is loaded."""
    from transformers import AutoTokenizer

    model = load_checked_model(folder)
    with quiet_loading():
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
        except Exception as exc:  # tokenizer loading raises many types
            raise tokenizer_error(folder, exc) from exc
    check_vocabulary(folder, tokenizer, embedding_rows(model))


def tokenizer_error(folder: Path, exc: BaseException) -> CheckpointError:
    """The refusal of a tokenizer that does not load, naming its file when that file is not JSON at all."""
    import json

    for name in ("tokenizer.json", "tokenizer_config.json"):
        file = folder / name
        if file.is_file():
            try:
                json.loads(file.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, ValueError) as bad:
                return CheckpointError(file, f"is not readable JSON ({first_line(bad)}), so the tokenizer cannot "
                                       "be loaded")
    if isinstance(exc, KeyError) and exc.args and _lacks(folder / "tokenizer.json", exc.args[0]):
        return CheckpointError(folder / "tokenizer.json", f"lacks the field {exc.args[0]!r} a tokenizer file has, so "
                               "the tokenizer cannot be loaded")
    return CheckpointError(folder, f"cannot load the tokenizer ({first_line(exc)})")


def _lacks(file: Path, key: object) -> bool:
    """Whether ``file`` is a JSON object without the top-level ``key`` (what a KeyError of its loader named)."""
    import json

    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and key not in data


def config_problem(folder: Path) -> None:
    """Refuse ``config.json`` by name when transformers cannot read it (a field of the wrong type, say)."""
    from transformers import AutoConfig

    if not (folder / "config.json").is_file():
        return
    try:
        with quiet_loading():
            AutoConfig.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    except Exception as exc:  # transformers raises many types
        raise CheckpointError(folder / "config.json", f"cannot be read as a model configuration "
                              f"({first_line(exc)})") from exc
