"""Moving an alias to a collection (``migrate --switch``) and back (``rollback``), with a record of each move.

Every move is recorded beside the store (``alias-<name>`` in the migration checkpoints) with what the
alias is afterwards (:meth:`~embridge.core.connectors.connector.Connector.alias_definition`, and for a view
what else it holds, :meth:`~embridge.core.connectors.connector.Connector.alias_extras`). Where an
alias is a view or a symbolic link, which users also make for their own ends, that record is how a
later switch or rollback tells an alias Embridge made from someone else's
(:func:`~embridge.core.connectors.targets.made_by_embridge`).
"""

from __future__ import annotations

import time
from typing import Any

from embridge.core.connectors import open_store
from embridge.core.connectors.check import (
    UNMARKED,
    changed_since,
    check_named_columns,
    migration_state,
    served_versions,
    switched_from,
    unfinished_migration,
)
from embridge.core.connectors.connector import Connector, StoreURI, VectorStoreError
from embridge.core.connectors.targets import PENDING, alias_form, check_alias, named_alias, recorded_move
from embridge.core.errors import InputError, UsageError


def switch_alias(store: Connector, alias: str, target: str) -> str | None:
    """Point ``alias`` at ``target`` atomically; returns the collection it served before."""
    previous = store.alias_target(alias)
    if previous == target:  # already so: no move to record (a recorded self-move hid the collection it replaced)
        return previous
    key = store.alias_key(alias)
    history = store.load_state(key) or {"history": []}
    history.pop(PENDING, None)
    # the move is noted before the store makes it: killed between the two, the alias and its record disagreed,
    # and every later switch or rollback took the alias for one Embridge did not make
    store.save_state(key, {**history, PENDING: {"from": previous, "to": target, "at": time.time()}})
    store.set_alias(alias, target)
    history["history"] = [*history["history"], recorded_move(store, alias, previous, target, time.time())]
    store.save_state(key, history)
    return previous


def rollback_store(uri: str, alias: str | None = None) -> dict[str, Any]:
    """Point the alias back at the collection named in ``uri`` (the one it served before a switch).

    The result's ``text`` says what it did and which model version's queries the points it serves need.
    """
    out = _rollback(uri, alias)
    out["text"] = rollback_text(out)
    return out


def _rollback(uri: str, alias: str | None) -> dict[str, Any]:
    # the alias named and of a valid form before the store is opened (opening a LanceDB one makes its folder)
    named = named_alias(alias, StoreURI.parse(uri, "--to"), "--to")
    if not named:
        raise UsageError("--alias", "name the alias to switch back (--alias NAME, or &alias=NAME in --to)")
    alias = alias_form(named, alias)
    store = open_store(uri, "--to")
    try:
        check_alias(store, alias, store.collection)
        if not store.exists():
            raise VectorStoreError(f"{store.describe()}: {store.missing()}; nothing to switch back to")
        count = store.count()  # moving the alias changes no collection: counted once
        check_named_columns(store, count)
        unfinished = unfinished_migration(store, store.collection)
        if unfinished is not None:  # serving it would answer queries from part of the gallery
            raise VectorStoreError(f"{store.describe()}: {unfinished}; the alias was not moved")
        if not store.supports_alias:
            store.set_alias(alias, store.collection)  # raises the store's own explanation
        current = store.alias_target(alias)
        if current is None:
            raise InputError("--alias", f"'{alias}' is not an alias of {store.location()}, so nothing serves "
                             "another collection through it and there is nothing to switch back (a migration makes "
                             "the alias only with --switch, in the store it wrote; after one into another store, "
                             "point the application back at this store itself)")
        if current == store.collection:  # a rollback already made: read the spaces as that one did
            return {"alias": alias, "collection": store.collection, "previous": current, "changed": False,
                    "serves": served_versions(store, switched_from(store, alias, store.collection))}
        previous = switch_alias(store, alias, store.collection)
        migration, _ = migration_state(store, store.collection)
        return {"alias": alias, "collection": store.collection, "previous": previous, "changed": True,
                "count": count, "note": changed_since(migration, count), "serves": served_versions(store, previous)}
    finally:
        store.close()


def served_versions_text(versions: dict[str, int]) -> str:
    """'its 1000 points are v1's: queries must be embedded by v1 again', or the mix when there are several."""
    total = sum(versions.values())
    if not versions:
        return "it holds no points"
    if len(versions) == 1:
        (version, _), = versions.items()
        if version == UNMARKED:
            return f"its {total} points carry no space marker: queries must use the model they were embedded by"
        return f"its {total} points are {version}'s: queries must be embedded by {version} again"
    parts = ", ".join(f"{n} {v}" for v, n in sorted(versions.items(), key=lambda kv: -kv[1]))
    return f"its {total} points are in several model versions ({parts}): a query reaches only its own"


def rollback_text(out: dict[str, Any]) -> str:
    """What a rollback did, as the command line prints it and the app shows it."""
    verb = "now serves" if out["changed"] else "already serves"
    lines = [f"alias '{out['alias']}' {verb} '{out['collection']}' (before: {out['previous']}); "
             f"{served_versions_text(out['serves'])}"]
    if out.get("note"):
        lines.append(f"note: '{out['collection']}': {out['note']}")
    return "\n".join(lines)
