"""Vector-store connectors: one :class:`Connector` per store, chosen by the URI's scheme.

Each store's client library is an optional extra (``pip install embridge[stores]``); a scheme
whose library is missing is refused with one line naming the package to install.
"""

from __future__ import annotations

from importlib import import_module

from core.connectors.base import SPACE_FIELD, Batch, Connector, StoreURI, VectorStoreError
from core.errors import InputError

# scheme -> (module, class, package that provides the client)
SCHEMES: dict[str, tuple[str, str, str]] = {
    "parquet": ("core.connectors.parquet", "ParquetConnector", "pyarrow"),
    "lancedb": ("core.connectors.lancedb_store", "LanceDBConnector", "lancedb"),
    "qdrant": ("core.connectors.qdrant", "QdrantConnector", "qdrant-client"),
    "chroma": ("core.connectors.chroma", "ChromaConnector", "chromadb"),
    "postgresql": ("core.connectors.pgvector_store", "PgVectorConnector", "psycopg[binary] and pgvector"),
    "postgres": ("core.connectors.pgvector_store", "PgVectorConnector", "psycopg[binary] and pgvector"),
    "faiss": ("core.connectors.faiss_index", "FaissConnector", "faiss-cpu"),
}

__all__ = ["SCHEMES", "SPACE_FIELD", "Batch", "Connector", "StoreURI", "VectorStoreError", "open_store"]


def open_store(uri: str | StoreURI, option: str = "--uri") -> Connector:
    """A connector for ``uri``; InputError naming the option for an unknown scheme or missing library."""
    parsed = uri if isinstance(uri, StoreURI) else StoreURI.parse(uri, option)
    if parsed.scheme not in SCHEMES:
        raise InputError(option, f"unknown store scheme '{parsed.scheme}://' (known: "
                         f"{', '.join(s + '://' for s in SCHEMES if s != 'postgres')})")
    module_name, class_name, package = SCHEMES[parsed.scheme]
    try:
        cls = getattr(import_module(module_name), class_name)
        return cls(parsed)
    except ModuleNotFoundError as exc:
        raise InputError(option, f"the {parsed.scheme} connector needs {package} ({exc.name} is not installed); "
                         "pip install 'embridge[stores]'") from exc
