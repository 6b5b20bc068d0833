"""An embedded Qdrant folder checked before qdrant-client opens it.

qdrant-client's local mode keeps each point as a Python pickle in ``collection/<name>/storage.sqlite``
and unpickles every one when it opens the folder, so a crafted folder would run code on a mere
``check --uri``. Every stored pickle is first read here by an unpickler that admits only the classes a
Qdrant point is made of, and a collection whose storage file is gone is refused (opening would create
an empty one and read the store as empty).
"""

from __future__ import annotations

import io
import json
import pickle
import sqlite3
from pathlib import Path

from embridge.core.connectors.connector import VectorStoreError

# the classes a stored point may name: qdrant's own models, and what pickle itself uses to rebuild them
ALLOWED_MODULES = ("qdrant_client.http.models", "qdrant_client.models")
ALLOWED_GLOBALS = {("copyreg", "_reconstructor"), ("builtins", "object"), ("builtins", "set"),
                   ("builtins", "frozenset"), ("uuid", "UUID"), ("datetime", "datetime"), ("datetime", "date"),
                   ("datetime", "timezone"), ("datetime", "timedelta")}


class _PointUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        if module.startswith(ALLOWED_MODULES) and "." not in name:  # no dotted path through what a module imported
            found = super().find_class(module, name)
            # a class qdrant defines (a model or an enum), not a function or a module it happens to import
            if isinstance(found, type) and str(getattr(found, "__module__", "")).startswith(ALLOWED_MODULES):
                return found
        raise pickle.UnpicklingError(f"{module}.{name}")


def check_local_folder(path: Path, uri: str) -> None:
    """Refuse (naming ``uri``) a folder whose stored points are not plain Qdrant points, or whose listed
    collection has lost its storage file. A folder without ``meta.json`` (a new target) passes."""
    meta = path / "meta.json"
    if not meta.is_file():
        return
    try:
        names = list(json.loads(meta.read_text(encoding="utf-8")).get("collections") or {})
    except (OSError, ValueError, AttributeError) as exc:
        raise VectorStoreError(f"{uri}: {meta} is not Qdrant's collection list ({exc})") from exc
    for name in names:
        storage = path / "collection" / str(name) / "storage.sqlite"
        if not storage.is_file():
            raise VectorStoreError(f"{uri}: collection '{name}' has no {storage.name} (the folder is damaged); it is "
                                   "not opened, as opening would start it anew, empty")
        _check_points(storage, uri, str(name))


def _check_points_table(db: sqlite3.Connection, uri: str, name: str, storage: Path) -> None:
    """``points`` must be a plain table: a view (or a computed column) can give the client other rows, say
    by ``random()``, than the ones read here."""
    row = db.execute("select type, sql from sqlite_master where name = 'points'").fetchone()
    if row is None:
        return  # no table: the read below names it
    kind, sql = row[0], " ".join(str(row[1] or "").upper().split())
    if kind != "table" or not sql.startswith("CREATE TABLE") or "GENERATED" in sql or " AS " in sql:
        raise VectorStoreError(f"{uri}: collection '{name}': the points of {storage.name} are not a plain table "
                               f"({kind}), which qdrant-client never writes; the folder is not opened (what it "
                               "would unpickle could differ from what was checked)")


def _check_points(storage: Path, uri: str, name: str) -> None:
    try:  # read-write, never created: a hot journal a killed writer left is rolled back, as qdrant-client would
        db = sqlite3.connect(f"{storage.resolve().as_uri()}?mode=rw", uri=True)
    except sqlite3.Error as exc:
        raise VectorStoreError(f"{uri}: collection '{name}': {storage} cannot be read ({exc})") from exc
    try:
        _check_points_table(db, uri, name, storage)
        for rowid, blob in db.execute("select rowid, point from points"):
            try:
                _PointUnpickler(io.BytesIO(blob)).load()
            except pickle.UnpicklingError as exc:
                raise VectorStoreError(f"{uri}: collection '{name}', row {rowid} of {storage.name} is a pickle naming "
                                       f"{exc}, which no Qdrant point holds; the folder is not opened (unpickling "
                                       "it could run code)") from exc
            except Exception as exc:  # noqa: BLE001 - a damaged pickle fails in any way
                raise VectorStoreError(f"{uri}: collection '{name}', row {rowid} of {storage.name} is not a readable "
                                       f"Qdrant point ({type(exc).__name__}: {exc})") from exc
    except sqlite3.Error as exc:  # qdrant makes the table with the collection: without it the file is damaged
        anew = "; it is not opened, as opening would start it anew, empty" if "no such table" in str(exc) else ""
        raise VectorStoreError(f"{uri}: collection '{name}': {storage} cannot be read ({exc}){anew}") from exc
    finally:
        db.close()
