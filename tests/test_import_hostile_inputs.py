"""Import inputs that hung, swallowed rows, crashed with exit 3 or were stored unchecked.

A FIFO given as any import input (the item file, ``--ids``, ``--qrels``, a BEIR folder's files)
blocked forever and ``/dev/zero`` filled the memory; a CSV quote left open took in every later
row; integers of more than 4300 digits raised Python's own ValueError (exit 3); split names
holding a newline or a terminal escape, blank ones and ``Query`` were stored; and a keys-only
``.npz`` imported as queries refused keys that only documents had. Each is now one line naming the
file (or option) and the problem, exit status 1, with the workspace byte-identical, or, for the
last, imported as CSV and JSONL import it.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers.workspace_files import snapshot, table_dump

from embridge.core.cli.main import main
from embridge.core.errors import ImportDataError
from embridge.core.store import Workspace

REPO = Path(__file__).resolve().parent.parent
CHILD_TIMEOUT = 90  # seconds: a child that blocks on a FIFO is killed, and the test fails instead of hanging
CHILD_MEMORY = 4 << 30  # address space of a child: one reading /dev/zero fails instead of exhausting the machine
DIGITS = "9" * 5000


@pytest.fixture
def ws(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A workspace with documents d1, d2, query q1 and a vectors-only model 'vold' (8-d)."""
    root = tmp_path / "ws"
    (tmp_path / "docs.csv").write_text("key,text\nd1,first\nd2,second\n", encoding="utf-8")
    (tmp_path / "queries.csv").write_text("key,text\nq1,a query\n", encoding="utf-8")
    np.savez(tmp_path / "vold.npz", ids=np.array(["d1", "d2"]), vectors=np.ones((2, 8), np.float32))
    assert main(["init", "--workspace", str(root)]) == 0
    for name, split in (("docs.csv", "gallery"), ("queries.csv", "query")):
        assert main(["import", "--workspace", str(root), "--path", str(tmp_path / name), "--split", split]) == 0
    assert main(["model", "add", "--workspace", str(root), "--name", "vold", "--path", str(tmp_path / "vold.npz"),
                 "--role", "old"]) == 0
    capsys.readouterr()
    return root


def _state(ws: Path) -> tuple[Any, ...]:
    return snapshot(ws), table_dump(ws)


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY, CHILD_MEMORY))


def _child(args: list[str]) -> tuple[int, str, str]:
    """Run the CLI in a child process with a time and memory limit: a regression blocks or grows there."""
    try:
        done = subprocess.run([sys.executable, "-m", "embridge.core.cli.main", *args], cwd=REPO, text=True,
                              capture_output=True, timeout=CHILD_TIMEOUT, preexec_fn=_limited,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"embridge {' '.join(args)} still ran after {CHILD_TIMEOUT} s (it read a FIFO or device)")
    return done.returncode, done.stdout, done.stderr


def _assert_refused(code: int, out: str, err: str, *parts: str) -> None:
    """Exit 1, nothing on stdout, one stderr line holding every part, no traceback or 'unexpected'."""
    assert code == 1 and out == "", (code, out, err)
    assert err.count("\n") == 1 and err.startswith("embridge: error: "), err
    assert "Traceback" not in err and "unexpected" not in err, err
    for part in parts:
        assert part in err, (part, err)


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _ok_npy(tmp: Path) -> Path:
    np.save(tmp / "ok.npy", np.ones((2, 8), np.float32))
    (tmp / "ok.txt").write_text("n1\nn2\n", encoding="utf-8")
    return tmp / "ok.npy"


def _beir(tmp: Path, corpus: bool = True, qrels: bool = True) -> Path:
    """A BEIR folder whose corpus.jsonl or qrels/test.tsv is a FIFO when asked (False)."""
    root = tmp / "beir"
    (root / "qrels").mkdir(parents=True)
    (root / "queries.jsonl").write_text('{"_id": "bq", "text": "b"}\n', encoding="utf-8")
    if corpus:
        (root / "corpus.jsonl").write_text('{"_id": "bd", "text": "a"}\n', encoding="utf-8")
    else:
        _fifo(root / "corpus.jsonl")
    if qrels:
        (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nbq\tbd\t1\n", encoding="utf-8")
    else:
        _fifo(root / "qrels" / "test.tsv")
    return root


# (name, build(tmp) -> (arguments after --workspace W, the special file, the option named)), for FIFOs
_SPECIAL: dict[str, Callable[[Path], tuple[list[str], Path, str]]] = {
    "npz-fifo": lambda t: (["--path", str(_fifo(t / "f.npz")), "--split", "gallery"], t / "f.npz", "(--path)"),
    "npy-fifo": lambda t: (["--path", str(_fifo(t / "f.npy")), "--ids", str(_ok_npy(t).with_suffix(".txt")),
                            "--split", "gallery"], t / "f.npy", "(--path)"),
    "ids-fifo": lambda t: (["--path", str(_ok_npy(t)), "--ids", str(_fifo(t / "f.txt")), "--split", "gallery"],
                           t / "f.txt", "(--ids)"),
    "csv-fifo": lambda t: (["--path", str(_fifo(t / "f.csv")), "--split", "gallery"], t / "f.csv", "(--path)"),
    "jsonl-fifo": lambda t: (["--path", str(_fifo(t / "f.jsonl")), "--split", "gallery"], t / "f.jsonl", "(--path)"),
    "qrels-fifo": lambda t: (["--qrels", str(_fifo(t / "f.tsv"))], t / "f.tsv", "(--qrels)"),
    "qrels-fifo-with-items": lambda t: (["--path", str(t / "docs.csv"), "--split", "extra", "--qrels",
                                         str(_fifo(t / "f.tsv"))], t / "f.tsv", "(--qrels)"),
    "vectors-for-model-fifo": lambda t: (["--format", "vectors", "--path", str(_fifo(t / "f.npz")), "--model",
                                          "vold"], t / "f.npz", "(--path)"),
    "beir-corpus-fifo": lambda t: (["--format", "beir", "--path", str(_beir(t, corpus=False))],
                                   t / "beir" / "corpus.jsonl", "BEIR file corpus.jsonl"),
    "beir-corpus-fifo-detected": lambda t: (["--path", str(_beir(t, corpus=False))],
                                            t / "beir" / "corpus.jsonl", "BEIR file corpus.jsonl"),
    "beir-qrels-fifo": lambda t: (["--format", "beir", "--path", str(_beir(t, qrels=False))],
                                  t / "beir" / "qrels" / "test.tsv", "BEIR qrels file"),
    "csv-dev-zero": lambda t: (["--path", "/dev/zero", "--format", "csv", "--split", "gallery"], Path("/dev/zero"),
                               "(--path)"),
    "jsonl-dev-zero": lambda t: (["--path", "/dev/zero", "--format", "jsonl", "--split", "gallery"],
                                 Path("/dev/zero"), "(--path)"),
    "ids-dev-zero": lambda t: (["--path", str(_ok_npy(t)), "--ids", "/dev/zero", "--split", "gallery"],
                               Path("/dev/zero"), "(--ids)"),
    "qrels-dev-zero": lambda t: (["--qrels", "/dev/zero"], Path("/dev/zero"), "(--qrels)"),
    # an image's name on a FIFO inside an image folder was passed over as "not an image"
    "image-folder-fifo": lambda t: (["--path", str(_image_folder_with_fifo(t))], t / "im" / "a" / "f.png",
                                    "(--path)"),
}


def _image_folder_with_fifo(tmp: Path) -> Path:
    (tmp / "im" / "a").mkdir(parents=True)
    _fifo(tmp / "im" / "a" / "f.png")
    return tmp / "im"


@pytest.mark.parametrize("name", sorted(_SPECIAL))
def test_a_fifo_or_device_given_to_import_is_refused_before_it_is_read(ws: Path, tmp_path: Path, name: str) -> None:
    """The file's kind is checked before it is opened: a FIFO blocked the open, /dev/zero never ended."""
    args, special, option = _SPECIAL[name](tmp_path)
    kind = "is a device" if str(special).startswith("/dev/") else "is a FIFO (named pipe)"
    before = _state(ws)
    code, out, err = _child(["import", "--workspace", str(ws), *args])
    _assert_refused(code, out, err, f"embridge: error: {special}: {kind}", option)
    assert _state(ws) == before


# an unterminated quote: (file name, content, the line where the open quote stands)
_OPEN_QUOTES = {
    "first-record": ("uq.csv", 'key,text\na,"hello\nb,x\nc,y\n', 2),
    "after-a-closed-multiline-field": ("late.csv", 'key,text\na,x\nb,"two\nlines"\nc,"open\nd,y\n', 5),
    "doubled-quotes-inside": ("dq.csv", 'key,text\na,"say ""hi"" and\nb,x\n', 2),
    "tsv": ("uq.tsv", 'key\ttext\na\t"x\nb\ty\n', 2),
    "in-the-header": ("head.csv", '"key,text\na,x\n', 1),
}


@pytest.mark.parametrize("case", sorted(_OPEN_QUOTES))
def test_a_csv_quote_left_open_is_refused_naming_its_line(ws: Path, tmp_path: Path, case: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """One item took in every later row as its text; now the line where the quote opens is named."""
    name, content, line = _OPEN_QUOTES[case]
    bad = tmp_path / name
    bad.write_text(content, encoding="utf-8", newline="")
    before = _state(ws)
    code = main(["import", "--workspace", str(ws), "--path", str(bad), "--split", "gallery"])
    out, err = capsys.readouterr()
    _assert_refused(code, out, err, f"embridge: error: {bad}: line {line}: a quoted field starts here and is "
                    "never closed")
    assert "double the quote inside it, or import JSONL" in err  # a TSV whose text merely opens with '"' learns how
    assert _state(ws) == before


def _huge_beir_score(t: Path) -> tuple[list[str], Path, str]:
    root = _beir(t)
    (root / "qrels" / "test.tsv").write_text(f"query-id\tcorpus-id\tscore\nbq\tbd\t{DIGITS}\n", encoding="utf-8")
    return ["--format", "beir", "--path", str(root)], root / "qrels" / "test.tsv", "line 2: grade 99999"


def _huge_beir_id(t: Path) -> tuple[list[str], Path, str]:
    root = _beir(t)
    (root / "corpus.jsonl").write_text('{"_id": ' + DIGITS + ', "text": "a"}\n', encoding="utf-8")
    return ["--format", "beir", "--path", str(root)], root / "corpus.jsonl", "line 1: a number has more than 4300"


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# (name, build(tmp) -> (arguments, the file named, the words expected after it))
_HUGE: dict[str, Callable[[Path], tuple[list[str], Path, str]]] = {
    "jsonl-key": lambda t: (["--path", str(_write(t / "k.jsonl", '{"key": "a", "text": "x"}\n{"key": ' + "9" * 4301
                                                  + ', "text": "x"}\n')), "--split", "gallery"],
                            t / "k.jsonl", "line 2: a number has more than 4300 digits"),
    "jsonl-label": lambda t: (["--path", str(_write(t / "l.jsonl", '{"key": "a", "text": "x", "label": ' + DIGITS
                                                    + "}\n")), "--split", "gallery"],
                              t / "l.jsonl", "line 1: a number has more than 4300 digits"),
    "csv-label-with-zero-fraction": lambda t: (["--path", str(_write(t / "l.csv", f"key,text,label\na,x,1\nb,y,{DIGITS}.0\n")),
                                                "--split", "gallery"],
                                               t / "l.csv", "line 3 (record 2): 'label': the label 99999"),
    "qrels-grade": lambda t: (["--qrels", str(_write(t / "g.tsv", f"q1\td1\t1\nq1\td2\t{DIGITS}\n"))], t / "g.tsv",
                              "line 2: grade 99999999999999999999... (5000 characters) is too large"),
    "qrels-negative-grade": lambda t: (["--qrels", str(_write(t / "n.tsv", f"q1\td1\t-{DIGITS}\n"))], t / "n.tsv",
                                       "line 1: negative grade"),
    "beir-score": _huge_beir_score,
    "beir-id": _huge_beir_id,
}


@pytest.mark.parametrize("name", sorted(_HUGE))
def test_an_integer_of_more_than_4300_digits_is_one_line_naming_file_and_line(
        ws: Path, tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Python's int() limit raised a ValueError the CLI reported as a bug (exit 3)."""
    args, bad, words = _HUGE[name](tmp_path)
    before = _state(ws)
    code = main(["import", "--workspace", str(ws), *args])
    out, err = capsys.readouterr()
    _assert_refused(code, out, err, f"embridge: error: {bad}: {words}")
    assert len(err) < 400, err  # the 5000 digits are not repeated in the message
    assert _state(ws) == before


def test_leading_zeros_of_a_grade_are_not_counted_against_the_digit_limit(
        ws: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A grade written with 5000 leading zeros is the grade 1 (int() alone raised on its length)."""
    qrels = _write(tmp_path / "z.tsv", "q1\td1\t" + "0" * 5000 + "1\ttest\n")
    assert main(["import", "--workspace", str(ws), "--qrels", str(qrels)]) == 0, capsys.readouterr().err
    with Workspace.open(ws) as w:
        assert w.judgments("test").grades.tolist() == [1]


_BAD_SPLITS = {
    "newline-and-escape": ("gal\nlery\x1b[31m", "control character U+000A"),
    "escape": ("gal\x1b[31mlery", "control character U+001B"),
    "line-separator": ("gal\u2028lery", "line separator U+2028"),
    "blank": ("  ", "is blank"),
    "empty": ("", "is blank"),
    "outer-spaces": (" query", "spaces at its start or end"),
    "query-in-another-case": ("Query", "differs from 'query' only in case"),
    "gallery-in-another-case": ("GALLERY", "differs from 'gallery' only in case"),
    "queries-for-query": ("queries", "would make these items documents of the gallery; write 'query' for queries"),
}


def _split_input(tmp: Path, kind: str) -> list[str]:
    if kind == "csv":
        return ["--path", str(_write(tmp / "s.csv", "key,text\ns1,a\n"))]
    if kind == "jsonl":
        return ["--path", str(_write(tmp / "s.jsonl", '{"key": "s1", "text": "a"}\n'))]
    if kind == "npz":
        np.savez(tmp / "s.npz", ids=np.array(["s1"]), vectors=np.ones((1, 8), np.float32))
        return ["--path", str(tmp / "s.npz")]
    np.savez(tmp / "s.npz", ids=np.array(["s1"]), vectors=np.ones((1, 8), np.float32))
    return ["--format", "vectors", "--path", str(tmp / "s.npz"), "--model", "vold"]


@pytest.mark.parametrize("kind", ["csv", "jsonl", "npz", "npz-for-model"])
@pytest.mark.parametrize("case", sorted(_BAD_SPLITS))
def test_a_bad_split_name_is_refused_by_every_importer(ws: Path, tmp_path: Path, case: str, kind: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A newline or terminal escape reached `embridge info`; 'Query' made documents of meant queries."""
    split, words = _BAD_SPLITS[case]
    before = _state(ws)
    code = main(["import", "--workspace", str(ws), *_split_input(tmp_path, kind), "--split", split])
    out, err = capsys.readouterr()
    if not split.strip():  # blank: refused as a usage error by the option itself (exit 2), as every blank name
        assert code == 2 and out == "" and err.startswith("embridge: error: argument --split: is empty"), err
    else:  # the option's value, refused before any file is read: a usage error, as argparse's refusals are
        assert code == 2 and out == "" and err.count("\n") == 1, (code, err)
        assert err.startswith("embridge: error: --split: the split name") and words in err, err
    assert "\x1b" not in err
    assert _state(ws) == before


def test_items_added_through_the_store_api_get_the_same_split_check(ws: Path) -> None:
    """Workspace.add_items, which every importer ends in, refuses the names the --split check refuses."""
    before = _state(ws)
    with Workspace.open(ws) as w:
        for split in ("Query", "a\nb", " "):
            with pytest.raises(ImportDataError, match="the split name"):
                w.add_items([{"key": "x1", "text": "t", "split": split}], source="api")
    assert _state(ws) == before


def _stored(ws: Path) -> set[tuple[str, str | None]]:
    with Workspace.open(ws) as w:
        return {(i["key"], i["split"]) for i in w.items()}


@pytest.mark.parametrize("layout", ["npz", "npy-with-ids"])
def test_keys_only_vectors_imported_as_queries_may_share_document_keys(
        ws: Path, tmp_path: Path, layout: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Queries and documents have separate key namespaces, as the CSV and JSONL importers knew."""
    if layout == "npz":
        np.savez(tmp_path / "qd.npz", ids=np.array(["d1", "d2"]), vectors=np.ones((2, 8), np.float32))
        args = ["--path", str(tmp_path / "qd.npz")]
    else:
        np.save(tmp_path / "qd.npy", np.ones((2, 8), np.float32))
        args = ["--path", str(tmp_path / "qd.npy"), "--ids", str(_write(tmp_path / "qd.txt", "d1\nd2\n"))]
    before = _stored(ws)
    assert main(["import", "--workspace", str(ws), *args, "--split", "query"]) == 0, capsys.readouterr().err
    assert _stored(ws) == before | {("d1", "query"), ("d2", "query")}
    with Workspace.open(ws) as w:
        assert len(w.query_ids_for_keys(["d1", "d2"])) == 2 and len(w.doc_ids_for_keys(["d1", "d2"])) == 2
    capsys.readouterr()
    state = _state(ws)
    code = main(["import", "--workspace", str(ws), *args, "--split", "query"])  # now they exist as queries
    out, err = capsys.readouterr()
    _assert_refused(code, out, err, "2 query keys already exist in the workspace, e.g. d1, d2")
    assert _state(ws) == state


def test_keys_only_vectors_imported_as_documents_may_share_query_keys(
        ws: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The other way round: the document 'q1' beside the query 'q1', as a CSV import stores it."""
    np.savez(tmp_path / "dq.npz", ids=np.array(["q1"]), vectors=np.ones((1, 8), np.float32))
    before = _stored(ws)
    code = main(["import", "--workspace", str(ws), "--path", str(tmp_path / "dq.npz"), "--split", "gallery"])
    assert code == 0, capsys.readouterr().err
    assert _stored(ws) == before | {("q1", "gallery")}


def test_a_file_with_query_ids_imported_as_queries_is_refused(ws: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """--split query would have made the file's documents queries beside its own queries."""
    np.savez(tmp_path / "both.npz", ids=np.array(["n1"]), vectors=np.ones((1, 8), np.float32),
             query_ids=np.array(["nq1"]), query_vectors=np.ones((1, 8), np.float32))
    before = _state(ws)
    code = main(["import", "--workspace", str(ws), "--path", str(tmp_path / "both.npz"), "--split", "query"])
    out, err = capsys.readouterr()
    _assert_refused(code, out, err, f"embridge: error: {tmp_path / 'both.npz'}: --split query", "'query_ids'")
    assert _state(ws) == before



def test_the_workspace_itself_or_a_folder_holding_it_is_no_import_input(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """`import --path W` imported the workspace's own vector files as 'image' items (1,201 on the demo)."""
    holder = tmp_path / "data"
    holder.mkdir()
    (holder / "docs.csv").write_text("key,text\nd1,first\n", encoding="utf-8")
    ws = holder / "ws"
    assert main(["init", "--workspace", str(ws)]) == 0
    assert main(["import", "--workspace", str(ws), "--path", str(holder / "docs.csv")]) == 0  # a file beside it: fine
    capsys.readouterr()
    before = _state(ws)
    for given, said in ((ws, "is the workspace"), (ws / "vectors", "is the workspace's own vectors"),
                        (holder, "is a folder holding the workspace")):
        code = main(["import", "--workspace", str(ws), "--path", str(given)])
        out, err = capsys.readouterr()
        _assert_refused(code, out, err, f"--path {given}", said)
        assert _state(ws) == before
    # a folder of the user's own inside the workspace (the demo keeps its images so) is an input like any other
    (ws / "mine").mkdir()
    (ws / "mine" / "more.csv").write_text("key,text\nd2,second\n", encoding="utf-8")
    assert main(["import", "--workspace", str(ws), "--path", str(ws / "mine" / "more.csv")]) == 0
