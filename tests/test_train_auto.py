"""``auto`` fits what the data allows, keeps the best on validation and says why."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from train_fixtures import one_torch_thread, small_labelled_pairs  # noqa: F401 (autouse fixture)

from embridge.core.adapters import METHODS
from embridge.core.train import PairData, fit_adapter


@pytest.fixture(scope="module")
def data() -> PairData:
    return small_labelled_pairs(2)


def test_auto_with_labels_picks_the_best_validation_score(data: PairData) -> None:
    progress: list[tuple[int, int, dict[str, Any]]] = []
    result = fit_adapter("auto", data, {"candidates": ["procrustes", "affine", "bct"], "epochs": 4,
                                        "hidden": 32, "device": "cpu"},
                         on_progress=lambda d, t, i: progress.append((d, t, i)))
    table = {c["kind"]: c for c in result.candidates}
    assert set(table) == {"procrustes", "affine", "bct"}
    assert all(c["status"] == "completed" and 0.0 < c["val_metric"] <= 1.0 for c in table.values())
    best = max(table.values(), key=lambda c: c["val_metric"])
    assert result.status == "completed" and result.kind == best["kind"] == result.adapter.kind
    assert result.best_val_metric == best["val_metric"]
    assert result.reason.startswith(f"{best['kind']} won with validation top-1 {best['val_metric']:.3f}")
    assert "labelled validation items" in result.reason and result.choice["decided"]
    assert "ahead of" in result.reason
    done = [d for d, _, _ in progress]
    assert done == sorted(done) and progress[-1][0] == progress[-1][1] == 3000
    assert {i["candidate"] for _, _, i in progress} == {"procrustes", "affine", "bct"}


def test_auto_without_labels_skips_classifier_kinds(data: PairData) -> None:
    unlabelled = PairData(data.old_train, data.new_train, data.old_val, data.new_val)
    result = fit_adapter("auto", unlabelled, {"candidates": ["procrustes", "affine", "bt2", "bct"], "device": "cpu"})
    skipped = [c["kind"] for c in result.candidates if c["status"] == "skipped"]
    assert skipped == ["bct", "bt2"] and all(METHODS[k].needs_labels for k in skipped)
    assert result.kind in ("procrustes", "affine") and result.val_metric_name == "pair_top1"
    assert "relevance: the query's own item" in result.reason


def test_auto_says_no_choice_was_made_when_every_candidate_scores_the_same(data: PairData) -> None:
    """Leave-one-out by label where every label occurs once measures nothing: no winner is named."""
    once = np.arange(len(data.old_val), dtype=np.int64)  # each validation label occurs once
    tied = PairData(data.old_train, data.new_train, data.old_val, data.new_val, data.labels_train, once)
    result = fit_adapter("auto", tied, {"candidates": ["affine", "procrustes"], "device": "cpu"})
    # the default: the cheapest candidate, which runs first whatever order the settings list
    assert result.choice["decided"] is False and result.kind == "procrustes"
    assert result.reason.startswith("no choice was made: no validation query has a relevant item")
    assert "won" not in result.reason


def test_auto_cancelled_keeps_what_finished(data: PairData) -> None:
    seen: list[str] = []

    def stop() -> bool:
        return len(seen) > 3

    result = fit_adapter("auto", data, {"candidates": ["procrustes", "lowrank", "mlp"], "epochs": 5, "device": "cpu"},
                         on_progress=lambda d, t, i: seen.append(i["candidate"]), should_stop=stop)
    assert result.status == "cancelled"
    assert [c["kind"] for c in result.candidates] == ["procrustes", "lowrank"]
    assert result.adapter is not None and result.reason.startswith("cancelled by the user during candidate ")
    assert "the best of the candidates tried so far: " in result.reason


def test_a_candidate_that_raises_is_its_own_failed_row_and_the_others_are_still_compared(data: PairData) -> None:
    """One candidate raising threw away every candidate fitted before it (exit 3 after minutes of fits)."""

    def fit_one(kind: str, *args: Any, **kwargs: Any) -> Any:
        if kind == "affine":
            raise ValueError("a head too narrow for the old space")
        return fit_adapter(kind, *args, **kwargs)

    from embridge.core.train import auto, fit

    settings = {"candidates": ["procrustes", "affine"], "device": "cpu"}
    _, resolved = fit.resolve_config("auto", settings)
    result = auto.fit_auto(data, resolved, settings, lambda *a: None, lambda: False, fit_one, fit._val)
    rows = {c["kind"]: c for c in result.candidates}
    assert rows["affine"]["status"] == "failed" and rows["procrustes"]["status"] == "completed"
    assert rows["affine"]["reason"] == "ValueError: a head too narrow for the old space"
    assert result.status == "completed" and result.kind == "procrustes" and result.adapter is not None

    def always(kind: str, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"{kind} broke")

    failed = auto.fit_auto(data, resolved, settings, lambda *a: None, lambda: False, always, fit._val)
    assert failed.status == "failed" and failed.adapter is None
    assert failed.reason == ("every candidate failed (procrustes: RuntimeError: procrustes broke; "
                             "affine: RuntimeError: affine broke)")
