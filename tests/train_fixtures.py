"""Shared pieces of the adapter and training tests (``from train_fixtures import ...``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from embridge.core.synthetic import class_structured_pair
from embridge.core.train import PairData


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """These problems are tiny: one thread avoids thread overhead on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def small_labelled_pairs(seed: int) -> PairData:
    """800 class-structured pairs (8 classes, old 16-d seeing 4 of them, new 24-d), split 75/25."""
    pair = class_structured_pair(800, 8, 16, 24, 4, seed=seed)
    tr, va = pair.splits((0.75, 0.25), seed=0)
    return PairData(tr.old, tr.new, va.old, va.new, tr.labels, va.labels)
