"""Importing items into a workspace: image folders, CSV/JSONL texts, and vector files.

Vector files are streamed by :mod:`core.vector_import`; qrels files by :mod:`core.qrels`.

Everything is read and validated before anything is written, and the write is one transaction,
so a bad file never leaves half an import behind.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from core.errors import ImportDataError
from core.store import Workspace

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".npy"}
FORMATS = ("images", "csv", "jsonl", "vectors")


def detect_format(path: Path) -> str:
    """Guess the import format from the path: a folder is images, else by suffix."""
    if path.is_dir():
        return "images"
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix in (".npy", ".npz"):
        return "vectors"
    raise ImportDataError(path, f"cannot tell the format from '{suffix or 'no suffix'}'; pass --format "
                          f"({', '.join(FORMATS)})")


def read_image_folder(root: Path) -> list[dict[str, Any]]:
    """One sub-folder per label; every image file inside becomes an item keyed by its relative path."""
    if not root.is_dir():
        raise ImportDataError(root, "image import needs a folder with one sub-folder per label")
    records = []
    inside = root.resolve()
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for file in sorted(label_dir.rglob("*")):
            if file.is_file() and file.suffix.lower() in IMAGE_SUFFIXES:
                target = file.resolve()
                if not target.is_relative_to(inside):  # a link must not pull in files from elsewhere
                    raise ImportDataError(file, f"symbolic link to {target}, outside the imported folder {inside}; "
                                          "copy the file into the folder instead")
                if file.stat().st_size == 0:
                    raise ImportDataError(file, "image file is empty")
                records.append({"key": file.relative_to(root).as_posix(), "label": label_dir.name,
                                "modality": "image", "path": str(target)})
    loose = [p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if loose:
        raise ImportDataError(root, f"{len(loose)} images lie directly in the folder (e.g. {loose[0]}); "
                              "put them in one sub-folder per label")
    if not records:
        raise ImportDataError(root, "no image files found in the label sub-folders")
    return records


def _text_record(row: dict[str, Any], n: int, source: Path, key_col: str, text_col: str,
                 label_col: str) -> dict[str, Any]:
    text = row.get(text_col)
    if text is None or str(text).strip() == "":
        raise ImportDataError(source, f"record {n}: missing or empty '{text_col}' field")
    key = row.get(key_col)
    extra = {k: v for k, v in row.items() if k not in (key_col, text_col, label_col)}
    return {"key": str(key) if key not in (None, "") else f"{source.stem}:{n}", "text": str(text),
            "label": row.get(label_col) if row.get(label_col) not in ("",) else None,
            "modality": "text", "metadata": extra}


def read_csv_texts(path: Path, key_col: str = "key", text_col: str = "text",
                   label_col: str = "label") -> list[dict[str, Any]]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            dialect = "excel-tab" if path.suffix.lower() == ".tsv" else "excel"
            reader = csv.DictReader(fh, dialect=dialect)
            if not reader.fieldnames or text_col not in reader.fieldnames:
                raise ImportDataError(path, f"no '{text_col}' column (columns: {reader.fieldnames})")
            rows = list(reader)
    except UnicodeDecodeError as exc:
        raise ImportDataError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except csv.Error as exc:
        raise ImportDataError(path, f"malformed CSV ({exc})") from exc
    return [_text_record(r, n, path, key_col, text_col, label_col) for n, r in enumerate(rows, start=1)]


def read_jsonl_texts(path: Path, key_col: str = "key", text_col: str = "text",
                     label_col: str = "label") -> list[dict[str, Any]]:
    records = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ImportDataError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ImportDataError(path, f"line {n}: invalid JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise ImportDataError(path, f"line {n}: expected a JSON object")
        records.append(_text_record(row, n, path, key_col, text_col, label_col))
    return records


def import_items(ws: Workspace, path: str | Path, fmt: str | None = None, split: str | None = None,
                 model: str | None = None, ids_path: str | Path | None = None,
                 key_col: str = "key", text_col: str = "text", label_col: str = "label",
                 qrels: str | Path | None = None, qrels_seed: int = 0) -> dict[str, Any]:
    """Import items (and, for vector files with ``model``, that model's vectors) all-or-nothing.

    ``qrels`` names a judgments file (see :mod:`core.qrels`) stored in the same transaction, so its
    keys may name the items being imported as well as earlier ones.
    """
    from core.qrels import read_qrels, store_qrels

    judgments = read_qrels(qrels) if qrels is not None else None
    src = Path(path)
    if not src.exists():
        raise ImportDataError(src, "no such file or folder")
    fmt = fmt or detect_format(src)
    if fmt == "vectors":
        from core.vector_import import import_vector_file

        return import_vector_file(ws, src, split, model, ids_path, judgments, qrels_seed)
    if fmt == "images":
        records = read_image_folder(src)
    elif fmt in ("csv", "jsonl"):
        if src.stat().st_size == 0:
            raise ImportDataError(src, "the file is empty")
        reader = read_csv_texts if fmt == "csv" else read_jsonl_texts
        records = reader(src, key_col, text_col, label_col)
    else:
        raise ImportDataError(src, f"unknown format '{fmt}' (use {', '.join(FORMATS)})")
    if not records:
        raise ImportDataError(src, "no items found")
    for r in records:
        r["split"] = split or r.get("split")
        r["source"] = str(src)
    with ws.transaction():
        ids = ws.add_items(records, source=str(src))
        stored = store_qrels(ws, judgments, qrels_seed) if judgments is not None else None
    return {"path": str(src), "format": fmt, "count": len(ids), "split": split, "vector_set": None,
            "qrels": stored.to_dict() if stored else None}
