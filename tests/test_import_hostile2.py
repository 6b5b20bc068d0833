"""Hostile-but-plausible import files that used to lose data silently or fail without saying where.

A CSV header or a JSON object naming one column twice kept only the last value; a CSV field over
Python's default 131072 characters was refused with the csv module's own words while the same text
in JSONL was stored; a link loop among the images of a label folder was skipped without a word.
Each is now stored exactly or refused with one line naming the file and the place, changing nothing.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers.workspace_files import snapshot, table_dump
from PIL import Image

from embridge.core import importers
from embridge.core.cli.main import main
from embridge.core.store import Workspace


@pytest.fixture
def ws(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A workspace holding two earlier items, so a refused import has something to leave alone."""
    root = tmp_path / "ws"
    (tmp_path / "docs.csv").write_text("key,text\nd1,first\nd2,second\n", encoding="utf-8")
    assert main(["init", "--workspace", str(root)]) == 0
    assert main(["import", "--workspace", str(root), "--path", str(tmp_path / "docs.csv"), "--split", "gallery"]) == 0
    capsys.readouterr()
    return root


@pytest.fixture
def restore_csv_limit() -> Iterator[None]:
    limit = csv.field_size_limit()
    yield
    csv.field_size_limit(limit)


def _state(ws: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Any, ...]:
    assert main(["info", "--workspace", str(ws), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    return info, snapshot(ws), table_dump(ws)


def _refused(ws: Path, capsys: pytest.CaptureFixture[str], path: Path, fmt: str, *parts: str) -> str:
    """Import ``path``; assert exit 1, one stderr line naming it and ``parts``, nothing changed."""
    before = _state(ws, capsys)
    code = main(["import", "--workspace", str(ws), "--path", str(path), "--format", fmt])
    out, err = capsys.readouterr()
    assert code == 1 and out == "", (code, out, err)
    assert err.count("\n") == 1 and err.startswith(f"embridge: error: {path}"), err
    assert "Traceback" not in err and "unexpected" not in err, err
    for part in parts:
        assert part in err, err
    assert _state(ws, capsys) == before
    return err


def _stored_texts(ws: Path) -> dict[str, str]:
    with Workspace.open(ws) as w:
        return {item["key"]: item["text"] for item in w.items()}


def test_a_csv_header_naming_a_column_twice_is_refused(ws: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "dupcol.csv"
    bad.write_text("key,text,text\na,hello,bye\nb,world,x\n", encoding="utf-8")
    _refused(ws, capsys, bad, "csv", f"{bad}: line 1", "'text' twice")


def test_a_tsv_header_naming_an_extra_column_twice_is_refused(ws: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "dupcol.tsv"
    bad.write_text("key\ttext\tnote\tnote\na\thello\tone\ttwo\n", encoding="utf-8")
    _refused(ws, capsys, bad, "csv", f"{bad}: line 1", "'note' twice")


@pytest.mark.parametrize("second", ['{"key":"b","text":"hi","text":"bye"}',
                                    '{"key":"b","text":"hi","meta":{"x":1,"x":2}}'])
def test_a_json_object_naming_a_key_twice_is_refused(ws: Path, tmp_path: Path, second: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "dupkey.jsonl"
    bad.write_text('{"key":"a","text":"fine"}\n' + second + "\n", encoding="utf-8")
    key = "'text'" if '"text":"bye"' in second else "'x'"
    _refused(ws, capsys, bad, "jsonl", f"{bad}: line 2", f"key {key} appears twice")


@pytest.mark.parametrize("size", [1_000_000, 10_000_000])
def test_a_long_field_is_stored_exactly_from_csv_and_jsonl(ws: Path, tmp_path: Path, size: int,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    long_text = ("word, \"quoted\"\nline " * (size // 20 + 1))[:size]
    with open(tmp_path / "long.csv", "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([["key", "text"], ["c1", "short"], ["c2", long_text]])
    (tmp_path / "long.jsonl").write_text(json.dumps({"key": "j1", "text": long_text}) + "\n", encoding="utf-8")
    for name in ("long.csv", "long.jsonl"):
        code = main(["import", "--workspace", str(ws), "--path", str(tmp_path / name)])
        out, err = capsys.readouterr()
        assert code == 0 and err == "", err[:300]
    texts = _stored_texts(ws)
    assert texts["c1"] == "short" and texts["c2"] == long_text and texts["j1"] == long_text


def test_a_csv_field_over_the_limit_names_the_file_and_line(ws: Path, tmp_path: Path, restore_csv_limit: None,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(importers, "CSV_FIELD_LIMIT", 1000)
    bad = tmp_path / "over.csv"
    bad.write_text("key,text\na,short\nb," + "x" * 1001 + "\n", encoding="utf-8")
    _refused(ws, capsys, bad, "csv", f"{bad}: line 3", "longer than 1000 characters")


def _label_folder(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "imgs"
    (root / "cat").mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / "cat" / "ok.png")
    return root, root / "cat"


def test_a_loop_of_file_links_among_the_images_is_refused(ws: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    root, cat = _label_folder(tmp_path)
    os.symlink("x2.png", cat / "x1.png")
    os.symlink("x1.png", cat / "x2.png")
    _refused(ws, capsys, root, "images", f"{cat / 'x1.png'}: symbolic link loop")


def test_a_broken_image_link_is_refused(ws: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, cat = _label_folder(tmp_path)
    os.symlink("gone.png", cat / "dog.png")
    _refused(ws, capsys, root, "images", f"{cat / 'dog.png'}: broken symbolic link", "gone.png")


def test_a_broken_label_folder_link_is_refused(ws: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = _label_folder(tmp_path)
    os.symlink(tmp_path / "moved-away", root / "dog")
    _refused(ws, capsys, root, "images", f"{root / 'dog'}: broken symbolic link")


def test_working_links_inside_the_folder_are_still_followed(ws: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    root, cat = _label_folder(tmp_path)
    os.symlink("ok.png", cat / "alias.png")
    assert main(["import", "--workspace", str(ws), "--path", str(root)]) == 0
    assert "cat/alias.png" in _stored_texts(ws)


def test_a_refusal_quoting_a_huge_key_cuts_it_and_says_its_length(ws: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """One key of 10,000 characters among existing ones made a 30 KB error line."""
    huge = "é😀" * 5000
    np.savez(tmp_path / "v.npz", ids=np.array(["d1", "d2", huge]), vectors=np.eye(3, 4, dtype=np.float32) + 0.1)
    before = _state(ws, capsys)
    assert main(["import", "--workspace", str(ws), "--format", "vectors", "--path", str(tmp_path / "v.npz")]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and len(err) < 400, len(err)
    assert "and 1 does not: é😀" in err and "(10,000 characters)" in err
    assert _state(ws, capsys) == before


@pytest.mark.parametrize("line", ["q{huge}\td1\t2", "q1\td{huge}\t2", "q1\td1\t2\tt{huge}"])
def test_a_judgments_file_quoting_a_huge_key_or_split_cuts_it(ws: Path, tmp_path: Path, line: str,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown 200,000-character query key in a qrels file made a 200,140-byte error line."""
    (tmp_path / "queries.csv").write_text("key,text\nq1,first query\n", encoding="utf-8")
    assert main(["import", "--workspace", str(ws), "--path", str(tmp_path / "queries.csv"), "--split", "query"]) == 0
    capsys.readouterr()
    qrels = tmp_path / "qrels.tsv"
    header = "query-id\tcorpus-id\tscore" + ("\tsplit" if line.count("\t") == 3 else "")
    qrels.write_text(header + "\n" + line.format(huge="7" * 200_000) + "\n", encoding="utf-8")
    before = _state(ws, capsys)
    assert main(["import", "--workspace", str(ws), "--qrels", str(qrels)]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and len(err) < 600, len(err)
    assert err.startswith(f"embridge: error: {qrels}: line 2: ") and "characters)" in err, err[:300]
    assert _state(ws, capsys) == before


def test_any_error_line_past_the_limit_keeps_its_start_and_end() -> None:
    from embridge.core.cli.main import MAX_ERROR_CHARS, one_line

    message = "file.csv: " + "x" * 50_000 + " is not a key"
    cut = one_line(message)
    assert len(cut) < MAX_ERROR_CHARS + 60 and cut.startswith("file.csv: xxx") and cut.endswith("is not a key")
    assert "characters left out" in cut and one_line("a\n b") == "a b"
