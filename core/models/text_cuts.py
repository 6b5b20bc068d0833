"""Texts as a model reads them: a prompt in front, and an enormous text cut before it is tokenized.

The cut is by non-space characters, far beyond any token's length, so it never changes what a model
reads except to spare tokenizing pages no model sees (see :func:`clipped`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence


def prompted(texts: Sequence[str], prompt: str) -> list[str]:
    return [prompt + t for t in texts] if prompt else list(texts)


CHARS_PER_TOKEN = 64  # non-space characters: far more than any real token holds
_NON_SPACE = re.compile(r"\S+")


def clipped(texts: Sequence[str], tokens: int) -> list[str]:
    """Each text cut after ``CHARS_PER_TOKEN`` non-space characters per token the model reads, before
    tokenizing.

    Tokenizers split a whole text before truncating it to the model's limit, so one enormous document
    (a log, a dump) would cost memory in proportion to its length for tokens the model never sees.
    Whitespace is not counted (tokenizers drop it, and a text may open with pages of it), so the cut
    keeps every token the model reads unless its first tokens average more than 64 non-space
    characters each (words that long are one unknown token whatever their length).
    """
    limit = CHARS_PER_TOKEN * max(int(tokens), 1)
    return [cut_text(t, limit) if len(t) > limit else t for t in texts]


def drops_words(text: str, limit: int) -> bool:
    """Whether :func:`cut_text` at ``limit`` leaves out a whole word (one after the word it cuts into): tokens
    lost, where a cut inside a text's last word may change nothing a tokenizer reads (a word that long is
    one unknown token)."""
    seen = 0
    for word in _NON_SPACE.finditer(text):
        if seen >= limit:
            return True
        seen += word.end() - word.start()
    return False


def cut_text(text: str, limit: int) -> str:
    """``text`` up to its ``limit``-th non-space character (whole when it has fewer)."""
    seen = 0
    for word in _NON_SPACE.finditer(text):
        seen += word.end() - word.start()
        if seen >= limit:
            return text[:word.end() - (seen - limit)]
    return text


def non_space_chars(text: str) -> int:
    """The characters :func:`clipped` counts (spaces left out)."""
    return sum(word.end() - word.start() for word in _NON_SPACE.finditer(text))
