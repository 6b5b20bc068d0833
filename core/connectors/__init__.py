"""Vector-store connectors: one :class:`Connector` per store, chosen by the URI's scheme.

Each store's client library is an optional extra (``pip install embridge[stores]``); a scheme
whose library is missing is refused with one line naming the package to install.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

from embridge.core.connectors.connector import SPACE_FIELD, Batch, Connector, StoreURI, VectorStoreError
from embridge.core.errors import InputError
from embridge.core.extras import install_hint

# scheme -> (module, class, package that provides the client)
SCHEMES: dict[str, tuple[str, str, str]] = {
    "parquet": ("embridge.core.connectors.parquet", "ParquetConnector", "pyarrow"),
    "lancedb": ("embridge.core.connectors.lancedb_store", "LanceDBConnector", "lancedb"),
    "qdrant": ("embridge.core.connectors.qdrant", "QdrantConnector", "qdrant-client"),
    "chroma": ("embridge.core.connectors.chroma", "ChromaConnector", "chromadb"),
    "postgresql": ("embridge.core.connectors.pgvector_store", "PgVectorConnector", "psycopg[binary] and pgvector"),
    "postgres": ("embridge.core.connectors.pgvector_store", "PgVectorConnector", "psycopg[binary] and pgvector"),
    "faiss": ("embridge.core.connectors.faiss_index", "FaissConnector", "faiss-cpu"),
}

# query parameters each scheme takes (PostgreSQL passes the ones it does not know to the server)
PARAMS: dict[str, tuple[str, ...]] = {
    "parquet": ("id", "vector", "alias"),
    "lancedb": ("table", "collection", "id", "vector", "alias"),
    "qdrant": ("collection", "table", "vector", "https", "alias"),
    "chroma": ("collection", "table", "https", "alias"),
    "faiss": (),
}

# options naming a store that is only read: a missing local folder is a typo, never a new store
READ_OPTIONS = ("--from", "--uri")
FOLDER_SCHEMES = ("lancedb", "qdrant", "chroma")  # embedded stores whose clients create their folder on open
# the file an embedded store's client writes into its folder on first open: without it the folder holds no such
# store (an empty folder, or another store's) and opening it to read would write one there
STORE_MARKERS = {"qdrant": "meta.json", "chroma": "chroma.sqlite3"}

__all__ = ["SCHEMES", "SPACE_FIELD", "Batch", "Connector", "StoreURI", "VectorStoreError", "open_store"]


def check_params(parsed: StoreURI, option: str) -> None:
    """Refuse a URI parameter its scheme does not take (a typo would otherwise be ignored)."""
    known = PARAMS.get(parsed.scheme)
    unknown = [key for key in parsed.params if known is not None and key not in known]
    if unknown:
        takes = ", ".join(known) if known else "none"
        raise InputError(option, f"'{parsed.shown}' gives the parameter '{unknown[0]}', which {parsed.scheme}:// does "
                         f"not take (it takes: {takes})")


def _lacks_marker(marker: Path) -> str | None:
    """Why ``marker`` does not show a store: missing, or empty (a truncated database the library would set up
    anew, reading the store as empty); None when it is there."""
    if not marker.exists():
        return f"no {marker.name}"
    if marker.is_file() and marker.stat().st_size == 0:
        return f"its {marker.name} is empty"
    return None


def open_store(uri: str | StoreURI, option: str = "--uri") -> Connector:
    """A connector for ``uri``; InputError naming the option for an unknown scheme or missing library."""
    parsed = uri if isinstance(uri, StoreURI) else StoreURI.parse(uri, option)
    if parsed.scheme not in SCHEMES:
        raise InputError(option, f"unknown store scheme '{parsed.scheme}://' (known: "
                         f"{', '.join(s + '://' for s in SCHEMES if s != 'postgres')})")
    module_name, class_name, package = SCHEMES[parsed.scheme]
    check_params(parsed, option)
    try:
        cls = getattr(import_module(module_name), class_name)
        if option in READ_OPTIONS and parsed.scheme in FOLDER_SCHEMES and not parsed.netloc and \
                parsed.path.strip("/") and not Path(parsed.path).is_dir():
            cls.collection_name(parsed)  # a missing collection name is named before a missing folder
            raise InputError(option, f"no such store folder {parsed.path} (opening it would create an empty store)")
        marker = STORE_MARKERS.get(parsed.scheme)
        lacks = _lacks_marker(Path(parsed.path) / marker) if marker and parsed.path.strip("/") else None
        if option in READ_OPTIONS and lacks and not parsed.netloc:
            cls.collection_name(parsed)
            raise InputError(option, f"{parsed.path} holds no {parsed.scheme} store ({lacks}; opening it would "
                             f"write one there); check the folder and the scheme")
        return cls(parsed)
    except ModuleNotFoundError as exc:
        raise InputError(option, f"the {parsed.scheme} connector needs {package} ({exc.name} is not installed); "
                         f"{install_hint('stores')}") from exc
