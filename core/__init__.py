"""Embridge engine: model upgrades for embedding retrieval, importable without Qt."""

__version__ = "0.1.0"
