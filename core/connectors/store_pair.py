"""The source and target stores of a migration, opened together.

One embedded store shares one client between its two collections (it locks its folder); a target that is
the source itself, under any spelling, is refused, except the rerun of a migration that read its source
through the alias its own ``--switch`` then moved onto its target.
"""

from __future__ import annotations

from pathlib import Path

from embridge.core.connectors import check_params, open_store
from embridge.core.connectors.check import switched_from
from embridge.core.connectors.connector import Connector, StoreURI
from embridge.core.connectors.migration_fingerprint import same_source
from embridge.core.connectors.targets import (
    SOURCE_ITSELF,
    adopt_source_columns,
    check_store_output,
    same_store,
)
from embridge.core.errors import InputError


def state_key(target: Connector) -> str:
    return f"migrate-{target.collection}"


def open_pair(source_uri: str, target_uri: str, inputs: tuple[str | Path | None, ...] = ()
              ) -> tuple[Connector, Connector]:
    """Source and target connectors; one embedded store shares one client (it locks its folder).

    A local target is checked as every output is (never a workspace, in one, or an input, ``inputs``
    and the source included) before either store is opened, since opening may create its folder.
    Stores that take several clients (Parquet folders, PostgreSQL) get one per side, so the read-ahead
    thread and the writer never wait for each other's connection.
    """
    src_uri, dst_uri = StoreURI.parse(source_uri, "--from"), StoreURI.parse(target_uri, "--to")
    check_store_output(dst_uri, "--to", (src_uri, *inputs))
    source = open_store(src_uri, "--from")
    try:
        if src_uri.scheme == dst_uri.scheme and source.single_client and same_store(src_uri, dst_uri):
            check_params(dst_uri, "--to")  # as open_store checks them: a typo is named, not ignored
            target = source.with_collection(type(source).collection_name(dst_uri))
            target.uri = dst_uri
            target.take_uri_columns(dst_uri)  # the target's own ?id= / ?vector=, not the source's
        else:
            target = open_store(dst_uri, "--to")
    except BaseException:
        source.close()
        raise
    adopt_source_columns(source, target, dst_uri)
    one_store = src_uri.scheme == dst_uri.scheme and (source.location() == target.location() or (
        not src_uri.netloc and same_store(src_uri, dst_uri)))
    read = collection_read(source) if one_store else None  # an alias is looked up once (a server round trip)
    if read == target.collection:
        earlier = _read_before_the_switch(source, target) if read != source.collection else None
        if earlier is None:
            source.close()
            raise InputError("--to", f"'{target_uri}' {SOURCE_ITSELF}")
        source = _repointed(source, earlier)
    return source, target


def collection_read(source: Connector) -> str:
    """The collection a source's name reads: the one its alias serves, or itself."""
    return (source.alias_target(source.collection) if source.supports_alias else None) or source.collection


def _read_before_the_switch(source: Connector, target: Connector) -> str | None:
    """The collection a migration into ``target`` read through the alias ``source`` names, when that
    migration's own ``--switch`` has since moved the alias onto ``target``: its rerun reads (and verifies
    against) that collection again, as the same command run before the switch did."""
    earlier = switched_from(source, source.collection, target.collection)
    fingerprint = (target.load_state(state_key(target)) or {}).get("fingerprint") or {}
    if earlier and fingerprint.get("source_collection") == earlier and same_source(fingerprint, source.location()):
        return earlier
    return None


def _repointed(source: Connector, collection: str) -> Connector:
    """``source`` on another collection of its store; the new connector owns (and closes) any shared client."""
    other = source.with_collection(collection)
    if other.borrowed:
        other.borrowed, source.borrowed = False, True
    source.close()
    return other
