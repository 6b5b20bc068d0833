"""The workspace: one folder holding everything of one upgrade project.

``embridge.db`` (SQLite through sqlite-utils, WAL mode, busy timeout) keeps metadata; ``vectors/`` keeps
``.npy`` matrices; ``models/`` and ``adapters/`` keep copies of checkpoints so a workspace is self-contained
(a vectors-only model's file is referenced instead: its vectors are stored once, as the model's vector
sets, when embedded or imported). Every registration is one ``BEGIN IMMEDIATE`` transaction, so a second
process waits for the first writer (up to the busy timeout) and then gets a clear error; threads sharing
one open workspace take turns, so their transactions never interleave.

This module opens the database, runs transactions and keeps vector sets; the other methods come
from mixins: items and folds (:mod:`embridge.core.store.items`), models
(:mod:`embridge.core.store.model_rows`), runs and artifacts (:mod:`embridge.core.store.records`) and
judgments (:mod:`embridge.core.store.judgments`). Every SQL statement on a workspace lives in this package.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embridge.core import stop_signals
from embridge.core.env_numbers import env_number
from embridge.core.errors import IntegrityError, SchemaVersionError, StoreError, VectorFileError
from embridge.core.paths import DB_NAME, check_name, child
from embridge.core.store import damage_log
from embridge.core.store.id_sets import is_sorted_unique, unique_ids
from embridge.core.store.items import ITEM_FIELDS, QUERY_SPLIT, ItemsMixin, in_gallery, item_namespace
from embridge.core.store.judgments import JudgmentsMixin
from embridge.core.store.model_rows import ROLES, ModelsMixin
from embridge.core.store.records import RecordsMixin
from embridge.core.store.row_copy import GATHER_BLOCK, copy_rows, matching_rows
from embridge.core.store.rows import now_iso
from embridge.core.store.schema import check_tables, current_version, migrate
from embridge.core.store.sqlite_errors import translate as _translate
from embridge.core.store.sqlite_import import sqlite_utils as sqlite_utils_module
from embridge.core.store.vector_matrix import (
    SUPPORTED_DTYPES,
    VectorSetWriter,
    as_storage_dtype,
    open_matrix,
)
from embridge.core.store.vector_set_health import read_id_list, with_advice
from embridge.core.store.workspace_folder import (
    check_creatable,
    check_database_file,
    holds_files,
    init_stopped,
    make_store_folders,
    sweep_leftovers,
)

if TYPE_CHECKING:  # imported when a workspace is opened: the store's file helpers serve without SQLite's
    import sqlite_utils

BUSY_TIMEOUT_ENV = "EMBRIDGE_BUSY_TIMEOUT"
DEFAULT_BUSY_TIMEOUT_S = 10.0
__all__ = ["ITEM_FIELDS", "QUERY_SPLIT", "ROLES", "Workspace", "in_gallery", "item_namespace", "resolve_busy_timeout"]


def resolve_busy_timeout(seconds: float | None) -> float:
    """How long a writer waits for another process's write: the argument, else the env var, else 10 s."""
    if seconds is not None:
        return float(seconds)
    return env_number(BUSY_TIMEOUT_ENV, DEFAULT_BUSY_TIMEOUT_S, float, 0.0, "a number of seconds")


class Workspace(ItemsMixin, ModelsMixin, RecordsMixin, JudgmentsMixin):
    """Open handle on a workspace folder; see the module docstring."""

    def __init__(self, root: Path, db: sqlite_utils.Database) -> None:
        # absolute: paths built from it (in --json) mean the same whatever spelling opened it
        self.root = Path(os.path.abspath(root))
        self.db = db
        self._lock = threading.RLock()

    # -- opening ----------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, busy_timeout: float | None = None) -> Workspace:
        root = Path(path)
        check_creatable(root)
        made = [p for p in (root, *root.parents) if not p.exists()]  # the folders this call makes
        root.mkdir(parents=True, exist_ok=True)
        try:
            return cls._connect(root, busy_timeout, create=True)
        except BaseException:  # refused (a path SQLite cannot open, a damaged file): leave no folder behind
            for folder in made:
                try:
                    folder.rmdir()
                except OSError:
                    break
            raise

    @classmethod
    def open(cls, path: str | Path, busy_timeout: float | None = None) -> Workspace:
        """Open an existing workspace; ``busy_timeout`` (seconds) defaults to ``$EMBRIDGE_BUSY_TIMEOUT`` or 10."""
        root = Path(path)
        check_database_file(root)
        return cls._connect(root, busy_timeout, create=False)

    @classmethod
    def open_or_create(cls, path: str | Path, busy_timeout: float | None = None) -> Workspace:
        root = Path(path)
        exists = (root / DB_NAME).exists() or (root / DB_NAME).is_symlink()
        return cls.open(root, busy_timeout) if exists else cls.create(root, busy_timeout)

    @classmethod
    def _connect(cls, root: Path, busy_timeout: float | None, create: bool) -> Workspace:
        db_path = root / DB_NAME
        conn = sqlite3.connect(str(db_path), timeout=resolve_busy_timeout(busy_timeout), check_same_thread=False)
        try:
            # no plugins: one would change every connection; loading them costs ~0.1 s
            db = sqlite_utils_module().Database(conn, execute_plugins=False)
            db.execute("PRAGMA foreign_keys=ON")
            tables = db.table_names()  # checked before anything is written to the file
            if not create and not tables and holds_files(root):
                raise SchemaVersionError(f"{db_path}: the workspace database holds no tables (empty or never "
                                         "finished); Embridge leaves it and the workspace's files untouched")
            if not create and not tables:  # a create cut short: 'init' finishes it; a reader writes nothing
                raise StoreError(init_stopped(db_path, "without tables"))
            if not create and tables and "meta" not in tables:
                raise SchemaVersionError(f"{db_path}: not an Embridge workspace database (it holds tables but no "
                                         "Embridge schema; made by another program?); Embridge leaves it untouched")
            if not create:
                check_tables(db, str(db_path))  # before any write: a damaged database stays as it is
            if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                db.enable_wal()
            migrate(db, str(db_path))
            check_tables(db, str(db_path))
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.DatabaseError):
                raise _translate(exc, db_path) from exc
            raise
        make_store_folders(root)
        ws = cls(root, db)
        ws._sweep_temp_files()
        return ws

    def check_database(self) -> None:
        """Refuse, as opening would, a database changed under an open workspace into one that is not
        readable (overwritten, cut short) or lacks the schema; reads its schema alone (milliseconds)."""
        try:
            check_tables(self.db, str(self.root / DB_NAME))
        except sqlite3.DatabaseError as exc:
            raise _translate(exc, self.root / DB_NAME) from exc

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self, result: bool = False) -> Iterator[sqlite_utils.Database]:
        """One write transaction; nested calls become savepoints of the outer one.

        SQLite errors inside it roll it back and surface as StoreError naming the database. ``result``:
        it stores a job's result, so stop signals are held from its commit until the job's run is
        marked (see :mod:`embridge.core.stop_signals`).
        """
        with self._lock:
            conn = self.db.conn
            if conn.in_transaction:
                try:
                    with self.db.atomic():
                        yield self.db
                except sqlite3.DatabaseError as exc:
                    raise _translate(exc, self.root / DB_NAME) from exc
                return
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise _translate(exc, self.root / DB_NAME) from exc
            try:
                yield self.db
            except sqlite3.DatabaseError as exc:
                conn.rollback()
                raise _translate(exc, self.root / DB_NAME) from exc
            except BaseException:
                conn.rollback()
                raise
            if result:
                stop_signals.hold()
            try:
                conn.commit()
            except sqlite3.OperationalError as exc:
                conn.rollback()
                raise _translate(exc, self.root / DB_NAME) from exc

    def _sweep_temp_files(self) -> None:
        """Remove what crashed writers left behind (never visible): see :func:`sweep_leftovers`."""
        sweep_leftovers(self.root, self.db.conn)

    # -- vector sets ------------------------------------------------------------------------
    def vector_set_writer(self, model: str, item_ids: np.ndarray, dim: int, dtype: str = "float32",
                          name: str | None = None, resume_key: str | None = None,
                          ids_checked: bool = False) -> VectorSetWriter:
        """A resumable chunk writer; ``commit()`` registers the set. See embridge.core.store.vector_matrix.

        ``ids_checked``: the caller resolved ``item_ids`` from the items table inside its open write
        transaction, so they are items; the check (tens of ms per 20k scattered ids) is skipped.
        """
        model_row = self.model(model)
        expected = model_row.get("dim")
        if dim > 0 and isinstance(expected, int) and expected > 0 and dim != expected:
            raise VectorFileError(f"vectors of model '{model}'", f"{dim}-d vectors, but the model gives "
                                  f"{expected}-d vectors")
        if not (ids_checked and self.db.conn.in_transaction):
            self.check_item_ids(item_ids)
        set_name = check_name(name or "vectors", "vector set name")
        key = resume_key or f"{model}-{set_name}"
        partial_dir, final_dir = self.root / "vectors" / ".partial", child(self.root / "vectors", model)
        child(partial_dir, f"{key}.npy")

        def register(matrix: Path, ids_file: Path, sha: str, ids_sha: str) -> dict[str, Any]:
            row = {"model_id": model_row["id"], "name": set_name, "dim": dim, "dtype": dtype,
                   "count": len(item_ids), "file": matrix.relative_to(self.root).as_posix(),
                   "ids_file": ids_file.relative_to(self.root).as_posix(), "sha256": sha,
                   "ids_sha256": ids_sha, "created": now_iso()}
            with self.transaction(result=True):
                self.check_model_kept(model, model_row)
                pk = self.db["vector_sets"].insert(row).last_pk
            return self.vector_set(int(pk))

        return VectorSetWriter(partial_dir, final_dir,
                               key, item_ids, dim, dtype, register, f"vectors of model '{model}'",
                               final_stem=set_name, is_registered=self.vector_file_registered, owner=model)

    def vector_file_registered(self, path: str | Path) -> bool:
        """Whether a stored vector set uses this file (a path in the workspace, or relative to it)."""
        rel = Path(path).relative_to(self.root).as_posix() if Path(path).is_absolute() else Path(path).as_posix()
        return self.db.execute("select 1 from vector_sets where file = ? or ids_file = ?",
                               [rel, rel]).fetchone() is not None

    def add_vector_set(self, model: str, item_ids: Sequence[int], vectors: np.ndarray,
                       name: str | None = None, dtype: str | None = None) -> dict[str, Any]:
        """Store an in-memory matrix aligned to ``item_ids`` in one step."""
        vectors = np.asarray(vectors)
        label = f"vectors of model '{model}'"
        if vectors.ndim != 2:
            raise VectorFileError(label, f"expected a 2-D matrix, got shape {vectors.shape}")
        if len(item_ids) != vectors.shape[0]:
            raise VectorFileError(label, f"{vectors.shape[0]} vectors but {len(item_ids)} item ids")
        chosen = dtype or ("float16" if vectors.dtype == np.float16 else "float32")
        if chosen not in SUPPORTED_DTYPES:
            raise VectorFileError(label, f"unsupported dtype {chosen}; use one of {SUPPORTED_DTYPES}")
        stored = as_storage_dtype(vectors, chosen, label)  # before any file exists
        writer = self.vector_set_writer(model, np.asarray(item_ids), vectors.shape[1], chosen, name,
                                        resume_key=f"direct-{uuid.uuid4().hex}")
        try:
            writer.write(0, stored)
            return writer.commit()
        except BaseException:
            writer.abort()
            raise

    def vector_set(self, set_id: int) -> dict[str, Any]:
        rows = list(self.db.query(
            "select v.*, m.name as model from vector_sets v join models m on m.id = v.model_id where v.id = ?",
            [set_id]))
        if not rows:
            raise StoreError(f"{self.root}: no vector set with id {set_id}")
        row = rows[0]
        row["path"] = str(self.root / row["file"])
        return row

    def vector_sets(self, model: str | None = None) -> list[dict[str, Any]]:
        sql = "select v.id from vector_sets v join models m on m.id = v.model_id"
        args: list[Any] = []
        if model:
            sql, args = sql + " where m.name = ?", [model]
        return [self.vector_set(r[0]) for r in self.db.execute(sql + " order by v.id", args).fetchall()]

    def open_vector_set(self, set_id: int, verify: bool = True) -> tuple[np.ndarray, np.memmap]:
        """Item ids and a read-only memmap of one vector set, checksums verified."""
        info = self.vector_set(set_id)
        return self._set_ids(info, verify), self._set_matrix(info, verify)

    def _set_matrix(self, info: dict[str, Any], verify: bool) -> np.memmap:
        try:
            return open_matrix(self.root / info["file"], info["sha256"] if verify else None, info["count"],
                               info["dim"])
        except IntegrityError as exc:
            raise with_advice(exc, info) from exc

    def vector_set_ids(self, set_id: int, verify: bool = True) -> np.ndarray:
        """Item ids of one vector set, its id list's checksum verified (the matrix is not read)."""
        return self._set_ids(self.vector_set(set_id), verify)

    def _set_ids(self, info: dict[str, Any], verify: bool) -> np.ndarray:
        try:
            return read_id_list(self.root / info["ids_file"], info, verify)
        except IntegrityError as exc:
            raise with_advice(exc, info) from exc

    def ids_with_vectors(self, model: str) -> np.ndarray:
        """Sorted ids of items that have vectors under ``model`` (any of its sets whose id list can be read:
        see :mod:`embridge.core.store.damage_log`)."""
        lists = []
        for info in self.vector_sets(model):
            try:
                lists.append(self._set_ids(info, True))
            except IntegrityError as exc:
                damage_log.note(f"vector set {info['id']} of model '{model}'",
                                f"its items count as holding none of its vectors: {exc}")
        return unique_ids(np.concatenate(lists)) if lists else np.zeros(0, dtype=np.int64)

    def _sets_with_vectors(self, model: str) -> list[dict[str, Any]]:
        """``model``'s vector sets, oldest first; an error naming the model when it has none."""
        sets = self.vector_sets(model)
        if not sets:
            if not self.has_model(model):  # renamed or removed by another process while this one ran
                raise StoreError(f"{self.root}: no model named '{model}' (renamed or removed while this command "
                                 "ran?); run the command again")
            raise StoreError(f"{self.root}: model '{model}' has no vectors yet; run 'embridge embed --model {model}'")
        return sets

    def vector_dim(self, model: str) -> int:
        """The dimension of ``model``'s vectors (its newest set's)."""
        return int(self._sets_with_vectors(model)[-1]["dim"])

    def vectors_for(self, model: str, item_ids: Sequence[int], dtype: type = np.float32,
                    out: np.ndarray | None = None) -> np.ndarray:
        """Gather ``model``'s vectors for ``item_ids`` in that order (later sets win).

        ``out``: a C-contiguous (len(item_ids), dim) array of ``dtype`` to fill and return; sorted
        ids are copied straight into it, which spares a large gather a second copy of itself.
        """
        want = np.asarray(item_ids, dtype=np.int64).ravel()
        sets = self._sets_with_vectors(model)
        dim = sets[-1]["dim"]
        if is_sorted_unique(want):  # the usual request: no sort, no inverse to apply at the end
            unique, where = want, None
        else:
            unique, where = np.unique(want, return_inverse=True)
        if out is not None and (out.shape != (len(want), dim) or out.dtype != dtype or not out.flags.c_contiguous):
            raise ValueError(f"out must be a C-contiguous {np.dtype(dtype).name} array of shape ({len(want)}, {dim}), "
                             f"not {out.dtype.name} {out.shape}")
        given = out
        out = given if given is not None and where is None else np.empty((len(unique), dim), dtype=dtype)
        filled = np.zeros(len(unique), dtype=bool)
        unreadable: IntegrityError | None = None  # a set whose id list is damaged: the others may hold its items
        for info in reversed(sets):
            if filled.all():
                break
            if info["dim"] != dim:
                raise StoreError(f"{self.root}: vector sets of model '{model}' differ in dimension "
                                 f"({info['dim']} in set {info['id']}, {dim} in the newest)")
            try:
                ids = self._set_ids(info, True)
            except IntegrityError as exc:
                unreadable = unreadable or exc
                continue
            matrix = self._set_matrix(info, True)
            slots, rows = matching_rows(unique, ids, filled)
            for start in range(0, len(rows), GATHER_BLOCK):
                copy_rows(out, slots[start:start + GATHER_BLOCK], matrix, rows[start:start + GATHER_BLOCK])
            filled[slots] = True
        missing = int((~(filled if where is None else filled[where])).sum())
        if missing and unreadable is not None:
            raise unreadable
        if missing:
            raise StoreError(f"{self.root}: {missing} of {len(want)} requested items have no "
                             f"vectors under model '{model}'")
        if given is not None and where is not None:
            np.take(out, where, axis=0, out=given)
            return given
        return out if where is None else out[where]

    # -- meta -------------------------------------------------------------------------------
    def schema_version(self) -> int:
        return current_version(self.db)

    def meta(self, key: str) -> str | None:
        """A value of the workspace's key-value ``meta`` table, or None."""
        row = self.db.execute("select value from meta where key = ?", [key]).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction():
            self.db["meta"].upsert({"key": key, "value": value}, pk="key")

    def delete_meta(self, key: str) -> None:
        with self.transaction():
            self.db.execute("delete from meta where key = ?", [key])

