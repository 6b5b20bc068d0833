"""A judged retrieval task in a workspace, built like a real asymmetric text upgrade.

Documents and queries are latent points seen through each model's own maps: each model embeds
queries with a query-side map (its document map plus a perturbation and an offset, as a "query:"
prefix does), both spaces share a large common mean before L2 normalisation, and each query is a
noisy view of its one relevant document, less noisy under the new model (the new model is better
on queries). A map fitted on document pairs alone is then off for queries; query pairs (queries
judged in the train split, embedded by both models) let a fit see the query side too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from embridge.core.retrieval import l2_normalize
from embridge.core.store import Workspace
from embridge.core.store.judgments import Judgments
from embridge.core.synthetic import random_semi_orthogonal

QUERY_SPLITS = (("train", 0.5), ("dev", 0.2), ("test", 0.3))


def _unit(rng: np.random.Generator, dim: int) -> np.ndarray:
    v = rng.standard_normal(dim)
    return v / np.linalg.norm(v)


def judged_vectors(n_docs: int = 800, n_queries: int = 500, old_dim: int = 24, new_dim: int = 32, latent: int = 12,
                   seed: int = 0, old_noise: float = 0.7, new_noise: float = 0.3, style: float = 2.0,
                   prefix: float = 1.0, mean_norm: float = 4.0) -> dict[str, np.ndarray]:
    """Old/new vectors of documents and queries and each query's relevant document row.

    In each model, documents span a content subspace; queries are their document's content plus
    noise (less under the new model) plus a query "style" part in directions documents barely use
    and a large query offset there (the "query:" prefix), so each model retrieves well with its own
    queries, while a map fitted on documents alone cannot know where the new model's query prefix
    should go and shifts every mapped query the same way.
    """
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n_docs, latent))
    relevant = rng.permutation(n_docs)[:n_queries]

    def space(dim: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
        basis = random_semi_orthogonal(dim, dim, rng)
        content, style_dirs = basis[:, :latent], basis[:, latent:]
        mean = mean_norm * _unit(rng, dim)
        offset = prefix * style_dirs @ _unit(rng, style_dirs.shape[1])  # the query prefix
        docs = z @ content.T + 0.05 * rng.standard_normal((n_docs, dim)) + mean
        seen = z[relevant] + noise * rng.standard_normal((n_queries, latent))
        look = seen @ rng.standard_normal((latent, style_dirs.shape[1])) / np.sqrt(latent) @ style_dirs.T
        queries = seen @ content.T + style * look + offset + mean
        return l2_normalize(docs), l2_normalize(queries)

    old_docs, old_queries = space(old_dim, old_noise)
    new_docs, new_queries = space(new_dim, new_noise)
    return {"old_docs": old_docs, "new_docs": new_docs, "old_queries": old_queries, "new_queries": new_queries,
            "relevant": relevant}


def build_judged_workspace(path: Path, new_docs_share: float = 1.0, new_skips: str | None = None,
                           **kwargs: Any) -> dict[str, Any]:
    """A workspace with documents, judged queries (train / dev / test) and two vectors-only models.

    The old model embeds every document and query; the new model every query and the first
    ``new_docs_share`` of the documents (an evaluation sample, as a team that has not re-embedded
    its gallery has), and every query but those of split ``new_skips`` (none skipped by default).
    """
    data = judged_vectors(**kwargs)
    n_docs, n_queries = len(data["old_docs"]), len(data["old_queries"])
    ws = Workspace.create(path)
    doc_ids = np.asarray(ws.add_items([{"key": f"d{i}", "split": "gallery"} for i in range(n_docs)]), dtype=np.int64)
    query_ids = np.asarray(ws.add_items([{"key": f"q{i}", "split": "query"} for i in range(n_queries)]),
                           dtype=np.int64)
    cuts = np.cumsum([int(round(f * n_queries)) for _, f in QUERY_SPLITS[:-1]])
    splits = np.empty(n_queries, dtype="<U5")
    for (name, _), part in zip(QUERY_SPLITS, np.split(np.arange(n_queries), cuts), strict=True):
        splits[part] = name
    ws.add_judgments(Judgments.from_arrays(query_ids, doc_ids[data["relevant"]], np.ones(n_queries), splits))
    n_new = int(round(new_docs_share * n_docs))
    for role, docs in (("old", n_docs), ("new", n_new)):
        dim = data[f"{role}_docs"].shape[1]
        spec = {"name": role, "kind": "vectors", "modality": "vector", "dim": dim, "sha256": f"{len(role):064d}",
                "path": ""}
        ws.add_model(role, role, spec, None)
        keep = splits != new_skips if role == "new" else np.ones(n_queries, dtype=bool)
        ws.add_vector_set(role, np.concatenate([doc_ids[:docs], query_ids[keep]]),
                          np.concatenate([data[f"{role}_docs"][:docs], data[f"{role}_queries"][keep]]))
    ws.close()
    return {"path": path, "doc_ids": doc_ids, "query_ids": query_ids, "splits": splits, **data}
