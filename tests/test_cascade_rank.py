"""The cascade's re-ranking on galleries so small that its K recalls every row, with only some queries
excluding their own item: an empty recall slot must stay empty, not stand for the gallery's last row."""

from __future__ import annotations

import numpy as np

from embridge.core.adapters.cascade import cascade_rank
from embridge.core.retrieval import l2_normalize


def test_an_empty_recall_slot_is_not_read_as_the_last_gallery_row() -> None:
    rng = np.random.default_rng(5)
    old_gallery = l2_normalize(rng.standard_normal((6, 4)).astype(np.float32))
    new_gallery = l2_normalize(rng.standard_normal((6, 5)).astype(np.float32))
    old_queries, new_queries = old_gallery[:2].copy(), new_gallery[:2].copy()
    ranking = cascade_rank(old_queries, old_gallery, new_queries, new_gallery, None, 10,
                           exclude=np.array([0, -1]))
    ids, scores = ranking.ids, ranking.scores
    assert sorted(ids[1].tolist()) == list(range(6))  # the query that excludes nothing ranks all six
    assert ids[0, -1] == -1 and scores[0, -1] == -np.inf  # the other ranks five, its sixth slot empty
    assert sorted(ids[0, :5].tolist()) == [1, 2, 3, 4, 5]
    for row in (0, 1):  # re-ranked by the new query's cosine with each recalled item's new vector
        kept = ids[row][ids[row] >= 0]
        assert np.allclose(scores[row][: len(kept)], new_gallery[kept] @ new_queries[row], atol=1e-6)
