"""Reading relevance judgments (qrels) files and storing them against workspace items.

A qrels file has one judgment a line: query key, item key, grade and optionally the split
(train, dev or test), tab-separated (``.tsv``, BEIR's layout) or comma-separated (``.csv``; other
suffixes: tab when the first line holds a tab, a comma when it holds one, else runs of spaces).
TREC's layout (query, iteration, document, grade: four columns whose last is a number) is read too.
A first line is a header only when it names its columns (``query-id``, ``score``, ...); any other
line with a grade that is not a number is an error naming it. Query keys name query items (split
'query'), item keys document (gallery) items: the two are separate namespaces. Grades are integers
0..MAX_GRADE; 0 means judged and not relevant.

Every query's judgments belong to one split, across imports too, so held-out queries never reach
training: a line giving an already-judged query another split is refused, and a line without a
split puts its judgment in the query's existing split. Queries judged for the first time without
a split are assigned to train / dev / test (60 / 20 / 20 %) by a seeded shuffle of their keys; the
seed is returned and recorded in the workspace. Any problem (unknown key, bad grade, a pair judged twice) is one
error naming the file and line, and nothing is stored.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np

from embridge.core import stop_signals
from embridge.core.errors import ImportDataError
from embridge.core.formatting import shown_name
from embridge.core.keys import check_input_file, normalise_key, shortened
from embridge.core.store import Workspace
from embridge.core.store.judgments import JUDGMENT_SPLITS, MAX_GRADE, Judgments
from embridge.core.text_files import utf8_problem

_GRADE = re.compile(r"[+-]?[0-9]+")  # a grade as written: ASCII digits, an optional sign

SPLIT_FRACTIONS = (0.6, 0.2, 0.2)
SPLIT_SEED_META = "judgments_split_seed"


@dataclass(frozen=True)
class QrelLines:
    """Parsed qrels lines, in file order, with the line each came from."""

    path: Path
    query_keys: list[str]
    item_keys: list[str]
    grades: list[int]
    splits: list[str | None]
    lines: list[int]

    def __len__(self) -> int:
        return len(self.query_keys)


@dataclass(frozen=True)
class QrelsSummary:
    """What a qrels import stored."""

    path: str
    judgments: int
    per_split: dict[str, int] = field(default_factory=dict)
    split_seed: int | None = None  # set when the splits were drawn rather than given

    def to_dict(self) -> dict:
        return {"path": self.path, "judgments": self.judgments, "per_split": dict(self.per_split),
                "split_seed": self.split_seed}


def read_qrels(path: str | Path, split: str | None = None) -> QrelLines:
    """Parse a qrels file (see the module docstring); ``split`` applies to lines that give none."""
    src = Path(path)
    if split is not None and split not in JUDGMENT_SPLITS:
        raise ImportDataError(src, f"unknown split '{split}' (use {', '.join(JUDGMENT_SPLITS)})")
    check_input_file(src, "judgments file (--qrels)")  # a FIFO or /dev/zero: refused before it is opened
    try:
        with open(src, newline="", encoding="utf-8-sig") as fh:
            first = fh.readline()
            delimiter = _delimiter(src, first)
            fh.seek(0)
            rows = _rows(src, fh, delimiter)
    except FileNotFoundError:
        raise ImportDataError(src, "no such file") from None
    except UnicodeDecodeError as exc:
        raise ImportDataError(src, utf8_problem(src, exc)) from exc
    except (csv.Error, OSError) as exc:
        raise ImportDataError(src, f"unreadable qrels file ({exc})") from exc
    out = QrelLines(src, [], [], [], [], [])
    width, trec, header = None, False, None
    for n, row in rows:
        cells = [c.strip() for c in row]
        while cells and not cells[-1]:
            cells.pop()  # a trailing separator is not an empty split column
        if not any(cells):
            continue
        if width is None and not out.lines and _is_header(cells):
            width = header = len(cells)
            continue
        if header is not None and len(cells) != header:  # under BEIR's 3-column header, a 4th is no TREC layout
            short = len(cells) < header  # most often the line's separator is not the file's
            sep = {"\t": "tabs", ",": "commas"}.get(delimiter, "spaces")
            raise ImportDataError(src, f"line {n}: {len(cells)} columns where the header has {header}"
                                  + (f" (this file's fields are separated by {sep})" if short else ""))
        if not out.lines:  # the first judgment (after any header) tells TREC's layout from a split column
            trec = len(cells) == 4 and _is_number(cells[3]) and cells[3] not in JUDGMENT_SPLITS
        if trec and len(cells) != 4:  # one layout a file: a 3-column line here would shift every column
            raise ImportDataError(src, f"line {n}: {len(cells)} columns where earlier lines have TREC's 4 "
                                  "(query, iteration, document, grade)")
        if trec:
            cells = [cells[0], cells[2], cells[3]]  # query, iteration (ignored), document, grade
        if len(cells) not in (3, 4):
            raise ImportDataError(src, f"line {n}: expected 3 or 4 columns (query key, item key, grade[, split]), "
                                  f"found {len(cells)}")
        if width is not None and len(cells) != width and not trec:
            raise ImportDataError(src, f"line {n}: {len(cells)} columns where earlier lines have {width}")
        width = len(cells)
        query, item, grade_text = cells[:3]
        if not query or not item:
            raise ImportDataError(src, f"line {n}: empty {'query' if not query else 'item'} key")
        query = normalise_key(query, src, f"line {n}: query key")  # as the importers store keys
        item = normalise_key(item, src, f"line {n}: item key")
        grade = _grade(src, n, grade_text)
        row_split = cells[3] if len(cells) == 4 else split
        if row_split is not None and row_split not in JUDGMENT_SPLITS:
            raise ImportDataError(src, f"line {n}: unknown split '{shown_name(row_split)}' (use {', '.join(JUDGMENT_SPLITS)})")
        out.query_keys.append(query)
        out.item_keys.append(item)
        out.grades.append(grade)
        out.splits.append(row_split)
        out.lines.append(n)
    if not out.query_keys:
        raise ImportDataError(src, "no judgments found")
    _check_pairs(out)
    return out


def _grade(src: Path, n: int, text: str) -> int:
    """The grade written as ``text`` on line ``n``: an integer 0..MAX_GRADE, else an error naming the line.

    Leading zeros are dropped before ``int()``, and a longer number is too large by its digits alone:
    ``int()`` of more than 4300 digits raises Python's own ValueError instead of saying which line."""
    if not _GRADE.fullmatch(text):  # int() would also read "1_0" as 10, and non-ASCII digits
        raise ImportDataError(src, f"line {n}: grade '{shortened(text)}' is not an integer")
    sign, digits = ("-" if text[0] == "-" else ""), text.lstrip("+-").lstrip("0") or "0"
    if len(digits) > len(str(MAX_GRADE)):
        if sign:
            raise ImportDataError(src, f"line {n}: negative grade {shortened(text)}; grades are 0 or more")
        raise ImportDataError(src, f"line {n}: grade {shortened(text)} is too large; grades are 0 to {MAX_GRADE}")
    grade = int(sign + digits)
    if grade < 0:
        raise ImportDataError(src, f"line {n}: negative grade {grade}; grades are 0 or more")
    if grade > MAX_GRADE:
        raise ImportDataError(src, f"line {n}: grade {text} is too large; grades are 0 to {MAX_GRADE}")
    return grade


def seeded_order(query_keys: list[str], seed: int) -> list[str]:
    """The distinct query keys in a seeded random order that does not depend on the input's order."""
    unique = sorted(set(query_keys))
    return [unique[i] for i in np.random.default_rng(seed).permutation(len(unique)).tolist()]


def assign_query_splits(query_keys: list[str], seed: int) -> dict[str, str]:
    """Seeded train/dev/test assignment of queries (60/20/20 %), independent of input order."""
    ordered = seeded_order(query_keys, seed)
    n_train = int(round(SPLIT_FRACTIONS[0] * len(ordered)))
    n_dev = int(round(SPLIT_FRACTIONS[1] * len(ordered)))
    return {key: "train" if rank < n_train else "dev" if rank < n_train + n_dev else "test"
            for rank, key in enumerate(ordered)}


def resolve_qrels(ws: Workspace, qrels: QrelLines, seed: int = 0) -> tuple[Judgments, int | None]:
    """Judgments on workspace item ids; lines without a split take the query's stored split or a drawn one.

    A line giving a query a split other than the one it already has in the workspace is refused.
    """
    drawn = None
    queries = _lookup(ws, qrels, qrels.query_keys, "query", "query")
    items = _lookup(ws, qrels, qrels.item_keys, "doc", "item")
    stored = ws.judged_query_splits(sorted(set(queries.values())))
    splits = list(qrels.splits)
    for q, s, n in zip(qrels.query_keys, splits, qrels.lines, strict=True):
        before = stored.get(queries[q])
        if s is not None and before is not None and s != before:
            raise ImportDataError(qrels.path, f"line {n}: query '{shown_name(q)}' is in split '{s}' here but already in split "
                                  f"'{before}' in the workspace; a query belongs to one split")
    splits = [s if s is not None else stored.get(queries[q]) for q, s in zip(qrels.query_keys, splits, strict=True)]
    if any(s is None for s in splits):
        drawn = assign_query_splits([q for q, s in zip(qrels.query_keys, splits, strict=True) if s is None], seed)
        splits = [s if s is not None else drawn[q] for q, s in zip(qrels.query_keys, splits, strict=True)]
    judgments = Judgments.from_arrays([queries[k] for k in qrels.query_keys], [items[k] for k in qrels.item_keys],
                                      qrels.grades, splits)
    return judgments, (seed if drawn is not None else None)


def import_qrels(ws: Workspace, path: str | Path, split: str | None = None, seed: int = 0) -> QrelsSummary:
    """Read, resolve and store a qrels file in one transaction (see the module docstring)."""
    qrels = read_qrels(path, split)
    with stop_signals.job_scope(), ws.transaction(result=True):  # a stop at the commit: the import is done
        return store_qrels(ws, qrels, seed)


def store_qrels(ws: Workspace, qrels: QrelLines, seed: int = 0) -> QrelsSummary:
    """Resolve and store parsed qrels; call inside the caller's transaction to import items with them."""
    judgments, used_seed = resolve_qrels(ws, qrels, seed)
    with ws.transaction():
        ws.add_judgments(judgments, source=str(qrels.path), name_row=lambda n: (
            f"line {qrels.lines[n]}: query '{shown_name(qrels.query_keys[n])}' and item "
            f"'{shown_name(qrels.item_keys[n])}'"))
        if used_seed is not None:
            ws.set_meta(SPLIT_SEED_META, json.dumps(
                {"seed": used_seed, "fractions": list(SPLIT_FRACTIONS), "source": str(qrels.path)}))
    per_split = {s: int((judgments.splits == s).sum()) for s in JUDGMENT_SPLITS if (judgments.splits == s).any()}
    return QrelsSummary(str(qrels.path), len(judgments), per_split, used_seed)


def _lookup(ws: Workspace, qrels: QrelLines, keys: list[str], namespace: str, what: str) -> dict[str, int]:
    wanted = sorted(set(keys))
    found = ws.existing_keys(wanted, namespace)
    if len(found) < len(wanted):
        key, first = next((k, n) for k, n in zip(keys, qrels.lines, strict=True) if k not in found)
        missing = len(wanted) - len(found)
        where = "query items (split 'query')" if namespace == "query" else "gallery items"
        raise ImportDataError(qrels.path, f"line {first}: unknown {what} key '{shown_name(key)}' ({missing} {what} keys are not "
                              f"{where} of the workspace)")
    return dict(zip(wanted, ws.ids_for_keys(wanted, namespace).tolist(), strict=True))


def _check_pairs(qrels: QrelLines) -> None:
    """A pair judged twice, or a query judged in two splits, is refused naming the later line."""
    seen: dict[tuple[str, str], int] = {}
    query_split: dict[str, tuple[str | None, int]] = {}
    for q, i, s, n in zip(qrels.query_keys, qrels.item_keys, qrels.splits, qrels.lines, strict=True):
        if (q, i) in seen:
            raise ImportDataError(qrels.path, f"line {n}: query '{shown_name(q)}' and item '{shown_name(i)}' are already judged on line "
                                  f"{seen[(q, i)]}")
        seen[(q, i)] = n
        before = query_split.setdefault(q, (s, n))
        if before[0] != s:
            raise ImportDataError(qrels.path, f"line {n}: query '{shown_name(q)}' is in split '{s}' here but '{before[0]}' on "
                                  f"line {before[1]}; a query belongs to one split")


def _rows(src: Path, fh: TextIO, delimiter: str) -> list[tuple[int, list[str]]]:
    """(line number, cells) per line. Tabs and spaces separate plain fields: a quote is part of an id
    (Wikipedia titles such as '"Heroes"_(album)'), never the start of a quoted field that could swallow
    the lines up to the next quote. Comma-separated files keep CSV's quoting, strictly, and a quoted
    field may not span lines."""
    if delimiter == " ":  # ASCII blanks only: a no-break space inside an id is part of the id
        return [(n, _blank_split(line)) for n, line in enumerate(fh, start=1)]
    if delimiter == "\t":
        return [(n, line.rstrip("\r\n").split("\t")) for n, line in enumerate(fh, start=1)]
    reader = csv.reader(fh, delimiter=delimiter, strict=True)
    out, read = [], 0
    try:
        for row in reader:
            if reader.line_num > read + 1:
                raise ImportDataError(src, f"lines {read + 1}-{reader.line_num}: a quoted field spans lines; "
                                      "close the quote on its line (a judgment is one line)")
            read = reader.line_num
            out.append((read, row))
    except csv.Error as exc:
        raise ImportDataError(src, f"line {read + 1}: {exc} (a quote opened there is not closed as CSV "
                              "requires)") from None
    return out


_BLANKS = re.compile(r"[ \t\r\n\x0b\x0c]+")


def _blank_split(line: str) -> list[str]:
    stripped = line.strip(" \t\r\n\x0b\x0c")
    return _BLANKS.split(stripped) if stripped else []


def _delimiter(path: Path, first_line: str) -> str:
    """The separator of a qrels file: by suffix, else by its first line. A comma separates unless the line
    reads as 3 or 4 blank-separated fields that are not a comma list ('q1 0 Paris,_Texas 1')."""
    suffix = path.suffix.lower()
    if suffix == ".tsv":
        return "\t"
    if suffix == ".csv":
        return ","
    if "\t" in first_line:
        return "\t"
    if "," not in first_line:
        return " "
    fields = _blank_split(first_line)
    comma_list = all(f.endswith(",") for f in fields[:-1])  # 'q1, d1, 1'
    return " " if len(fields) in (3, 4) and not comma_list else ","


# a header cell, lower-cased with '-' and spaces as '_': the query column's name, and the grade's last word
_QUERY_HEADERS = frozenset({"query", "queries", "query_id", "queryid", "qid", "q_id", "qry_id", "topic", "topic_id",
                            "topicid", "question", "question_id", "query_key"})
_GRADE_HEADERS = frozenset({"score", "scores", "grade", "grades", "rel", "relevance", "relevancy", "label", "labels",
                            "judgment", "judgement", "judgments", "judgements", "rating", "ratings", "qrel", "qrels",
                            "relevant", "relevancescore"})


def _is_header(cells: list[str]) -> bool:
    """A first line naming columns (BEIR's 'query-id corpus-id score', TREC's 'qid Q0 docno rel'), not a
    judgment with a bad grade: its first column names the query, a later one is a grade column's name
    itself ('relevant' or 'query_12 d1 rel5' stay judgments, refused or stored as such)."""
    return (len(cells) >= 3 and not any(_is_number(c) for c in cells) and _header_word(cells[0]) in _QUERY_HEADERS
            and any(_header_word(cell).split("_")[-1] in _GRADE_HEADERS for cell in cells[2:]))


def _header_word(cell: str) -> str:
    """'Query-ID' -> 'query_id', 'relevanceScore' -> 'relevancescore': a header cell as the lists spell it."""
    return "_".join(cell.strip().lower().replace("-", " ").replace("_", " ").split())


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
