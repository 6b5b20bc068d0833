"""Model rows of the workspace: registering a checkpoint, look-ups, and renaming or removing one.

The rules about when a model may be removed or renamed live in :mod:`embridge.core.models.manage`; the
queries and updates they need are here, each change one transaction.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embridge.core.errors import StoreError
from embridge.core.paths import check_name, child
from embridge.core.store.files import atomic_copy, atomic_copy_tree
from embridge.core.store.partial_sets import drop_partials
from embridge.core.store.rows import decode, encode, now_iso

if TYPE_CHECKING:
    import sqlite_utils

ROLES = ("old", "new", "other")


class ModelsMixin:
    """Methods of :class:`embridge.core.store.Workspace` for models."""

    root: Path
    db: sqlite_utils.Database

    def restore_model_copy(self, name: str, source: str | Path) -> Path:
        """Put the stored copy of model ``name`` back from ``source`` (the caller checked that its sha256 is the
        model's): a copy deleted or changed by hand left the model unusable, and adding the checkpoint again was
        refused as a duplicate of it. The damaged copy is replaced whole, under a temp name first."""
        row = self.model(name)
        if not row.get("file"):
            raise StoreError(f"{self.root}: model '{name}' references its file where it lies; there is no copy to restore")
        stored = child(self.root / "models", Path(str(row["file"])).name)
        aside = stored.with_name(f"{stored.name}.damaged-{os.urandom(4).hex()}") if os.path.lexists(stored) else None
        try:
            if aside is not None:
                os.replace(stored, aside)
            (atomic_copy_tree if Path(source).is_dir() else atomic_copy)(source, stored)
        except OSError as exc:
            if aside is not None and not os.path.lexists(stored):
                os.replace(aside, stored)
            raise StoreError(f"{stored}: cannot restore the copy of model '{name}' from {source} ({exc})") from exc
        if aside is not None and aside.is_dir():
            shutil.rmtree(aside, ignore_errors=True)
        elif aside is not None:
            aside.unlink(missing_ok=True)
        return stored

    def add_model(self, name: str, role: str, spec: dict[str, Any], source_path: str | Path | None) -> dict:
        """Copy a checkpoint into ``models/`` and register its spec (one transaction).

        A vectors-only model's file is referenced, not copied: its vectors enter the workspace once,
        as the model's vector sets, when they are embedded or imported.
        """
        if role not in ROLES:
            raise StoreError(f"unknown role '{role}': use one of {', '.join(ROLES)}")
        check_name(name, "model name")
        if self.has_model(name):
            raise StoreError(f"{self.root}: a model named '{name}' already exists")
        src = Path(source_path) if source_path is not None else None
        if src is not None and not src.exists():
            raise StoreError(f"{src}: the checkpoint to store does not exist")
        copy = src is not None and spec.get("kind") != "vectors"
        sha12 = str(spec.get("sha256", ""))[:12]
        stored = child(self.root / "models", f"{name}-{sha12}{src.suffix}") if copy else None
        if stored is not None and os.path.lexists(stored):  # a renamed model's copy keeps its first name's
            stored = child(self.root / "models", f"{name}-{os.urandom(3).hex()}-{sha12}{src.suffix}")
        rel = stored.relative_to(self.root).as_posix() if stored else None
        try:  # encoded first: a spec that cannot be stored copies nothing
            row = encode({"name": name, "role": role, "kind": spec.get("kind"), "modality": spec.get("modality"),
                          "dim": spec.get("dim"), "params": spec.get("params"), "sha256": spec.get("sha256"),
                          "file": rel, "source_path": str(src.resolve()) if src else None, "spec": spec,
                          "created": now_iso()})
        except (TypeError, ValueError) as exc:
            raise StoreError(f"{self.root}: the spec of model '{name}' is not JSON-serialisable ({exc})") from exc
        if src is not None and stored is not None:
            try:
                (atomic_copy_tree if src.is_dir() else atomic_copy)(src, stored)
            except shutil.Error as exc:  # a folder's copy: one (source, copy, why) per file that failed
                problems = [str(p[2]) for p in (exc.args[0] if exc.args and isinstance(exc.args[0], list) else [])]
                why = problems[0] if problems else str(exc)
                more = f", and {len(problems) - 1} more files" if len(problems) > 1 else ""
                raise StoreError(f"{stored}: cannot copy the checkpoint {src} ({why}{more})") from exc
            except OSError as exc:
                raise StoreError(f"{stored}: cannot copy the checkpoint {src} ({exc})") from exc
        try:
            with self.transaction():
                self.db["models"].insert(row)
        except BaseException:
            if stored is not None and not self._model_file_used(rel):
                if stored.is_dir():  # the copy was made for this row alone
                    shutil.rmtree(stored, ignore_errors=True)
                else:
                    stored.unlink(missing_ok=True)
            raise
        return self.model(name)

    def has_model(self, name: str) -> bool:
        return self.db.execute("select 1 from models where name = ?", [name]).fetchone() is not None

    def model(self, name: str) -> dict[str, Any]:
        rows = list(self.db.query("select * from models where name = ?", [name]))
        if not rows:
            known = ", ".join(m["name"] for m in self.models()) or "none"
            raise StoreError(f"{self.root}: no model named '{name}' (known: {known})")
        return self._model_row(rows[0])

    def models(self) -> list[dict[str, Any]]:
        return [self._model_row(r) for r in self.db.query("select * from models order by id")]

    def model_by_role(self, role: str) -> dict[str, Any]:
        found = [m for m in self.models() if m["role"] == role]
        if not found:
            raise StoreError(f"{self.root}: no model with role '{role}'; add one with 'embridge model add --role {role}'")
        if len(found) > 1:  # the latest would be a guess: the user names one
            raise StoreError(f"{self.root}: {len(found)} models have the role '{role}' "
                             f"({', '.join(m['name'] for m in found)}); name the one to use with --{role}, or give "
                             "the others another role with 'embridge model set-role'")
        return found[0]

    def models_with_sha256(self, sha256: str) -> list[dict[str, Any]]:
        """The models stored with this checkpoint hash (name and spec), oldest first."""
        rows = self.db.execute("select name, spec from models where sha256 = ? order by id", [sha256]).fetchall()
        return [decode({"name": name, "spec": spec}) for name, spec in rows]

    def model_dependants(self, name: str) -> dict[str, int]:
        """How many vector sets and adapters refer to model ``name``."""
        model_id = self.model(name)["id"]
        sets = self.db.execute("select count(*) from vector_sets where model_id = ?", [model_id]).fetchone()[0]
        adapters = self.db.execute("select count(*) from adapters where old_model = ? or new_model = ?",
                                   [name, name]).fetchone()[0]
        return {"vector_sets": int(sets), "adapters": int(adapters)}

    def check_model_kept(self, name: str, row: dict[str, Any]) -> None:
        """Refuse to store what a long write made for a model that is gone or another now: ``model remove``
        (and ``model add`` of the name again, which may get the same id) while it embedded. Called inside the
        write's transaction; the same weights and settings under the same id count as the same model."""
        now = [decode(r) for r in self.db.query("select * from models where id = ?", [row["id"]])]
        if not now or (now[0].get("sha256"), _settings(now[0])) != (row.get("sha256"), _settings(row)):
            raise StoreError(f"model '{name}' was removed while its vectors were being written; nothing was "
                             "stored (add the model again if needed, and embed it again)")

    def check_model_named(self, name: str, row: dict[str, Any], what: str) -> None:
        """Refuse to record ``what`` under ``name`` when the model ``row`` no longer goes by it (renamed,
        removed, or another model added under the name since). Called inside the write's transaction."""
        now = [decode(r) for r in self.db.query("select * from models where name = ?", [name])]
        if not now or now[0]["id"] != row["id"] or (now[0].get("sha256"), _settings(now[0])) != (
                row.get("sha256"), _settings(row)):
            raise StoreError(f"model '{name}' was renamed, removed or replaced while {what}; nothing was stored "
                             "(run the command again)")

    def delete_model(self, name: str) -> None:
        """Delete the model's row, then its stored checkpoint copy unless another row shares it.

        The copy is deleted only where ``model add`` puts copies, directly inside ``models/``: a row
        naming any other path (an edited database) is refused before anything is deleted.
        """
        model = self.model(name)
        target = self._stored_copy(name, model.get("file"))
        with self.transaction():
            self.db.execute("delete from models where id = ?", [model["id"]])
        if target is not None and not self._model_file_used(model["file"]):
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target, ignore_errors=True)
            elif target.exists() or target.is_symlink():
                target.unlink(missing_ok=True)
        drop_partials(self.root / "vectors" / ".partial", name)  # a killed embed's rows: nothing can resume them

    def _stored_copy(self, name: str, file: Any) -> Path | None:
        """The checkpoint copy a model row names, checked to be an entry of ``models/`` (None: no copy)."""
        if not file:
            return None
        parts = str(file).split("/")
        if len(parts) != 2 or parts[0] != "models" or parts[1] in ("", ".", ".."):
            raise StoreError(f"{self.root / 'embridge.db'}: model '{name}' names its stored copy '{file}', which is "
                             "not an entry of the workspace's models folder; nothing was removed")
        return child(self.root / "models", parts[1])

    def rename_model(self, name: str, new_name: str) -> dict[str, Any]:
        """Rename a model in its row, its adapters, the configs of runs naming it and the embed and
        backfill runs of it (their ``method``; a detached backfill records its vectors under it later).
        Its spec keeps the names it had (``earlier_names``), which bundles carry: a store migrated while
        it had one of them still names it in its space field."""
        model = self.model(name)
        if self.has_model(new_name):
            raise StoreError(f"{self.root}: a model named '{new_name}' already exists")
        spec = dict(model.get("spec") or {})  # earlier names: what stores migrated under them still say
        spec["earlier_names"] = [n for n in dict.fromkeys([*(spec.get("earlier_names") or []), name]) if n != new_name]
        with self.transaction():
            self.db.execute("update models set name = ?, spec = ? where id = ?",
                            [new_name, json.dumps(spec), model["id"]])
            self.db.execute("update adapters set old_model = ? where old_model = ?", [new_name, name])
            self.db.execute("update adapters set new_model = ? where new_model = ?", [new_name, name])
            # runs started before this model was added were of an earlier model of the name, removed since
            since = str(model.get("created") or "")
            self.db.execute("update runs set method = ? where method = ? and kind in ('embed', 'backfill') and "
                            "started >= ?", [new_name, name, since])
            for run_id, text, started in self.db.execute("select id, config, started from runs").fetchall():
                config = json.loads(text) if text else None
                if not isinstance(config, dict) or str(started or "") < since:
                    continue
                versions = config.get("models")  # a chain report's versions, oldest first
                chained = isinstance(versions, list) and name in versions
                if name in (config.get("old"), config.get("new")) or chained:
                    config.update({k: new_name for k in ("old", "new") if config.get(k) == name})
                    if chained:
                        config["models"] = [new_name if v == name else v for v in versions]
                    self.db.execute("update runs set config = ? where id = ?", [json.dumps(config), run_id])
        return self.model(new_name)

    def set_model_role(self, name: str, role: str) -> dict[str, Any]:
        if role not in ROLES:
            raise StoreError(f"unknown role '{role}': use one of {', '.join(ROLES)}")
        model = self.model(name)
        with self.transaction():
            self.db.execute("update models set role = ? where id = ?", [role, model["id"]])
        return self.model(name)

    def _model_file_used(self, rel: str | None) -> bool:
        return self.db.execute("select 1 from models where file = ?", [rel]).fetchone() is not None

    def _model_row(self, row: dict[str, Any]) -> dict[str, Any]:
        out = decode(row)
        if out.get("file"):
            out["path"] = str(self.root / out["file"])
        else:  # a vectors-only model references its file where it lies
            out["path"] = out.get("source_path") if out.get("kind") == "vectors" else None
        return out


def _settings(row: dict[str, Any]) -> Any:
    """A model row's spec without the names it had: a rename keeps the model the same model."""
    spec = row.get("spec")
    return {k: v for k, v in spec.items() if k != "earlier_names"} if isinstance(spec, dict) else spec
