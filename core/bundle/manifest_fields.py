"""The manifest's fields, checked once for every reader: verify, inspect, apply, the README, the app.

Every field that :mod:`~embridge.core.bundle.summary`, :mod:`~embridge.core.bundle.readme`,
:mod:`~embridge.core.bundle.runtime` or :mod:`~embridge.core.bundle.transform_file` reads is
checked here for presence, type and (where the exporter writes a closed set) value, so a forged
manifest is refused by each command alike, with one line naming the field, rather than read as a
different function or failing later with a bug.
"""

from __future__ import annotations

import math
from typing import Any

from embridge.core.errors import BundleError
from embridge.core.report.gate import is_share

MANIFEST = "manifest.json"
ADAPTER_FILE = "adapter.pt"
STATE_FILE = "adapter_state.pt"  # the training checkpoint, rebuilt by verify
PORTABLE_FILE = "adapter.safetensors"
ONNX_FILE = "adapter.onnx"  # a non-linear layer, for onnxruntime
MAX_DIM = 1 << 20
# What the exporter writes: inputs "l2" when the layer was fitted on L2-normalised vectors, else
# "none" (the vectors as stored); outputs are always meant for cosine search.
INPUT_NORMALISATIONS = ("l2", "none")
OUTPUT_NORMALISATIONS = ("l2",)
DIRECTIONS = ("backward", "forward", "joint")
# the layer kinds an export writes (embridge.core.adapters.registry.METHODS, which imports torch), and
# "chain" for several; the numpy runtime serves the linear ones alone (a fusion's base included)
KINDS = ("procrustes", "affine", "lowrank", "mlp", "bct", "bt2", "fct", "fusion", "cascade", "chain")
NUMPY_KINDS = ("procrustes", "affine", "lowrank", "fusion")
_INPUTS = (["new"], ["old"], ["new", "old"])


def _text(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 500


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _dim(value: Any) -> bool:
    return _integer(value) and 1 <= value <= MAX_DIM


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _shown(value: Any) -> str:
    return repr(str(value)[:40])


HEX = "0123456789abcdef"


class _Checker:
    """Raises BundleError ``WHERE: manifest.json field 'F' PROBLEM`` for the first bad field."""

    def __init__(self, where: object) -> None:
        self.where = where

    def fail(self, field: str, problem: str) -> None:
        raise BundleError(f"{self.where}: {MANIFEST} field '{field}' {problem}")

    def obj(self, value: Any, field: str, optional: bool = False) -> dict[str, Any]:
        if optional and value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(field, "must be an object" + (" or null" if optional else ""))
        return value

    def text(self, value: Any, field: str, optional: bool = False) -> None:
        if not (_text(value) or (optional and value is None)):
            self.fail(field, "must be a non-empty string" + (" or null" if optional else ""))

    def one_of(self, value: Any, field: str, allowed: tuple[str, ...]) -> None:
        if not (isinstance(value, str) and value in allowed):
            self.fail(field, f"must be one of {', '.join(repr(a) for a in allowed)}, got {_shown(value)}")


def check_fields(where: object, m: dict[str, Any]) -> None:
    """Refuse a manifest whose fields have the wrong types or values, naming the field."""
    c = _Checker(where)
    _adapter(c, m)
    for key in ("created", "embridge_version"):
        c.text(m.get(key), key)
    norm = m.get("normalisation")
    if not isinstance(norm, dict):
        c.fail("normalisation", "must be an object with 'input' and 'output' strings")
    c.one_of(norm.get("input"), "normalisation.input", INPUT_NORMALISATIONS)
    c.one_of(norm.get("output"), "normalisation.output", OUTPUT_NORMALISATIONS)
    c.obj(m.get("probes"), "probes")
    _models(c, m.get("models"))
    _chain(c, m.get("chain", []), m["format_version"] >= 2)
    if m["format_version"] >= 2 and not m.get("chain"):  # every export lists its steps: none is a forgery
        c.fail("chain", "lists no step; a bundle names the run of each of its layers")
    _kind_matches_chain(c, m["adapter"]["kind"], m.get("chain", []))
    _models_match_chain(c, m)
    _model_dims_match_adapter(c, m)
    _report_and_metrics(c, m)
    if m["format_version"] >= 2:
        _portable(c, m)
    stale = m.get("measured_before_changes")
    if stale is not None and not (isinstance(stale, str) and 0 < len(stale) <= 4000):
        c.fail("measured_before_changes", "must be absent or a sentence")
    gallery = m.get("gallery_transformed")
    if gallery is not None and not (isinstance(gallery, dict) and _integer(gallery.get("count"))
                                    and _text(gallery.get("vectors")) and _text(gallery.get("keys"))):
        c.fail("gallery_transformed", "must be null or an object with an integer count and the vectors and "
               "keys file names")


def _adapter(c: _Checker, m: dict[str, Any]) -> None:
    adapter = m["adapter"]
    if not isinstance(adapter, dict) or not adapter:
        c.fail("adapter", "must be a non-empty object")
    c.one_of(adapter.get("kind"), "adapter.kind", KINDS)
    c.one_of(adapter.get("direction"), "adapter.direction", DIRECTIONS)
    for key in ("in_dim", "out_dim"):
        if not _dim(adapter.get(key)):
            c.fail(f"adapter.{key}", f"must be an integer from 1 to {MAX_DIM}, got {_shown(adapter.get(key))}")
    inputs = adapter.get("inputs")
    if not (isinstance(inputs, list) and inputs in _INPUTS):
        c.fail("adapter.inputs", "must be [\"new\"], [\"old\"] or [\"new\", \"old\"]")
    if (adapter["direction"] == "forward") != (inputs == ["old"]):  # a forward layer takes old vectors alone
        c.fail("adapter.direction", f"says {adapter['direction']}, but adapter.inputs says {inputs}: a forward "
               "layer takes old vectors, the others new ones")
    if adapter.get("file") != ADAPTER_FILE:
        c.fail("adapter.file", f"must be '{ADAPTER_FILE}' (a bundle holds its adapter there), "
               f"got {str(adapter.get('file'))[:80]!r}")
    if adapter.get("state_file") != STATE_FILE or STATE_FILE not in m["files"]:  # verify rebuilds the layer from it
        c.fail("adapter.state_file", f"must be '{STATE_FILE}', listed under files (a bundle holds its training "
               f"checkpoint there), got {str(adapter.get('state_file'))[:80]!r}")
    for key in ("run_ids", "adapter_ids"):  # the report cross-check reads run_ids: a forged one must not disable it
        ids = adapter.get(key)
        if ids is not None and not (isinstance(ids, list) and all(_integer(i) for i in ids)):
            c.fail(f"adapter.{key}", f"must be a list of integers, got {_shown(ids)}")
    method = c.obj(adapter.get("method"), "adapter.method", optional=True)
    if method.get("k") is not None and not (_integer(method["k"]) and method["k"] >= 1):
        c.fail("adapter.method.k", "must be a positive integer")
    if method.get("head_dim") is not None and not (_integer(method["head_dim"]) and method["head_dim"] >= 1):
        c.fail("adapter.method.head_dim", "must be a positive integer")
    if method.get("new_vectors") is not None and not isinstance(method["new_vectors"], bool):
        c.fail("adapter.method.new_vectors", "must be true or false")
    c.text(method.get("serving"), "adapter.method.serving", optional=True)
    files = m["files"]
    if ADAPTER_FILE not in files:
        c.fail("files", f"does not list {ADAPTER_FILE}")
    for name, entry in files.items():
        size = entry.get("bytes") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or (size is not None and not (_integer(size) and size >= 0)):
            c.fail(f"files.{str(name)[:80]}", "must be an object with a sha256 and a byte count")


def _models(c: _Checker, models: Any) -> None:
    """``models.old`` and ``models.new`` name the two models (the README and inspect print them)."""
    if models is None:
        c.fail("models", "is missing (it names the old and the new model)")
    models = c.obj(models, "models")
    for role in ("old", "new"):
        if role not in models:
            c.fail(f"models.{role}", "is missing")
        _model(c, models[role], f"models.{role}")
    middle = models.get("intermediate", [])
    if not isinstance(middle, list):
        c.fail("models.intermediate", "must be a list of models")
    for i, entry in enumerate(middle):
        _model(c, entry, f"models.intermediate.{i}")


def _model(c: _Checker, entry: Any, field: str) -> None:
    entry = c.obj(entry, field)
    c.text(entry.get("name"), f"{field}.name")
    c.text(entry.get("sha256"), f"{field}.sha256", optional=True)
    if entry.get("dim") is not None and not _dim(entry["dim"]):
        c.fail(f"{field}.dim", f"must be an integer from 1 to {MAX_DIM} or null")
    c.obj(entry.get("spec"), f"{field}.spec", optional=True)


def _chain(c: _Checker, chain: Any, layer_sha_required: bool) -> None:
    """Each step's run, kind, direction and models; with ``layer_sha_required`` (every export that writes
    ``adapter_state.pt`` records it) its layer's sha256, which ties the checkpoint to the run the step names:
    left out, another run's layer with every hash rewritten passed."""
    if not isinstance(chain, list):
        c.fail("chain", "must be a list of steps (objects with run_id, kind and direction)")
    for i, step in enumerate(chain):
        if not (isinstance(step, dict) and all(step.get(k) is not None and _text(str(step[k]))
                                               for k in ("run_id", "kind", "direction"))):
            c.fail("chain", "must be a list of steps (objects with run_id, kind and direction)")
        for key in ("old_model", "new_model"):
            c.text(step.get(key), f"chain.{i}.{key}")
        c.one_of(step["kind"], f"chain.{i}.kind", KINDS[:-1])
        sha = step.get("adapter_sha256")
        if layer_sha_required and not (isinstance(sha, str) and len(sha) == 64 and set(sha) <= set(HEX)):
            c.fail(f"chain.{i}.adapter_sha256", "must be the sha256 (64 hex digits) of the step's layer file")


def _models_match_chain(c: _Checker, m: dict[str, Any]) -> None:
    """``models`` (what inspect and the README print) names the models the chain's layers map between: a
    manifest with the two swapped passed, telling users to embed queries with the wrong model."""
    chain = m.get("chain") or []
    if not chain:
        return
    forward = m["adapter"].get("direction") == "forward"
    expected = {"old": chain[0]["old_model"] if forward else chain[-1]["old_model"],
                "new": chain[-1]["new_model"] if forward else chain[0]["new_model"]}
    for role, name in expected.items():
        said = m["models"][role].get("name")
        if said != name:
            c.fail(f"models.{role}.name", f"says {_shown(said)}, but the chain's layers map between "
                                          f"{_shown(expected['new'])} (new) and {_shown(expected['old'])} (old)")


def _model_dims_match_adapter(c: _Checker, m: dict[str, Any]) -> None:
    """A stated model width is the width the layer takes or gives for it (inspect prints both): the new
    model's input of a backward layer and the old model's output, the other way round for a forward one
    (whose input may carry side information after the old vector, so it is at least the old width)."""
    a = m["adapter"]
    forward = a.get("direction") == "forward"
    for role in ("old", "new"):
        dim = m["models"][role].get("dim")
        if dim is None:
            continue
        side = "in_dim" if (role == "new") != forward else "out_dim"
        width = a.get(side)
        if dim != width and not (forward and role == "old" and dim < width):
            c.fail(f"models.{role}.dim", f"says {dim}, but the layer's {side} is {width}")  # both checked integers


def _kind_matches_chain(c: _Checker, kind: str, chain: list[dict[str, Any]]) -> None:
    """One step is that layer's kind; several are a "chain" (an older bundle may list no steps)."""
    if not chain:
        return
    want = str(chain[0]["kind"]) if len(chain) == 1 else "chain"
    if kind != want:
        c.fail("adapter.kind", f"says {_shown(kind)}, but the chain's {len(chain)} step(s) make it {_shown(want)}")


def _report_and_metrics(c: _Checker, m: dict[str, Any]) -> None:
    report = c.obj(m.get("report"), "report") if "report" in m else {}
    if report.get("id") is not None and not _integer(report["id"]):
        c.fail("report.id", "must be an integer or null")
    metrics = c.obj(m.get("metrics"), "metrics") if "metrics" in m else {}
    _measurement(c, metrics, "metrics")
    also = metrics.get("also_measured", [])
    if not (isinstance(also, list) and all(isinstance(e, dict) for e in also)):
        c.fail("metrics.also_measured", "must be a list of objects")
    for i, entry in enumerate(also):
        _measurement(c, entry, f"metrics.also_measured.{i}")


def _measurement(c: _Checker, entry: dict[str, Any], field: str) -> None:
    """Numbers with the source and the protocol (queries and gallery) they were measured on, as text."""
    _values(c, entry.get("values", {}), f"{field}.values")
    for key in ("source", "protocol"):  # inspect and the README print them as they are
        if entry.get(key) is not None and not isinstance(entry[key], str):
            c.fail(f"{field}.{key}", f"must be text or null, got {_shown(entry[key])}")


def _values(c: _Checker, values: Any, field: str) -> None:
    """Measured numbers: each a number, a yes/no (``compatible``) or null (undefined), as the exporter writes them."""
    if not isinstance(values, dict):
        c.fail(field, "must be an object")
    for key, value in values.items():
        if value is not None and not isinstance(value, bool) and not _number(value):
            c.fail(f"{field}.{str(key)[:80]}", f"must be a finite number or null, got {_shown(value)}")
        if _number(value) and _share(str(key)) and not 0 <= value <= 1:
            c.fail(f"{field}.{str(key)[:80]}", f"is a share and must lie between 0 and 1, got {_shown(value)}")


def _share(key: str) -> bool:
    """Values that lie between 0 and 1 in every report (the release gate's shares, and the curves' areas)."""
    return is_share(key) or key.startswith("backfill_area_")


def _portable(c: _Checker, m: dict[str, Any]) -> None:
    entry = m.get("portable")
    if not (isinstance(entry, dict) and entry.get("file") == PORTABLE_FILE and PORTABLE_FILE in m["files"]
            and entry.get("runtime") in ("numpy", "onnx")):
        c.fail("portable", f"must be an object naming '{PORTABLE_FILE}' (listed under files) and a runtime "
               "'numpy' or 'onnx'")
    if entry["runtime"] == "numpy" and m["adapter"]["kind"] not in NUMPY_KINDS:
        c.fail("portable.runtime", f"says 'numpy', which serves linear layers alone, but adapter.kind says "
               f"{_shown(m['adapter']['kind'])}")
    if entry["runtime"] == "onnx" and (entry.get("onnx") != ONNX_FILE or ONNX_FILE not in m["files"]):
        c.fail("portable.onnx", f"must be '{ONNX_FILE}', listed under files (the file onnxruntime runs), got "
               f"{str(entry.get('onnx'))[:80]!r}")
    stated = entry.get("input_normalisation")
    if stated is not None and stated != m["normalisation"]["input"]:
        c.fail("portable.input_normalisation", f"says {_shown(stated)}, but normalisation.input says "
               f"{_shown(m['normalisation']['input'])}")
    tensors = entry.get("tensors", [])
    if not (isinstance(tensors, list) and all(_text(t) for t in tensors)):
        c.fail("portable.tensors", "must be a list of tensor names")
    c.text(entry.get("formula"), "portable.formula")
    check = c.obj(entry.get("export_check"), "portable.export_check", optional=True)
    if check.get("max_abs_diff") is not None and not _number(check["max_abs_diff"]):
        c.fail("portable.export_check.max_abs_diff", "must be a number")
