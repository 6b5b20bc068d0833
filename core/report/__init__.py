"""Compatibility reports: faiss search, retrieval metrics, flips, partial backfill and figures.

The submodules are imported on demand (``embridge.core.evaluation.search`` loads faiss lazily,
``embridge.core.report.figures`` loads matplotlib) so that importing the package stays cheap.
"""
