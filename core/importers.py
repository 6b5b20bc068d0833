"""Importing items into a workspace: image folders, CSV/JSONL texts, and vector files.

Vector files are streamed by :mod:`embridge.core.vector_import`; qrels files by :mod:`embridge.core.qrels`.

Everything is read and validated before anything is written, and the write is one transaction,
so a bad file never leaves half an import behind.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

from embridge.core import stop_signals
from embridge.core.errors import ImportDataError, printable
from embridge.core.images import UNSUPPORTED_IMAGE_SUFFIXES, validate_image
from embridge.core.keys import (
    MAX_INT_DIGITS,
    char_name,
    check_input_file,
    normalise_keys,
    normalise_label,
    odd_text_char,
)
from embridge.core.paths import check_input_outside, check_regular
from embridge.core.progress import ProgressFn, StopFn, check_stop, no_progress
from embridge.core.store import Workspace
from embridge.core.store.items import check_split
from embridge.core.text_files import utf8_problem

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".npy"}
FORMATS = ("images", "csv", "jsonl", "vectors")
# JSONL reads a text of any length, so CSV does too: the largest field Python's csv module can
# hold (its C long), not its default of 131072 characters, which refused valid files.
CSV_FIELD_LIMIT = 2**31 - 1 if sys.platform == "win32" else sys.maxsize


class DuplicateJSONKeyError(ValueError):
    """A JSON object names one key twice; ``json.loads`` would keep only the last value."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"the key '{printable(key)}' appears twice in one object")


def unique_json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for ``json.loads`` that refuses a repeated key instead of dropping values."""
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise DuplicateJSONKeyError(key)
        obj[key] = value
    return obj


def json_number_problem(exc: ValueError) -> str:
    """The words for a ValueError ``json.loads`` raised besides a syntax error: Python refuses to
    convert an integer of more than 4300 digits (its guard against quadratic-time parsing)."""
    if "integer string conversion" in str(exc):
        return (f"a number has more than {MAX_INT_DIGITS} digits, more than Embridge reads as an integer; "
                "write such a key or label as a JSON string")
    return f"invalid JSON ({exc})"


def json_syntax_problem(exc: json.JSONDecodeError) -> str:
    """A line's JSON syntax error with the column it points at (the decoder's own message ends "at")."""
    return f"invalid JSON ({exc.msg.removesuffix(' at')} at column {exc.colno})"


def check_link_resolves(entry: Path) -> None:
    """Refuse a symbolic link that is broken or part of a loop: it is neither a file nor a folder,
    so walking past it would silently leave out whatever it was meant to bring in."""
    if not entry.is_symlink():
        return
    try:
        entry.resolve(strict=True)
    except FileNotFoundError:
        raise ImportDataError(entry, f"broken symbolic link (its target {printable(str(entry.readlink()))} "
                              "does not exist); fix or remove the link") from None
    except (RuntimeError, OSError):  # RuntimeError: a loop of links, OSError: ELOOP, too many levels
        raise ImportDataError(entry, "symbolic link loop (following it never reaches a file or folder); "
                              "fix or remove the link") from None


def detect_format(path: Path) -> str:
    """Guess the import format from the path: a folder holding a BEIR file (corpus.jsonl, queries.jsonl or
    a qrels folder) is a BEIR folder, so one missing its corpus is told so rather than searched for
    images; any other folder images, else by suffix."""
    if path.is_dir():
        # not only regular files: a FIFO there is refused as BEIR input
        beir = [path / "corpus.jsonl", path / "queries.jsonl"]
        qrels = path / "qrels"  # with .tsv files: an image label may be called 'qrels'
        marked = any(f.exists() and not f.is_dir() for f in beir) or (
            qrels.is_dir() and any(f.suffix.lower() == ".tsv" for f in qrels.iterdir()))
        return "beir" if marked else "images"
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
    for entry in sorted(root.iterdir()):
        if not entry.name.startswith("."):
            check_link_resolves(entry)
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
        check_link_resolves(entry)
        if entry.is_dir():
            files.extend(_image_files(entry, inside, seen_dirs))
        elif entry.suffix.lower() in IMAGE_SUFFIXES and not entry.is_file():  # a FIFO, device or socket
            check_input_file(entry, "image file (--path)")
        elif entry.is_file() and entry.suffix.lower() in IMAGE_SUFFIXES:
            files.append(entry)
        elif entry.is_file() and entry.suffix.lower() in UNSUPPORTED_IMAGE_SUFFIXES:
            raise ImportDataError(entry, f"is a {UNSUPPORTED_IMAGE_SUFFIXES[entry.suffix.lower()]} image, which is "
                                  "not imported (PNG, JPEG, BMP or .npy); convert it, or move it out of the folder")
    return files


def _text_record(row: dict[str, Any], n: int, source: Path, key_col: str, text_col: str,
                 label_col: str, where: str, key_named: bool = False) -> dict[str, Any]:
    """One text item; a record without the key field gets ``<file stem>:<record number>``, unless the
    key column was named (``key_named``). A key field that is present but empty is refused."""
    text = row.get(text_col)
    if text is None or (isinstance(text, str) and text.strip() == ""):
        raise ImportDataError(source, f"{where}: missing or empty '{text_col}' field")
    if not isinstance(text, str):
        raise ImportDataError(source, f"{where}: the '{text_col}' field must be text, got {type(text).__name__}")
    odd = odd_text_char(text)
    if odd is not None:
        raise ImportDataError(source, f"{where}: the '{text_col}' field holds the {char_name(odd)}")
    if key_col not in row and key_named:
        raise ImportDataError(source, f"{where}: no '{key_col}' field (the --key-column)")
    key = row[key_col] if key_col in row else f"{source.stem}:{n}"
    if key is None:  # a CSV row shorter than its header, or a JSON null
        raise ImportDataError(source, f"{where}: '{key_col}': the key is empty")
    extra = {k: v for k, v in row.items() if k not in (key_col, text_col, label_col)}
    return {"key": key, "text": text,
            "label": normalise_label(row.get(label_col), source, f"{where}: '{label_col}'"),
            "modality": "text", "metadata": extra, "where": f"{where}: '{key_col}'"}


def read_csv_texts(path: Path, key_col: str | None = None, text_col: str = "text",
                   label_col: str | None = None) -> list[dict[str, Any]]:
    """Rows of a CSV/TSV file (UTF-8, with or without a byte-order mark) as text items.

    The key and label columns are optional under their default names ("key", "label"); a column
    named by the caller must exist."""
    if csv.field_size_limit() != CSV_FIELD_LIMIT:
        csv.field_size_limit(CSV_FIELD_LIMIT)
    reader: csv.DictReader | None = None
    dialect = "excel-tab" if path.suffix.lower() == ".tsv" else "excel"
    read = 0  # lines read before the current record
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            # strict: a quote that is never closed is an error, not a field swallowing every later row
            reader = csv.DictReader(fh, dialect=dialect, strict=True)
            _check_header(path, reader.fieldnames, (text_col, key_col, label_col))
            rows, lines, read = [], [], reader.line_num  # each record's first line: a quoted field may span several
            for row in reader:
                rows.append(row)
                lines.append(read + 1)
                read = reader.line_num
    except UnicodeDecodeError as exc:
        raise ImportDataError(path, utf8_problem(path, exc)) from exc
    except csv.Error as exc:
        at = reader.reader.line_num if reader is not None else 0  # DictReader's own count lags on errors
        line = f"line {at}: " if at else ""
        if "field larger than field limit" in str(exc):
            raise ImportDataError(path, f"{line}a field is longer than {CSV_FIELD_LIMIT} characters, "
                                  "the most a CSV field may hold") from None
        if "unexpected end of data" in str(exc):  # strict mode at the end of the file inside quotes
            opened = _open_quote_line(path, read + 1, csv.get_dialect(dialect))
            raise ImportDataError(path, f"line {opened}: a quoted field starts here and is never closed (its "
                                  "closing '\"' is missing, so it would take in every later line); if the quote is part of the "
                                  "text, quote the whole field and double the quote inside it, or import JSONL") from None
        said = str(exc).replace("'\t'", "a tab")  # the tab itself would print as a blank: "(' ' expected after"
        raise ImportDataError(path, f"{line}malformed {'TSV' if dialect == 'excel-tab' else 'CSV'} ({said})") from None
    where = [f"line {line} (record {n})" for n, line in enumerate(lines, start=1)]
    for row, at in zip(rows, where, strict=True):
        if None in row:  # DictReader files surplus fields under None
            raise ImportDataError(path, f"{at}: {len(row[None])} more fields than the header has columns")
    return _with_keys([_text_record(r, n, path, key_col or "key", text_col, label_col or "label", where[n - 1],
                                    key_col is not None)
                       for n, r in enumerate(rows, start=1)], path)


def _open_quote_line(path: Path, first: int, dialect: csv.Dialect) -> int:
    """The line where the quoted field left open at the end of ``path`` starts, scanning from line
    ``first`` (the first line of the record the csv module was reading) with the dialect's rules:
    a field that begins with the quote character is quoted, and a doubled quote inside it is text."""
    quote, delimiter = dialect.quotechar or '"', dialect.delimiter
    opened, quoted, after_quote, field_start = first, False, False, True
    with open(path, newline="", encoding="utf-8-sig") as fh:
        for n, line in enumerate(fh, start=1):
            if n < first:
                continue
            for ch in line:
                if quoted:
                    if after_quote:  # the quote before was the closing one, unless this is its double
                        after_quote = False
                        if ch == quote:
                            continue
                        quoted = False
                    elif ch == quote:
                        after_quote = True
                        continue
                    else:
                        continue
                if ch == delimiter or ch in "\r\n":
                    field_start = True
                elif field_start and ch == quote:
                    quoted, opened, field_start = True, n, False
                else:
                    field_start = False
    return opened


def _check_header(path: Path, fieldnames: Any, wanted: tuple[str | None, ...]) -> None:
    """The header names each column once (else a row would keep only its last value of the two)
    and holds every column asked for."""
    seen: set[str] = set()
    for col in fieldnames or []:
        if col.startswith("\ufeff"):  # a second byte-order mark: its column's name would not match, silently
            raise ImportDataError(path, f"line 1: the header's column '{printable(col)}' starts with a byte-order "
                                  "mark (the file has two); remove it")
        if col in seen:
            raise ImportDataError(path, f"line 1: the header names the column '{printable(col)}' twice; "
                                  "rename or remove one")
        seen.add(col)
    for col in wanted:
        if col is not None and col not in seen:
            raise ImportDataError(path, f"no '{col}' column (columns: {fieldnames})")


def read_jsonl_texts(path: Path, key_col: str | None = None, text_col: str = "text",
                     label_col: str | None = None) -> list[dict[str, Any]]:
    """One JSON object a line; only newlines end a record (U+2028 inside a string is valid JSON).

    A named key field must be in every record, a named label field in at least one (items may be
    unlabelled); under their default names both are optional."""
    records, labelled = [], False
    try:
        text = path.read_bytes().decode("utf-8-sig")  # not read_text: its universal newlines end lines at '\r'
    except UnicodeDecodeError as exc:
        raise ImportDataError(path, utf8_problem(path, exc)) from exc
    for n, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line.removesuffix("\r"), object_pairs_hook=unique_json_object)  # columns in the line
        except json.JSONDecodeError as exc:
            raise ImportDataError(path, f"line {n}: {json_syntax_problem(exc)}") from exc
        except DuplicateJSONKeyError as exc:
            raise ImportDataError(path, f"line {n}: {exc}; a JSON reader would keep only the last value") from None
        except RecursionError:
            raise ImportDataError(path, f"line {n}: JSON nested too deeply") from None
        except ValueError as exc:  # an integer of more than 4300 digits, which Python will not convert
            raise ImportDataError(path, f"line {n}: {json_number_problem(exc)}") from None
        if not isinstance(row, dict):
            raise ImportDataError(path, f"line {n}: expected a JSON object")
        if label_col is not None and label_col in row:
            labelled = True
        records.append(_text_record(row, n, path, key_col or "key", text_col, label_col or "label", f"line {n}",
                                    key_col is not None))
    if label_col is not None and records and not labelled:
        raise ImportDataError(path, f"no record has the '{label_col}' field (the --label-column)")
    return _with_keys(records, path)


def _with_keys(records: list[dict[str, Any]], source: Path) -> list[dict[str, Any]]:
    """Records with their keys normalised (NFC, no BOM); look-alike keys are refused."""
    keys = normalise_keys([r["key"] for r in records], source, wheres=[r.pop("where") for r in records])
    for record, key in zip(records, keys, strict=True):
        record["key"] = key
    return records


def import_items(ws: Workspace, path: str | Path, fmt: str | None = None, split: str | None = None,
                 model: str | None = None, ids_path: str | Path | None = None,
                 key_col: str | None = None, text_col: str = "text", label_col: str | None = None,
                 qrels: str | Path | None = None, qrels_seed: int = 0,
                 on_progress: ProgressFn | None = None, should_stop: StopFn | None = None) -> dict[str, Any]:
    """Import items (and, for vector files with ``model``, that model's vectors) all-or-nothing.

    ``qrels`` names a judgments file (see :mod:`embridge.core.qrels`) stored in the same transaction, so its
    keys may name the items being imported as well as earlier ones. ``on_progress``/``should_stop``
    follow :mod:`embridge.core.progress`; image folders report while every image is checked to decode, which
    is the slow part of a large import.
    """
    from embridge.core.qrels import read_qrels, store_qrels

    split = check_split(split)  # an option: checked before any file is opened
    judgments = read_qrels(qrels) if qrels is not None else None
    src = Path(path)
    if not src.exists():
        raise ImportDataError(src, "no such file or folder")
    check_regular(src, "import input (--path)")  # a FIFO or device: refused before it is opened
    check_input_outside(src, ws.root)
    fmt = fmt or detect_format(src)
    if fmt == "beir":
        if judgments is not None:
            raise ImportDataError(Path(qrels), "a BEIR folder brings its judgments in qrels/; import other "
                                  "judgments on their own")
        from embridge.core.beir_import import import_beir

        return import_beir(ws, src, on_progress, should_stop, seed=qrels_seed).to_dict()
    if fmt == "vectors":
        from embridge.core.vector_import import import_vector_file

        return import_vector_file(ws, src, split, model, ids_path, judgments, qrels_seed)
    if fmt == "images":
        records = read_image_folder(src, on_progress, should_stop)
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
    with stop_signals.job_scope(), ws.transaction(result=True):  # a stop at the commit: the import is done
        ids = ws.add_items(records, source=str(src))
        stored = store_qrels(ws, judgments, qrels_seed) if judgments is not None else None
    return {"path": str(src), "format": fmt, "count": len(ids), "split": split, "vector_set": None,
            "qrels": stored.to_dict() if stored else None}
