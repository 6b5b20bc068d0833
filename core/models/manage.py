"""Change the workspace's model list: remove, rename, change role, and refuse duplicates.

The CLI (``embridge model remove|rename|set-role``) and the app's Models page both call these, so
the rules live in one place. Every change is one transaction; a model that vector sets or
adapters depend on cannot be removed (nothing stored is lost).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from core.errors import InputError
from core.store import Workspace
from core.store.workspace import ROLES


def duplicate_of(ws: Workspace, sha256: str | None) -> str | None:
    """The name of a model already stored with this checkpoint hash (None when there is none)."""
    if not sha256:
        return None
    row = ws.db.execute("select name from models where sha256 = ?", [sha256]).fetchone()
    return row[0] if row else None


def check_not_duplicate(ws: Workspace, spec: dict[str, Any], path: str | Path) -> None:
    """Refuse a checkpoint whose sha256 equals a stored model's: the same model under two names."""
    name = duplicate_of(ws, spec.get("sha256"))
    if name is not None:
        raise InputError(str(path), f"this checkpoint is already in the workspace as model '{name}' "
                                    "(same sha256); use that model or rename it")


def dependants(ws: Workspace, name: str) -> dict[str, int]:
    """How many vector sets and adapters refer to model ``name``."""
    model_id = ws.model(name)["id"]
    sets = ws.db.execute("select count(*) from vector_sets where model_id = ?", [model_id]).fetchone()[0]
    adapters = ws.db.execute("select count(*) from adapters where old_model = ? or new_model = ?",
                             [name, name]).fetchone()[0]
    return {"vector_sets": int(sets), "adapters": int(adapters)}


def remove_model(ws: Workspace, name: str) -> dict[str, Any]:
    """Remove a model nothing depends on, with its stored checkpoint copy."""
    model = ws.model(name)
    used = dependants(ws, name)
    if used["vector_sets"] or used["adapters"]:
        raise InputError(f"model '{name}'", f"{used['vector_sets']} vector set(s) and {used['adapters']} "
                                            "adapter(s) use it; nothing was removed")
    with ws.transaction():
        ws.db.execute("delete from models where id = ?", [model["id"]])
    stored = model.get("path")
    if stored and model.get("file"):
        still_used = ws.db.execute("select 1 from models where file = ?", [model["file"]]).fetchone()
        target = Path(stored)
        if not still_used and target.exists():
            if target.is_dir():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)
    return {"name": name, "removed": True}


def rename_model(ws: Workspace, name: str, new_name: str) -> dict[str, Any]:
    """Rename a model everywhere the workspace names it (its adapters and training runs too)."""
    new_name = new_name.strip()
    if not new_name:
        raise InputError("--to", "the new name is empty")
    model = ws.model(name)
    if new_name == name:
        return model
    if ws.db.execute("select 1 from models where name = ?", [new_name]).fetchone():
        raise InputError("--to", f"a model named '{new_name}' already exists")
    runs = ws.db.execute("select id, config from runs").fetchall()
    with ws.transaction():
        ws.db.execute("update models set name = ? where id = ?", [new_name, model["id"]])
        ws.db.execute("update adapters set old_model = ? where old_model = ?", [new_name, name])
        ws.db.execute("update adapters set new_model = ? where new_model = ?", [new_name, name])
        for run_id, text in runs:
            config = json.loads(text) if text else None
            if isinstance(config, dict) and name in (config.get("old"), config.get("new")):
                config.update({k: new_name for k in ("old", "new") if config.get(k) == name})
                ws.db.execute("update runs set config = ? where id = ?", [json.dumps(config), run_id])
    return ws.model(new_name)


def set_model_role(ws: Workspace, name: str, role: str) -> dict[str, Any]:
    """Give a model the role old, new or other."""
    if role not in ROLES:
        raise InputError("--role", f"unknown role '{role}': use one of {', '.join(ROLES)}")
    model = ws.model(name)
    with ws.transaction():
        ws.db.execute("update models set role = ? where id = ?", [role, model["id"]])
    return ws.model(name)

