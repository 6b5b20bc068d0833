"""Room for text in what a text model reads, checked at ``model add``.

A text model reads at most its sequence length in tokens, its special tokens and prompt included. A
length the special tokens fill, or a prompt taking half of it, leaves texts cut to nothing or next to
nothing: every text would get the same vector, or the tokenizer could not cut at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from embridge.core.errors import CheckpointError
from embridge.core.models.text_cuts import CHARS_PER_TOKEN, non_space_chars
from embridge.core.models.text_folders import LENGTH_SETTINGS, length_setting


def check_length_room(module: Any, source: Path | str | None) -> None:
    """A sequence length that the special tokens fill leaves no room for any text: the tokenizer then
    cannot cut there (it passes the whole text, which the model's position table fails on), or every
    text gets the same vector. Refused, naming the setting."""
    measure = getattr(module, "prompt_tokens", None)
    if measure is None:
        return
    special, limit = measure("")
    if special < limit:
        return
    folder = Path(source) if source is not None and Path(source).is_dir() else None
    short = [f"{key} {value} in {file}" for file, key in LENGTH_SETTINGS
             if folder is not None and (value := length_setting(folder, file, key)) is not None and value <= special]
    where = f" ({', '.join(short)})" if short else ""
    raise CheckpointError(source, f"the model reads {limit} tokens{where} and its special tokens alone take "
                          f"{special}: no token of any text would reach it; set a longer sequence length")


def check_prompt_room(module: Any, spec: Any, source: Path | str | None) -> None:
    """A prompt that takes half of what the model reads, or more, leaves every text cut to what is left:
    at the model's limit every document would get one vector. Refused at ``model add``."""
    measure = getattr(module, "prompt_tokens", None)
    if measure is None:
        return
    for role in ("query", "document"):
        prompt = spec.prompt_for(role)
        if not prompt:
            continue
        used, limit = measure(prompt)
        shown = prompt if len(prompt) <= 40 else prompt[:37] + "..."
        if used * 2 > limit:
            raise CheckpointError(source, f"the {role} prompt {shown!r} alone is {used} tokens and the model reads "
                                  f"{limit}: every text would be cut to the {max(limit - used, 0)} tokens left; use "
                                  f"a shorter prompt (--{role}-prompt)")
        chars, cut = non_space_chars(prompt), CHARS_PER_TOKEN * max(int(limit), 1)
        if chars * 2 > cut:  # a few long "words" are few tokens, yet the cut before tokenizing counts characters
            raise CheckpointError(source, f"the {role} prompt {shown!r} alone is {chars:,} characters (spaces left "
                                  f"out) and a text is cut at {cut:,} before it is tokenized ({CHARS_PER_TOKEN} a "
                                  f"token the model reads): little or nothing of any text would be read; use a "
                                  f"shorter prompt (--{role}-prompt)")
