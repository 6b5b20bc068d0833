"""BEIR folders as they are downloaded: quotes inside ids, TREC qrels kept to one layout, the line and
byte of a non-UTF-8 file, titles that are null or not text, and a dev split held out of the train
queries when the folder has no dev.tsv."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from helpers.workspace_files import refused_unchanged
from test_beir_import import CORPUS, QUERIES, write_beir

from embridge.core.beir_import import DEV_FROM_TRAIN_META, import_beir
from embridge.core.qrels import import_qrels
from embridge.core.store import Workspace


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = Workspace.create(tmp_path / "ws")
    yield workspace
    workspace.close()


def test_a_quote_in_a_tsv_is_part_of_the_id_not_a_field_that_swallows_lines(ws: Workspace, tmp_path: Path) -> None:
    """Wikipedia-title ids ('"Heroes"_(album)') keep their quotes; a stray quote no longer joins the
    lines up to the next one into one row (which dropped judgments and gave one to another query)."""
    corpus = [*CORPUS, {"_id": '"Heroes"_(album)', "text": "Bowie."}]
    rows = [("7", '"Heroes"_(album)', 1), ("7", "d2", 0), ("q2", "d1", 1), ("q2", "d4", 2)]
    summary = import_beir(ws, write_beir(tmp_path / "ok", corpus=corpus, qrels={"test": rows}))
    assert summary.judgments == {"test": 4}
    heroes = int(ws.doc_ids_for_keys(['"Heroes"_(album)'])[0])
    seven = int(ws.query_ids_for_keys(["7"])[0])
    assert ws.judgments("test").relevant_sets()[seven] == {heroes: 1}
    # a quote opened on line 2 and another on line 5: each is one id that names no document
    stray = [("7", '"d1', 1), ("7", "d2", 0), ("q2", "d1", 1), ("q2", 'd4"', 2)]
    other = Workspace.create(tmp_path / "ws2")
    refused_unchanged(other, lambda: import_beir(other, write_beir(tmp_path / "stray", qrels={"test": stray})),
             r"qrels/test\.tsv: line 2: corpus id '\"d1' is not in corpus\.jsonl")
    other.close()


def test_a_comma_qrels_quote_may_not_span_lines(ws: Workspace, tmp_path: Path) -> None:
    import_beir(ws, write_beir(tmp_path / "beir", qrels={"test": [("q3", "d1", 1)]}))
    path = tmp_path / "more.csv"
    path.write_text('q2,"d1,1,dev\nq2,d2",1,dev\nq4,d4,1,dev\n')
    refused_unchanged(ws, lambda: import_qrels(ws, path), r"more\.csv: lines 1-2: a quoted field spans lines")


def test_trec_qrels_keep_four_columns_on_every_line(ws: Workspace, tmp_path: Path) -> None:
    import_beir(ws, write_beir(tmp_path / "beir", qrels={"test": [("q3", "d1", 1)]}))
    path = tmp_path / "run.qrels"
    path.write_text("q2 0 d1 1\nq2 0 d2 0\nq4 d4 1\nq4 0 d2 1\n")
    refused_unchanged(ws, lambda: import_qrels(ws, path, split="dev"),
             r"run\.qrels: line 3: 3 columns where earlier lines have TREC's 4")


def test_a_byte_that_is_not_utf8_is_named_by_its_line_and_file_offset(ws: Workspace, tmp_path: Path) -> None:
    """The offset was the decoder's, within an 8 KiB block: wrong in any larger file."""
    corpus = [{"_id": f"d{i}", "text": "words " * 20} for i in range(2000)]
    root = write_beir(tmp_path / "beir", corpus=corpus, qrels={"test": [("q3", "d1", 1)]})
    path = root / "corpus.jsonl"
    data = bytearray(path.read_bytes())
    line_start = sum(len(line) for line in data.splitlines(keepends=True)[:1499])  # line 1500 begins here
    at = line_start + data[line_start:].index(b"words")
    data[at] = 0xE9  # cp1252's é: not a UTF-8 start byte followed by a continuation byte
    path.write_bytes(bytes(data))
    refused_unchanged(ws, lambda: import_beir(ws, root),
             rf"corpus\.jsonl: not UTF-8 text \(invalid continuation byte at line 1500, byte {at} of the file\)")


@pytest.mark.parametrize(("title", "ok"), [(None, True), (0, False), (False, False), ([], False), (3, False)])
def test_a_title_is_text_or_null(ws: Workspace, tmp_path: Path, title: object, ok: bool) -> None:
    """A null title is no title; any other non-text title is refused, whatever its truth value (0, false
    and [] were dropped without a word while 3 was refused)."""
    corpus = [*CORPUS, {"_id": "d9", "title": title, "text": "Nine."}]
    root = write_beir(tmp_path / "beir", corpus=corpus, qrels={"test": [("q3", "d9", 1)]})
    if ok:
        import_beir(ws, root)
        assert {r["key"]: r["text"] for r in ws.items("gallery")}["d9"] == "Nine."
    else:
        refused_unchanged(ws, lambda: import_beir(ws, root), r"corpus\.jsonl: line 5: 'title' must be a string, got "
                                                    + re.escape(json.dumps(title)))


def test_an_id_that_is_not_a_string_or_an_integer_is_named_as_such(ws: Workspace, tmp_path: Path) -> None:
    root = write_beir(tmp_path / "beir", queries=[*QUERIES, {"_id": 12.0, "text": "x"}], qrels={"test": []})
    refused_unchanged(ws, lambda: import_beir(ws, root), r"queries\.jsonl: line 5: '_id' must be a string \(or an integer\), "
                                                r"got 12\.0")


def test_a_lone_carriage_return_inside_a_record_is_whitespace(ws: Workspace, tmp_path: Path) -> None:
    root = write_beir(tmp_path / "beir", qrels={"test": [("q3", "d1", 1)]})
    with open(root / "corpus.jsonl", "a", encoding="utf-8", newline="") as fh:
        fh.write('{"_id": "d9",\r "text": "Nine."}\r\n')
    import_beir(ws, root)
    assert "d9" in {r["key"] for r in ws.items("gallery")}


def test_without_dev_judgments_a_seeded_fifth_of_the_train_queries_becomes_dev(ws: Workspace, tmp_path: Path) -> None:
    """SciFact's layout (train and test only): validation and auto's choice use judged dev queries held
    out of the train ones, never fitted on, instead of the documents' own-item retrieval."""
    corpus = [{"_id": f"d{i}", "text": f"document {i}"} for i in range(60)]
    queries = [{"_id": f"q{i}", "text": f"query {i}"} for i in range(50)]
    train = [(f"q{i}", f"d{i}", 1) for i in range(40)]
    test = [(f"q{i}", f"d{i}", 1) for i in range(40, 50)]
    summary = import_beir(ws, write_beir(tmp_path / "beir", corpus=corpus, queries=queries,
                                         qrels={"train": train, "test": test}))
    assert summary.dev_from_train == 8 and summary.judgments == {"train": 32, "dev": 8, "test": 10}
    assert "no qrels/dev.tsv, so 8 of the train queries (a seeded 20%) are held out as dev" in summary.text()
    dev, kept = ws.judgments("dev"), ws.judgments("train")
    assert not np.intersect1d(dev.query_ids, kept.query_ids).size
    assert json.loads(ws.meta(DEV_FROM_TRAIN_META))["queries"] == 8
    again = Workspace.create(tmp_path / "ws2")  # the same folder gives the same split
    import_beir(again, write_beir(tmp_path / "beir2", corpus=corpus, queries=queries,
                                  qrels={"train": train, "test": test}))
    assert sorted(again.keys_of(again.judgments("dev").query_ids)) == sorted(ws.keys_of(dev.query_ids))
    again.close()
    few = Workspace.create(tmp_path / "ws3")  # too few train queries to spare any: all kept for training
    summary = import_beir(few, write_beir(tmp_path / "beir3", corpus=corpus, queries=queries,
                                          qrels={"train": train[:9], "test": test}))
    assert summary.dev_from_train == 0 and "dev" not in summary.judgments
    assert "no train query held out as dev: fewer than 10 train queries, all kept for training" in summary.text()
    few.close()
    # a workspace whose dev judgments exist already validates on them: said so, nothing held out
    more = [{"_id": f"e{i}", "text": f"other {i}"} for i in range(30)]
    extra = import_beir(ws, write_beir(tmp_path / "beir4", corpus=more, queries=[{"_id": f"p{i}", "text": f"ask {i}"}
                                                                                  for i in range(20)],
                                       qrels={"train": [(f"p{i}", f"e{i}", 1) for i in range(20)]}))
    assert extra.dev_from_train == 0 and extra.judgments == {"train": 20}
    assert "the workspace already holds dev judgments, which validation uses" in extra.text()
