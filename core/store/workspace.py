"""The workspace: one folder holding everything of one upgrade project.

``embridge.db`` (SQLite through sqlite-utils, WAL mode, busy timeout) keeps metadata; ``vectors/``
keeps ``.npy`` matrices; ``models/`` and ``adapters/`` keep copies of checkpoints so a workspace
is self-contained (a vectors-only model's file is referenced instead: its vectors are stored once,
as the model's vector sets, when embedded or imported). Every registration is one ``BEGIN IMMEDIATE`` transaction, so a second
process waits for the first writer (up to the busy timeout) and then gets a clear error; threads
sharing one open workspace take turns, so their transactions never interleave.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils

from core.errors import (
    ImportDataError,
    IntegrityError,
    SchemaVersionError,
    StoreError,
    VectorFileError,
    WorkspaceBusyError,
)
from core.paths import DB_NAME, check_name, child, is_real_dir, owned_temps, remove_no_follow
from core.store.files import atomic_copy, atomic_copy_tree
from core.store.judgments import JudgmentsMixin
from core.store.records import RecordsMixin
from core.store.rows import ITEM_COLUMNS, decode, encode, item_values, now_iso
from core.store.schema import DOC_NAMESPACE, NAMESPACES, QUERY_NAMESPACE, check_tables, migrate
from core.store.vectors import (
    SUPPORTED_DTYPES,
    VectorSetWriter,
    as_storage_dtype,
    open_matrix,
    sweep_orphans,
    verified_sha256,
)

ITEM_FIELDS = ("key", "label", "split", "source", "modality", "text", "path", "metadata")
ROLES = ("old", "new", "other")
QUERY_SPLIT = "query"  # items of this split are queries; every other item belongs to the gallery
TEMP_MAX_AGE_S = 3600  # older temp files belong to a writer that died, not one still running
BUSY_TIMEOUT_ENV = "EMBRIDGE_BUSY_TIMEOUT"
DEFAULT_BUSY_TIMEOUT_S = 10.0


def resolve_busy_timeout(seconds: float | None) -> float:
    """How long a writer waits for another process's write: the argument, else the env var, else 10 s."""
    if seconds is not None:
        return float(seconds)
    raw = os.environ.get(BUSY_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_BUSY_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also refuses NaN
        raise StoreError(f"{BUSY_TIMEOUT_ENV}: expected a number of seconds (0 or more), got '{raw}'")
    return value


class Workspace(RecordsMixin, JudgmentsMixin):
    """Open handle on a workspace folder; see the module docstring."""

    def __init__(self, root: Path, db: sqlite_utils.Database) -> None:
        self.root = root
        self.db = db
        self._lock = threading.RLock()

    # -- opening ----------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, busy_timeout: float | None = None) -> Workspace:
        root = Path(path)
        if (root / DB_NAME).exists():
            raise StoreError(f"{root}: a workspace already exists here")
        if root.exists() and any(p for p in root.iterdir() if not p.name.startswith(".")):
            raise StoreError(f"{root}: folder is not empty; choose an empty or new folder")
        root.mkdir(parents=True, exist_ok=True)
        return cls._connect(root, busy_timeout, create=True)

    @classmethod
    def open(cls, path: str | Path, busy_timeout: float | None = None) -> Workspace:
        """Open an existing workspace; ``busy_timeout`` (seconds) defaults to ``$EMBRIDGE_BUSY_TIMEOUT`` or 10."""
        root = Path(path)
        _check_database_file(root)
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
            db = sqlite_utils.Database(conn)
            db.execute("PRAGMA foreign_keys=ON")
            tables = db.table_names()  # checked before anything is written to the file
            if not create and not tables and _holds_files(root):  # else: a create cut short, finished now
                raise SchemaVersionError(f"{db_path}: the workspace database holds no tables (empty or never "
                                         "finished); Embridge leaves it and the workspace's files untouched")
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
        for sub in ("vectors", "models", "adapters", "reports", "bundles"):
            (root / sub).mkdir(exist_ok=True)
        ws = cls(root, db)
        ws._sweep_temp_files()
        return ws

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """One write transaction; nested calls become savepoints of the outer one.

        SQLite errors inside it roll it back and surface as StoreError naming the database.
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
            try:
                conn.commit()
            except sqlite3.OperationalError as exc:
                conn.rollback()
                raise _translate(exc, self.root / DB_NAME) from exc

    def _sweep_temp_files(self) -> None:
        """Remove temp files and unregistered vector files a crashed writer left behind (never visible).

        Only names this program gives its own files are removed, in the workspace's own folders,
        and no symbolic link is ever followed (a linked folder is left alone entirely).
        """
        cutoff = time.time() - TEMP_MAX_AGE_S
        for sub in ("vectors", "models", "adapters", "reports", "bundles"):
            for tmp in list(owned_temps(self.root / sub)):
                try:
                    if tmp.lstat().st_mtime >= cutoff:
                        continue
                    remove_no_follow(tmp)
                except OSError:
                    continue  # swept by a concurrent opener, or not ours to remove
        registered = {self.root / r[c] for r in self.db.execute("select file, ids_file from vector_sets")
                      for c in (0, 1) if r[c]}
        models = {r[0] for r in self.db.execute("select name from models") if isinstance(r[0], str)}
        if is_real_dir(self.root / "vectors"):
            sweep_orphans(self.root / "vectors", registered, cutoff, models)

    # -- items ------------------------------------------------------------------------------
    def add_items(self, records: Sequence[dict[str, Any]], source: str = "items") -> list[int]:
        """Insert items all-or-nothing; duplicate or existing keys are an ImportDataError.

        Items of split 'query' are queries and get their own key namespace, so a query key may
        equal a document key; keys must be unique within each namespace.
        """
        if not records:
            raise ImportDataError(source, "no items to import")
        keys = [str(r.get("key", "")).strip() for r in records]
        if any(not k for k in keys):
            raise ImportDataError(source, f"item {keys.index('') + 1} has an empty key")
        spaces = [item_namespace(r.get("split")) for r in records]
        by_space: dict[str, list[str]] = {}
        for k, ns in zip(keys, spaces, strict=True):
            by_space.setdefault(ns, []).append(k)
        if any(len(set(ks)) != len(ks) for ks in by_space.values()):
            seen: set[tuple[str, str]] = set()
            dupes = [k for k, ns in zip(keys, spaces, strict=True) if (ns, k) in seen or seen.add((ns, k))]
            raise ImportDataError(source, f"duplicate keys in the input: {', '.join(sorted(set(dupes))[:5])}")
        created = now_iso()
        rows = [item_values(k, r, created, source, ns) for k, r, ns in zip(keys, records, spaces, strict=True)]
        with self.transaction():  # checked inside, so a concurrent import cannot slip in between
            before = self.db.execute("select coalesce(max(id), 0) from items").fetchone()[0]
            self._insert_items(rows, by_space, source)
            added = self.db.execute("select id, key, namespace from items where id > ? order by id", [before]).fetchall()
            if len(added) == len(keys) and [r[1] for r in added] == keys and [r[2] for r in added] == spaces:
                return [r[0] for r in added]  # ids in insertion order: the usual case, one range read
            found = {ns: dict(zip(ks, self.ids_for_keys(ks, ns).tolist(), strict=True))
                     for ns, ks in by_space.items()}
            return [found[ns][k] for k, ns in zip(keys, spaces, strict=True)]

    def _insert_items(self, rows: list[tuple[Any, ...]], by_space: dict[str, list[str]], source: str) -> None:
        """Insert rows (``ITEM_COLUMNS`` tuples) in one statement; existing keys are an ImportDataError.

        The unique (key, namespace) index refuses an existing key; only then are the keys looked up,
        under a savepoint rolled back first, to name a few of them.
        """
        conn = self.db.conn
        sql = f"insert into items ({', '.join(ITEM_COLUMNS)}) values ({', '.join('?' * len(ITEM_COLUMNS))})"
        cache = conn.execute("pragma cache_size").fetchone()[0]
        conn.execute("savepoint add_items")
        try:
            if len(rows) > 100_000:  # the key index of a large import is built in memory, not page by page
                conn.execute("pragma cache_size = -262144")
            conn.executemany(sql, rows)
        except sqlite3.IntegrityError:
            conn.execute("rollback to add_items")
            conn.execute("release add_items")
            existing = sorted(set().union(*(self.existing_keys(ks, ns) for ns, ks in by_space.items())))
            if existing:
                raise ImportDataError(source, f"{len(existing)} keys already exist in the workspace, "
                                      f"e.g. {', '.join(existing[:5])}") from None
            raise
        finally:
            conn.execute(f"pragma cache_size = {int(cache)}")
        conn.execute("release add_items")

    def existing_keys(self, keys: Sequence[str], namespace: str | None = None) -> set[str]:
        """Those of ``keys`` that name an item (in ``namespace``, or in either when None)."""
        found: set[str] = set()
        where, extra = ("", []) if namespace is None else (" and namespace = ?", [_check_namespace(namespace)])
        for start in range(0, len(keys), 500):
            part = list(keys[start:start + 500])
            marks = ",".join("?" * len(part))
            found.update(r["key"] for r in self.db.query(f"select key from items where key in ({marks}){where}",
                                                         [*part, *extra]))
        return found

    def items(self, split: str | None = None, ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """Item rows (metadata decoded), ordered by id or in the order of ``ids``."""
        if ids is not None:
            by_id = {}
            id_list = [int(i) for i in ids]
            for start in range(0, len(id_list), 500):
                part = id_list[start:start + 500]
                marks = ",".join("?" * len(part))
                for r in self.db.query(f"select * from items where id in ({marks})", part):
                    by_id[r["id"]] = decode(r)
            missing = [i for i in id_list if i not in by_id]
            if missing:
                raise StoreError(f"{self.root}: unknown item ids, e.g. {missing[:5]}")
            return [by_id[i] for i in id_list]
        sql, args = "select * from items", []
        if split:
            sql, args = sql + " where split = ?", [split]
        return [decode(r) for r in self.db.query(sql + " order by id", args)]

    def item_ids(self, split: str | None = None, namespace: str | None = None) -> np.ndarray:
        """Ids ascending, of one split and/or key namespace ('doc' or 'query') when given."""
        conds, args = [], []
        if split:
            conds, args = ["split = ?"], [split]
        if namespace:
            conds.append("namespace = ?")
            args.append(_check_namespace(namespace))
        sql = "select id from items" + (" where " + " and ".join(conds) if conds else "")
        return np.array([r[0] for r in self.db.execute(sql + " order by id", args).fetchall()], dtype=np.int64)

    def gallery_ids(self, model: str | None = None) -> np.ndarray:
        """The gallery: every item not of the query split, sorted; with ``model``, only those it embedded.

        This is the one definition of the gallery that training, reports, plans and bundles share.
        """
        rows = self.db.execute("select id from items where coalesce(split, '') != ? order by id", [QUERY_SPLIT])
        ids = np.array([r[0] for r in rows.fetchall()], dtype=np.int64)
        return ids if model is None else np.intersect1d(ids, self.ids_with_vectors(model))

    def query_ids(self, model: str | None = None) -> np.ndarray:
        """Items of the query split, sorted; with ``model``, only those it embedded."""
        ids = self.item_ids(QUERY_SPLIT)
        return ids if model is None else np.intersect1d(ids, self.ids_with_vectors(model))

    def check_item_ids(self, item_ids: Sequence[int] | np.ndarray) -> None:
        """Raise StoreError naming a few ids that are not items of this workspace."""
        ids = np.asarray(item_ids, dtype=np.int64).ravel()
        if not (ids[1:] > ids[:-1]).all():  # ascending ids (the usual case) are sorted and unique already
            ids = np.unique(ids)
        if not len(ids):
            return
        lo, hi = int(ids[0]), int(ids[-1])
        in_range = self.db.execute("select count(*) from items where id between ? and ?", [lo, hi]).fetchone()[0]
        if in_range == hi - lo + 1 == len(ids):
            return  # a whole range of ids, every one an item: one indexed count, no list read
        if len(ids) * 20 < in_range:  # a few among many: look them up
            known = np.array([r[0] for start in range(0, len(ids), 500) for r in self.db.execute(
                f"select id from items where id in ({','.join('?' * len(ids[start:start + 500]))})",
                ids[start:start + 500].tolist())], dtype=np.int64)
        else:
            known = np.array([r[0] for r in self.db.execute("select id from items where id between ? and ?",
                                                            [lo, hi])], dtype=np.int64)
        unknown = ids[~np.isin(ids, known)]
        if len(unknown):
            raise StoreError(f"{self.root}: unknown item ids, e.g. {unknown[:5].tolist()}")

    def ids_for_keys(self, keys: Sequence[str], namespace: str | None = None) -> np.ndarray:
        """Item ids for ``keys`` in order; unknown keys are a StoreError.

        ``namespace`` 'doc' or 'query' looks in that namespace only; None looks in both and a key
        that names both a document and a query resolves to the document.
        """
        where, extra = ("", []) if namespace is None else (" and namespace = ?", [_check_namespace(namespace)])
        wanted = list(dict.fromkeys(keys))
        lookup: dict[str, int] = {}
        for start in range(0, len(wanted), 500):  # indexed look-ups: cheap for a few keys among millions
            part = wanted[start:start + 500]
            marks = ",".join("?" * len(part))
            for item_id, key, space in self.db.execute(
                    f"select id, key, namespace from items where key in ({marks}){where}", [*part, *extra]):
                if space == DOC_NAMESPACE or key not in lookup:
                    lookup[key] = item_id
        missing = [k for k in keys if k not in lookup]
        if missing:
            what = "item keys" if namespace is None else f"{namespace} keys"
            raise StoreError(f"{self.root}: {len(missing)} unknown {what}, e.g. {missing[:5]}")
        return np.array([lookup[k] for k in keys], dtype=np.int64)

    def query_ids_for_keys(self, keys: Sequence[str]) -> np.ndarray:
        """Item ids of query items by their (query namespace) keys."""
        return self.ids_for_keys(keys, QUERY_NAMESPACE)

    def doc_ids_for_keys(self, keys: Sequence[str]) -> np.ndarray:
        """Item ids of document (gallery) items by their (document namespace) keys."""
        return self.ids_for_keys(keys, DOC_NAMESPACE)

    def labels(self, ids: Sequence[int]) -> list[str | None]:
        lookup = dict(self.db.execute("select id, label from items").fetchall())
        return [lookup.get(int(i)) for i in ids]

    def split_counts(self) -> dict[str, int]:
        rows = self.db.execute("select coalesce(split, ''), count(*) from items group by 1 order by 1")
        return {name or "unassigned": count for name, count in rows.fetchall()}

    # -- models -----------------------------------------------------------------------------
    def add_model(self, name: str, role: str, spec: dict[str, Any], source_path: str | Path | None) -> dict:
        """Copy a checkpoint into ``models/`` and register its spec (one transaction).

        A vectors-only model's file is referenced, not copied: its vectors enter the workspace once,
        as the model's vector sets, when they are embedded or imported.
        """
        if role not in ROLES:
            raise StoreError(f"unknown role '{role}': use one of {', '.join(ROLES)}")
        check_name(name, "model name")
        if self.db.execute("select 1 from models where name = ?", [name]).fetchone():
            raise StoreError(f"{self.root}: a model named '{name}' already exists")
        src = Path(source_path) if source_path is not None else None
        if src is not None and not src.exists():
            raise StoreError(f"{src}: the checkpoint to store does not exist")
        copy = src is not None and spec.get("kind") != "vectors"
        stored = child(self.root / "models", f"{name}-{str(spec.get('sha256', ''))[:12]}{src.suffix}") if copy else None
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
            except OSError as exc:
                raise StoreError(f"{stored}: cannot copy the checkpoint {src} ({exc})") from exc
        try:
            with self.transaction():
                self.db["models"].insert(row)
        except BaseException:
            if stored is not None and not self.db.execute("select 1 from models where file = ?", [rel]).fetchone():
                if stored.is_dir():  # the copy was made for this row alone
                    shutil.rmtree(stored, ignore_errors=True)
                else:
                    stored.unlink(missing_ok=True)
            raise
        return self.model(name)

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
        return found[-1]

    def _model_row(self, row: dict[str, Any]) -> dict[str, Any]:
        out = decode(row)
        if out.get("file"):
            out["path"] = str(self.root / out["file"])
        else:  # a vectors-only model references its file where it lies
            out["path"] = out.get("source_path") if out.get("kind") == "vectors" else None
        return out

    # -- vector sets ------------------------------------------------------------------------
    def vector_set_writer(self, model: str, item_ids: np.ndarray, dim: int, dtype: str = "float32",
                          name: str | None = None, resume_key: str | None = None) -> VectorSetWriter:
        """A resumable chunk writer; ``commit()`` registers the set. See core.store.vectors."""
        model_row = self.model(model)
        expected = model_row.get("dim")
        if dim > 0 and isinstance(expected, int) and expected > 0 and dim != expected:
            raise VectorFileError(f"vectors of model '{model}'", f"{dim}-d vectors, but the model gives "
                                  f"{expected}-d vectors")
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
            with self.transaction():
                pk = self.db["vector_sets"].insert(row).last_pk
            return self.vector_set(int(pk))

        def is_registered(path: Path) -> bool:
            rel = path.relative_to(self.root).as_posix()
            return self.db.execute("select 1 from vector_sets where file = ? or ids_file = ?",
                                   [rel, rel]).fetchone() is not None

        return VectorSetWriter(partial_dir, final_dir,
                               key, item_ids, dim, dtype, register, f"vectors of model '{model}'",
                               final_stem=set_name, is_registered=is_registered)

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

    def vector_set_ids(self, set_id: int, verify: bool = True) -> np.ndarray:
        """Item ids of one vector set, its id list's checksum verified (the matrix is not read)."""
        return self._set_ids(self.vector_set(set_id), verify)

    def open_vector_set(self, set_id: int, verify: bool = True) -> tuple[np.ndarray, np.memmap]:
        """Item ids and a read-only memmap of one vector set, checksums verified."""
        info = self.vector_set(set_id)
        ids = self._set_ids(info, verify)
        matrix = open_matrix(self.root / info["file"], info["sha256"] if verify else None,
                             info["count"], info["dim"])
        return ids, matrix

    def _set_ids(self, info: dict[str, Any], verify: bool) -> np.ndarray:
        set_id = info["id"]
        ids_path = self.root / info["ids_file"]
        if not ids_path.is_file():
            raise IntegrityError(f"{ids_path}: id list of vector set {set_id} is missing from the workspace")
        if verify:
            verified_sha256(ids_path, info["ids_sha256"])
        try:
            ids = np.load(ids_path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise IntegrityError(f"{ids_path}: unreadable id list ({exc})") from exc
        if ids.shape != (info["count"],):
            raise IntegrityError(f"{ids_path}: id list has shape {ids.shape}, expected ({info['count']},)")
        return ids

    def ids_with_vectors(self, model: str) -> np.ndarray:
        """Sorted ids of items that have vectors under ``model`` (any of its sets)."""
        sets = self.vector_sets(model)
        if not sets:
            return np.zeros(0, dtype=np.int64)
        return np.unique(np.concatenate([self.vector_set_ids(s["id"]) for s in sets]))

    def vectors_for(self, model: str, item_ids: Sequence[int], dtype: type = np.float32) -> np.ndarray:
        """Gather ``model``'s vectors for ``item_ids`` in that order (later sets win)."""
        want = np.asarray(item_ids, dtype=np.int64).ravel()
        sets = self.vector_sets(model)
        if not sets:
            raise StoreError(f"{self.root}: model '{model}' has no vectors yet; run 'embridge embed --model {model}'")
        dim = sets[-1]["dim"]
        unique, where = np.unique(want, return_inverse=True)
        out = np.empty((len(unique), dim), dtype=dtype)
        filled = np.zeros(len(unique), dtype=bool)
        for info in reversed(sets):
            if filled.all():
                break
            if info["dim"] != dim:
                raise StoreError(f"{self.root}: vector sets of model '{model}' differ in dimension "
                                 f"({info['dim']} in set {info['id']}, {dim} in the newest)")
            ids, matrix = self.open_vector_set(info["id"])
            slot = np.minimum(np.searchsorted(unique, ids), len(unique) - 1)  # unique is not empty here
            rows = np.flatnonzero((unique[slot] == ids) & ~filled[slot])
            if len(rows):
                out[slot[rows]] = matrix[rows]
                filled[slot[rows]] = True
        missing = int((~filled[where]).sum())
        if missing:
            raise StoreError(f"{self.root}: {missing} of {len(want)} requested items have no "
                             f"vectors under model '{model}'")
        return out[where]

    # -- folds ------------------------------------------------------------------------------
    def folds(self) -> dict[int, str]:
        return dict(self.db.execute("select item_id, fold from folds").fetchall())

    def set_folds(self, assignment: dict[int, str], seed: int) -> None:
        self.check_item_ids(list(assignment))
        rows = [{"item_id": int(i), "fold": f, "seed": seed} for i, f in assignment.items()]
        with self.transaction():
            self.db["folds"].upsert_all(rows, pk="item_id")


def _holds_files(root: Path) -> bool:
    """True when any workspace folder holds a file (links are not entered)."""
    for sub in ("vectors", "models", "adapters", "reports", "bundles"):
        folder = root / sub
        if folder.is_symlink() or (folder.exists() and any(os.scandir(folder))):
            return True
    return False


def _check_database_file(root: Path) -> None:
    """The database must be a readable, non-empty regular file; never created or repaired here."""
    db_path = root / DB_NAME
    try:
        st = db_path.stat()
    except FileNotFoundError:
        raise StoreError(f"{root}: not an Embridge workspace (no {DB_NAME}); run 'embridge init' first") from None
    except OSError as exc:
        raise StoreError(f"{db_path}: cannot read the workspace database ({exc.strerror})") from exc
    if not stat.S_ISREG(st.st_mode):
        raise StoreError(f"{db_path}: the workspace database is not a regular file")
    if st.st_size == 0:
        raise StoreError(f"{db_path}: the workspace database is empty (0 bytes); restore it from a backup. "
                         "Embridge leaves it and the workspace's files untouched")


def item_namespace(split: str | None) -> str:
    """The key namespace of an item: queries (split 'query') apart from everything else."""
    return QUERY_NAMESPACE if split == "query" else DOC_NAMESPACE


def _check_namespace(namespace: str) -> str:
    if namespace not in NAMESPACES:
        raise StoreError(f"unknown key namespace '{namespace}': use one of {', '.join(NAMESPACES)}")
    return namespace


def _translate(exc: sqlite3.DatabaseError, db_path: Path) -> Exception:
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return WorkspaceBusyError(f"{db_path}: the workspace is busy (another process is writing); try again")
    if "not a database" in text or "malformed" in text or "file is encrypted" in text:
        return StoreError(f"{db_path}: the workspace database is corrupt or not a database ({exc})")
    return StoreError(f"{db_path}: {exc}")
