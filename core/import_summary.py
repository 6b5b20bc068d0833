"""What an import of items stored, in one sentence, for the command line and the desktop app alike.

Both show the same words: an import that kept only the keys of a vectors file (no model named) or
stored all-zero vectors says so wherever it ran, not only on the command line.
"""

from __future__ import annotations

from typing import Any

from embridge.core.l2 import zero_vectors_sentence


def qrels_text(qrels: dict[str, Any]) -> str:
    """The judgments an import stored, by split (and the seed that split the queries)."""
    splits = ", ".join(f"{k} {v}" for k, v in qrels["per_split"].items())
    seed = f" (queries split with seed {qrels['split_seed']})" if qrels["split_seed"] is not None else ""
    return f"stored {qrels['judgments']} judgments from {qrels['path']}: {splits}{seed}"


def items_import_text(out: dict[str, Any], model: str | None) -> str:
    """``import_items``'s result in words; ``model`` is the model its vectors were given for, if any.
    A note the import made follows on a line of its own."""
    text = f"imported {out['count']} items ({out['format']}) from {out['path']}"
    if out.get("attached") or out.get("already_stored"):
        text += (f"; stored vectors of model {model} for {out['attached']} items"
                 f" ({out['already_stored']} already had them)")
        if out.get("zero_vectors"):
            text += "; " + zero_vectors_sentence(out["zero_vectors"], out["zero_vector_example"])
    elif out["format"] == "vectors" and not model:
        text += "; only their keys: the vectors were not stored (pass --model NAME to store them as its vector set)"
    if out.get("qrels"):
        text += "; " + qrels_text(out["qrels"])
    return text + (f"\nnote: {out['note']}" if out.get("note") else "")
