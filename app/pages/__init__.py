"""The workflow pages, in navigation order: (key, title, "module:Class"), imported on demand."""

from __future__ import annotations

import importlib

from PySide6.QtWidgets import QWidget

PAGES: list[tuple[str, str, str]] = [
    ("workspace", "Workspace", "embridge.app.pages.workspace_page:WorkspacePage"),
    ("models", "Models", "embridge.app.pages.models_page:ModelsPage"),
    ("gallery", "Gallery", "embridge.app.pages.gallery_page:GalleryPage"),
    ("train", "Train", "embridge.app.pages.train_page:TrainPage"),
    ("reports", "Reports", "embridge.app.pages.reports_page:ReportsPage"),
    ("plan", "Plan", "embridge.app.pages.plan_page:PlanPage"),
    ("export", "Export", "embridge.app.pages.export_page:ExportPage"),
]


def page_class(target: str) -> type[QWidget]:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)
