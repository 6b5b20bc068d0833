"""Importing a retrieval task in the BEIR layout: documents, queries and graded judgments.

The folder holds ``corpus.jsonl`` (one JSON object a line: ``_id``, ``text``, optional ``title``),
``queries.jsonl`` (``_id``, ``text``) and ``qrels/{train,dev,test}.tsv`` (a header line, then
``query-id``, ``corpus-id``, ``score``). Documents become gallery items, queries become query items;
the two id spaces are separate, so a query id may equal a document id. A document's text is its
title and text joined by a space (the title is also kept in its metadata). Queries without any
judgment are imported too: they can still serve as unlabelled query pairs.

The whole folder is read and checked before anything is written, and the write is one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embridge.core import stop_signals
from embridge.core.errors import ImportDataError
from embridge.core.importers import DuplicateJSONKeyError, json_number_problem, unique_json_object
from embridge.core.keys import char_name, check_input_file, normalise_key, odd_text_char
from embridge.core.progress import ProgressFn, StopFn, check_stop, no_progress
from embridge.core.qrels import QrelLines, read_qrels, store_qrels
from embridge.core.store import Workspace
from embridge.core.store.items import QUERY_SPLIT
from embridge.core.store.judgments import JUDGMENT_SPLITS

GALLERY_SPLIT = "gallery"  # a name only: every split but the query split forms the gallery
_CHUNK = 10_000


@dataclass(frozen=True)
class BeirImportSummary:
    """What one BEIR import stored."""

    path: str
    documents: int
    queries: int
    judgments: dict[str, int] = field(default_factory=dict)  # split -> judgments stored
    unjudged_queries: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "format": "beir", "documents": self.documents, "queries": self.queries,
                "judgments": dict(self.judgments), "unjudged_queries": self.unjudged_queries,
                "count": self.documents + self.queries}


def import_beir(ws: Workspace, path: str | Path, on_progress: ProgressFn | None = None,
                should_stop: StopFn | None = None) -> BeirImportSummary:
    """Import a BEIR folder all-or-nothing (see the module docstring)."""
    root = Path(path)
    if not root.is_dir():
        raise ImportDataError(root, "a BEIR import needs a folder with corpus.jsonl, queries.jsonl and qrels/")
    progress = on_progress or no_progress
    docs = list(_records(root / "corpus.jsonl", GALLERY_SPLIT, should_stop))
    queries = list(_records(root / "queries.jsonl", QUERY_SPLIT, should_stop))
    qrels = _read_qrels_folder(root / "qrels")
    _check_keys(qrels, {r["key"] for r in docs}, {r["key"] for r in queries})
    total = len(docs) + len(queries)
    with stop_signals.job_scope(), ws.transaction(result=True):  # a stop at the commit: the import is done
        done = 0
        for batch in (docs, queries):
            for start in range(0, len(batch), _CHUNK):
                check_stop(should_stop)
                ws.add_items(batch[start:start + _CHUNK], source=str(root))
                done += len(batch[start:start + _CHUNK])
                progress(done, total, {"stage": "items"})
        stored = {}
        for split, lines in qrels.items():
            check_stop(should_stop)
            stored[split] = store_qrels(ws, lines).judgments
        progress(total, total, {"stage": "judgments"})
    judged = set().union(*(set(lines.query_keys) for lines in qrels.values())) if qrels else set()
    return BeirImportSummary(str(root), len(docs), len(queries), stored,
                             sum(1 for r in queries if r["key"] not in judged))


def _records(path: Path, split: str, should_stop: StopFn | None) -> Iterator[dict[str, Any]]:
    """Item records of one BEIR jsonl file, checked line by line."""
    check_input_file(path, f"BEIR file {path.name}")  # a FIFO would block the open, a device never end
    if not path.is_file():
        raise ImportDataError(path, "missing: a BEIR folder holds corpus.jsonl, queries.jsonl and qrels/*.tsv")
    seen: set[str] = set()
    try:
        with open(path, encoding="utf-8-sig") as fh:
            for n, line in enumerate(fh, start=1):
                if n % _CHUNK == 0:
                    check_stop(should_stop)
                if not line.strip():
                    continue
                try:
                    row = json.loads(line, object_pairs_hook=unique_json_object)
                except json.JSONDecodeError as exc:
                    raise ImportDataError(path, f"line {n}: invalid JSON ({exc.msg})") from exc
                except DuplicateJSONKeyError as exc:
                    raise ImportDataError(path, f"line {n}: {exc}") from None
                except RecursionError:
                    raise ImportDataError(path, f"line {n}: JSON nested too deeply") from None
                except ValueError as exc:  # an integer of more than 4300 digits
                    raise ImportDataError(path, f"line {n}: {json_number_problem(exc)}") from None
                if not isinstance(row, dict):
                    raise ImportDataError(path, f"line {n}: expected a JSON object")
                key = row.get("_id")
                if not isinstance(key, str | int) or isinstance(key, bool) or str(key).strip() == "":
                    raise ImportDataError(path, f"line {n}: missing or empty '_id'")
                key = normalise_key(key, path, f"line {n}: '_id'")  # NFC, as every importer stores keys
                if key in seen:
                    raise ImportDataError(path, f"line {n}: duplicate _id '{key}'")
                seen.add(key)
                text, title = row.get("text"), row.get("title") or ""
                if not isinstance(text, str) or not isinstance(title, str):
                    raise ImportDataError(path, f"line {n}: 'text' and 'title' must be strings")
                for field_name, value in (("title", title), ("text", text)):
                    if (odd := odd_text_char(value)) is not None:
                        raise ImportDataError(path, f"line {n}: the '{field_name}' field holds the {char_name(odd)}")
                joined = f"{title} {text}".strip() if title else text.strip()
                if not joined:
                    raise ImportDataError(path, f"line {n}: empty text")
                metadata = {k: v for k, v in row.items() if k not in ("_id", "text")}
                yield {"key": key, "text": joined, "split": split, "modality": "text", "metadata": metadata,
                       "source": str(path)}
    except UnicodeDecodeError as exc:
        raise ImportDataError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    if not seen:
        raise ImportDataError(path, "no records found")


def _read_qrels_folder(folder: Path) -> dict[str, QrelLines]:
    if not folder.is_dir():
        raise ImportDataError(folder, "missing: a BEIR folder holds qrels/train.tsv, qrels/dev.tsv and/or "
                              "qrels/test.tsv")
    out: dict[str, QrelLines] = {}
    for file in sorted(folder.iterdir()):
        if file.name.startswith("."):
            continue
        check_input_file(file, "BEIR qrels file")  # skipped silently, its judgments would be missing
        if not file.is_file():
            continue
        split = file.stem
        if file.suffix.lower() != ".tsv" or split not in JUDGMENT_SPLITS:
            raise ImportDataError(file, f"unexpected file in qrels/: expected {', '.join(s + '.tsv' for s in JUDGMENT_SPLITS)}")
        lines = read_qrels(file, split)
        if any(s != split for s in lines.splits):
            n = next(n for s, n in zip(lines.splits, lines.lines, strict=True) if s != split)
            raise ImportDataError(file, f"line {n}: names another split than the file's ({split})")
        out[split] = lines
    if not out:
        raise ImportDataError(folder, "no qrels files (train.tsv, dev.tsv, test.tsv)")
    return out


def _check_keys(qrels: dict[str, QrelLines], doc_keys: set[str], query_keys: set[str]) -> None:
    """Unknown ids, and a query judged in two splits, fail before anything is written."""
    first_split: dict[str, tuple[str, Path, int]] = {}
    for split, lines in qrels.items():
        for q, d, n in zip(lines.query_keys, lines.item_keys, lines.lines, strict=True):
            if q not in query_keys:
                raise ImportDataError(lines.path, f"line {n}: query id '{q}' is not in queries.jsonl")
            if d not in doc_keys:
                raise ImportDataError(lines.path, f"line {n}: corpus id '{d}' is not in corpus.jsonl")
            earlier = first_split.setdefault(q, (split, lines.path, n))
            if earlier[0] != split:
                raise ImportDataError(lines.path, f"line {n}: query '{q}' is also judged in {earlier[1].name} "
                                      f"(line {earlier[2]}); a query belongs to one split")
