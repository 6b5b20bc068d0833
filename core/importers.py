"""Importing items into a workspace: image folders, CSV/JSONL texts, and vector files.

Everything is read and validated before anything is written, and the write is one transaction,
so a bad file never leaves half an import behind.
"""

from __future__ import annotations

import csv
import json
import math
import os
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from core.errors import ImportDataError, VectorFileError, printable
from core.images import validate_image
from core.keys import char_name, normalise_keys, normalise_label
from core.progress import ProgressFn, StopFn, check_stop, no_progress
from core.store import Workspace
from core.store.vectors import as_storage_dtype

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


def read_image_folder(root: Path, on_progress: ProgressFn | None = None,
                      should_stop: StopFn | None = None) -> list[dict[str, Any]]:
    """One sub-folder per label; every image file inside becomes an item keyed by its relative path.

    Links are followed only within the folder, and a folder link never leads back to a folder
    already walked: a label folder linking to the root would otherwise import every image again.
    Every image is checked to decode (and to be within the pixel limit) before anything is stored.
    """
    if not root.is_dir():
        raise ImportDataError(root, "image import needs a folder with one sub-folder per label")
    inside = root.resolve()
    loose = [p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if loose:
        raise ImportDataError(root, f"{len(loose)} images lie directly in the folder (e.g. {loose[0]}); "
                              "put them in one sub-folder per label")
    seen_dirs: dict[Path, Path] = {inside: root}
    found = []
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        label = normalise_label(label_dir.name, label_dir, "folder name")
        found += [(file, label) for file in _image_files(label_dir, inside, seen_dirs)]
    if not found:
        raise ImportDataError(root, "no image files found in the label sub-folders")
    report = on_progress or no_progress
    records = []
    for n, (file, label) in enumerate(found):
        if n % 64 == 0:
            check_stop(should_stop)
            report(n, len(found), {"stage": "checking images"})
        target = file.resolve()
        if not target.is_relative_to(inside):  # a link must not pull in files from elsewhere
            raise ImportDataError(file, f"symbolic link to {target}, outside the imported folder {inside}; "
                                  "copy the file into the folder instead")
        if file.stat().st_size == 0:
            raise ImportDataError(file, "image file is empty")
        validate_image(file)
        records.append({"key": file.relative_to(root).as_posix(), "label": label, "modality": "image",
                        "path": str(target), "where": printable(str(file))})
    report(len(found), len(found), {"stage": "checking images"})
    return _with_keys(records, root)


def _image_files(folder: Path, inside: Path, seen_dirs: dict[Path, Path]) -> list[Path]:
    """Image files under ``folder``, in order, refusing folder links that leave or re-enter the tree."""
    real = folder.resolve()
    if not real.is_relative_to(inside):
        raise ImportDataError(folder, f"symbolic link to {real}, outside the imported folder {inside}; "
                              "copy the files into the folder instead")
    if real in seen_dirs:
        raise ImportDataError(folder, f"links back to {seen_dirs[real]} inside the imported folder; "
                              "its images would be imported twice")
    seen_dirs[real] = folder
    files = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            files.extend(_image_files(entry, inside, seen_dirs))
        elif entry.is_file() and entry.suffix.lower() in IMAGE_SUFFIXES:
            files.append(entry)
    return files


def _text_record(row: dict[str, Any], n: int, source: Path, key_col: str, text_col: str,
                 label_col: str, where: str) -> dict[str, Any]:
    text = row.get(text_col)
    if text is None or (isinstance(text, str) and text.strip() == ""):
        raise ImportDataError(source, f"{where}: missing or empty '{text_col}' field")
    if not isinstance(text, str):
        raise ImportDataError(source, f"{where}: the '{text_col}' field must be text, got {type(text).__name__}")
    # C0 controls (NUL...) break tokenizers and lone surrogates cannot be stored as UTF-8; line
    # separators and C1 characters are legitimate text
    odd = next((ch for ch in text if (ch < " " and ch not in "\t\n\r") or unicodedata.category(ch) == "Cs"), None)
    if odd is not None:
        raise ImportDataError(source, f"{where}: the '{text_col}' field holds the {char_name(odd)}")
    key = row.get(key_col)
    extra = {k: v for k, v in row.items() if k not in (key_col, text_col, label_col)}
    return {"key": f"{source.stem}:{n}" if key is None or key == "" else key, "text": text,
            "label": normalise_label(row.get(label_col), source, f"{where}: '{label_col}'"),
            "modality": "text", "metadata": extra, "where": f"{where}: '{key_col}'"}


def read_csv_texts(path: Path, key_col: str = "key", text_col: str = "text",
                   label_col: str = "label") -> list[dict[str, Any]]:
    """Rows of a CSV/TSV file (UTF-8, with or without a byte-order mark) as text items."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            dialect = "excel-tab" if path.suffix.lower() == ".tsv" else "excel"
            reader = csv.DictReader(fh, dialect=dialect)
            if not reader.fieldnames or text_col not in reader.fieldnames:
                raise ImportDataError(path, f"no '{text_col}' column (columns: {reader.fieldnames})")
            rows = list(reader)
    except UnicodeDecodeError as exc:
        raise ImportDataError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except csv.Error as exc:
        raise ImportDataError(path, f"malformed CSV ({exc})") from exc
    for n, row in enumerate(rows, start=1):
        if None in row:  # DictReader files surplus fields under None
            raise ImportDataError(path, f"record {n}: {len(row[None])} more fields than the header has columns")
    return _with_keys([_text_record(r, n, path, key_col, text_col, label_col, f"record {n}")
                       for n, r in enumerate(rows, start=1)], path)


def read_jsonl_texts(path: Path, key_col: str = "key", text_col: str = "text",
                     label_col: str = "label") -> list[dict[str, Any]]:
    """One JSON object a line; only newlines end a record (U+2028 inside a string is valid JSON)."""
    records = []
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportDataError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    for n, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ImportDataError(path, f"line {n}: invalid JSON ({exc.msg})") from exc
        except RecursionError:
            raise ImportDataError(path, f"line {n}: JSON nested too deeply") from None
        if not isinstance(row, dict):
            raise ImportDataError(path, f"line {n}: expected a JSON object")
        records.append(_text_record(row, n, path, key_col, text_col, label_col, f"line {n}"))
    return _with_keys(records, path)


def _with_keys(records: list[dict[str, Any]], source: Path) -> list[dict[str, Any]]:
    """Records with their keys normalised (NFC, no BOM); look-alike keys are refused."""
    keys = normalise_keys([r["key"] for r in records], source, wheres=[r.pop("where") for r in records])
    for record, key in zip(records, keys, strict=True):
        record["key"] = key
    return records


@dataclass(frozen=True)
class NpyHeader:
    """What an .npy header declares, read without touching the data."""

    shape: tuple[int, ...]
    dtype: np.dtype
    data_bytes: int  # what the data would take (0 for pickled object arrays, which np.load refuses)
    header_bytes: int

    @property
    def rows(self) -> int:
        return self.shape[0] if self.shape else 0


# deflate expands at most about 1032:1; anything claiming more was forged
_DEFLATE_MAX_RATIO = 1100


def npy_header_info(fh: BinaryIO) -> NpyHeader:
    """The header of the .npy stream ``fh`` (left at the start of the data)."""
    version = np.lib.format.read_magic(fh)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read_header(fh, max_header_size=10_000)
    dtype = np.dtype(dtype)
    shape = tuple(int(n) for n in shape)
    claimed = 0 if dtype.hasobject else math.prod(shape) * dtype.itemsize
    return NpyHeader(shape, dtype, claimed, fh.tell())


def npz_headers(path: Path) -> dict[str, NpyHeader]:
    """Headers of every array in an .npz, checked against the sizes the zip really holds."""
    headers = {}
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                continue
            if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
                raise VectorFileError(path, f"member {info.filename} claims {info.file_size} bytes but stores "
                                      f"{info.compress_size} (forged sizes)")
            if info.compress_type == zipfile.ZIP_DEFLATED and \
                    info.file_size > _DEFLATE_MAX_RATIO * info.compress_size + 4096:
                raise VectorFileError(path, f"member {info.filename} claims {info.file_size} bytes from "
                                      f"{info.compress_size} compressed bytes, more than deflate can expand")
            with zf.open(info) as fh:
                header = npy_header_info(fh)
            if header.data_bytes > info.file_size - header.header_bytes:
                raise VectorFileError(path, f"member {info.filename} claims {header.data_bytes} bytes of data in "
                                      f"its header but holds {info.file_size - header.header_bytes}")
            headers[info.filename.removesuffix(".npy")] = header
    return headers


def npy_file_header(path: Path) -> NpyHeader:
    """The header of an .npy file, refused when it claims more data than the file holds."""
    with open(path, "rb") as fh:
        header = npy_header_info(fh)
        size = os.fstat(fh.fileno()).st_size
    if header.data_bytes > size - header.header_bytes:
        raise VectorFileError(path, f"the header claims {header.data_bytes} bytes of data but the file holds "
                              f"{size - header.header_bytes} (truncated or forged)")
    return header


def _check_vectors_header(header: NpyHeader, path: Path) -> None:
    if header.dtype.hasobject:
        return  # np.load refuses pickled objects with its own message
    if header.dtype.kind not in "fiu":
        raise VectorFileError(path, f"vectors must be numeric, got dtype {header.dtype}")
    if len(header.shape) != 2:
        raise VectorFileError(path, f"vectors must be a 2-D matrix, got shape {header.shape}")
    if header.rows == 0:
        raise VectorFileError(path, "the file holds no vectors")
    if header.shape[1] == 0:
        raise VectorFileError(path, f"vectors have shape {header.shape}: no values per vector")


def _check_ids_header(header: NpyHeader, path: Path, rows: int) -> None:
    """ids: a 1-D array of text or integers, one per vector, checked before it is allocated."""
    if header.dtype.kind not in "USiu":
        raise VectorFileError(path, f"ids must be text or integers, got dtype {header.dtype}")
    if len(header.shape) != 1:
        what = "a single value" if not header.shape else f"shape {header.shape}"
        raise VectorFileError(path, f"ids must be a 1-D array with one key per vector, got {what}")
    if header.rows != rows:
        raise VectorFileError(path, f"{rows} vectors but {header.rows} ids")
    if header.dtype.itemsize == 0:
        raise VectorFileError(path, f"all {header.rows} ids are empty strings (dtype {header.dtype})")


def _raw_ids(ids: np.ndarray, path: Path) -> list[str | int]:
    """Python keys from an ids array: text, UTF-8 bytes (decoded) or integers."""
    if ids.dtype.kind != "S":
        return ids.tolist()
    out: list[str | int] = []
    for n, raw in enumerate(ids.tolist(), start=1):
        try:
            out.append(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise VectorFileError(path, f"id {n} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return out


def read_ids_file(path: Path) -> tuple[list[str], list[str]]:
    """Keys of an id list (one a line, UTF-8, BOM allowed) and where each stands ("line 3")."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise VectorFileError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise VectorFileError(path, f"cannot read the id list ({exc.strerror or exc})") from None
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    blank = next((n for n, line in enumerate(lines, start=1) if not line.strip()), None)
    if blank is not None:
        raise VectorFileError(path, f"line {blank} is empty; the id list needs one key a line, in row order")
    return lines, [f"line {n}" for n in range(1, len(lines) + 1)]


def read_vector_file(path: Path, ids_path: Path | None = None) -> tuple[list[str], np.ndarray]:
    """Keys and a float matrix from ``.npz`` (arrays 'ids' and 'vectors') or ``.npy`` + ids text file.

    Headers are read and checked first (shapes, dtypes, sizes against the file), so a forged
    file is refused before anything is allocated for it.
    """
    try:
        if path.suffix.lower() == ".npz":
            headers = npz_headers(path)
            if "vectors" not in headers or "ids" not in headers:
                raise VectorFileError(path, f"an .npz needs arrays 'ids' and 'vectors' (found {sorted(headers)})")
            _check_vectors_header(headers["vectors"], path)
            _check_ids_header(headers["ids"], path, headers["vectors"].rows)
            with np.load(path, allow_pickle=False) as data:
                vectors = data["vectors"]
                raw, ids_source, wheres = _raw_ids(data["ids"], path), path, None
        else:
            _check_vectors_header(npy_file_header(path), path)
            if ids_path is None:
                raise VectorFileError(path, "an .npy vector file needs an id list (--ids FILE, one key a line)")
            raw, wheres = read_ids_file(ids_path)
            ids_source = ids_path
            vectors = np.load(path, allow_pickle=False)
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
    if len(raw) != vectors.shape[0]:
        where = "" if ids_source == path else f" in {ids_source}"
        raise VectorFileError(path, f"{vectors.shape[0]} vectors but {len(raw)} ids{where}")
    keys = normalise_keys(raw, ids_source, noun="id", wheres=wheres)
    dupes = _dupes(keys)
    if dupes:
        raise VectorFileError(ids_source, f"duplicate ids, e.g. {sorted(dupes)[:3]}")
    return keys, as_storage_dtype(vectors, "float16" if vectors.dtype == np.float16 else "float32", str(path))


def _dupes(keys: list[str]) -> set[str]:
    seen: set[str] = set()
    return {k for k in keys if k in seen or seen.add(k)}


def import_items(ws: Workspace, path: str | Path, fmt: str | None = None, split: str | None = None,
                 model: str | None = None, ids_path: str | Path | None = None,
                 key_col: str = "key", text_col: str = "text", label_col: str = "label",
                 on_progress: ProgressFn | None = None, should_stop: StopFn | None = None) -> dict[str, Any]:
    """Import items (and, for vector files with ``model``, that model's vectors) all-or-nothing.

    ``on_progress``/``should_stop`` follow :mod:`core.progress`; image folders report while every
    image is checked to decode, which is the slow part of a large import.
    """
    src = Path(path)
    if not src.exists():
        raise ImportDataError(src, "no such file or folder")
    fmt = fmt or detect_format(src)
    vectors = None
    if fmt == "images":
        records = read_image_folder(src, on_progress, should_stop)
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
    return {"path": str(src), "format": fmt, "count": len(ids), "split": split,
            "vector_set": vector_set["id"] if vector_set else None}
