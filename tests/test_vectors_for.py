"""Gathering a model's vectors: the newest set wins, in the requested order, however the ids come."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embridge.core.errors import StoreError
from embridge.core.store import Workspace


def test_gathers_match_a_dictionary_for_runs_gaps_repeats_and_unsorted_sets(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    ws = Workspace.create(tmp_path / "ws")
    ids = ws.add_items([{"key": f"k{i}", "split": "gallery"} for i in range(500)])
    ws.add_model("m", "old", {"name": "m", "kind": "vectors", "dim": 4, "sha256": "0" * 64}, None)
    first = rng.standard_normal((500, 4)).astype(np.float32)
    ws.add_vector_set("m", ids, first)  # every item, ascending
    newer_ids = rng.permutation(ids)[:120]  # some items again, in no order
    newer = rng.standard_normal((120, 4)).astype(np.float32)
    ws.add_vector_set("m", newer_ids, newer)
    truth = {int(i): v for i, v in zip(ids, first, strict=True)}
    truth.update({int(i): v for i, v in zip(newer_ids, newer, strict=True)})
    requests = [ids, ids[100:300], ids[::7], ids[::-1], np.concatenate([ids[5:9], ids[5:9], ids[400:402]]),
                rng.permutation(ids)[:50]]
    for want in requests:
        np.testing.assert_array_equal(ws.vectors_for("m", want), np.stack([truth[int(i)] for i in want]))
    with pytest.raises(StoreError, match="1 of 3 requested items have no vectors"):
        ws.vectors_for("m", [ids[0], ids[1], int(ids[-1]) + 1000])
    ws.close()
