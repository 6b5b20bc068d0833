"""Checks on what a store command is about to write, made before anything is written.

Every store a command writes into that lives in a local folder (``parquet://``, ``lance://``,
``lancedb://``, ``qdrant://`` and ``chroma://`` without a host, ``faiss://``) goes through
:func:`check_store_output`, the same rule as every other output (:func:`embridge.core.paths.check_output`):
never a workspace, inside one, a folder holding one, or an input. An alias a switch will move is
checked by :func:`check_alias` before the first point is written, so a bad name never costs a
whole migration. A table target whose URI names no id or vector column takes the source table's
(:func:`adopt_source_columns`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from embridge.core.connectors.connector import Connector, StoreURI, VectorStoreError
from embridge.core.errors import InputError, UsageError
from embridge.core.paths import check_folder_target, check_name, check_output

_FOLDER_STORES = ("parquet", "lance", "faiss")  # the URI's path is the collection itself
_ROOT_STORES = ("qdrant", "chroma")  # the URI's path is a store folder, without a host
PENDING = "pending"  # an alias record's move noted before the store makes it


def local_output(uri: str | StoreURI, option: str = "--to") -> Path | None:
    """The local folder (or file) a write to ``uri`` changes; None for a server."""
    parsed = uri if isinstance(uri, StoreURI) else StoreURI.parse(uri, option)
    path = parsed.path.rstrip("/")
    if not path:
        return None
    if parsed.scheme in _FOLDER_STORES:
        return Path(path)
    if parsed.scheme == "lancedb":
        table = parsed.param("table", "collection")
        return Path(path) / f"{table}.lance" if table else Path(path)
    if parsed.scheme in _ROOT_STORES and not parsed.netloc:
        return Path(path)
    return None


def check_store_output(uri: str | StoreURI, option: str = "--to",
                       inputs: Iterable[str | Path | StoreURI | None] = ()) -> None:
    """Refuse a local store target that is, lies in or holds a workspace, or is, lies in or holds an input.

    ``inputs`` are files, folders or store URIs the command reads; a store input in the same store
    as the target (a sibling collection) is not compared, since a migration writes beside its source.
    """
    parsed = uri if isinstance(uri, StoreURI) else StoreURI.parse(uri, option)
    target = local_output(parsed, option)
    if target is None:
        return
    _refuse_a_dangling_link(target, option)
    paths: list[Path] = []
    served_by_alias = False  # the target is the collection the source's alias link serves: decided once open
    for given in inputs:
        if given is None:
            continue
        if isinstance(given, StoreURI) or "://" in str(given):
            source = given if isinstance(given, StoreURI) else StoreURI.parse(str(given), "--from")
            if same_store(source, parsed):
                served_by_alias |= _refuse_the_source_itself(source, parsed, target, option)
                continue
            found = local_output(source, "--from")
            if found is not None:
                paths.append(found)
        else:
            paths.append(Path(given))
    check_output(target, label=option, inputs=paths, below=True)
    check_database_folder(parsed, option)
    if parsed.scheme != "faiss" and not served_by_alias:  # read-only: refused as such where a command would write it
        check_folder_target(target, option)


def _refuse_a_dangling_link(target: Path, option: str) -> None:
    """A target that is (or lies in) a link to nothing, such as an alias whose collection was dropped:
    writing through it would fail on the link midway, after a checkpoint was made."""
    for part in (target, *target.parents):
        if part.is_symlink() and not part.exists():
            alias = " (an alias whose collection was dropped?)" if part == target else ""
            raise InputError(option, f"{part} is a link to '{os.readlink(part)}', which does not exist{alias}; "
                             "give a new collection name (a migration's --switch --alias NAME then points an "
                             "alias at it), or remove the link")


def check_database_folder(uri: str | StoreURI, option: str = "--to") -> None:
    """A LanceDB target's database folder holds no workspace, as a Qdrant or Chroma store folder must not
    (files beside a new table, such as its source, are not touched and may stay). Any other target, a plain
    folder path included, is not this check's."""
    if not isinstance(uri, StoreURI) and not str(uri).startswith("lancedb://"):
        return
    parsed = uri if isinstance(uri, StoreURI) else StoreURI.parse(uri, option)
    target = local_output(parsed, option) if parsed.scheme == "lancedb" else None
    if target is not None and target.parent != target:
        check_output(target.parent, label=option, below=True)


SOURCE_ITSELF = "is the source collection itself; a migration writes a new collection and never changes the source"


def _refuse_the_source_itself(source: StoreURI, parsed: StoreURI, target: Path, option: str) -> bool:
    """A folder-per-collection target (a Parquet dataset, a LanceDB table) that is the source's folder, under
    another spelling, is refused before the write check probes that folder. True when the source names it
    through an alias link: the migration's own ``--switch`` may have moved that alias onto its target, which
    only the open stores can tell (:func:`embridge.core.connectors.store_pair.open_pair`), and that folder is
    not probed."""
    if parsed.scheme not in (*_FOLDER_STORES, "lancedb"):
        return False  # a Qdrant or Chroma folder holds many collections: compared once both are open
    found = local_output(source, "--from")
    try:
        same = found is not None and found.exists() and target.exists() and found.resolve() == target.resolve()
        through_alias = same and found is not None and found.is_symlink() and not target.is_symlink()
    except OSError:
        return False
    if same and not through_alias:
        raise InputError(option, f"'{parsed.shown}' {SOURCE_ITSELF}")
    return through_alias


def same_store(a: StoreURI, b: StoreURI) -> bool:
    """Whether two URIs name one store (their collections are siblings in it), however its folder is
    written: a trailing slash, ``.`` and ``..`` segments, a link to it."""
    (scheme, host, path), (other_scheme, other_host, other_path) = a.place(), b.place()
    if (scheme, host) != (other_scheme, other_host):
        return False
    if scheme in ("parquet", "lance"):
        return Path(path).parent == Path(other_path).parent
    return path == other_path


def named_alias(alias: str | None, uri: StoreURI, option: str) -> str | None:
    """The alias named by ``--alias`` or by ``?alias=`` in ``option``'s URI (the same thing); two different
    names are refused rather than one of them silently winning."""
    if alias is not None and not alias.strip():
        raise UsageError("--alias", "is empty; name the alias, or leave --alias out")
    in_uri = uri.param("alias")
    if alias and in_uri and alias != in_uri:
        raise UsageError("--alias", f"'{alias}' conflicts with ?alias={in_uri} in {option}: both name the alias "
                         "to move, and they differ; give one of them")
    return alias or in_uri


def alias_to_switch(alias: str | None, uri: str | StoreURI, switch: bool) -> str | None:
    """The alias ``--switch`` moves (``--alias``, or ``?alias=`` in the ``--to`` URI), checked before any store
    is opened. The alias is only what a switch moves, so one named without ``--switch``, which would do
    nothing, is refused, as is a ``--switch`` with no alias named."""
    parsed = uri if isinstance(uri, StoreURI) else StoreURI.parse(uri, "--to")
    named = named_alias(alias, parsed, "--to")
    if switch and not named:
        raise UsageError("--switch", "name the alias to move (--alias NAME, or &alias=NAME in --to)")
    if named and not switch:
        option, what, part = ("--alias", f"'{named}'", "--alias") if alias else ("--to", f"?alias={named}", "?alias=")
        raise UsageError(option, f"{what} is the alias a switch moves, and has no effect without --switch: give "
                         f"that too (it moves the alias once the new collection is verified), or leave {part} out")
    return alias_form(named, alias) if named else named  # before opening a store makes its folder


def alias_form(named: str, given: str | None) -> str:
    """``named`` checked as a name (it becomes a link or object name), refused naming where it was given: ``--alias``
    (``given``), or ``?alias=`` in ``--to``."""
    return check_name(named, "--alias" if given else "--to")


def writable_target_alias(target: Connector, alias: str | None) -> str | None:
    """Check the target is writable and can hold ``alias``, the one :func:`alias_to_switch` resolved before
    the stores were opened (:func:`check_alias`); returns it."""
    target._writable()
    if alias:
        check_alias(target, alias, target.collection)
    return alias


def check_alias(store: Connector, alias: str, serves: str) -> str:
    """Refuse an alias name the store cannot hold before anything is written; returns it.

    The name must be a plain name (it becomes a link or object name), must not be the collection it
    will serve, and must not name a real collection of the store (a switch replaces only an alias). Where an
alias is a view or a symbolic link, an existing one is moved only when Embridge made it: a user's own
view or link of that name keeps its definition.
    """
    check_name(alias, "--alias")
    if alias == serves:
        raise VectorStoreError(f"{store.describe()}: the alias '{alias}' is the name of the collection it would "
                               "serve; choose another alias name")
    if not store.supports_alias:
        return alias
    settle_pending_move(store, alias)
    current = store.alias_target(alias)
    if current is None and _is_collection(store, alias):
        raise VectorStoreError(f"{store.describe()}: '{alias}' is a collection, not an alias; choose another "
                               "alias name")
    blocked = store.alias_blocked(alias) if current not in (None, serves) else None
    if blocked:
        raise InputError("--alias", blocked)
    if current is not None and store.aliases_may_be_users and not made_by_embridge(store, alias):
        extras = store.alias_extras(alias)
        held = f" (it holds {extras})" if extras else ""
        raise InputError("--alias", f"'{alias}' is {store.alias_what(alias)}{held} that Embridge did not make, or "
                         "that changed since Embridge moved it; a switch would replace it and lose what it is: "
                         "choose another alias name, or remove it first")
    return alias


def settle_pending_move(store: Connector, alias: str) -> None:
    """Finish the record of a move that a switch noted and was stopped during (killed between moving the
    alias and recording it): recorded as made where the alias serves its target, dropped where it still
    serves what it did before; an alias changed to anything else since stays unexplained, so it is refused."""
    key = store.alias_key(alias)
    record = store.load_state(key) or {}
    pending = record.get(PENDING)
    if not isinstance(pending, dict):
        return
    if made_pending_move(store, alias, record) is not None:
        record["history"] = [*(record.get("history") or []),
                             recorded_move(store, alias, pending.get("from"), pending["to"], pending.get("at"))]
    elif store.alias_target(alias) != pending.get("from"):
        return
    record.pop(PENDING)
    store.save_state(key, record)


def made_pending_move(store: Connector, alias: str, record: dict[str, Any]) -> dict[str, Any] | None:
    """The move an alias record noted before the store made it (``record[PENDING]``), where the alias now
    serves its target: the store made it, and only its record is missing; else None."""
    pending = record.get(PENDING)
    if not isinstance(pending, dict) or pending.get("to") in (None, pending.get("from")):
        return None
    return pending if store.alias_target(alias) == pending["to"] else None


def recorded_move(store: Connector, alias: str, source: Any, target: str, at: Any) -> dict[str, Any]:
    """A move as an alias record keeps it: from, to, when, and what the alias is afterwards."""
    return {"from": source, "to": target, "at": at, "definition": store.alias_definition(alias),
            "extras": store.alias_extras(alias)}


def made_by_embridge(store: Connector, alias: str) -> bool:
    """Whether the alias is still what Embridge's last switch of it made (its record names the same
    definition: the view's SQL, the link's target), so moving it loses nothing of anyone else's.

    A view is more than its SQL: grants, options, a comment, triggers, and views built on it are lost (or
    stop the drop) when a switch recreates it, so a view rewritten to the recorded SQL but holding any of
    those that the record does not is someone else's. Records written before those were kept compare the
    definition alone.
    """
    record = store.load_state(store.alias_key(alias)) or {}
    history = record.get("history") or []
    if not history:
        return False
    last = history[-1]
    if last.get("definition") is not None:
        if last["definition"] != store.alias_definition(alias):
            return False
        return "extras" not in last or last["extras"] == store.alias_extras(alias)
    return bool(last.get("to") == store.alias_target(alias))


def _is_collection(store: Connector, name: str) -> bool:
    folder = getattr(store, "folder", None)
    if isinstance(folder, Path):  # a Parquet store: any file or folder of that name is in the way
        return (folder.parent / name).exists()
    other = store.with_collection(name)
    try:
        return bool(other.exists())
    finally:
        if other is not store and not other.borrowed:
            other.close()


# URI parameters naming a table's columns, and a Qdrant collection's named vector
COLUMN_PARAMS = {"id_col": ("id",), "vec_col": ("vector", "column"), "vector_name": ("vector",)}


def adopt_source_columns(source: Connector, target: Connector, target_uri: StoreURI) -> None:
    """A table target whose URI does not name its id or vector column takes the source table's (and a Qdrant
    target the source collection's named vector): after a switch the application reads the shadow by the
    names it read the source by (``?id=doc_id`` on the source alone wrote an ``id`` column, and a payload
    column called ``id`` was lost to it; a shadow in another Qdrant store had an unnamed vector)."""
    before = {attr: getattr(target, attr) for attr in COLUMN_PARAMS if hasattr(target, attr)}
    for attr, params in COLUMN_PARAMS.items():
        if hasattr(source, attr) and attr in before and target_uri.param(*params) is None:
            setattr(target, attr, getattr(source, attr))
    if before and any(getattr(target, a) != v for a, v in before.items()) and target.exists():
        try:  # a shadow an earlier Embridge wrote, or resumes, under the default names keeps them
            next(iter(target.read_batches(1)), None)
        except (VectorStoreError, KeyError):
            for attr, value in before.items():
                setattr(target, attr, value)
