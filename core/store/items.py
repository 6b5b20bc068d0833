"""Items of the workspace: import, look-ups by key or split, folds, and the one gallery definition.

Items of the split ``query`` are the queries and have their own key namespace; every other item
(any other split, or none) belongs to the gallery. :meth:`ItemsMixin.gallery_ids` and
:func:`in_gallery` are the only places that rule is written, so training, reports, plans,
bundles and the overview all search the same gallery. Split names are checked by
:func:`check_split` wherever items are added, since a split that only looks like ``query``
(``Query``, ``query `` ) would silently put queries in the gallery.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embridge.core.errors import ImportDataError, StoreError, UsageError
from embridge.core.formatting import counted, for_example, shown_name
from embridge.core.keys import bad_char
from embridge.core.store.id_sets import intersect_ids, unique_ids
from embridge.core.store.rows import ITEM_COLUMNS, item_values, now_iso, read_item, relative_item_path
from embridge.core.store.schema import DOC_NAMESPACE, NAMESPACES, QUERY_NAMESPACE

if TYPE_CHECKING:
    import sqlite_utils

ITEM_FIELDS = ("key", "label", "split", "source", "modality", "text", "path", "metadata")
QUERY_SPLIT = "query"  # items of this split are queries; every other item belongs to the gallery
GALLERY_SPLIT = "gallery"  # the usual name of the documents' split (a name only: see in_gallery)
_CHUNK = 500  # look-ups by key or id go in chunks of this many (SQLite's variable limit)


def check_split(split: object, source: str | Path | None = "--split") -> str | None:
    """``split`` when it is a usable split name (None: no split), else an ImportDataError naming it.

    A split name is shown by ``embridge info`` and compared exactly, so it may not be blank, hold outer
    spaces or a character a key may not hold (control characters, line separators), nor differ from
    ``query`` or ``gallery`` only in case (``Query`` would make the items documents without a word)."""
    if split is None:
        return None
    refuse = UsageError if str(source).startswith("--") else ImportDataError  # an option's value: exit status 2
    if not isinstance(split, str):
        raise refuse(source, f"a split name must be text, got {type(split).__name__}")
    shown = repr(split)  # escapes newlines and terminal escapes, so the one-line error stays one line
    if not split.strip():
        raise refuse(source, f"the split name {shown} is blank; name a split (such as "
                     f"'{GALLERY_SPLIT}' or '{QUERY_SPLIT}') or leave the split out")
    bad = bad_char(split)
    if bad:
        raise refuse(source, f"the split name {shown} holds the {bad}; split names are one line of "
                     "printable text")
    if split != split.strip():
        raise refuse(source, f"the split name {shown} has spaces at its start or end; "
                     f"write {split.strip()!r}")
    for reserved in (QUERY_SPLIT, GALLERY_SPLIT):
        if split != reserved and split.casefold() == reserved:
            role = "queries" if reserved == QUERY_SPLIT else "documents"
            raise refuse(source, f"the split name {shown} differs from '{reserved}' only in case; "
                         f"write '{reserved}' for {role} (split names are compared exactly, and only "
                         f"'{QUERY_SPLIT}' makes items queries)")
    if split.casefold() == "queries":  # the likeliest slip: these items would be documents, searched as such
        raise refuse(source, f"the split name {shown} would make these items documents of the gallery; write "
                     f"'{QUERY_SPLIT}' for queries (only '{QUERY_SPLIT}' makes items queries)")
    return split


def in_gallery(split: str | None) -> bool:
    """Whether an item of ``split`` belongs to the gallery: every split but the query split."""
    return (split or "") != QUERY_SPLIT


def item_namespace(split: str | None) -> str:
    """The key namespace of an item: queries (split 'query') apart from everything else."""
    return DOC_NAMESPACE if in_gallery(split) else QUERY_NAMESPACE


def check_namespace(namespace: str) -> str:
    if namespace not in NAMESPACES:
        raise StoreError(f"unknown key namespace '{namespace}': use one of {', '.join(NAMESPACES)}")
    return namespace


def _chunks(values: Sequence[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(values), _CHUNK):
        yield list(values[start:start + _CHUNK])


def _marks(part: Sequence[Any]) -> str:
    return ",".join("?" * len(part))

def _split_is(split: str) -> tuple[str, list[Any]]:
    """(SQL condition, arguments) selecting one split; the query split is named as a literal, so
    SQLite can prove the partial index of the query items (schema 3) serves the read."""
    if split == QUERY_SPLIT:
        return f"split = '{QUERY_SPLIT}'", []
    return "split = ?", [split]


def _id_column(cursor: Any) -> np.ndarray:
    """The first column of a query's rows as int64, streamed (a million rows as a list of tuples is ~100 MB)."""
    return np.fromiter((row[0] for row in cursor), dtype=np.int64)


class ItemsMixin:
    """Methods of :class:`embridge.core.store.Workspace` for items and folds."""

    root: Path
    db: sqlite_utils.Database

    # -- writing ----------------------------------------------------------------------------
    def add_items(self, records: Sequence[dict[str, Any]], source: str = "items") -> list[int]:
        """Insert items all-or-nothing; duplicate or existing keys are an ImportDataError. Items of split
        'query' are queries with a key namespace of their own (a query key may equal a document key)."""
        if not records:
            raise ImportDataError(source, "no items to import")
        for split in {r.get("split") for r in records}:  # the importers check first; any other caller here
            check_split(split, source)
        keys = [str(r.get("key", "")).strip() for r in records]
        if any(not k for k in keys):
            raise ImportDataError(source, f"item {keys.index('') + 1} has an empty key")
        spaces = [item_namespace(r.get("split")) for r in records]
        by_space: dict[str, list[str]] = {}
        for k, ns in zip(keys, spaces, strict=True):
            by_space.setdefault(ns, []).append(k)
        if any(len(set(ks)) != len(ks) for ks in by_space.values()):
            dupes = [k for (_, k), n in Counter(zip(spaces, keys, strict=True)).items() if n > 1]
            raise ImportDataError(source, "duplicate keys in the input: " + ", ".join(
                f"'{shown_name(k)}'" for k in sorted(set(dupes))[:5]) + " (each item needs a key of its own)")
        created = now_iso()
        roots = (self.root.absolute(), self.root.resolve())
        records = [relative_item_path(r, roots) if r.get("path") else r for r in records]  # roots read once
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
            self.refuse_stored_keys(by_space, source)
            raise
        finally:
            conn.execute(f"pragma cache_size = {int(cache)}")
        conn.execute("release add_items")

    def refuse_stored_keys(self, by_space: dict[str, list[str]], source: str) -> None:
        """An ImportDataError counting and naming the keys (per namespace) that items already hold, if any.

        An import adding its items in parts calls it after rolling them all back, so the count is of
        the whole input, not of the first part that clashed."""
        existing = sorted(set().union(*(self.existing_keys(ks, ns) for ns, ks in by_space.items())))
        if existing:
            verb = "exists" if len(existing) == 1 else "exist"
            raise ImportDataError(source, f"{counted(len(existing), 'key')} already {verb} in the workspace"
                                  f"{for_example(existing)}") from None

    # -- reading ----------------------------------------------------------------------------
    def existing_keys(self, keys: Sequence[str], namespace: str | None = None, source: str | None = None) -> set[str]:
        """Those of ``keys`` that name an item (in ``namespace``, or in either when None; of ``source`` when given)."""
        conds, extra = [], []
        if namespace is not None:
            conds, extra = [" and namespace = ?"], [check_namespace(namespace)]
        if source is not None:
            conds.append(" and source = ?")
            extra.append(source)
        found: set[str] = set()
        for part in _chunks(keys):
            found.update(r[0] for r in self.db.execute(
                f"select key from items where key in ({_marks(part)}){''.join(conds)}", [*part, *extra]))
        return found

    def items(self, split: str | None = None, ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """Item rows (metadata decoded), ordered by id or in the order of ``ids``."""
        root = self.root.absolute()
        if ids is not None:
            by_id, id_list = {}, [int(i) for i in ids]
            for part in _chunks(id_list):
                for r in self.db.query(f"select * from items where id in ({_marks(part)})", part):
                    by_id[r["id"]] = read_item(r, root)
            missing = [i for i in id_list if i not in by_id]
            if missing:
                raise StoreError(f"{self.root}: unknown item ids, e.g. {missing[:5]}")
            return [by_id[i] for i in id_list]
        sql, args = "select * from items", []
        if split:
            cond, args = _split_is(split)
            sql += " where " + cond
        return [read_item(r, root) for r in self.db.query(sql + " order by id", args)]

    def item_ids(self, split: str | None = None, namespace: str | None = None,
                 source: str | None = None) -> np.ndarray:
        """Ids ascending, of one split, key namespace ('doc' or 'query') and/or import source when given."""
        conds, args = [], []
        if split:
            cond, args = _split_is(split)
            conds.append(cond)
        for column, value in (("namespace", namespace and check_namespace(namespace)), ("source", source)):
            if value:
                conds.append(f"{column} = ?")
                args.append(value)
        sql = "select id from items" + (" where " + " and ".join(conds) if conds else "")
        return _id_column(self.db.execute(sql + " order by id", args))

    def gallery_ids(self, model: str | None = None) -> np.ndarray:
        """The gallery: every item not of the query split, sorted; with ``model``, only those it embedded.

        This is the one definition of the gallery that training, reports, plans and bundles share.
        """
        if model is not None:  # the model's ids less the (few) queries: no read of a million-row column
            return self.gallery_among(self.ids_with_vectors(model))
        return _id_column(self.db.execute("select id from items where coalesce(split, '') != ? order by id",
                                          [QUERY_SPLIT]))

    def gallery_among(self, item_ids: np.ndarray) -> np.ndarray:
        """Those of ``item_ids`` (sorted unique ids of items) that belong to the gallery, as
        :meth:`gallery_ids` defines it; reads only the query split's ids."""
        queries = self.item_ids(QUERY_SPLIT)
        return item_ids[~np.isin(item_ids, queries)] if len(queries) else item_ids

    def gallery_count(self) -> int:
        """How many items the gallery holds (as :meth:`gallery_ids` defines it)."""
        cond, args = _split_is(QUERY_SPLIT)
        queries = self.db.execute(f"select count(*) from items where {cond}", args).fetchone()[0]
        return self.item_count() - int(queries)

    def embeddable_gallery_ids(self) -> np.ndarray:
        """Gallery items holding raw inputs (text, an image, an array) a model can embed, sorted: not the
        items that came as vectors alone (a vector file or store with no raw values)."""
        rows = self.db.execute("select id from items where modality is not 'vector' and split is not 'query' "
                               "order by id").fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def query_ids(self, model: str | None = None) -> np.ndarray:
        """Items of the query split, sorted; with ``model``, only those it embedded."""
        ids = self.item_ids(QUERY_SPLIT)
        return ids if model is None else intersect_ids(ids, self.ids_with_vectors(model))

    def check_item_ids(self, item_ids: Sequence[int] | np.ndarray) -> None:
        """Raise StoreError naming a few ids that are not items of this workspace."""
        ids = unique_ids(np.asarray(item_ids, dtype=np.int64).ravel())
        if not len(ids):
            return
        lo, hi = int(ids[0]), int(ids[-1])
        in_range = self.db.execute("select count(*) from items where id between ? and ?", [lo, hi]).fetchone()[0]
        if in_range == hi - lo + 1 == len(ids):
            return  # a whole range of ids, every one an item: one indexed count, no list read
        if len(ids) * 20 < in_range:  # a few among many: look them up
            known = np.array([r[0] for part in _chunks(ids.tolist()) for r in self.db.execute(
                f"select id from items where id in ({_marks(part)})", part)], dtype=np.int64)
        else:
            known = np.array([r[0] for r in self.db.execute("select id from items where id between ? and ?",
                                                            [lo, hi])], dtype=np.int64)
        unknown = ids[~np.isin(ids, known)]
        if len(unknown):
            raise StoreError(f"{self.root}: unknown item ids, e.g. {unknown[:5].tolist()}")

    def item_count(self) -> int:
        """How many items the workspace holds (queries and documents)."""
        return int(self.db.execute("select count(*) from items").fetchone()[0])

    def last_item_id(self) -> int:
        """The largest item id so far (0 for none); items added later get larger ids."""
        return int(self.db.execute("select coalesce(max(id), 0) from items").fetchone()[0])

    def has_items_from(self, source: str) -> bool:
        """Whether any item came from ``source`` (an import's file or store)."""
        return self.db.execute("select 1 from items where source = ? limit 1", [source]).fetchone() is not None

    def take_back_items(self, source: str, after_id: int) -> int:
        """Delete the items of ``source`` with ids above ``after_id``: what one import run added, when
        the run is refused. Items anything refers to (vectors, folds, judgments) are not deleted:
        the foreign keys refuse it. Returns how many were deleted."""
        return int(self.db.execute("delete from items where source = ? and id > ?", [source, int(after_id)]).rowcount)

    def find_keys(self, keys: Sequence[str], namespace: str, with_queries: bool = False) -> dict[str, int]:
        """Item id of each of ``keys`` that names an item in ``namespace`` (and, with ``with_queries``, a
        query when no item of ``namespace`` has it); indexed look-ups, cheap for a few keys among many."""
        spaces = [check_namespace(namespace), QUERY_NAMESPACE] if with_queries else [check_namespace(namespace)]
        found: dict[str, int] = {}
        for part in _chunks(list(keys)):
            sql = (f"select key, id, namespace from items where key in ({_marks(part)}) "
                   f"and namespace in ({_marks(spaces)})")
            for key, item_id, space in self.db.execute(sql, [*part, *spaces]):
                if space == namespace or key not in found:
                    found[key] = item_id
        return found

    def ids_for_keys(self, keys: Sequence[str], namespace: str | None = None) -> np.ndarray:
        """Item ids for ``keys`` in order; unknown keys are a StoreError.

        ``namespace`` 'doc' or 'query' looks in that namespace only; None looks in both and a key
        that names both a document and a query resolves to the document.
        """
        where, extra = ("", []) if namespace is None else (" and namespace = ?", [check_namespace(namespace)])
        lookup: dict[str, int] = {}
        for part in _chunks(list(dict.fromkeys(keys))):  # indexed look-ups: cheap for a few keys among millions
            for item_id, key, space in self.db.execute(
                    f"select id, key, namespace from items where key in ({_marks(part)}){where}", [*part, *extra]):
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

    def key_index(self, namespace: str) -> dict[str, int]:
        """key -> item id for every item of one key namespace (one query)."""
        return dict(self.db.execute("select key, id from items where namespace = ?",
                                    [check_namespace(namespace)]).fetchall())

    def keys_of(self, ids: Sequence[int] | np.ndarray) -> list[str]:
        """The keys of ``ids``, in that order; unknown ids are a StoreError."""
        id_list = [int(i) for i in np.asarray(ids, dtype=np.int64).ravel()]
        wanted = sorted(set(id_list))
        lookup: dict[int, str] = {}
        if len(wanted) > 20 * _CHUNK:  # many ids: one scan beats thousands of look-ups
            lookup.update(self.db.execute("select id, key from items").fetchall())
        for part in ([] if lookup else _chunks(wanted)):
            lookup.update(self.db.execute(f"select id, key from items where id in ({_marks(part)})", part).fetchall())
        missing = [i for i in id_list if i not in lookup]
        if missing:
            raise StoreError(f"{self.root}: unknown item ids, e.g. {missing[:5]}")
        return [str(lookup[i]) for i in id_list]

    def labels(self, ids: Sequence[int]) -> list[str | None]:
        """The label of each item (None where it has none); unlabelled items cost no Python row."""
        lookup = dict(self.db.execute("select id, label from items where label is not null").fetchall())
        if not lookup:
            return [None] * len(ids)
        return [lookup.get(int(i)) for i in ids]

    def distinct_labels(self) -> list[str]:
        """Every label some item carries (unordered)."""
        return [r[0] for r in self.db.execute("select distinct label from items where label is not null")]

    def labelled_count(self) -> int:
        return int(self.db.execute("select count(*) from items where label is not null").fetchone()[0])

    def label_classes(self) -> int:
        """How many different labels the items have (a classifier head needs two)."""
        return int(self.db.execute("select count(distinct label) from items where label is not null").fetchone()[0])

    def split_counts(self) -> dict[str, int]:
        rows = self.db.execute("select coalesce(split, ''), count(*) from items group by 1 order by 1")
        return {name or "unassigned": count for name, count in rows.fetchall()}

    # -- folds ------------------------------------------------------------------------------
    def folds(self) -> dict[int, str]:
        return dict(self.db.execute("select item_id, fold from folds").fetchall())

    def fold_ids(self) -> dict[str, np.ndarray]:
        """fold -> the sorted ids of the items assigned to it: one query and array set operations, where
        a lookup per item in :meth:`folds` costs a Python step for each of a large sample's items."""
        rows = self.db.execute("select fold, item_id from folds order by fold, item_id").fetchall()
        if not rows:
            return {}
        names = np.array([r[0] for r in rows], dtype=object)
        ids = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
        starts = np.flatnonzero(np.r_[True, names[1:] != names[:-1]])
        return {str(names[a]): ids[a:b] for a, b in zip(starts, [*starts[1:], len(rows)], strict=True)}

    def set_folds(self, assignment: dict[int, str], seed: int) -> None:
        self.check_item_ids(list(assignment))
        rows = [{"item_id": int(i), "fold": f, "seed": seed} for i, f in assignment.items()]
        with self.transaction():
            self.db["folds"].upsert_all(rows, pk="item_id")
