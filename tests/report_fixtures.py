"""One demo copy with a trained affine layer and its written report, shared by the report tests.

Building the demo report renders every figure (a few seconds), so the case is built once per test
session and cached here; tests must not change the workspace it lives in.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embridge.core.report.report_record import Report
from embridge.core.retrieval import l2_normalize
from embridge.core.store import Workspace


@dataclass
class DemoCase:
    path: Path
    run_id: int
    train: dict[str, Any]
    report: Report


_CACHE: dict[str, DemoCase] = {}


def demo_case(demo_workspace_path: Path, tmp_path_factory: pytest.TempPathFactory) -> DemoCase:
    """The shared case (built on first use): demo copy, affine run, written report."""
    if "case" not in _CACHE:
        from embridge.core.report.build import build_report
        from embridge.core.train.runs import train_run

        path = tmp_path_factory.mktemp("report-demo") / "ws"
        shutil.copytree(demo_workspace_path, path)
        with Workspace.open(path) as ws:
            train = train_run(ws, "affine", device="cpu")
            report = build_report(ws, train["run_id"])
        _CACHE["case"] = DemoCase(path, train["run_id"], train, report)
    return _CACHE["case"]


def protocol_ids(ws: Workspace, old: str, new: str) -> tuple[np.ndarray, np.ndarray]:
    """Queries and gallery of the report protocol, derived here without the report code."""
    both = np.intersect1d(ws.ids_with_vectors(old), ws.ids_with_vectors(new))
    query_split = {int(i) for i in ws.item_ids("query")}
    queries = np.array([i for i in both if int(i) in query_split], dtype=np.int64)
    gallery = np.array([i for i in both if int(i) not in query_split], dtype=np.int64)
    return queries, gallery


def old_gallery_ids(ws: Workspace, old: str) -> np.ndarray:
    """The whole old gallery (every non-query item with an old vector), derived without the report code."""
    query_split = {int(i) for i in ws.item_ids("query")}
    return np.array([i for i in ws.ids_with_vectors(old) if int(i) not in query_split], dtype=np.int64)


def brute_force(queries: np.ndarray, gallery: np.ndarray, q_labels: np.ndarray,
                g_labels: np.ndarray) -> dict[str, Any]:
    """top-1, top-5, recall@10 and full-ranking mAP by plain numpy (cosine, stable order)."""
    scores = l2_normalize(queries) @ l2_normalize(gallery).T
    order = np.argsort(-scores, axis=1, kind="stable")
    hits = g_labels[order] == q_labels[:, None]
    first = np.where(hits.any(axis=1), hits.argmax(axis=1), hits.shape[1])
    ranks = np.arange(1, hits.shape[1] + 1)
    precision = np.cumsum(hits, axis=1) / ranks
    ap = (precision * hits).sum(axis=1) / np.maximum(hits.sum(axis=1), 1)
    valid = hits.any(axis=1)
    return {"top1": float((first[valid] < 1).mean()), "top5": float((first[valid] < 5).mean()),
            "recall@10": float((first[valid] < 10).mean()), "mAP": float(ap[valid].mean()),
            "correct": first < 1}


CHAIN_DIMS = (12, 20, 28)
CHAIN_SEEN = (3, 5, 8)  # classes each version separates (v3 all eight)


def build_chain_workspace(path: Path, n: int = 320, n_query: int = 64, seed: int = 0) -> dict[str, Any]:
    """Three embeddings-only versions of the same labelled items, each separating more classes.

    Items are latent points z = centre[y] + noise; version k sees z through its own random linear map
    with the class part of z shrunk for classes it was not trained on. Affine layers v2→v1 and
    v3→v2 are fitted with ``train_run``, as the CLI would.
    """
    from embridge.core.train.runs import train_run

    rng = np.random.default_rng(seed)
    n_classes, latent = 8, 16
    centres = rng.standard_normal((n_classes, latent))
    labels = rng.integers(0, n_classes, size=n)
    noise = 0.7 * rng.standard_normal((n, latent))
    ws = Workspace.create(path)
    records = [{"key": f"item{i:04d}", "label": str(int(labels[i])), "split": "query" if i < n_query else "gallery"}
               for i in range(n)]
    ids = ws.add_items(records)
    names = []
    for k, (dim, seen) in enumerate(zip(CHAIN_DIMS, CHAIN_SEEN, strict=True)):
        shrink = np.where(labels < seen, 1.0, 0.2)[:, None]
        view = (centres[labels] * shrink + noise) @ rng.standard_normal((latent, dim))
        view += 0.2 * rng.standard_normal((n, dim))
        name = f"v{k + 1}"
        spec = {"name": name, "kind": "vectors", "modality": "vector", "dim": dim, "sha256": f"{k:064d}", "path": ""}
        ws.add_model(name, "old" if k == 0 else ("new" if k == 2 else "other"), spec, None)
        ws.add_vector_set(name, ids, l2_normalize(view))
        names.append(name)
    runs = [train_run(ws, "affine", names[k], names[k + 1], device="cpu")["run_id"] for k in range(2)]
    ws.close()
    return {"path": path, "models": names, "runs": runs}
