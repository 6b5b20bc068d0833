"""Collection, table and alias names from a store URI, checked before any store is opened.

Embedded stores turn these names into files (LanceDB ``<table>.lance``, Qdrant's collection folders,
the ``migrate-<name>.json`` checkpoints beside every local store), so a name holding a path part
would write outside the store. Names are refused when the URI is parsed, so nothing is created.
"""

from __future__ import annotations

import re
from typing import Any

from embridge.core.errors import InputError

NAME_PARAMS = ("collection", "table", "alias")
PG_NAME_BYTES = 63  # NAMEDATALEN - 1
FILE_NAME_BYTES = 200  # a file name holds 255 bytes; 'lancedb-migrate-' and '.lock' come around the name
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CHROMA = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9._-]{1,61}[a-zA-Z0-9]")  # chromadb's check_index_name: 3-63
_IPV4 = re.compile(r"\d{1,3}(\.\d{1,3}){3}")
_LANCE = re.compile(r"[a-zA-Z0-9._-]+")  # lancedb's validate_table_name


def name_problem(scheme: str, name: str) -> str | None:
    """Why ``name`` cannot name a collection of a ``scheme`` store (None when it can)."""
    if not name:
        return "is empty"
    if "/" in name or "\\" in name or ".." in name or name.startswith(".") or _CONTROL.search(name):
        return "would be a path (no '/', '\\', '..', control characters or leading '.')"
    size = len(name.encode("utf-8", "surrogatepass"))
    if scheme in ("postgresql", "postgres"):  # the server cuts a longer name: two long names would be one table
        part_size = max(len(part.encode("utf-8", "surrogatepass")) for part in name.split("."))  # SCHEMA.TABLE
        if part_size > PG_NAME_BYTES:
            return (f"has a part of {part_size} bytes; PostgreSQL names hold at most {PG_NAME_BYTES} (it would "
                    "cut the name)")
    if size > FILE_NAME_BYTES:
        return (f"is {size} bytes long; names hold at most {FILE_NAME_BYTES} (each becomes part of a file name: "
                "the store's own, or its migration checkpoint's)")
    if scheme == "chroma" and (not _CHROMA.fullmatch(name) or _IPV4.fullmatch(name)):
        return ("is not a Chroma collection name (3 to 63 letters, digits, '.', '_' or '-', starting and ending "
                "with a letter or digit, not an IPv4 address)")
    if scheme == "lancedb" and not _LANCE.fullmatch(name):
        return "is not a LanceDB table name (letters, digits, '.', '_' or '-')"
    return None


def check_uri_names(scheme: str, path: str, params: dict[str, Any], option: str) -> None:
    """Raise InputError naming ``option`` for the first collection, table or alias name that is refused."""
    named = [(key, params[key]) for key in NAME_PARAMS if key in params]
    if scheme == "parquet" and path.rstrip("/"):
        named.insert(0, ("dataset folder", path.rstrip("/").rsplit("/", 1)[-1]))
    for key, name in named:
        problem = name_problem(scheme, str(name))
        if problem:
            raise InputError(option, f"the {key} name {name!r} {problem}")
