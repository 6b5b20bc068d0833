"""A workspace whose gallery comes from a vectors-only model's ``.npz`` (no images, no texts)."""

from __future__ import annotations

from pathlib import Path

from embridge.core.cli.main import main


def gallery_workspace(ws: Path, old: Path) -> list[str]:
    """Create ``ws`` with model 'old' (role old) from ``old`` and its keys as gallery items holding its
    vectors; returns the ``--workspace`` arguments for further commands."""
    w = ["--workspace", str(ws)]
    assert main(["init", *w]) == 0
    assert main(["model", "add", *w, "--name", "old", "--path", str(old), "--role", "old"]) == 0
    assert main(["import", *w, "--format", "vectors", "--path", str(old), "--model", "old", "--split", "gallery"]) == 0
    return w
