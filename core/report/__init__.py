"""Compatibility reports: faiss search, retrieval metrics, flips, partial backfill and figures.

The submodules are imported on demand (``core.evaluation.search`` loads faiss lazily,
``core.report.figures`` loads matplotlib) so that importing the package stays cheap.
"""
