"""Change the workspace's model list: remove, rename, change role, and refuse duplicates.

The CLI (``embridge model remove|rename|set-role``) and the app's Models page both call these, so
the rules live in one place. Every change is one transaction; a model that vector sets or
adapters depend on cannot be removed (nothing stored is lost).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from embridge.core.errors import InputError
from embridge.core.paths import check_name
from embridge.core.store import Workspace
from embridge.core.store.workspace import ROLES

# how a model turns an input into a vector besides its weights: the same checkpoint with other prompts or
# pooling (text), or read at another input shape or as another architecture (images), gives other vectors or
# none, so it is another model (to compare prompt choices, or to mend a shape given wrong)
TEXT_SETTINGS = ("query_prompt", "document_prompt", "pooling")
EMBEDDING_SETTINGS = (*TEXT_SETTINGS, "input_shape", "arch", "arch_config")


def _settings(spec: dict[str, Any]) -> dict[str, Any]:
    """The embedding settings of a spec, compared as they read the input: a shape without its leading 1s
    (8,8 is 1,8,8: one channel), no architecture or an empty one alike (a TorchScript file has its own)."""
    out = {k: spec.get(k) for k in EMBEDDING_SETTINGS}
    shape = [int(d) for d in out["input_shape"] or []]
    while len(shape) > 1 and shape[0] == 1:
        shape = shape[1:]
    out["input_shape"] = shape
    out["arch"], out["arch_config"] = out["arch"] or None, out["arch_config"] or None
    return out


def duplicate_of(ws: Workspace, spec: dict[str, Any]) -> str | None:
    """The name of a model already stored with this checkpoint hash and the same embedding settings."""
    sha256 = spec.get("sha256")
    if not sha256:
        return None
    wanted = _settings(spec)
    return next((m["name"] for m in ws.models_with_sha256(str(sha256)) if _settings(m["spec"]) == wanted), None)


def check_not_duplicate(ws: Workspace, spec: dict[str, Any], path: str | Path) -> None:
    """Refuse a checkpoint whose sha256 and embedding settings equal a stored model's: the same model
    under two names (its vectors would be the stored model's)."""
    name = duplicate_of(ws, spec)
    if name is not None:
        if spec.get("modality") != "text":
            again = "a model may be added again read at another --input-shape, or as another --arch or --arch-config"
        else:
            options = ("--query-prompt or --document-prompt" if spec.get("kind") == "sentence_transformers"
                       else "--query-prompt, --document-prompt or --pooling")  # such a folder pools as its modules say
            again = f"a text model may be added again with other {options}"
        raise InputError(str(path), f"this checkpoint is already in the workspace as model '{name}' (same "
                                    f"sha256 and embedding settings); use that model ({again})")


def dependants(ws: Workspace, name: str) -> dict[str, int]:
    """How many vector sets and adapters refer to model ``name``."""
    return ws.model_dependants(name)


def remove_model(ws: Workspace, name: str) -> dict[str, Any]:
    """Remove a model nothing depends on, with its stored checkpoint copy."""
    used = dependants(ws, name)
    if used["vector_sets"] or used["adapters"]:
        raise InputError(f"model '{name}'", f"{used['vector_sets']} vector set(s) and {used['adapters']} "
                                            "adapter(s) use it; nothing was removed")
    ws.delete_model(name)
    return {"name": name, "removed": True}


def rename_model(ws: Workspace, name: str, new_name: str) -> dict[str, Any]:
    """Rename a model everywhere the workspace names it (its adapters and training runs too).

    The new name obeys the rules ``model add`` applies: it names files, so no path parts."""
    new_name = new_name.strip()
    if not new_name:
        raise InputError("--to", "the new name is empty")
    check_name(new_name, "--to")
    model = ws.model(name)
    if new_name == name:
        return model
    if ws.has_model(new_name):
        raise InputError("--to", f"a model named '{new_name}' already exists")
    return ws.rename_model(name, new_name)


def set_model_role(ws: Workspace, name: str, role: str) -> dict[str, Any]:
    """Give a model the role old, new or other."""
    if role not in ROLES:
        raise InputError("--role", f"unknown role '{role}': use one of {', '.join(ROLES)}")
    return ws.set_model_role(name, role)


def pair_warnings(models: list[dict[str, Any]]) -> list[str]:
    """Plain-language warnings about the old/new pair: missing roles, dims or modalities that differ.

    ``embridge model list`` prints them and the Models page shows them.
    """
    old = [m for m in models if m["role"] == "old"]
    new = [m for m in models if m["role"] == "new"]
    notes = []
    if not old:
        notes.append("No model has the role 'old' yet: add the model that built today's index as 'old'.")
    if not new:
        notes.append("No model has the role 'new' yet: add the model you want to upgrade to as 'new'.")
    for role, found in (("old", old), ("new", new)):
        if len(found) > 1:
            notes.append(f"{len(found)} models have the role '{role}' ({', '.join(m['name'] for m in found)}): "
                         f"training needs the one to use named (--{role}); give the others the role 'other'.")
    if not (old and new):
        return notes
    o, n = old[-1], new[-1]
    if o["dim"] != n["dim"]:
        notes.append(f"Dimensions differ: {o['name']} gives {o['dim']}-d vectors, {n['name']} {n['dim']}-d. "
                     "New vectors cannot be searched against the old index without a compatibility layer; "
                     "every training method learns a layer between the two widths.")
    if o["modality"] != n["modality"]:
        notes.append(f"Modalities differ: {o['name']} reads {o['modality']} input, {n['name']} reads "
                     f"{n['modality']}. Training pairs need the same items embedded by both models.")
    shapes = (o.get("input_shape"), n.get("input_shape"))
    if o["modality"] == n["modality"] == "image" and shapes[0] and shapes[1] and shapes[0] != shapes[1]:
        notes.append(f"Input shapes differ ({tuple(shapes[0])} vs {tuple(shapes[1])}): each model gets "
                     "the images conformed to its own input shape.")
    return notes
