"""Batches of texts that pad little and hold a bounded number of padded positions.

Texts are taken longest first, so each batch pads to a similar length. A batch also holds at most
``batch_size x ROW_BUDGET`` padded positions: a model that reads very long inputs (a word-embedding
sentence-transformers model reads a million tokens, a long-context encoder 8,192) would otherwise
pad one enormous document's batch-mates to its length, costing memory in proportion to the batch
size times the longest text (256 short texts beside one 60,000-word document held 4.6 GB). Texts
of up to ``ROW_BUDGET`` each fill batches of ``batch_size`` as before.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

TOKEN_BUDGET = 512  # positions a row may pad to when counted in tokens (a 512-token encoder's limit)
CHARS_A_TOKEN = 4  # about four characters a token in prose
CHAR_BUDGET = CHARS_A_TOKEN * TOKEN_BUDGET  # the same counted in characters


def char_lengths(texts: Sequence[str], prompt: str, max_tokens: int) -> list[int]:
    """Each text's length in characters as a batch of a model reading ``max_tokens`` pads it: a text
    longer than the model reads counts as the model's limit, so a 512-token model's long documents
    still fill whole batches (its tokenizer cuts them there)."""
    cap = CHARS_A_TOKEN * max(int(max_tokens), 1)
    return [min(len(prompt) + len(text), cap) for text in texts]


def length_order(lengths: Sequence[int]) -> np.ndarray:
    """Indices longest first (stable), so each batch pads to a similar length."""
    return np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")


def length_batches(lengths: Sequence[int], batch_size: int, row_budget: int) -> Iterator[np.ndarray]:
    """Index arrays, longest texts first: each at most ``batch_size`` long and, beyond one text, at
    most ``batch_size * row_budget`` positions once padded to its first (longest) text."""
    sizes = np.asarray(lengths, dtype=np.int64)
    order = length_order(sizes)
    budget = max(int(batch_size), 1) * max(int(row_budget), 1)
    start = 0
    while start < len(order):
        longest = max(int(sizes[order[start]]), 1)
        count = min(max(int(batch_size), 1), max(budget // longest, 1))
        yield order[start:start + count]
        start += count
