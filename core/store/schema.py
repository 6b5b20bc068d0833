"""Workspace database schema and its migrations.

The schema version lives in the ``meta`` table. Each migration is a function from version N to
N+1 run inside one transaction, so an interrupted upgrade leaves the old schema intact. A
workspace written by a newer Embridge is refused rather than guessed at.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embridge.core.credentials import hidden, masked
from embridge.core.errors import SchemaVersionError
from embridge.core.store.import_keys import partial_vectors_key, resume_meta_key

if TYPE_CHECKING:
    import sqlite_utils

SCHEMA_VERSION = 4

# Item keys live in two namespaces, so a query may share its key with a document (BEIR ids do).
DOC_NAMESPACE = "doc"
QUERY_NAMESPACE = "query"
NAMESPACES = (DOC_NAMESPACE, QUERY_NAMESPACE)

_TABLES: dict[str, tuple[dict[str, type], dict]] = {
    "items": (
        {"id": int, "key": str, "label": str, "split": str, "source": str, "modality": str,
         "text": str, "path": str, "metadata": str, "created": str},
        {"pk": "id", "not_null": {"key"}},
    ),
    "models": (
        {"id": int, "name": str, "role": str, "kind": str, "modality": str, "dim": int,
         "params": int, "sha256": str, "file": str, "source_path": str, "spec": str, "created": str},
        {"pk": "id", "not_null": {"name", "kind"}},
    ),
    "vector_sets": (
        {"id": int, "model_id": int, "name": str, "dim": int, "dtype": str, "count": int,
         "file": str, "ids_file": str, "sha256": str, "ids_sha256": str, "created": str},
        {"pk": "id", "foreign_keys": [("model_id", "models", "id")]},
    ),
    "folds": (
        {"item_id": int, "fold": str, "seed": int},
        {"pk": "item_id", "foreign_keys": [("item_id", "items", "id")]},
    ),
    "runs": (
        {"id": int, "kind": str, "method": str, "status": str, "config": str, "metrics": str,
         "epochs": str, "device": str, "started": str, "finished": str, "duration_s": float,
         "error": str, "pid": int, "host": str},
        {"pk": "id"},
    ),
    "adapters": (
        {"id": int, "run_id": int, "kind": str, "direction": str, "in_dim": int, "out_dim": int,
         "old_model": str, "new_model": str, "file": str, "sha256": str, "config": str,
         "created": str},
        {"pk": "id", "foreign_keys": [("run_id", "runs", "id")]},
    ),
    "reports": (
        {"id": int, "run_id": int, "adapter_id": int, "json_file": str, "html_file": str,
         "summary": str, "created": str},
        {"pk": "id"},
    ),
    "bundles": (
        {"id": int, "adapter_id": int, "report_id": int, "path": str, "sha256": str,
         "manifest": str, "created": str},
        {"pk": "id"},
    ),
}


def _create_v1(db: sqlite_utils.Database) -> None:
    for name, (columns, opts) in _TABLES.items():
        db[name].create(columns, **opts)
    db["items"].create_index(["key"], unique=True)
    db["items"].create_index(["split"])
    db["models"].create_index(["name"], unique=True)
    db["vector_sets"].create_index(["model_id"])
    db["adapters"].create_index(["run_id"])


def _v2_namespaces_and_judgments(db: sqlite_utils.Database) -> None:
    """Keys become unique per namespace (existing split 'query' items are queries); add judgments."""
    db["items"].add_column("namespace", str, not_null_default=DOC_NAMESPACE)
    db.execute("update items set namespace = ? where split = 'query'", [QUERY_NAMESPACE])
    for name in [r[0] for r in db.execute("select name from sqlite_master where type = 'index' and "
                                          "tbl_name = 'items' and sql like '%unique%'").fetchall()]:
        db.execute(f'drop index "{name}"')
    db["items"].create_index(["key", "namespace"], unique=True, index_name="idx_items_key_namespace")
    db["judgments"].create(
        {"query_id": int, "item_id": int, "grade": int, "split": str},
        pk=("query_id", "item_id"), not_null={"grade", "split"},
        foreign_keys=[("query_id", "items", "id"), ("item_id", "items", "id")],
    )
    db["judgments"].create_index(["split"])
    db["judgments"].create_index(["item_id"])


def _v3_query_index(db: sqlite_utils.Database) -> None:
    """The index of every item's split gives way to a partial index of the query items.

    Reads by split look for the queries (every other item is the gallery, read whole), and the full
    index cost about 18 bytes an item: 18 MB of a million-item workspace. Query reads name the split
    as the literal 'query', so SQLite can prove the partial index covers them.
    """
    db.execute("drop index if exists idx_items_split")
    db.execute("create index idx_items_queries on items (id) where split = 'query'")


def _v4_no_stored_passwords(db: sqlite_utils.Database) -> None:
    """Store URIs recorded with a password (imported items and their model, a bundle's manifest, a
    backfill's store, an interrupted import's resume key and vectors) are recorded
    :func:`~embridge.core.credentials.masked`, as this version records them: the secret leaves the
    database, and importing the same store again finds its items under the same source."""
    import json

    database = next((Path(row[2]) for row in db.execute("PRAGMA database_list").fetchall() if row[1] == "main"
                     and row[2]), None)
    partial = database.parent / "vectors" / ".partial" if database is not None else None
    for (source,) in db.execute("select distinct source from items where source like 'store:%'").fetchall():
        if (clean := masked(source)) != source:
            db.execute("update items set source = ? where source = ?", [clean, source])
            # two sources that differed only by their password are one now: the later settings are kept
            db.execute("update or replace meta set key = ? where key = ?",
                       [resume_meta_key(clean), resume_meta_key(source)])
            for suffix in (".npy", ".ids.npy", ".json") if partial is not None and partial.is_dir() else ():
                old = partial / f"{partial_vectors_key(source)}{suffix}"
                new = partial / f"{partial_vectors_key(clean)}{suffix}"
                if old.is_file() and not new.exists():
                    old.rename(new)  # resumed where it stopped, not rewritten from its first row

    def clean(value: Any) -> Any:  # each string of a JSON record masked on its own
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return masked(value) if isinstance(value, str) and "://" in value else value

    for table, column in (("models", "spec"), ("runs", "config"), ("bundles", "manifest")):
        for row_id, text in db.execute(f"select id, {column} from {table} where {column} like '%://%'").fetchall():
            try:
                record = json.loads(text)
            except ValueError:  # not JSON (a damaged record is for the checks to name): its secrets go all the same
                if (shown := hidden(text)) != text:
                    db.execute(f"update {table} set {column} = ? where id = ?", [shown, row_id])
                continue
            if (cleaned := clean(record)) != record:
                db.execute(f"update {table} set {column} = ? where id = ?", [json.dumps(cleaned), row_id])


# MIGRATIONS[n] upgrades a version-n database to n+1.
MIGRATIONS: dict[int, Callable[[sqlite_utils.Database], None]] = {
    0: _create_v1, 1: _v2_namespaces_and_judgments, 2: _v3_query_index, 3: _v4_no_stored_passwords}


def current_version(db: sqlite_utils.Database) -> int:
    if "meta" not in db.table_names():
        return 0
    row = db.execute("select value from meta where key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


@cache
def _current_tables() -> dict[str, frozenset[str]]:
    """Every table of the current schema and its columns, as the migrations build them (so a table a
    later migration adds is checked as surely as the first ones)."""
    from embridge.core.store.sqlite_import import sqlite_utils as sqlite_utils_module

    db = sqlite_utils_module().Database(memory=True, execute_plugins=False)
    for version in range(SCHEMA_VERSION):
        MIGRATIONS[version](db)
    return {name: frozenset(c.name for c in db[name].columns) for name in db.table_names()}


def check_tables(db: sqlite_utils.Database, source: str) -> None:
    """Refuse a database missing a table or column of the current schema (dropped or hand-edited)."""
    try:
        version = current_version(db)
    except ValueError:
        return  # migrate names a garbled version
    if version != SCHEMA_VERSION:
        return  # an older schema is migrated first; a newer one is refused by migrate
    tables = set(db.table_names())
    for name, columns in _current_tables().items():
        if name not in tables:
            raise SchemaVersionError(f"{source}: the workspace database is damaged: table '{name}' is missing; "
                                     "restore it from a backup")
        have = {c.name for c in db[name].columns}
        missing = sorted(columns - have)
        if missing:
            raise SchemaVersionError(f"{source}: the workspace database is damaged: table '{name}' lacks "
                                     f"column(s) {', '.join(missing)}; restore it from a backup")


def migrate(db: sqlite_utils.Database, source: str) -> int:
    """Bring ``db`` to SCHEMA_VERSION, one transaction per step; returns the final version."""
    try:
        version = current_version(db)
    except ValueError as exc:  # a damaged or hand-edited meta row
        raise SchemaVersionError(f"{source}: unknown workspace schema version ({exc})") from exc
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{source}: workspace schema version {version} is newer than this Embridge "
            f"understands ({SCHEMA_VERSION}); upgrade Embridge to open it"
        )
    while version < SCHEMA_VERSION:
        # each step under the write lock (BEGIN IMMEDIATE waits the busy timeout for another writer), its
        # version read again there: two processes opening an older workspace at once (the app and a terminal
        # after an upgrade) made the second fail at once as "busy", its deferred write on a stale snapshot
        db.conn.execute("BEGIN IMMEDIATE")
        try:
            version = current_version(db)
            if version >= SCHEMA_VERSION:  # the other process migrated it meanwhile
                db.conn.commit()
                break
            step = MIGRATIONS.get(version)
            if step is None:
                raise SchemaVersionError(f"{source}: no migration from schema version {version}")
            if "meta" not in db.table_names():
                db["meta"].create({"key": str, "value": str}, pk="key")
            step(db)
            db["meta"].upsert({"key": "schema_version", "value": str(version + 1)}, pk="key")
            db.conn.commit()
            version += 1
        except sqlite3.OperationalError as exc:  # rolled back: the step found what it adds already there
            db.conn.rollback()
            if "already exists" not in str(exc) and "duplicate column" not in str(exc):
                raise
            raise SchemaVersionError(f"{source}: the recorded schema version ({version}) does not match the "
                                     f"database's tables, which already hold what version {version + 1} adds "
                                     f"({exc}); the meta table was damaged or edited, and Embridge leaves the "
                                     "database untouched") from None
        except BaseException:
            db.conn.rollback()
            raise
    return version
