"""``auto`` and the report spend their time where it pays: shared passes, shared indexes, early stops.

Counts of the expensive operations (passes over the pairs, index builds, old-gallery searches), not
timings: timing goals live in ``bench/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_train_bridges_workspace import build_judged_workspace
from train_fixtures import one_torch_thread, small_labelled_pairs  # noqa: F401 (autouse fixture)

import embridge.core.adapters.cascade as cascade_module
import embridge.core.evaluation.scoring as scoring
import embridge.core.train.data as train_data
from embridge.core.adapters.closed_form import procrustes
from embridge.core.adapters.linear import ProcrustesAdapter
from embridge.core.evaluation.upgrade import measure_upgrade
from embridge.core.store import Workspace
from embridge.core.train import PairData, fit_adapter
from embridge.core.train.bridges import choose_cascade
from embridge.core.train.runs import train_run


def _counting(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[int]:
    calls: list[int] = []
    real = getattr(module, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_closed_forms_and_trainable_starts_share_one_pass_over_the_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    data = small_labelled_pairs(3)
    passes = _counting(monkeypatch, train_data, "pair_moments")
    result = fit_adapter("auto", data, {"candidates": ["procrustes", "affine", "lowrank", "mlp"], "epochs": 2,
                                        "hidden": 16, "rank": 8, "device": "cpu"})
    assert len(passes) == 1  # procrustes + whitenings, the ridge path, both closed-form starts
    table = {c["kind"]: c for c in result.candidates}
    assert table["procrustes"]["evaluations"] == 6 and table["procrustes"]["epochs"] == 0  # plain + 5 whitenings
    assert table["affine"]["evaluations"] == 8  # one per ridge λ
    for kind in ("lowrank", "mlp"):  # the start, then one per trained epoch; each candidate's time recorded
        assert table[kind]["evaluations"] == table[kind]["epochs"] + 1 and table[kind]["duration_s"] > 0


def test_the_first_optimiser_is_built_before_any_candidates_clock_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch imports its compiler stack on the first AdamW (about 1 s): charged to the first trainable
    candidate, it skewed that candidate's recorded time and could spend a small --time-budget on set-up."""
    import torch

    import embridge.core.train.auto as auto

    events: list[str] = []
    real_adamw, real_fit = torch.optim.AdamW, auto._fit_candidate

    def adamw(*args: Any, **kwargs: Any) -> Any:
        events.append("optimiser")
        return real_adamw(*args, **kwargs)

    def fit(fit_one: Any, kind: str, *args: Any) -> Any:
        events.append(f"clock:{kind}")
        return real_fit(fit_one, kind, *args)

    monkeypatch.setattr(torch.optim, "AdamW", adamw)
    monkeypatch.setattr(auto, "_fit_candidate", fit)
    fit_adapter("auto", small_labelled_pairs(3), {"candidates": ["procrustes", "mlp"], "epochs": 1, "hidden": 16,
                                                  "device": "cpu"})
    assert events[0] == "optimiser" and events[1:3] == ["clock:procrustes", "clock:mlp"], events


def test_a_ridge_fit_on_its_own_leaves_out_the_target_gram_matrix(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only whitened Procrustes needs Tᵀ T: an affine fit alone does not pay for it, and a whitened fit
    after it on the same pairs computes the moments again with it."""
    data = small_labelled_pairs(3)
    asked: list[bool] = []
    real = train_data.pair_moments

    def recorded(*args: Any, **kwargs: Any) -> Any:
        asked.append(bool(kwargs.get("with_gram_out")))
        return real(*args, **kwargs)

    monkeypatch.setattr(train_data, "pair_moments", recorded)
    affine = fit_adapter("affine", data, {"device": "cpu"})
    assert asked == [False] and data.moments(gram_out=False).gram_out is None
    whitened = fit_adapter("procrustes", data, {"whiten": True, "device": "cpu"})
    assert asked == [False, True] and data.moments().gram_out is not None
    assert affine.best_val_metric is not None and whitened.best_val_metric is not None
    fit_adapter("affine", data, {"device": "cpu"})  # the richer moments serve the ridge path too
    assert asked == [False, True]


def test_candidates_after_one_at_the_metric_maximum_are_skipped_with_the_reason() -> None:
    """An exact rotation: Procrustes retrieves every validation item's own vector, so nothing later can
    win (a tie goes to the earlier candidate) and nothing later is fitted."""
    rng = np.random.default_rng(1)
    old = rng.standard_normal((300, 16)).astype(np.float32)
    new = old @ np.linalg.qr(rng.standard_normal((16, 16)))[0].astype(np.float32)
    data = PairData(old[:200], new[:200], old[200:], new[200:])
    result = fit_adapter("auto", data, {"candidates": ["procrustes", "affine", "lowrank", "mlp"], "epochs": 5,
                                        "hidden": 16, "rank": 8, "device": "cpu"})
    table = {c["kind"]: c for c in result.candidates}
    assert result.kind == "procrustes" and result.best_val_metric == 1.0
    for kind in ("affine", "lowrank", "mlp"):
        assert table[kind]["status"] == "skipped" and table[kind]["duration_s"] == 0.0
        assert "procrustes already scores 1.000" in table[kind]["reason"]
    # below the maximum every candidate is fitted and compared, as before
    noisy = PairData(old[:200], new[:200] + 0.8 * rng.standard_normal((200, 16)).astype(np.float32), old[200:],
                     new[200:] + 0.8 * rng.standard_normal((100, 16)).astype(np.float32))
    fitted = fit_adapter("auto", noisy, {"candidates": ["procrustes", "affine", "lowrank"], "epochs": 2,
                                         "rank": 8, "device": "cpu"})
    assert all(c["status"] != "skipped" for c in fitted.candidates)
    assert max(c["val_metric"] for c in fitted.candidates) < 1.0


def test_a_start_already_at_the_metric_maximum_trains_no_epoch_and_keeps_the_same_layer() -> None:
    rng = np.random.default_rng(0)
    old = rng.standard_normal((300, 16)).astype(np.float32)
    rotation = np.linalg.qr(rng.standard_normal((16, 16)))[0].astype(np.float32)
    new = old @ rotation  # an exact rotation: the closed-form start retrieves every item's own vector
    data = PairData(old[:200], new[:200], old[200:], new[200:])
    result = fit_adapter("lowrank", data, {"epochs": 30, "rank": 16, "device": "cpu"})
    assert result.best_val_metric == 1.0 and result.best_epoch == 0
    assert [m["epoch"] for m in result.metrics] == [0.0]  # the start's validation only
    assert "no epoch trained" in result.reason and "maximum" in result.reason


def test_choosing_a_cascade_k_searches_the_old_gallery_once() -> None:
    data = small_labelled_pairs(4)
    base = ProcrustesAdapter.from_solution(procrustes(data.new_train, data.old_train)).eval()
    calls: list[int] = []
    real = cascade_module.exact_topk

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(int(args[2]))
        return real(*args, **kwargs)

    cascade_module.exact_topk = counted
    try:
        choice = choose_cascade(base, data, [1, 3, 5, 10])
    finally:
        cascade_module.exact_topk = real
    assert calls == [10]  # the deepest K once; every smaller K re-ranks a prefix of it
    by_k = {int(m["k"]): m["val_metric"] for m in choice.metrics}
    assert set(by_k) == {1, 3, 5, 10} and 0.0 <= min(by_k.values())


@pytest.fixture(scope="module")
def ws_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_judged_workspace(tmp_path_factory.mktemp("cost") / "ws")


def test_one_old_gallery_index_serves_validation_and_the_held_out_cells(
        ws_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    builds = _counting(monkeypatch, scoring, "build_index")
    with Workspace.open(ws_path) as ws:
        run = train_run(ws, "auto", device="cpu", config={"candidates": ["procrustes", "affine"]})
        # validation of every candidate and the held-out old/old and new->old cells: one index of the
        # whole old gallery; new/new searches the evaluation sample (its own index)
        assert len(builds) == 2
        adapter = fit_adapter("affine", PairData(*[np.asarray(a) for a in _pairs(ws)]), {"device": "cpu"}).adapter
        builds.clear()
        again = measure_upgrade(ws, adapter, "old", "new")
        assert len(builds) == 2  # old/old and new->old share the old gallery's index
    assert 0.0 <= run["upgraded_top1"] <= 1.0 and again.cells["old/old"].metrics["top1"] == run["old_old_top1"]


def _pairs(ws: Workspace) -> tuple[np.ndarray, ...]:
    ids = np.intersect1d(ws.ids_with_vectors("old"), ws.ids_with_vectors("new"))
    old, new = ws.vectors_for("old", ids), ws.vectors_for("new", ids)
    half = len(ids) // 2
    return old[:half], new[:half], old[half:], new[half:]
