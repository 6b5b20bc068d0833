"""The synthetic generators: seeded, with the structure the compatibility tests rely on."""

from __future__ import annotations

import numpy as np

from embridge.core.retrieval import top1_accuracy
from embridge.core.synthetic import affine_pair, class_structured_pair, random_semi_orthogonal, rotation_pair


def _loo_top1(x: np.ndarray, labels: np.ndarray) -> float:
    return top1_accuracy(x, x, labels, labels, exclude=np.arange(len(x)))


def test_same_seed_same_data_other_seed_other_data() -> None:
    a = class_structured_pair(300, 6, 16, 24, 3, seed=5)
    b = class_structured_pair(300, 6, 16, 24, 3, seed=5)
    c = class_structured_pair(300, 6, 16, 24, 3, seed=6)
    assert np.array_equal(a.old, b.old) and np.array_equal(a.new, b.new) and np.array_equal(a.labels, b.labels)
    assert not np.allclose(a.old, c.old)


def test_semi_orthogonal_both_shapes() -> None:
    rng = np.random.default_rng(0)
    tall = random_semi_orthogonal(12, 5, rng)
    wide = random_semi_orthogonal(5, 12, rng)
    assert np.allclose(tall.T @ tall, np.eye(5), atol=1e-10)
    assert np.allclose(wide @ wide.T, np.eye(5), atol=1e-10)


def test_rotation_and_affine_pairs_follow_their_truth() -> None:
    rot = rotation_pair(500, 20, 12, noise=0.0, seed=1)
    assert np.allclose(rot.new @ rot.truth["W"], rot.old, atol=1e-5)
    aff = affine_pair(500, 10, 7, noise=0.0, seed=1)
    assert np.allclose(aff.new @ aff.truth["A"] + aff.truth["c"], aff.old, atol=1e-4)


def test_class_structure_old_model_knows_only_seen_classes() -> None:
    pair = class_structured_pair(1200, 12, 32, 48, 6, seed=0)
    y = pair.labels
    assert pair.old.dtype == np.float32 and pair.old.shape == (1200, 32) and pair.new.shape == (1200, 48)
    assert np.allclose(np.linalg.norm(pair.new, axis=1), 1.0, atol=1e-5)
    seen = y < 6
    old_seen = _loo_top1(pair.old[seen], y[seen])
    old_unseen = _loo_top1(pair.old[~seen], y[~seen])
    new_unseen = _loo_top1(pair.new[~seen], y[~seen])
    # measured: old on seen 0.94, old on unseen 0.62, new on unseen 0.995
    assert old_seen > 0.85
    assert old_unseen < old_seen - 0.2
    assert new_unseen > old_unseen + 0.25
    # a shared mean (anisotropy): the average vector is far from zero in both spaces (measured ~0.5)
    assert np.linalg.norm(pair.old.mean(axis=0)) > 0.3 and np.linalg.norm(pair.new.mean(axis=0)) > 0.3


def test_splits_are_disjoint_and_cover_everything() -> None:
    pair = class_structured_pair(101, 4, 8, 8, 2, seed=0)
    parts = pair.splits((0.6, 0.2, 0.2), seed=3)
    assert [len(p) for p in parts] == [61, 20, 20]
    rows = np.concatenate([p.old for p in parts])
    assert len(np.unique(rows, axis=0)) == 101
