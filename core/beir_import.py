"""Importing a retrieval task in the BEIR layout: documents, queries and graded judgments.

The folder holds ``corpus.jsonl`` (one JSON object a line: ``_id``, ``text``, optional ``title``),
``queries.jsonl`` (``_id``, ``text``) and ``qrels/{train,dev,test}.tsv`` (a header line, then
``query-id``, ``corpus-id``, ``score``). Documents become gallery items, queries become query items;
the two id spaces are separate, so a query id may equal a document id. A document's text is its
title and text joined by a space (the title is also kept in its metadata; a null title is none).
Queries without any judgment are imported too, as query items that no held-out number counts. A
folder with train judgments and no ``dev.tsv`` (SciFact and others) gets a dev split all the same: a
seeded fifth of the train queries, which validation and ``auto`` then use and training never sees.

The whole folder is read and checked before anything is written, and the write is one transaction.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embridge.core import stop_signals
from embridge.core.errors import ImportDataError
from embridge.core.importers import (
    DuplicateJSONKeyError,
    json_number_problem,
    json_syntax_problem,
    unique_json_object,
)
from embridge.core.keys import BOM, char_name, check_input_file, normalise_key, odd_text_char
from embridge.core.progress import ProgressFn, StopFn, check_stop, no_progress
from embridge.core.qrels import QrelLines, read_qrels, seeded_order, store_qrels
from embridge.core.store import Workspace
from embridge.core.store.items import QUERY_SPLIT
from embridge.core.store.judgments import JUDGMENT_SPLITS
from embridge.core.store.schema import DOC_NAMESPACE, QUERY_NAMESPACE
from embridge.core.text_files import utf8_problem

GALLERY_SPLIT = "gallery"  # a name only: every split but the query split forms the gallery
_CHUNK = 10_000
_FILES = (("corpus.jsonl", GALLERY_SPLIT), ("queries.jsonl", QUERY_SPLIT))
DEV_FROM_TRAIN = 0.2  # share of the train queries held out as dev when a folder has no dev.tsv
MIN_TRAIN_TO_SPLIT = 10  # fewer train queries are all kept for training
DEV_FROM_TRAIN_META = "judgments_dev_from_train"


@dataclass(frozen=True)
class BeirImportSummary:
    """What one BEIR import stored."""

    path: str
    documents: int
    queries: int
    judgments: dict[str, int] = field(default_factory=dict)  # split -> judgments stored
    unjudged_queries: int = 0
    dev_from_train: int = 0  # train queries held out as dev: the folder has no dev.tsv
    dev_kept: str = ""  # why no train query was held out as dev though the folder has no dev.tsv

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "format": "beir", "documents": self.documents, "queries": self.queries,
                "judgments": dict(self.judgments), "unjudged_queries": self.unjudged_queries,
                "dev_from_train": self.dev_from_train, "dev_kept": self.dev_kept or None,
                "count": self.documents + self.queries}

    def text(self) -> str:
        judged = ", ".join(f"{k} {v}" for k, v in self.judgments.items()) or "none"
        carved = (f"; no qrels/dev.tsv, so {self.dev_from_train} of the train queries (a seeded "
                  f"{DEV_FROM_TRAIN:.0%}) are held out as dev queries to validate and choose layers on"
                  if self.dev_from_train else f"; no qrels/dev.tsv and no train query held out as dev: {self.dev_kept}"
                  if self.dev_kept else "")
        return (f"imported {self.documents} documents and {self.queries} queries ({self.unjudged_queries} without "
                f"judgments), judgments: {judged}{carved}")


def import_beir(ws: Workspace, path: str | Path, on_progress: ProgressFn | None = None,
                should_stop: StopFn | None = None, seed: int = 0) -> BeirImportSummary:
    """Import a BEIR folder all-or-nothing (see the module docstring); ``seed`` draws the train queries
    held out as dev when the folder has train judgments and no dev.tsv."""
    root = Path(path)
    if not root.is_dir():
        raise ImportDataError(root, "a BEIR import needs a folder with corpus.jsonl, queries.jsonl and qrels/")
    progress = on_progress or no_progress
    # every record is checked before anything is stored, keeping only the keys: a corpus parsed into
    # records held about 0.7 KB per document (145 MB at 200k); the records are read again to be stored
    parts = {split: _keys(root / name, split, should_stop) for name, split in _FILES}
    docs, queries = parts[GALLERY_SPLIT], parts[QUERY_SPLIT]
    qrels = _read_qrels_folder(root / "qrels")
    _check_keys(qrels, set(docs), set(queries))
    carved, kept = 0, ""
    if "dev" not in qrels and "train" in qrels:
        if ws.judgments("dev").query_ids.size:
            kept = "the workspace already holds dev judgments, which validation uses"
        else:
            qrels, carved = _dev_from_train(qrels, seed)
            kept = "" if carved else f"fewer than {MIN_TRAIN_TO_SPLIT} train queries, all kept for training"
    try:
        stored, judged = _store(ws, root, parts, qrels, carved, seed, progress, should_stop)
    except ImportDataError:  # all rolled back: a clash in one part is counted over the whole folder
        ws.refuse_stored_keys({DOC_NAMESPACE: docs, QUERY_NAMESPACE: queries}, str(root))
        raise
    return BeirImportSummary(str(root), len(docs), len(queries), stored,
                             sum(1 for key in queries if key not in judged), carved, kept)


def _keys(path: Path, split: str, should_stop: StopFn | None) -> list[str]:
    """The keys of one BEIR jsonl file, every record checked."""
    return [record["key"] for record in _records(path, split, should_stop)]


def _store(ws: Workspace, root: Path, keys: dict[str, list[str]], qrels: dict[str, QrelLines], carved: int,
           seed: int, progress: ProgressFn, should_stop: StopFn | None) -> tuple[dict[str, Any], set[str]]:
    """Store the items (read again, a chunk at a time) and judgments in one transaction; (judgments stored
    per split, judged query keys). A file that changed since it was checked is refused, all rolled back."""
    total = sum(map(len, keys.values()))
    with stop_signals.job_scope(), ws.transaction(result=True):  # a stop at the commit: the import is done
        done = 0
        for name, split in _FILES:
            records = _records(root / name, split, should_stop)
            stored_keys: list[str] = []
            while chunk := list(itertools.islice(records, _CHUNK)):
                check_stop(should_stop)
                ws.add_items(chunk, source=str(root))
                stored_keys.extend(r["key"] for r in chunk)
                done += len(chunk)
                progress(done, total, {"stage": "items"})
            if stored_keys != keys[split]:
                raise ImportDataError(root / name, "changed while it was imported; nothing was stored, import "
                                      "the folder again")
        stored = {}
        for split, lines in qrels.items():
            check_stop(should_stop)
            stored[split] = store_qrels(ws, lines).judgments
        if carved:
            ws.set_meta(DEV_FROM_TRAIN_META, json.dumps({"seed": seed, "fraction": DEV_FROM_TRAIN, "queries": carved,
                                                         "source": str(root / "qrels" / "train.tsv")}))
        progress(total, total, {"stage": "judgments"})
    judged = set().union(*(set(lines.query_keys) for lines in qrels.values())) if qrels else set()
    return stored, judged


def _dev_from_train(qrels: dict[str, QrelLines], seed: int) -> tuple[dict[str, QrelLines], int]:
    """Without dev judgments, layers would be validated (and ``auto`` would choose) on the documents'
    own-item retrieval, where old/old scores 1.0 and relevance plays no part; a seeded share of the
    train queries becomes the dev split instead, never fitted on. (SciFact and others ship train and
    test only.) Returns the qrels with the split made and how many queries moved."""
    train = qrels["train"]
    ordered = seeded_order(train.query_keys, seed)
    if len(ordered) < MIN_TRAIN_TO_SPLIT:
        return qrels, 0
    dev = set(ordered[: int(round(DEV_FROM_TRAIN * len(ordered)))])
    parts = {}
    for split, chosen in (("train", False), ("dev", True)):
        rows = [i for i, q in enumerate(train.query_keys) if (q in dev) == chosen]
        parts[split] = QrelLines(train.path, [train.query_keys[i] for i in rows], [train.item_keys[i] for i in rows],
                                 [train.grades[i] for i in rows], [split] * len(rows), [train.lines[i] for i in rows])
    return {**qrels, **parts}, len(dev)


def _written_apart(raw: str, first: str, key: str) -> str:
    """Why two ids written differently are one ``key`` (either may be the one written otherwise)."""
    if raw == first:
        return ""
    if {raw.strip().removeprefix(BOM).strip(), first.strip().removeprefix(BOM).strip()} == {key}:
        return ", written with spaces around it, which are dropped"
    return ", written in another Unicode form (ids are compared after NFC)"


def _records(path: Path, split: str, should_stop: StopFn | None) -> Iterator[dict[str, Any]]:
    """Item records of one BEIR jsonl file, checked line by line."""
    check_input_file(path, f"BEIR file {path.name}")  # a FIFO would block the open, a device never end
    if not path.is_file():
        raise ImportDataError(path, "missing: a BEIR folder holds corpus.jsonl, queries.jsonl and qrels/*.tsv")
    seen: dict[str, tuple[int, str]] = {}  # key -> its line and the id as written there
    try:
        # only '\n' ends a record (a lone '\r' is JSON whitespace, '\r\n' ends a line too)
        with open(path, encoding="utf-8-sig", newline="\n") as fh:
            for n, line in enumerate(fh, start=1):
                if n % _CHUNK == 0:
                    check_stop(should_stop)
                if not line.strip():
                    continue
                try:
                    row = json.loads(line.rstrip("\r\n"), object_pairs_hook=unique_json_object)  # columns in the line
                except json.JSONDecodeError as exc:
                    raise ImportDataError(path, f"line {n}: {json_syntax_problem(exc)}") from exc
                except DuplicateJSONKeyError as exc:
                    raise ImportDataError(path, f"line {n}: {exc}") from None
                except RecursionError:
                    raise ImportDataError(path, f"line {n}: JSON nested too deeply") from None
                except ValueError as exc:  # an integer of more than 4300 digits
                    raise ImportDataError(path, f"line {n}: {json_number_problem(exc)}") from None
                if not isinstance(row, dict):
                    raise ImportDataError(path, f"line {n}: expected a JSON object")
                raw = row.get("_id")
                if raw is None or (isinstance(raw, str) and not raw.strip()):
                    raise ImportDataError(path, f"line {n}: missing or empty '_id'")
                if not isinstance(raw, str | int) or isinstance(raw, bool):
                    raise ImportDataError(path, f"line {n}: '_id' must be a string (or an integer), got "
                                          f"{json.dumps(raw)[:40]}")
                key = normalise_key(raw, path, f"line {n}: '_id'")  # NFC, as every importer stores keys
                if key in seen:
                    first_line, first = seen[key]
                    raise ImportDataError(path, f"line {n}: duplicate _id '{key}' (first on line {first_line}"
                                          f"{_written_apart(str(raw), first, key)})")
                seen[key] = (n, str(raw))
                text, title = row.get("text"), row.get("title")
                title = "" if title is None else title  # a null title is no title
                for name, value in (("text", text), ("title", title)):
                    if not isinstance(value, str):
                        raise ImportDataError(path, f"line {n}: '{name}' must be a string, got "
                                              f"{'nothing' if value is None else json.dumps(value)[:40]}")
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
        raise ImportDataError(path, utf8_problem(path, exc)) from exc
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
        check_input_file(file, "BEIR qrels file")
        if not file.is_file():  # skipped, its judgments would be missing and the import would say it had none
            what = ("a folder" if file.is_dir() else "a link that leads to no file" if file.is_symlink()
                    else "not a regular file")
            raise ImportDataError(file, f"{what}, not a qrels file; qrels/ holds the files "
                                  f"{', '.join(s + '.tsv' for s in JUDGMENT_SPLITS)}")
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
