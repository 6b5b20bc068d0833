"""Text batches pad little and hold a bounded number of positions: one enormous document among short
ones is not padded to by its batch-mates (a word-embedding model reads a million tokens, and 256 short
texts beside a 60,000-word document held 4.6 GB)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embridge.core.demo_text import save_encoder, whitespace_tokenizer
from embridge.core.models.text import open_sentence_transformer
from embridge.core.models.text_batches import CHAR_BUDGET, length_batches

VOCAB = ["cat", "dog", "fish", "mat", "sat", "ran", "blue", "red"]


@pytest.mark.parametrize("seed", range(5))
def test_batches_cover_every_text_once_within_size_and_budget(seed: int) -> None:
    rng = np.random.default_rng(seed)
    lengths = np.concatenate([rng.integers(1, 50, 300), rng.integers(1_000, 100_000, 7)])
    rng.shuffle(lengths)
    batches = list(length_batches(lengths.tolist(), batch_size=32, row_budget=64))
    seen = np.concatenate(batches)
    assert sorted(seen.tolist()) == list(range(len(lengths)))
    for batch in batches:
        longest = int(lengths[batch].max())
        assert 1 <= len(batch) <= 32
        assert len(batch) == 1 or len(batch) * longest <= 32 * 64
        assert longest == lengths[batch[0]]  # longest first: the batch pads to its first text
    assert all(len(b) == 32 for b in batches[-9:-1])  # short texts still fill whole batches


def test_texts_within_the_budget_batch_as_before() -> None:
    batches = list(length_batches([5, 9, 1, 7, 3], batch_size=2, row_budget=10))
    assert [b.tolist() for b in batches] == [[1, 3], [0, 4], [2]]


def test_a_huge_document_is_not_padded_to_by_its_batch_mates(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    folder = save_encoder(tmp_path / "bow", whitespace_tokenizer(VOCAB),
                          rng.standard_normal((len(VOCAB), 8)).astype(np.float32), "")
    encoder = open_sentence_transformer(folder, "cpu")
    texts = [" ".join(rng.choice(VOCAB, size=int(n))) for n in rng.integers(2, 12, 40)]
    texts.insert(7, " ".join(rng.choice(VOCAB, size=20_000)))  # about 80,000 characters
    seen: list[tuple[int, int]] = []
    encode = encoder.model.encode

    def recording(batch: list[str], **kwargs: Any) -> Any:
        seen.append((len(batch), max(len(t) for t in batch)))
        return encode(batch, **kwargs)

    encoder.model.encode = recording
    rows = encoder.embed_texts(texts, "", batch_size=16)
    assert all(count == 1 or count * longest <= 16 * CHAR_BUDGET for count, longest in seen), seen
    assert seen[0][0] == 1  # the document alone, not with 15 short texts padded to its length
    alone = np.stack([encode([t], convert_to_numpy=True, normalize_embeddings=False)[0] for t in texts])
    np.testing.assert_allclose(rows, alone, atol=1e-6)


def test_documents_longer_than_the_model_reads_still_fill_whole_batches(tmp_path: Path) -> None:
    """A model cutting texts at 128 tokens pads no batch beyond 128 tokens a text, so long documents
    batch as many at a time as short ones (a smaller batch would only be slower)."""
    rng = np.random.default_rng(1)
    folder = save_encoder(tmp_path / "bow", whitespace_tokenizer(VOCAB),
                          rng.standard_normal((len(VOCAB), 8)).astype(np.float32), "")
    encoder = open_sentence_transformer(folder, "cpu")
    encoder.model.max_seq_length = 128
    texts = [" ".join(rng.choice(VOCAB, size=3_000)) for _ in range(40)]  # about 12,000 characters each
    seen: list[int] = []
    encode = encoder.model.encode

    def recording(batch: list[str], **kwargs: Any) -> Any:
        seen.append(len(batch))
        return encode(batch, **kwargs)

    encoder.model.encode = recording
    encoder.embed_texts(texts, "", batch_size=16)
    assert seen == [16, 16, 8]
