"""Property tests of import keys, ids, labels and image file names, against a plain oracle.

Whatever a hostile user puts in an id array, a CSV key column, a JSONL record or a file name, the
import either stores exactly the oracle's keys and labels, or refuses with one line that names the
file, leaving the workspace empty. The oracle: a key loses outer spaces and one leading
byte-order mark, is put in NFC, and must then be non-empty, free of control characters, lone
surrogates and line separators, and distinct from every other key of the import.
"""

from __future__ import annotations

import csv
import json
import math
import tempfile
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from embridge.core.errors import InputError
from embridge.core.importers import import_items
from embridge.core.store import Workspace

FORBIDDEN = {"Cc", "Cs", "Zl", "Zp"}
SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# text that stresses the rules: composed/decomposed letters, BOMs, controls, separators, spaces
tricky = st.sampled_from(["\u00e9", "e\u0301", "\ufeff", "\n", "\t", "\x00", "\x7f", "\u2028", "\u2029",
                          " ", "\u00a0", "\u212b", "A\u030a", "\u00c5", "\ud800", "\x85", "a", "1", "/"])
keys_text = st.lists(st.one_of(tricky, st.characters()), max_size=6).map("".join)


def oracle_key(raw: str) -> str | None:
    """The stored key, or None when the key must be refused."""
    key = unicodedata.normalize("NFC", raw.strip().removeprefix("\ufeff").strip())
    if not key or any(unicodedata.category(ch) in FORBIDDEN for ch in key):
        return None
    return key


def oracle_keys(raws: list[Any]) -> list[str] | None:
    keys = [oracle_key(r) for r in raws]
    if None in keys or len(set(keys)) != len(keys):
        return None
    return keys  # type: ignore[return-value]


def oracle_label(raw: Any) -> tuple[bool, str | None]:
    """(accepted, stored label)."""
    if raw is None:
        return True, None
    if isinstance(raw, bool) or isinstance(raw, list | dict):
        return False, None
    if isinstance(raw, float):
        if not (math.isfinite(raw) and raw.is_integer()):
            return False, None
        raw = int(raw)
    label = oracle_key(str(raw))
    if label is None:
        return (str(raw).strip().removeprefix("\ufeff").strip() == ""), None
    return True, label


def _import(make: Any) -> tuple[list[dict[str, Any]] | None, str, Path]:
    """Run an import in a fresh workspace: (items, or None with the error line), and the source."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        source = make(root)
        with Workspace.create(root / "ws") as ws:
            try:
                import_items(ws, source)
            except InputError as exc:
                assert ws.items() == []  # all or nothing
                return None, str(exc), source
            return ws.items(), "", source


def _refused(message: str, source: Path) -> None:
    assert "\n" not in message and str(source) in message, message


@SETTINGS
@given(st.lists(keys_text, min_size=1, max_size=5))
def test_npz_text_ids(raws: list[str]) -> None:
    assume(not any(r.endswith("\x00") for r in raws))  # numpy drops trailing NULs of its strings itself

    def make(root: Path) -> Path:
        np.savez(root / "v.npz", ids=np.array(raws, dtype=str), vectors=np.ones((len(raws), 3)))
        return root / "v.npz"

    items, message, source = _import(make)
    expected = oracle_keys(raws)
    if expected is None:
        assert items is None, f"accepted {raws!r} as {[i['key'] for i in items]}"
        _refused(message, source)
    else:
        assert items is not None, message
        assert [i["key"] for i in items] == expected


@SETTINGS
@given(st.lists(st.binary(max_size=8), min_size=1, max_size=5))
def test_npz_byte_ids_are_utf8_or_refused(raws: list[bytes]) -> None:
    assume(not any(r.endswith(b"\x00") for r in raws))

    def make(root: Path) -> Path:
        np.savez(root / "v.npz", ids=np.array(raws, dtype=bytes), vectors=np.ones((len(raws), 3)))
        return root / "v.npz"

    items, message, source = _import(make)
    try:
        expected = oracle_keys([r.decode("utf-8") for r in raws])
    except UnicodeDecodeError:
        expected = None
    if expected is None:
        assert items is None
        _refused(message, source)
    else:
        assert items is not None, message
        assert [i["key"] for i in items] == expected


@SETTINGS
@given(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=5))
def test_npz_integer_ids_are_their_decimal_text(raws: list[int]) -> None:
    def make(root: Path) -> Path:
        np.savez(root / "v.npz", ids=np.array(raws, dtype=np.int64), vectors=np.ones((len(raws), 3)))
        return root / "v.npz"

    items, message, source = _import(make)
    if len(set(raws)) < len(raws):
        assert items is None and "duplicate ids" in message
    else:
        assert items is not None and [i["key"] for i in items] == [str(r) for r in raws]


@SETTINGS
@given(st.lists(keys_text.filter(lambda k: not any(unicodedata.category(c) == "Cs" for c in k)),
                min_size=1, max_size=5), st.booleans())
def test_csv_keys(raws: list[str], bom: bool) -> None:
    def make(root: Path) -> Path:
        with open(root / "items.csv", "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["key", "text"])
            writer.writerows([r, "some text"] for r in raws)
        return root / "items.csv"

    items, message, source = _import(make)
    expected = oracle_keys(raws)  # an empty key cell is refused like a blank one
    if expected is None:
        assert items is None, f"accepted {raws!r}"
        _refused(message, source)
    else:
        assert items is not None, message
        assert [i["key"] for i in items] == expected


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(10**20), 10**20), st.floats(), keys_text)
json_values = st.one_of(json_scalars, st.lists(json_scalars, max_size=2),
                        st.dictionaries(st.text(max_size=3), json_scalars, max_size=2))


@SETTINGS
@given(st.lists(st.tuples(json_values, json_values), min_size=1, max_size=4), st.booleans())
def test_jsonl_keys_and_labels(rows: list[tuple[Any, Any]], ascii_only: bool) -> None:
    def make(root: Path) -> Path:
        lines = [json.dumps({"key": k, "text": "some text", "label": lab}, ensure_ascii=ascii_only)
                 for k, lab in rows]
        (root / "items.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
        return root / "items.jsonl"

    if not ascii_only:  # a raw lone surrogate cannot be UTF-8 at all; covered by the escaped form
        assume(not any(isinstance(v, str) and any(unicodedata.category(c) == "Cs" for c in v)
                       for row in rows for v in row))
    items, message, source = _import(make)
    keys_ok = all((isinstance(k, int) and not isinstance(k, bool)) or isinstance(k, str) for k, _ in rows)
    expected_keys = oracle_keys([str(k) for k, _ in rows]) if keys_ok else None  # null and "" are refused
    labels = [oracle_label(lab) for _, lab in rows]
    if expected_keys is None or not all(ok for ok, _ in labels):
        assert items is None, f"accepted {rows!r}"
        _refused(message, source)
    else:
        assert items is not None, message
        assert [i["key"] for i in items] == expected_keys
        assert [i["label"] for i in items] == [lab for _, lab in labels]


file_names = st.lists(st.one_of(tricky, st.characters(blacklist_characters="/\x00",
                                                      blacklist_categories=("Cs",))),
                      min_size=1, max_size=8).map("".join).filter(
    lambda n: not n.startswith(".") and "/" not in n and "\x00" not in n and "\ud800" not in n)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(file_names, min_size=1, max_size=3, unique=True))
def test_image_file_names(names: list[str]) -> None:
    def make(root: Path) -> Path:
        (root / "imgs" / "cat").mkdir(parents=True)
        for name in names:
            Image.fromarray(np.zeros((2, 2), np.uint8), mode="L").save(root / "imgs" / "cat" / f"{name}.png",
                                                                     format="PNG")
        return root / "imgs"

    raws = sorted(f"cat/{n}.png" for n in names)
    items, message, source = _import(make)
    expected = oracle_keys(raws)
    if expected is None:
        assert items is None, f"accepted {names!r}"
        assert "\n" not in message and str(source) in message or "imgs/cat/" in message, message
    else:
        assert items is not None, message
        assert sorted(i["key"] for i in items) == sorted(expected)
