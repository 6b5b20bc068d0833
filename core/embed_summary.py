"""What an embed stored, in words: one sentence for the command line and the app, and its warnings."""

from __future__ import annotations

from typing import Any

from embridge.core.l2 import zero_vectors_sentence


def embed_warnings(info: dict[str, Any]) -> list[str]:
    """What an embed stored that no search can use well: texts of unknown tokens only, all-zero vectors."""
    out = []
    if info.get("unknown_only"):
        out.append(f"the tokenizer knew no word of {info['unknown_only']} texts{_counted_scope(info)} (e.g. "
                   f"{info['unknown_example']!r}: "
                   "unknown tokens only), so their vectors say nothing of their content: check that the folder's "
                   "tokenizer is the model's own")
    if info.get("zero_vectors"):
        out.append(zero_vectors_sentence(info["zero_vectors"], info["zero_vector_example"]))
    return out


def _counted_scope(info: dict[str, Any]) -> str:
    """' of the 8104 this run embedded' where a resumed run's counts leave out the rows the interrupted one
    stored (its encoder never saw their texts), '' where they cover every text."""
    counted = info.get("texts_counted")
    return f" of the {counted} this run embedded (the interrupted run it resumed counted its own)" if counted else ""


def embed_summary(model: str, info: dict[str, Any]) -> str:
    """What an embed stored, in one sentence for the command line and the app; a vectors-only model also
    says which requested items already held its vectors and which its file lacks."""
    cut = (f"; {info['truncated']} texts{_counted_scope(info)} were longer than the model reads "
           f"({info['token_limit']} tokens) and were cut there" if info.get("truncated") else "")
    cut += "".join(f"; {w}" for w in embed_warnings(info))
    if info.get("written") == info["count"] and not info.get("already_stored") and "not_covered" not in info:
        # a model run on the items asked for: every one of them is embedded now
        return f"embedded {info['count']} items with {model} (dim {info['dim']}) -> {info['path']}{cut}"
    skipped = [f"{info[k]} {what}" for k, what in (("already_stored", "already held its vectors"),
                                                    ("not_covered", "are not in its vector file")) if info.get(k)]
    rest = f"; of the items asked for, {' and '.join(skipped)}" if skipped else ""
    if not info["written"]:
        held = info.get("held_in") or [info["id"]]
        where = (f"its vector set {held[0]} stays as it is" if len(held) == 1 else
                 f"its vector sets {', '.join(map(str, held))} stay as they are")
        return f"nothing new stored for {model}: {where}{rest}"
    return f"stored {info['written']} items' vectors of {model} (dim {info['dim']}) -> {info['path']}{rest}{cut}"
