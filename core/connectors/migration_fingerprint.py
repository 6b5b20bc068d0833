"""What makes a store migration's rerun another migration, said in the user's terms.

A migration's checkpoint records a fingerprint of what it was asked (bundle, source and its size,
order, backfill, seed, new vectors; a Ray migration's the source's partition stamps); a rerun with
another fingerprint is refused, and the refusal names each difference instead of listing every
possible one.
"""

from __future__ import annotations

from typing import Any

from embridge.core.credentials import masked

_SETTINGS = (("bundle", "another bundle (--bundle)"), ("order", "--order"), ("backfill", "--backfill"),
             ("seed", "--seed"), ("new_vectors", "other --new-vectors"))


def comparable(fingerprint: Any) -> Any:
    """A recorded fingerprint as this version records it: a checkpoint written before sources were recorded
    :func:`masked` holds the password, and a rerun after a password change is the same migration."""
    if isinstance(fingerprint, dict) and isinstance(fingerprint.get("source"), str):
        return {**fingerprint, "source": masked(fingerprint["source"])}
    return fingerprint


def same_source(fingerprint: Any, location: str) -> bool:
    """Whether a recorded fingerprint's source is the store at ``location`` (a connector's, already masked)."""
    return isinstance(fingerprint, dict) and comparable(fingerprint).get("source") == location


def read_columns(source: Any) -> dict[str, str]:
    """The id and vector columns (or vector name) a source is read through where they are not its store's
    defaults (``id``; ``vector``, or ``embedding`` in PostgreSQL): the same store read through another column
    is another migration, while ``?vector=vector`` is the same one as no ``?vector=`` at all."""
    defaults = {"id": "id", "vector": "embedding" if source.scheme in ("postgresql", "postgres") else "vector"}
    read = {"id": getattr(source, "id_col", None),
            "vector": getattr(source, "vec_col", None) or getattr(source, "vector_name", None)}
    return {key: str(value) for key, value in read.items() if value and value != defaults[key]}


def fingerprint_change(before: Any, now: dict[str, Any]) -> str:
    """What differs between the checkpoint's migration and the one asked for, in the user's terms."""
    before = comparable(before) if isinstance(before, dict) else {}
    said = []
    if "source_collection" not in now:  # a Ray migration's: the source's folder and its partitions' stamps
        if before.get("source") != now.get("source"):
            said.append(f"another source: it was migrated from {before.get('source')}")
        elif any(before.get(k) != now.get(k) for k in ("source_count", "source_version", "source_partitions")):
            said.append("the source changed since (its files or their contents differ)")
    elif (before.get("source"), before.get("source_collection")) != (now["source"], now["source_collection"]):
        said.append(f"another source: it was migrated from collection '{before.get('source_collection')}' of "
                    f"{before.get('source')}")
    elif before.get("source_columns") != now.get("source_columns"):
        was, asked = (", ".join(f"?{k}={v}" for k, v in (side.get("source_columns") or {}).items()) or "its default "
                      "columns" for side in (before, now))
        said.append(f"other columns of the source: it read {was}, this reads {asked}")
    elif before.get("source_count") != now.get("source_count"):
        said.append(f"the source held {before.get('source_count')} points then and holds {now.get('source_count')} now")
    if "layer" in now and before.get("layer") != now["layer"]:
        said.append("another bundle (--bundle)")
    for key, words in _SETTINGS:
        was, asked = before.get(key), now.get(key)
        if key not in now or was == asked:
            continue
        if key == "bundle":
            said.append(words)
        elif key == "new_vectors":
            said.append("--new-vectors where it ran without" if was is None else
                        "no --new-vectors where it ran with some" if asked is None else words)
        else:
            said.append(f"{words} {asked if asked is not None else '(none)'} where it ran with "
                        f"{was if was is not None else 'none'}")
    return "; ".join(said) or "its checkpoint records other settings"
