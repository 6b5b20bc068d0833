"""Retrieval-objective training, fusion and cascade on a query/document upgrade like a real text one.

The synthetic task (``embridge.core.synthetic.query_document_task``): queries and documents are embedded
differently by each model, both spaces share a large mean, the new model is better on queries,
each query has one relevant document, and the new model has embedded 60% of the documents. The
margins below were chosen from runs over seeds 0-4 (see each test).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from retrieval_fixtures import QueryUpgrade, query_upgrade
from train_fixtures import one_torch_thread  # noqa: F401 (autouse fixture)

from embridge.core.adapters.adapt_arrays import adapt_queries
from embridge.core.adapters.adapter import Adapter
from embridge.core.adapters.cascade import CascadeAdapter, cascade_rank, choose_k
from embridge.core.errors import InputError
from embridge.core.train import PairData, fit_adapter
from embridge.core.train.bridges import choose_fusion
from embridge.core.train.losses import retrieval_loss
from embridge.core.train.objectives import RetrievalObjective

EPOCHS = {"device": "cpu", "epochs": 30}


@pytest.fixture(scope="module")
def up() -> QueryUpgrade:
    return query_upgrade(0)


def _test_score(up: QueryUpgrade, adapter: Adapter) -> float:
    if isinstance(adapter, CascadeAdapter):
        return up.test.cascade_score(int(adapter.k), lambda x: adapt_queries(adapter.base, x), adapter.new_vectors)
    return up.test.score_queries(adapt_queries(adapter, up.test.new_queries, up.test.old_queries))


def test_task_looks_like_the_real_upgrade(up: QueryUpgrade) -> None:
    old_old, new_new = up.test.old_old(), up.test_full.new_new()
    assert new_new is not None and new_new > old_old + 0.15  # the new model is clearly better on queries
    assert up.test.new_new() is None  # 60% of the documents only: no full backfill to measure there


def test_retrieval_objective_beats_mse_on_test_queries(up: QueryUpgrade) -> None:
    # documents only (seeds 0-4: retrieval - mse = 0.086, 0.114, 0.088, 0.086, 0.078)
    mse = fit_adapter("mlp", up.docs_only, {**EPOCHS, "loss": "mse"})
    ret = fit_adapter("mlp", up.docs_only, EPOCHS)
    assert ret.config["loss"] == "retrieval" and ret.val_metric_name == "judged_top1"
    assert _test_score(up, ret.adapter) >= _test_score(up, mse.adapter) + 0.05


def test_query_pairs_train_the_query_side(up: QueryUpgrade) -> None:
    # train queries paired with their relevant document (seeds 0, 3, 4: +0.18 to +0.24 over mse)
    mse = fit_adapter("lowrank", up.with_queries, {**EPOCHS, "loss": "mse"})
    ret = fit_adapter("lowrank", up.with_queries, EPOCHS)
    old_old = up.test.old_old()
    assert _test_score(up, ret.adapter) >= _test_score(up, mse.adapter) + 0.1
    assert _test_score(up, ret.adapter) > old_old + 0.2


def test_fusion_passes_where_the_map_alone_fails(up: QueryUpgrade) -> None:
    result = fit_adapter("fusion", up.docs_only, {**EPOCHS, "base": "mlp", "loss": "mse"})
    alpha = float(result.adapter.alpha)
    old_old = up.test.old_old()
    assert _test_score(up, result.adapter.base) < old_old  # the map alone makes search worse (0.10 vs 0.18)
    assert 0.0 < alpha < 1.0 and f"α = {alpha:g}" in result.reason and "dev queries" in result.reason
    assert _test_score(up, result.adapter) > old_old + 0.05  # fused: 0.30


def test_fusion_that_adds_nothing_says_so(up: QueryUpgrade) -> None:
    d = up.docs_only
    noise = np.random.default_rng(1).standard_normal(up.dev.new_queries.shape).astype(np.float32)
    useless = PairData(d.old_train, d.new_train, d.old_val, d.new_val, gallery_old=d.gallery_old,
                       dev=type(up.dev)(up.dev.old_queries, noise, up.dev.old_gallery, up.dev.relevant))
    base = fit_adapter("affine", useless, EPOCHS).adapter
    choice = choose_fusion(base, useless, [0.0, 0.5, 1.0])
    assert choice.adds_nothing and choice.setting["alpha"] == 1.0
    assert choice.note.startswith("α = 1: fusion adds nothing here") and "not a fusion layer" in choice.note
    assert choice.score == pytest.approx(useless.dev.old_old())
    result = fit_adapter("auto", useless, {**EPOCHS, "candidates": ["affine", "fusion"]})
    rows = {c["kind"]: c for c in result.candidates}
    assert rows["fusion"]["status"] == "no gain" and result.kind == "affine"


def test_fusion_whose_old_query_adds_nothing_says_it_is_the_base_layer(up: QueryUpgrade) -> None:
    """Old query vectors that are noise: α = 0 wins, and the run says the fusion scores as its base layer
    alone (which serves with one encoder) rather than describing a fusion of two encoders."""
    d = up.docs_only
    noise = np.random.default_rng(2).standard_normal(up.dev.old_queries.shape).astype(np.float32)
    blind = PairData(d.old_train, d.new_train, d.old_val, d.new_val, gallery_old=d.gallery_old,
                     dev=type(up.dev)(noise, up.dev.new_queries, up.dev.old_gallery, up.dev.relevant))
    base = fit_adapter("affine", blind, EPOCHS).adapter
    choice = choose_fusion(base, blind, [0.0, 0.5, 1.0])
    assert choice.setting["alpha"] == 0.0 and not choice.adds_nothing
    assert choice.note.startswith("α = 0: the old query adds nothing here") and "affine layer alone" in choice.note
    assert choice.score == pytest.approx(float(blind.validation().value(base)))


def test_cascade_beats_old_old_where_the_sample_has_new_vectors(up: QueryUpgrade) -> None:
    result = fit_adapter("cascade", up.docs_only, {**EPOCHS, "base": "affine"})
    k = int(result.adapter.k)
    assert result.kind == "cascade" and k in (5, 10, 20, 50, 100) and f"K = {k}" in result.reason
    assert result.adapter.config()["k"] == k
    assert _test_score(up, result.adapter) > up.test.old_old() + 0.03  # 0.24 vs 0.18


def test_auto_considers_fusion_and_cascade_and_picks_a_passing_option(up: QueryUpgrade) -> None:
    result = fit_adapter("auto", up.docs_only, {**EPOCHS, "candidates": ["procrustes", "affine", "mlp", "fusion",
                                                                          "cascade"]})
    rows = {c["kind"]: c for c in result.candidates}
    assert set(rows) == {"procrustes", "affine", "mlp", "fusion", "cascade"}
    assert all(r["status"] == "completed" and r["val_metric"] is not None and r["duration_s"] >= 0
               for r in rows.values())
    assert 0 < rows["fusion"]["alpha"] < 1 and rows["cascade"]["k"] >= 1
    best = max(rows.values(), key=lambda r: r["val_metric"])
    assert result.kind == best["kind"] and result.best_val_metric == best["val_metric"]
    assert "dev queries (judged)" in result.reason and "(old/old) scores" in result.reason
    assert _test_score(up, result.adapter) > up.test.old_old() + 0.1  # fusion: 0.42 vs 0.18


def test_auto_scores_its_cascade_without_stored_new_vectors(up: QueryUpgrade) -> None:
    """The layers auto compares search the old gallery alone; a cascade re-ranking by stored new vectors
    would be scored as a (partial) backfill beside them, so auto's cascade re-ranks through its layer."""
    data = up.docs_only
    validator = data.validation()
    assert validator.has_new_gallery and 0 < validator.new_gallery_share < 1  # 60% of the documents embedded
    own = fit_adapter("cascade", data, {**EPOCHS, "base": "affine", "rerank_new_vectors": False})
    k, base = int(own.adapter.k), own.adapter.base
    assert own.adapter.config()["new_vectors"] is False and "nothing re-embedded" in own.reason
    layer_only, with_new = validator.cascade_value(base, k, False), validator.cascade_value(base, k, True)
    assert own.best_val_metric == pytest.approx(layer_only)
    assert with_new > layer_only + 0.02  # measured: the stored new vectors are worth a lot here
    stored = fit_adapter("cascade", data, {**EPOCHS, "base": "affine"})  # an explicit cascade keeps using them
    assert stored.adapter.new_vectors and "by its new vectors" in stored.reason
    result = fit_adapter("auto", data, {**EPOCHS, "candidates": ["affine", "cascade"]})
    row = {c["kind"]: c for c in result.candidates}["cascade"]
    assert row["k"] == int(row["k"]) and "no new vector of the gallery is used" in row["reason"]
    assert row["val_metric"] == pytest.approx(validator.cascade_value(base, int(row["k"]), False))
    assert result.kind != "cascade" or result.adapter.new_vectors is False


def test_cascade_without_dev_queries_is_refused(up: QueryUpgrade) -> None:
    d = up.docs_only
    plain = PairData(d.old_train, d.new_train, d.old_val, d.new_val)
    with pytest.raises(InputError, match="dev queries"):
        fit_adapter("cascade", plain, EPOCHS)
    result = fit_adapter("auto", plain, {**EPOCHS, "candidates": ["affine", "fusion", "cascade"]})
    rows = {c["kind"]: c for c in result.candidates}
    assert rows["cascade"]["status"] == rows["fusion"]["status"] == "skipped" and result.kind == "affine"


def test_cascade_rank_re_ranks_the_old_top_k() -> None:
    old_gallery = np.eye(4, dtype=np.float32)
    old_q = np.array([[1.0, 0.9, 0.8, 0.0]], dtype=np.float32)  # old recall order: 0, 1, 2, 3
    new_gallery = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)  # new vectors of rows 2 and 0
    new_q = np.array([[0.6, 0.8]], dtype=np.float32)
    ranking = cascade_rank(old_q, old_gallery, new_q, new_gallery, np.array([2, 0]), 3,
                           layer=lambda x: np.array([[0.0, 1.0, 0.0, 0.0]], dtype=np.float32))
    # row 0 (new) scores 0.8, row 1 (through the layer) 1.0, row 2 (new) 0.6; row 3 was not recalled
    assert ranking.ids.tolist() == [[1, 0, 2]]
    assert np.allclose(ranking.scores, [[1.0, 0.8, 0.6]])
    with pytest.raises(ValueError, match="no layer"):
        cascade_rank(old_q, old_gallery, new_q, new_gallery, np.array([2, 0]), 3)
    assert choose_k({5: 0.3, 10: 0.4, 20: 0.4}.__getitem__, [20, 5, 10]).k == 10


def test_retrieval_loss_masks_the_positive_among_negatives() -> None:
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    pos_ids = torch.tensor([0, 1])
    bank = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    with_bank = retrieval_loss(q, bank[pos_ids], pos_ids, [(bank, torch.arange(3))], 0.1)
    # columns: in-batch positives 0, 1, then bank rows 0, 1, 2; a query's own row in the bank is masked
    inf = float("inf")
    logits = torch.tensor([[1.0, 0.0, -inf, 0.0, -1.0], [0.0, 1.0, 0.0, -inf, 0.0]]) / 0.1
    expected = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1]))
    assert with_bank.item() == pytest.approx(expected.item(), rel=1e-5)
    hard = torch.tensor([[0, 2], [2, 2]])  # per-query hard negatives: row 0's own positive is masked
    per_query = retrieval_loss(q, bank[pos_ids], pos_ids, [(bank[hard], hard)], 0.1)
    logits = torch.tensor([[1.0, 0.0, -inf, -1.0], [0.0, 1.0, 0.0, 0.0]]) / 0.1
    expected = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1]))
    assert per_query.item() == pytest.approx(expected.item(), rel=1e-5)


def test_hard_negatives_are_wrong_top_scoring_rows() -> None:
    rng = np.random.default_rng(0)
    bank = rng.standard_normal((50, 8)).astype(np.float32)
    objective = RetrievalObjective(bank, 0.05, 16, 4, 2)
    identity = torch.nn.Identity()
    data = {"new": torch.as_tensor(bank[:10]), "pos": torch.arange(10)}
    objective.start_epoch(identity, 1, data)  # type: ignore[arg-type]
    assert objective.hard is not None and objective.hard.shape == (10, 4)
    assert not (objective.hard == torch.arange(10)[:, None]).any()  # never the row's own positive
    scores = torch.nn.functional.normalize(torch.as_tensor(bank[:10]), dim=1) @ objective.bank.t()
    scores[torch.arange(10), torch.arange(10)] = -9
    assert torch.equal(objective.hard[:, 0], scores.argmax(dim=1))
    before = objective.hard.clone()
    objective.start_epoch(identity, 2, {"new": torch.as_tensor(bank[10:20]), "pos": torch.arange(10, 20)})
    assert torch.equal(objective.hard, before)  # refreshed every 2 epochs only


@pytest.mark.parametrize("setting", [{"bank_size": -1}, {"hard_every": 0}, {"loss": "triplet"}])
def test_bad_retrieval_settings_name_the_setting(up: QueryUpgrade, setting: dict) -> None:
    key = next(iter(setting))
    with pytest.raises(InputError, match=key):
        fit_adapter("mlp", up.docs_only, {**EPOCHS, **setting})


def test_hard_negatives_among_a_large_bank_are_mined_by_an_approximate_search(monkeypatch) -> None:
    """Mining searched every training row against the whole bank exactly, growing with the square of the
    data: a 200k-item lowrank fit spent 74 s of its first epoch there, past any --time-budget."""
    import embridge.core.train.objectives as objectives
    from embridge.core.retrieval import exact_topk

    rng = np.random.default_rng(6)
    centres = rng.standard_normal((40, 32)).astype(np.float32)
    bank = centres[rng.integers(0, 40, 8000)] + 0.5 * rng.standard_normal((8000, 32)).astype(np.float32)
    bank /= np.linalg.norm(bank, axis=1, keepdims=True)
    queries = bank[:2000] + 0.2 * rng.standard_normal((2000, 32)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    exact = exact_topk(queries, bank, 6)[0]
    assert np.array_equal(objectives.mine(queries, bank, 6), exact)  # a bank under the threshold: exact
    calls: list[str] = []
    real = objectives.search
    monkeypatch.setattr(objectives, "search", lambda *a, config, **k: calls.append(config.method) or real(*a, config=config, **k))
    monkeypatch.setattr(objectives, "MINING_EXACT_MAX", 1000)
    approx = objectives.mine(queries, bank, 6)
    assert calls == ["ivf"] and approx.shape == exact.shape
    shared = np.mean([np.intersect1d(a, e).size / 6 for a, e in zip(approx, exact, strict=True)])
    assert shared > 0.95, shared  # nearly the same hard negatives
