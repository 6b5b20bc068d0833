"""Importing items into a workspace: image folders, CSV/JSONL texts, and vector files.

Everything is read and validated before anything is written, and the write is one transaction,
so a bad file never leaves half an import behind.
"""

from __future__ import annotations

import csv
import json
import math
import os
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from core.errors import ImportDataError, VectorFileError
from core.store import Workspace
from core.store.vectors import check_finite

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


def read_vector_file(path: Path, ids_path: Path | None = None) -> tuple[list[str], np.ndarray]:
    """Keys and a float matrix from ``.npz`` (arrays 'ids' and 'vectors') or ``.npy`` + ids text file."""
    try:
        check_npy_sizes(path)
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as data:
                if "vectors" not in data or "ids" not in data:
                    raise VectorFileError(path, f"an .npz needs arrays 'ids' and 'vectors' (found {list(data)})")
                vectors, keys = data["vectors"], [str(k) for k in data["ids"].tolist()]
        else:
            vectors = np.load(path, allow_pickle=False)
            if ids_path is None:
                raise VectorFileError(path, "an .npy vector file needs an id list (--ids FILE, one key a line)")
            keys = [line.strip() for line in Path(ids_path).read_text(encoding="utf-8").splitlines() if line.strip()]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        if isinstance(exc, VectorFileError):
            raise
        raise VectorFileError(path, f"unreadable vector file ({exc})") from exc
    except MemoryError as exc:
        raise VectorFileError(path, "too large to load into memory") from exc
    if vectors.dtype.kind not in "fiu":
        raise VectorFileError(path, f"vectors must be numeric, got dtype {vectors.dtype}")
    if vectors.ndim != 2:
        raise VectorFileError(path, f"vectors must be a 2-D matrix, got shape {vectors.shape}")
    if vectors.shape[0] == 0:
        raise VectorFileError(path, "the file holds no vectors")
    if len(keys) != vectors.shape[0]:
        raise VectorFileError(path, f"{vectors.shape[0]} vectors but {len(keys)} ids")
    dupes = {k for k in keys if keys.count(k) > 1} if len(keys) < 5000 else _dupes(keys)
    if dupes:
        raise VectorFileError(path, f"duplicate ids, e.g. {sorted(dupes)[:3]}")
    out = vectors.astype(np.float16 if vectors.dtype == np.float16 else np.float32)
    check_finite(out, str(path))
    return keys, out


def _npy_data_bytes(fh: BinaryIO) -> tuple[int, int]:
    """(bytes the .npy header says its data takes, header length) without reading the data."""
    version = np.lib.format.read_magic(fh)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read_header(fh, max_header_size=10_000)
    if np.dtype(dtype).hasobject:  # a pickle, not raw data: np.load refuses it (allow_pickle=False)
        return 0, fh.tell()
    return math.prod(int(n) for n in shape) * np.dtype(dtype).itemsize, fh.tell()


def check_npy_sizes(path: Path) -> None:
    """Refuse an .npy (or .npz member) whose header claims more data than the file holds.

    Loading trusts the header's shape and allocates it up front, so a forged or truncated header
    would otherwise ask for terabytes before noticing the data is missing.
    """
    if path.suffix.lower() == ".npz":
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if info.filename.endswith(".npy"):
                    with zf.open(info) as fh:
                        claimed, header = _npy_data_bytes(fh)
                    if claimed > info.file_size - header:
                        raise VectorFileError(path, f"member {info.filename} claims {claimed} bytes of data in "
                                              f"its header but holds {info.file_size - header}")
        return
    with open(path, "rb") as fh:
        claimed, header = _npy_data_bytes(fh)
        size = os.fstat(fh.fileno()).st_size
    if claimed > size - header:
        raise VectorFileError(path, f"the header claims {claimed} bytes of data but the file holds {size - header} "
                              "(truncated or forged)")


def _dupes(keys: list[str]) -> set[str]:
    seen: set[str] = set()
    return {k for k in keys if k in seen or seen.add(k)}


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
    vectors = None
    if fmt == "images":
        records = read_image_folder(src)
    elif fmt in ("csv", "jsonl"):
        if src.stat().st_size == 0:
            raise ImportDataError(src, "the file is empty")
        reader = read_csv_texts if fmt == "csv" else read_jsonl_texts
        records = reader(src, key_col, text_col, label_col)
    elif fmt == "vectors":
        keys, vectors = read_vector_file(src, Path(ids_path) if ids_path else None)
        records = [{"key": k, "modality": "vector"} for k in keys]
    else:
        raise ImportDataError(src, f"unknown format '{fmt}' (use {', '.join(FORMATS)})")
    if not records:
        raise ImportDataError(src, "no items found")
    for r in records:
        r["split"] = split or r.get("split")
        r["source"] = str(src)
    if vectors is not None and model:
        dim = ws.model(model).get("dim")  # fail before writing when the model is unknown or gives other dims
        if isinstance(dim, int) and dim > 0 and vectors.shape[1] != dim:
            raise VectorFileError(src, f"{vectors.shape[1]}-d vectors, but model '{model}' gives {dim}-d vectors")
    with ws.transaction():
        ids = ws.add_items(records, source=str(src))
        vector_set = None
        if vectors is not None and model:
            vector_set = ws.add_vector_set(model, ids, vectors, name=split or src.stem)
        stored = store_qrels(ws, judgments, qrels_seed) if judgments is not None else None
    return {"path": str(src), "format": fmt, "count": len(ids), "split": split,
            "vector_set": vector_set["id"] if vector_set else None,
            "qrels": stored.to_dict() if stored else None}
