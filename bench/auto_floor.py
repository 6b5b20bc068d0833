"""Floors of the workflow's ``train --method auto`` and ``report`` steps: the raw work each must do.

``auto`` fits every candidate and scores each on the dev queries, then measures the winner on the
test queries. Its floor, on arrays of the same sizes read from the benchmark's input files, is the
sum of:

- **closed forms**: one pass of the training pairs' second moments (cross product and both Gram
  matrices, float64) and the solves (one eigendecomposition per Gram matrix, one SVD per
  Procrustes candidate, the ridge path from the first eigendecomposition);
- **each trainable candidate that ran**: a bare PyTorch loop with the same width (rank or hidden
  size), batch size, number of steps (the epochs the run recorded) and loss (InfoNCE over the
  batch, ``bank_size`` sampled gallery rows and the mined hard negatives, re-mined with raw faiss
  every ``hard_every`` epochs);
- **evaluation**: one raw faiss index of the whole old gallery (the method the run used: exact up to
  200,000 rows, IVF beyond), one search of the dev queries per evaluation the run recorded, and the
  held-out cells: the test queries twice on that index (old/old, new->old) and three times on exact
  indexes of the evaluation sample (new/new, and old/old and new->old, which gain retained compares);
- **reading**: the old gallery and the sample read once from their ``.npz`` files and normalised.

The ``report``'s floor is the same reading plus raw faiss for every search the report makes, with
the same queries and galleries at the report's ranking depth: the index of the whole old gallery built
once and searched by the test queries of old/old and of new->old, and for an IVF index the score
products of the exact search of the queries the report measures its recall on (``headline``: the
part the report's headline needs, shown on its own too); exact indexes of the evaluation sample (every item
both models embedded) searched by the test queries under the new model (new/new, the full-backfill
ceiling that gain retained divides by), the old (old/old on the sample, where flips and the
partial-backfill curve start) and the new through the layer (new->old on the sample, the share of that
ceiling the layer keeps); the least-confident backfill order's search of every sample item
against the others; and the partial-backfill curve's two score products per block of queries (new
against new, adapted against old), as plain float32 matrix products.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

EXACT_MAX = 200_000  # the report's default: exact search up to this gallery size, IVF beyond


def _load(old: Path, new: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(old gallery, old vectors of the sample, new vectors of the sample), rows normalised."""
    with np.load(new) as data:
        keys, new_rows = data["ids"], data["vectors"]
    with np.load(old) as data:
        gallery = data["vectors"]
        where = {k: i for i, k in enumerate(data["ids"].tolist())}
    rows = np.array([where[k] for k in keys.tolist()])
    out = [np.asarray(m, dtype=np.float32) for m in (gallery, gallery[rows], new_rows)]
    for m in out:  # in place, without a temporary of the matrix's size
        m /= np.sqrt(np.einsum("ij,ij->i", m, m))[:, None]
    return out[0], out[1], out[2]


def _index(gallery: np.ndarray) -> Any:
    """The index the report and validation build: exact inner product, or IVF (4·sqrt(N) lists)."""
    from embridge.core.evaluation.search import load_faiss

    faiss = load_faiss()  # torch's OpenMP first and the same thread count as the product
    n, dim = gallery.shape
    if n <= EXACT_MAX:
        index = faiss.IndexFlatIP(dim)
    else:
        nlist = max(1, min(int(round(4 * math.sqrt(n))), n // 39))
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.spherical = True
        train = gallery[np.sort(np.random.default_rng(0).choice(n, min(n, 50 * nlist), replace=False))]
        index.train(train)
        index.nprobe = min(32, nlist)  # faiss's wrapper keeps the quantizer alive with the index
    index.add(gallery)
    return index


def _timed(fn: Any, *args: Any) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def _closed_forms(new: np.ndarray, old: np.ndarray, shrinks: int) -> None:
    """Moments in one float64 pass, then every solve auto's closed forms make."""
    x, y = new.astype(np.float64), old.astype(np.float64)
    x -= x.mean(axis=0)
    y -= y.mean(axis=0)
    cross, gram_in, gram_out = x.T @ y, x.T @ x, y.T @ y
    np.linalg.svd(cross)
    e_in, v_in = np.linalg.eigh(gram_in)
    e_out, v_out = np.linalg.eigh(gram_out)
    for _ in range(shrinks):
        white = (v_in / np.sqrt(np.clip(e_in, 1e-12, None) + 1.0)) @ v_in.T
        u, _, vt = np.linalg.svd(white @ cross @ ((v_out / np.sqrt(np.clip(e_out, 1e-12, None) + 1.0)) @ v_out.T))
        _ = white @ u @ vt
    _ = v_in @ ((1.0 / (e_in + 1.0))[:, None] * (v_in.T @ cross))


def _bare_loop(kind: str, new: np.ndarray, old: np.ndarray, epochs: int, s: dict[str, Any]) -> float:
    """The same steps as the run's lowrank / mlp fit with nothing around them (see the module doc)."""
    import faiss
    import torch
    import torch.nn.functional as F
    from torch import nn

    torch.manual_seed(0)
    d_in, d_out = new.shape[1], old.shape[1]
    if kind == "lowrank":
        model: nn.Module = nn.Sequential(nn.Linear(d_in, int(s["rank"]), bias=False), nn.Linear(int(s["rank"]), d_out))
    else:
        hidden = int(s["hidden"])
        model = nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, d_out))
    x, bank = torch.as_tensor(new), torch.as_tensor(old)
    n, batch = len(x), min(int(s["batch_size"]), len(new))
    opt = torch.optim.AdamW(model.parameters(), lr=float(s["lr"]))
    hard_k, gen = int(s["hard_negatives"]), torch.Generator().manual_seed(0)
    hard = None
    start = time.perf_counter()
    for epoch in range(epochs):
        if hard_k and epoch % int(s["hard_every"]) == 0:
            with torch.no_grad():
                mapped = F.normalize(model(x), dim=1).numpy()
            index = faiss.IndexFlatIP(d_out)
            index.add(old)
            hard = torch.as_tensor(index.search(mapped, hard_k + 1)[1][:, 1:])
        for lo in range(0, n, batch):
            rows = torch.arange(lo, min(lo + batch, n))
            q = F.normalize(model(x[rows]), dim=1)
            sampled = bank[torch.randint(len(bank), (min(int(s["bank_size"]), len(bank)),), generator=gen)]
            parts = [q @ bank[rows].t(), q @ sampled.t()]
            if hard is not None:
                parts.append(torch.einsum("bd,bhd->bh", q, bank[hard[rows]]))
            loss = F.cross_entropy(torch.cat(parts, dim=1) / float(s["temperature"]), torch.arange(len(rows)))
            opt.zero_grad()
            loss.backward()
            opt.step()
    return time.perf_counter() - start


def _run_record(ws: Path, kind: str) -> dict[str, Any]:
    from embridge.core.store import Workspace

    run = Workspace.open(ws).latest_run(kind)
    if run is None:
        raise SystemExit(f"no completed {kind} run in {ws}")
    return run


def auto_floor(ws: Path, old: Path, new: Path) -> dict[str, Any]:
    """Seconds of the raw work of the latest ``auto`` run, with a breakdown (see the module doc)."""
    from embridge.core.train.config import allowed_settings

    run = _run_record(ws, "train")
    metrics, config = run.get("metrics") or {}, run.get("config") or {}
    pairs = config.get("pairs") or {}
    parts: dict[str, float] = {}
    start = time.perf_counter()
    gallery, old_s, new_s = _load(old, new)
    parts["read: the old gallery and the sample, normalised"] = time.perf_counter() - start
    n_train = min(int(pairs.get("train") or len(new_s)), len(new_s))
    n_dev = min(int(pairs.get("val") or 0) or 1000, 1000, len(new_s))
    n_test = min(int(metrics.get("n_queries") or 0) or n_dev, len(new_s))
    candidates = metrics.get("candidates") or []
    evaluations = 0
    for cand in candidates:
        kind, status = cand.get("kind"), cand.get("status")
        evaluations += int(cand.get("evaluations") or 0)
        if kind in ("lowrank", "mlp") and status not in ("skipped", None):
            s = {**allowed_settings(kind), **(config.get("settings") or {})}
            parts[f"{kind}: bare loop, {int(cand.get('epochs') or 0)} epochs"] = _bare_loop(
                kind, new_s[:n_train], old_s[:n_train], int(cand.get("epochs") or 0), s)
    if any(c.get("kind") in ("procrustes", "affine") and c.get("status") != "skipped" for c in candidates):
        shrinks = len(allowed_settings("procrustes")["shrink_grid"])
        parts["closed forms: one moments pass + solves"] = _timed(_closed_forms, new_s[:n_train], old_s[:n_train],
                                                                  shrinks)
    start = time.perf_counter()
    index = _index(gallery)
    parts["evaluation: index of the whole old gallery"] = time.perf_counter() - start
    dev = new_s[n_train:n_train + n_dev] if len(new_s) - n_train >= n_dev else new_s[:n_dev]
    start = time.perf_counter()
    for _ in range(evaluations):
        index.search(dev, 1)
    parts[f"evaluation: {evaluations} dev searches"] = time.perf_counter() - start
    test = new_s[-n_test:]
    import faiss

    start = time.perf_counter()
    index.search(old_s[-n_test:], 100)
    index.search(test, 100)
    for vectors, queries in ((new_s, test), (old_s, old_s[-n_test:]), (old_s, test)):
        sample_index = faiss.IndexFlatIP(vectors.shape[1])
        sample_index.add(vectors)
        sample_index.search(queries, 100)
    parts["held-out: old/old + new->old; on the evaluation sample new/new, old/old + new->old"] = \
        time.perf_counter() - start
    return {"seconds": sum(parts.values()), "parts": parts, "candidates": candidates}


def report_floor(ws: Path, old: Path, new: Path) -> dict[str, Any]:
    """Raw faiss on the report's index and queries (see the module doc)."""
    from embridge.core.report.build import latest_report_for_run
    from embridge.core.store import Workspace

    workspace = Workspace.open(ws)
    train = workspace.latest_run("train")
    report = latest_report_for_run(workspace, int(train["id"])) if train else None
    start = time.perf_counter()
    gallery, old_s, new_s = _load(old, new)
    read = time.perf_counter() - start
    depth = int((report.scoring if report else {}).get("ranking_depth") or 100)
    n_q = int((report.headline if report else {}).get("n_queries") or min(1000, len(new_s)))
    start = time.perf_counter()
    index = _index(gallery)
    build = time.perf_counter() - start
    start = time.perf_counter()
    index.search(old_s[-n_q:], depth)
    index.search(new_s[-n_q:], depth)
    searches = time.perf_counter() - start
    headline = {"read: the old gallery and the sample, normalised": read, "index of the whole old gallery": build,
                f"old/old + new->old: 2 x {n_q} queries, depth {depth}": searches}
    if len(gallery) > EXACT_MAX:  # the report states the approximate index's recall, measured against exact search
        from embridge.core.evaluation.search import recall_queries

        n_r = min(recall_queries(len(gallery)), n_q)
        headline[f"recall of the IVF index: exact score products of {n_r} queries, twice"] = _timed(
            _exact_twice, old_s[-n_r:], new_s[-n_r:], gallery, depth)
    sample = {f"evaluation sample ({len(new_s)} items): new/new, old/old + new->old, 3 x {n_q} queries": _timed(
                  _sample_cells, new_s, old_s, n_q, depth),
              f"least-confident order: {len(new_s)} sample items against the others": _timed(
                  _self_search, new_s, old_s),
              f"partial-backfill curve: 2 score products of {n_q} x {len(new_s)}": _timed(
                  _curve_products, new_s[-n_q:], new_s, old_s[-n_q:], old_s)}
    return {"seconds": sum(headline.values()) + sum(sample.values()), "parts": {**headline, **sample},
            "headline_seconds": sum(headline.values())}


def _exact_twice(old_q: np.ndarray, new_q: np.ndarray, gallery: np.ndarray, depth: int) -> None:
    """The score products of the exact reference searches of old/old's and new->old's recall checks,
    without selecting any top k: raw faiss (``faiss.knn``) takes about 8 s for 200 queries at k = 100
    over a million rows, several times the products, so the products alone are the floor."""
    block = 16_384
    for queries in (old_q, new_q):
        for start in range(0, len(gallery), block):
            _ = queries @ gallery[start:start + block].T


def _sample_cells(new_s: np.ndarray, old_s: np.ndarray, n_q: int, depth: int) -> None:
    """new/new, old/old and new->old on exact indexes of the evaluation sample (the raw layer's queries
    cost what the new ones do: the new queries stand in for them)."""
    import faiss

    for queries, vectors in ((new_s, new_s), (old_s, old_s), (new_s, old_s)):
        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(vectors)
        index.search(queries[-n_q:], depth)


def _self_search(new_s: np.ndarray, old_s: np.ndarray) -> None:
    """Every sample item's best other match (k = 2: its own row and the next)."""
    import faiss

    faiss.knn(new_s, old_s, 2, faiss.METRIC_INNER_PRODUCT)


def _curve_products(q_new: np.ndarray, g_new: np.ndarray, q_old: np.ndarray, g_old: np.ndarray) -> None:
    """The curve's score products, in blocks of the report's size (4M scores)."""
    block = max(1, 4_000_000 // max(len(g_new), 1))
    for start in range(0, len(q_new), block):
        _ = q_new[start:start + block] @ g_new.T, q_old[start:start + block] @ g_old.T
