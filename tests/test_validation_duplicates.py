"""Dev queries with exact copies in the gallery: validation is easy for old queries, and the run says so."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from embridge.core.evaluation.selection import workspace_validator
from embridge.core.l2 import l2_normalize
from embridge.core.store import Workspace
from embridge.core.train.runs import train_run


def _labelled_workspace(path: Path, copies: int, n: int = 400, seed: int = 0) -> Workspace:
    """Two vectors-only models of labelled items; the last ``copies`` items repeat earlier ones exactly
    (same label, same vectors in both models) under keys of their own."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 6, size=n)
    latent = rng.standard_normal((6, 12))[labels] + 0.8 * rng.standard_normal((n, 12))
    old = latent @ rng.standard_normal((12, 24)) + 0.6 * rng.standard_normal((n, 24))
    new = latent @ rng.standard_normal((12, 32)) + 0.2 * rng.standard_normal((n, 32))
    twin_of = np.arange(n)
    twin_of[n - copies:] = rng.choice(n - copies, size=copies, replace=False)
    labels, old, new = labels[twin_of], old[twin_of], new[twin_of]
    ws = Workspace.create(path)
    ids = ws.add_items([{"key": f"item{i:04d}", "label": str(int(labels[i])), "split": "gallery"} for i in range(n)])
    for name, role, vectors in (("old", "old", old), ("new", "new", new)):
        spec = {"name": name, "kind": "vectors", "modality": "vector", "dim": vectors.shape[1],
                "sha256": f"{len(name):064d}", "path": ""}
        ws.add_model(name, role, spec, None)
        ws.add_vector_set(name, ids, l2_normalize(vectors.astype(np.float32)))
    return ws


def _dev_queries_with_copies(ws: Workspace) -> tuple[int, int]:
    """(dev queries whose old vector another gallery item holds exactly, dev queries), by brute force."""
    task = workspace_validator(ws, "old", "new").task
    ids = ws.ids_with_vectors("old")
    vectors = {int(i): v.tobytes() for i, v in zip(ids, ws.vectors_for("old", ids), strict=True)}
    gallery = {int(g) for g in task.gallery.ids}
    by_bytes: dict[bytes, set[int]] = {}
    for item, raw in vectors.items():
        if item in gallery:
            by_bytes.setdefault(raw, set()).add(item)
    found = sum(1 for q in task.queries.ids if by_bytes.get(vectors[int(q)], set()) - {int(q)})
    return found, len(task.queries.ids)


def test_a_run_names_dev_queries_whose_old_vector_the_gallery_holds_again(tmp_path: Path) -> None:
    with _labelled_workspace(tmp_path / "dup", copies=80) as ws:
        expected, dev = _dev_queries_with_copies(ws)
        assert expected > 0
        run = train_run(ws, "affine", "old", "new", device="cpu")
    assert f"note: {expected} of {dev} dev queries have an exact copy of their old vector in the gallery" \
        in run["reason"]


def test_a_run_without_copies_says_nothing_of_them(tmp_path: Path) -> None:
    with _labelled_workspace(tmp_path / "clean", copies=0) as ws:
        assert _dev_queries_with_copies(ws)[0] == 0
        run = train_run(ws, "affine", "old", "new", device="cpu")
    assert "exact copy" not in run["reason"]


def test_a_judged_query_equal_to_a_document_is_a_match_not_a_copy(tmp_path: Path) -> None:
    """Judged dev queries are not gallery items: a document whose old vector equals a query's (the text
    demo has a few, each the query's relevant answer) is what retrieval should find, so nothing is noted."""
    import contextlib
    import io

    from embridge.core.cli.main import main

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["demo", "-w", str(tmp_path / "text"), "--kind", "text"]) == 0
    with Workspace.open(tmp_path / "text") as ws:
        validator = workspace_validator(ws, "old-bow", "new-bow")
        first = validator.old_old().top[:, 0]
        cosines = np.einsum("ij,ij->i", validator.q_old, validator.g_old[first])
        assert int(np.count_nonzero(cosines >= 1 - 1e-6)) >= 2  # the equal pairs are there
        assert validator.exact_duplicates() == 0
        run = train_run(ws, "procrustes", device="cpu")
    assert "exact copy" not in run["reason"]
