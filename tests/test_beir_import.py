"""BEIR folders and qrels files: documents and queries in separate key namespaces, graded
judgments per split, one clear line for every bad input and nothing stored then."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.workspace_files import checkpoint, snapshot

from embridge.core.beir_import import import_beir
from embridge.core.cli.main import main
from embridge.core.errors import Cancelled, ImportDataError
from embridge.core.importers import import_items
from embridge.core.qrels import SPLIT_SEED_META, assign_query_splits, import_qrels
from embridge.core.store import Workspace

CORPUS = [{"_id": "d1", "title": "Cats", "text": "Cats purr."}, {"_id": "d2", "text": "Dogs bark."},
          {"_id": "7", "title": "Seven", "text": "A number.", "lang": "en"}, {"_id": "d4", "text": "Fish swim."}]
QUERIES = [{"_id": "7", "text": "what purrs"}, {"_id": "q2", "text": "who barks"}, {"_id": "q3", "text": "count"},
           {"_id": "q4", "text": "nobody judged me"}]
QRELS = {"train": [("7", "d1", 2), ("7", "d2", 0)], "dev": [("q2", "d2", 1)],
         "test": [("q3", "7", 1), ("q3", "d4", 3)]}


def write_beir(root: Path, corpus=CORPUS, queries=QUERIES, qrels=QRELS) -> Path:
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus))
    (root / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in queries))
    for split, rows in qrels.items():
        body = "".join(f"{q}\t{d}\t{g}\n" for q, d, g in rows)
        (root / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + body)
    return root


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = Workspace.create(tmp_path / "ws")
    yield workspace
    workspace.close()


def test_beir_folder_becomes_items_and_judgments(ws: Workspace, tmp_path: Path) -> None:
    seen = []
    summary = import_beir(ws, write_beir(tmp_path / "beir"), on_progress=lambda d, t, i: seen.append((d, t)))
    assert (summary.documents, summary.queries, summary.unjudged_queries) == (4, 4, 1)
    assert summary.judgments == {"dev": 1, "test": 2, "train": 2} and seen[-1] == (8, 8)
    assert ws.split_counts() == {"gallery": 4, "query": 4}
    doc7, query7 = ws.doc_ids_for_keys(["7"])[0], ws.query_ids_for_keys(["7"])[0]
    assert doc7 != query7  # the same id names a document and a query
    docs = {r["key"]: r for r in ws.items("gallery")}
    assert docs["d1"]["text"] == "Cats Cats purr." and docs["d1"]["metadata"]["title"] == "Cats"
    assert docs["d2"]["text"] == "Dogs bark." and docs["7"]["metadata"] == {"title": "Seven", "lang": "en"}
    train = ws.judgments("train")
    assert train.query_ids.tolist() == [query7, query7] and sorted(train.grades.tolist()) == [0, 2]
    test = ws.judgments("test")
    q3 = int(ws.query_ids_for_keys(["q3"])[0])
    assert test.relevant_sets() == {q3: {int(doc7): 1, int(ws.doc_ids_for_keys(["d4"])[0]): 3}}
    assert "q4" in {r["key"] for r in ws.items("query")}  # imported without judgments


BAD = [
    ("unknown corpus id", dict(qrels={"test": [("q2", "nope", 1)]}), r"qrels/test\.tsv: line 2: corpus id 'nope'"),
    ("unknown query id", dict(qrels={"test": [("d1", "d1", 1)]}), r"qrels/test\.tsv: line 2: query id 'd1' is not"),
    ("non-integer grade", dict(qrels={"dev": [("q2", "d1", 1), ("q2", "d2", "1.5")]}),
     r"qrels/dev\.tsv: line 3: grade '1\.5' is not an integer"),
    ("negative grade", dict(qrels={"dev": [("q2", "d1", -1)]}), r"dev\.tsv: line 2: negative grade -1"),
    ("pair judged twice", dict(qrels={"dev": [("q2", "d1", 1), ("q2", "d1", 2)]}),
     r"dev\.tsv: line 3: query 'q2' and item 'd1' are already judged on line 2"),
    ("query in two splits", dict(qrels={"dev": [("q2", "d1", 1)], "test": [("q2", "d2", 1)]}),
     r"test\.tsv: line 2: query 'q2' is also judged in dev\.tsv \(line 2\)"),
    ("duplicate document", dict(corpus=[*CORPUS, {"_id": "d1", "text": "again"}]),
     r"corpus\.jsonl: line 5: duplicate _id 'd1'"),
    ("duplicate document with outer spaces", dict(corpus=[*CORPUS, {"_id": " d1 ", "text": "again"}]),
     r"corpus\.jsonl: line 5: duplicate _id 'd1' \(first on line 1, written with spaces around it, which are "
     r"dropped\)$"),
    ("duplicate document in another Unicode form", dict(corpus=[{"_id": "caf\u00e9", "text": "a"},
                                                               {"_id": "cafe\u0301", "text": "b"}]),
     r"line 2: duplicate _id 'caf\u00e9' \(first on line 1, written in another Unicode form"),
    ("duplicate document, the first in another Unicode form", dict(corpus=[{"_id": "cafe\u0301", "text": "a"},
                                                                         {"_id": "caf\u00e9", "text": "b"}]),
     r"line 2: duplicate _id 'caf\u00e9' \(first on line 1, written in another Unicode form"),
    ("document without text", dict(corpus=[*CORPUS, {"_id": "d9"}]), r"corpus\.jsonl: line 5: 'text' must be a string, got nothing"),
    ("query without id", dict(queries=[*QUERIES, {"text": "x"}]), r"queries\.jsonl: line 5: missing or empty '_id'"),
    ("NUL in a document", dict(corpus=[*CORPUS, {"_id": "d9", "text": "a\u0000b"}]),
     r"corpus\.jsonl: line 5: the 'text' field holds the control character U\+0000"),
    ("control character in a title", dict(corpus=[*CORPUS, {"_id": "d9", "title": "t\u0007", "text": "b"}]),
     r"corpus\.jsonl: line 5: the 'title' field holds the control character U\+0007"),
]


@pytest.mark.parametrize(("overrides", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_beir_input_is_one_line_and_stores_nothing(ws: Workspace, tmp_path: Path, overrides: dict,
                                                       message: str) -> None:
    root = write_beir(tmp_path / "beir", **overrides)
    checkpoint(ws)
    before = snapshot(ws.root)
    with pytest.raises(ImportDataError, match=message):
        import_beir(ws, root)
    checkpoint(ws)
    assert snapshot(ws.root) == before


def test_a_string_left_open_names_its_column_in_the_line(ws: Workspace, tmp_path: Path) -> None:
    root = write_beir(tmp_path / "beir")
    with open(root / "corpus.jsonl", "a", encoding="utf-8") as fh:
        fh.write('{"_id": "d9", "text": "left open\n')
    with pytest.raises(ImportDataError, match=r"line 5: invalid JSON \(Unterminated string starting at column 23\)$"):
        import_beir(ws, root)


def test_stopped_import_stores_nothing(ws: Workspace, tmp_path: Path) -> None:
    root = write_beir(tmp_path / "beir")
    with pytest.raises(Cancelled):
        import_beir(ws, root, on_progress=lambda *a: None, should_stop=lambda: ws.item_ids().size > 0)
    assert ws.item_ids().size == 0 and not ws.has_judgments()


def test_unknown_qrels_file_and_missing_parts(ws: Workspace, tmp_path: Path) -> None:
    root = write_beir(tmp_path / "beir")
    (root / "qrels" / "validation.tsv").write_text("q\td\ts\n")
    with pytest.raises(ImportDataError, match=r"validation\.tsv: unexpected file in qrels/"):
        import_beir(ws, root)
    (root / "qrels" / "validation.tsv").unlink()
    # a split's file that is no file was skipped: the import said it had no such split and stored the rest
    test_file = root / "qrels" / "test.tsv"
    test_file.rename(root / "moved.tsv")
    for make, what in ((lambda: test_file.symlink_to(root / "gone.tsv"), "a link that leads to no file"),
                       (lambda: test_file.symlink_to(test_file), "a link that leads to no file"),
                       (test_file.mkdir, "a folder")):
        make()
        with pytest.raises(ImportDataError, match=rf"test\.tsv: {what}, not a qrels file"):
            import_beir(ws, root)
        assert ws.item_ids().size == 0 and not ws.has_judgments()
        test_file.rmdir() if test_file.is_dir() and not test_file.is_symlink() else test_file.unlink()
    (root / "moved.tsv").rename(test_file)
    (root / "queries.jsonl").unlink()
    with pytest.raises(ImportDataError, match=r"queries\.jsonl: missing"):
        import_beir(ws, root)


def test_qrels_with_a_csv_import_draws_seeded_splits(ws: Workspace, tmp_path: Path) -> None:
    docs = tmp_path / "docs.csv"
    docs.write_text("key,text\n" + "".join(f"d{i},document {i}\n" for i in range(30)))
    import_items(ws, docs, split="gallery")
    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(json.dumps({"key": f"q{i}", "text": f"query {i}"}) + "\n" for i in range(20)))
    qrels = tmp_path / "judged.csv"
    qrels.write_text("query,item,grade\n" + "".join(f"q{i},d{i},{1 + i % 3}\nq{i},d{i + 10},0\n" for i in range(20)))
    out = import_items(ws, queries, split="query", qrels=qrels, qrels_seed=5)
    assert out["count"] == 20 and out["qrels"]["judgments"] == 40 and out["qrels"]["split_seed"] == 5
    assert out["qrels"]["per_split"] == {"train": 24, "dev": 8, "test": 8}  # 12 / 4 / 4 queries
    expected = assign_query_splits([f"q{i}" for i in range(20)], 5)
    stored = ws.judgments()
    key_of = {r["id"]: r["key"] for r in ws.items("query")}
    assert all(expected[key_of[q]] == s for q, s in zip(stored.query_ids.tolist(), stored.splits.tolist(), strict=True))
    assert json.loads(ws.db.execute("select value from meta where key = ?", [SPLIT_SEED_META]).fetchone()[0])["seed"] == 5
    assert assign_query_splits([f"q{i}" for i in range(20)], 6) != expected


def test_qrels_file_alone_with_given_splits_and_bad_lines(ws: Workspace, tmp_path: Path) -> None:
    ws.add_items([{"key": "a", "split": "gallery"}, {"key": "b", "split": "gallery"}])
    ws.add_items([{"key": "a", "split": "query"}])
    good = tmp_path / "q.tsv"
    good.write_text("a\ta\t1\ttest\na\tb\t0\ttest\n")  # no header: the first grade is a number
    summary = import_qrels(ws, good)
    assert summary.judgments == 2 and summary.split_seed is None and summary.per_split == {"test": 2}
    checkpoint(ws)
    before = snapshot(ws.root)
    for body, message in [("a\tzz\t1\ttest\n", r"line 1: unknown item key 'zz'"),
                          ("b\ta\t1\ttest\n", r"line 1: unknown query key 'b'"),
                          # a key that differs by a character no one sees is shown with it escaped
                          ("a\u200b\ta\t1\ttest\n", r"line 1: unknown query key 'a\\u200b'"),
                          ("a\ta\u00a0b\t1\ttest\n", r"line 1: unknown item key 'a\\u00a0b'"),
                          ("a\tb\t1\ttest\na\ta\t2\ttest\n",  # the first named by its line
                           r"line 1: query 'a' and item 'b' are already judged in the workspace \(2 pairs of this"),
                          ("a\ta\t2\tholdout\n", r"line 1: unknown split 'holdout'"),
                          ("a\ta\n", r"line 1: expected 3 or 4 columns"),
                          ("a\tb\tx\na\ta\t1\n", r"line 1: grade 'x' is not an integer"),  # not a header
                          # a query key with 'query' in it and a word for a grade: a bad judgment, not a header
                          ("query1\ta\trelevant\n", r"line 1: grade 'relevant' is not an integer"),
                          ("query1\ta\trel\n", r"line 1: grade 'rel' is not an integer"),  # 'query1' names no column
                          ("a\ta\t1_0\n", r"line 1: grade '1_0' is not an integer"),  # int() reads 10
                          ("a\ta\t\u0661\n", r"line 1: grade '\u0661' is not an integer"),  # an Arabic-Indic 1
                          ("a\ta\t1\ttest\na\tb\t1\n", r"line 2: 3 columns where earlier lines have 4"),
                          # a stray column under BEIR's header was read as TREC's layout: grade as the item key
                          ("query-id\tcorpus-id\tscore\na\ta\t1\t1\n", r"line 2: 4 columns where the header has 3$"),
                          # spaces under a tab header: the message says what separates this file's fields
                          ("query-id\tcorpus-id\tscore\na a 1\n", r"line 2: 1 columns where the header has 3 \(this "
                           r"file's fields are separated by tabs\)")]:
        bad = tmp_path / "bad.tsv"
        bad.write_text(body)
        with pytest.raises(ImportDataError, match=r"bad\.tsv: " + message):
            import_qrels(ws, bad)
    checkpoint(ws)
    assert snapshot(ws.root) == before


@pytest.mark.parametrize("header", ["query-id\tcorpus-id\tscore", "qid\tQ0\tdocno\trel", "topic,iter,doc,judgment",
                                    "query_id\tdoc_id\trelevance_score", "QID\tDOCID\tRELEVANCE",
                                    "question-id\tpassage-id\tlabels"])
def test_a_header_that_names_query_and_grade_columns_is_skipped(ws: Workspace, tmp_path: Path, header: str) -> None:
    """BEIR's header, TREC's ('qid Q0 docno rel', grade last) and others naming the query first and the
    grade in a later column; the TREC one was refused as "grade 'docno' is not an integer"."""
    ws.add_items([{"key": "a", "split": "gallery"}, {"key": "b", "split": "gallery"}])
    ws.add_items([{"key": "a", "split": "query"}])
    sep = "," if "," in header else "\t"
    width = header.count(sep) + 1
    lines = [["a", "a", "1"], ["a", "b", "0"]] if width == 3 else [["a", "0", "a", "1"], ["a", "0", "b", "0"]]
    qrels = tmp_path / ("q.csv" if sep == "," else "q.tsv")
    qrels.write_text("\n".join([header, *(sep.join(line) for line in lines)]) + "\n")
    summary = import_qrels(ws, qrels)
    assert summary.judgments == 2


def test_cli_imports_beir_and_reports_judgments_in_info(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = str(tmp_path / "w")
    assert main(["init", "-w", ws]) == 0
    capsys.readouterr()
    root = write_beir(tmp_path / "beir")
    assert main(["import", "-w", ws, "--format", "beir", "--path", str(root), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["documents"], out["queries"], out["judgments"]) == (4, 4, {"dev": 1, "test": 2, "train": 2})
    assert main(["info", "-w", ws, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["judgments"]["test"] == {"judgments": 2, "relevant": 2, "queries": 1}
    assert info["judgments"]["train"] == {"judgments": 2, "relevant": 1, "queries": 1}
    assert main(["import", "-w", ws, "--format", "beir", "--path", str(root)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "keys already exist in the workspace" in err
    assert main(["import", "-w", ws]) == 2
    assert "give --path" in capsys.readouterr().err


def test_beir_keys_are_stored_in_nfc_so_judgments_match_either_form(ws: Workspace, tmp_path: Path) -> None:
    """A document id typed on macOS (NFD) and judged with the composed form (NFC) is one item."""
    nfd, nfc = "cafe\u0301", "caf\u00e9"
    corpus = [*CORPUS[:3], {"_id": nfd, "text": "Coffee."}]
    qrels = {"train": [("7", nfc, 1)], "dev": [("q2", "d2", 1)], "test": [("q3", nfd, 2)]}
    import_beir(ws, write_beir(tmp_path / "beir", corpus=corpus, qrels=qrels))
    (doc,) = ws.doc_ids_for_keys([nfc])
    judged = ws.judgments()
    on_doc = sorted(int(g) for i, g in zip(judged.item_ids, judged.grades, strict=True) if int(i) == int(doc))
    assert on_doc == [1, 2]  # the NFC judgment (train) and the NFD one (test) both name the one item
    assert nfc in {it["key"] for it in ws.items(split="gallery")}


def test_a_query_keeps_its_split_across_qrels_imports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    w = tmp_path / "w"
    assert main(["init", "-w", str(w)]) == 0
    with Workspace.open(w) as ws:
        ws.add_items([{"key": f"d{i}", "split": "gallery"} for i in range(10)])
        ws.add_items([{"key": "q1", "split": "query"}, {"key": "q2", "split": "query"}])
    first = tmp_path / "first.tsv"
    first.write_text("q1\td1\t1\ttest\nq2\td2\t1\ttrain\n")
    assert main(["import", "-w", str(w), "--qrels", str(first)]) == 0
    capsys.readouterr()
    with Workspace.open(w) as ws:
        checkpoint(ws)
    before = snapshot(w)
    other = tmp_path / "other.tsv"
    other.write_text("q2\td3\t1\ttrain\nq1\td8\t1\tdev\n")
    assert main(["import", "-w", str(w), "--qrels", str(other)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "other.tsv: line 2: query 'q1' is in split 'dev' here but already in split 'test'" in err
    with Workspace.open(w) as ws:
        checkpoint(ws)
    assert snapshot(w) == before
    unsplit = tmp_path / "unsplit.tsv"
    unsplit.write_text("q1\td7\t1\nq2\td6\t1\n")
    seed = next(s for s in range(50) if assign_query_splits(["q1", "q2"], s)["q1"] == "train")
    assert main(["import", "-w", str(w), "--qrels", str(unsplit), "--qrels-seed", str(seed)]) == 0
    with Workspace.open(w) as ws:
        key_of = {r["id"]: r["key"] for r in ws.items("query")}
        stored = ws.judgments()
        splits = {(key_of[q], s) for q, s in zip(stored.query_ids.tolist(), stored.splits.tolist(), strict=True)}
    assert splits == {("q1", "test"), ("q2", "train")} and len(stored) == 4


def test_split_with_a_qrels_file_alone_is_the_judgments_split(tmp_path: Path) -> None:
    """`import --qrels test.tsv --split test` ignored --split: the held-out judgments were split at random
    into train and dev, where a layer trains on them."""
    w = tmp_path / "w"
    assert main(["init", "-w", str(w)]) == 0
    with Workspace.open(w) as ws:
        ws.add_items([{"key": f"d{i}", "split": "gallery"} for i in range(10)])
        ws.add_items([{"key": f"q{i}", "split": "query"} for i in range(8)])
    qrels = tmp_path / "test.tsv"
    qrels.write_text("".join(f"q{i}\td{i}\t1\n" for i in range(7)))
    assert main(["import", "-w", str(w), "--qrels", str(qrels), "--split", "test"]) == 0
    with Workspace.open(w) as ws:
        splits = ws.judgments().splits.tolist()
    assert splits == ["test"] * 7


@pytest.mark.parametrize("grade", ["2147483648", "99999999999999999999", "1000001"])
def test_too_large_grades_are_refused_in_qrels_and_beir(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         grade: str) -> None:
    w = tmp_path / "w"
    assert main(["init", "-w", str(w)]) == 0
    root = write_beir(tmp_path / "beir", qrels={**QRELS, "test": [("q3", "7", 1), ("q3", "d4", grade)]})
    capsys.readouterr()
    with Workspace.open(w) as ws:
        checkpoint(ws)
    before = snapshot(w)
    assert main(["import", "-w", str(w), "--format", "beir", "--path", str(root)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "OverflowError" not in err
    assert f"test.tsv: line 3: grade {grade} is too large; grades are 0 to 1000000" in err
    with Workspace.open(w) as ws:
        checkpoint(ws)
    assert snapshot(w) == before
    assert main(["import", "-w", str(w), "--format", "beir", "--path", str(write_beir(tmp_path / "ok"))]) == 0
    qrels = tmp_path / "big.tsv"
    qrels.write_text(f"q2\td1\t1\tdev\nq2\td4\t{grade}\tdev\n")
    capsys.readouterr()
    with Workspace.open(w) as ws:
        checkpoint(ws)
    before = snapshot(w)
    assert main(["import", "-w", str(w), "--qrels", str(qrels)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"big.tsv: line 2: grade {grade} is too large" in err
    with Workspace.open(w) as ws:
        checkpoint(ws)
    assert snapshot(w) == before


def test_qrels_layouts_trec_spaces_and_a_trailing_separator(ws: Workspace, tmp_path: Path) -> None:
    """TREC's 'query iteration document grade' (tabs or spaces) and a trailing tab read as plain judgments."""
    from embridge.core.qrels import read_qrels

    for name, body in [("trec.tsv", "a\t0\tb\t2\na\tQ0\tc\t0\n"), ("trec.txt", "a 0 b 2\na  0  c 0\n"),
                       ("trailing.tsv", "query-id\tcorpus-id\tscore\na\tb\t2\t\na\tc\t0\t\n")]:
        (tmp_path / name).write_text(body)
        lines = read_qrels(tmp_path / name, "test")
        assert (lines.query_keys, lines.item_keys, lines.grades, lines.splits) == (
            ["a", "a"], ["b", "c"], [2, 0], ["test", "test"]), name


def test_a_beir_folder_is_recognised_without_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A folder holding corpus.jsonl is imported as BEIR by the command line and by import_items (the app's auto)."""
    root = write_beir(tmp_path / "beir")
    assert main(["init", "-w", str(tmp_path / "ws")]) == 0
    assert main(["import", "-w", str(tmp_path / "ws"), "--path", str(root), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (out["format"], out["documents"], out["queries"]) == ("beir", 4, 4)
    with Workspace.create(tmp_path / "ws2") as ws:
        assert import_items(ws, root)["judgments"] == {"train": 2, "dev": 1, "test": 2}


def test_a_document_naming_a_key_twice_is_refused_not_half_read(ws: Workspace, tmp_path: Path) -> None:
    """json.loads keeps the last of two 'text' values; the import names the line instead."""
    root = write_beir(tmp_path / "beir")
    with open(root / "corpus.jsonl", "a", encoding="utf-8") as fh:
        fh.write('{"_id": "d9", "text": "first", "text": "second"}\n')
    checkpoint(ws)
    before = snapshot(ws.root)
    with pytest.raises(ImportDataError, match=r"corpus\.jsonl: line 5: the key 'text' appears twice"):
        import_beir(ws, root)
    checkpoint(ws)
    assert snapshot(ws.root) == before


def test_a_large_corpus_is_checked_and_stored_without_holding_its_records(ws: Workspace, tmp_path: Path) -> None:
    """The whole corpus was parsed into records before anything was stored: about 0.7 KB a document (145 MB
    live at 200k). Keys are held now, and the records are read again a chunk at a time to be stored."""
    import tracemalloc

    n = 60_000
    corpus = [{"_id": f"doc-{i}", "title": f"Title {i}", "text": f"document number {i} " * 8,
               "url": f"https://example.org/{i}"} for i in range(n)]
    root = write_beir(tmp_path / "big", corpus=corpus, qrels={"test": [("q3", "doc-5", 1)]})
    tracemalloc.start()
    try:
        summary = import_beir(ws, root)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert summary.documents == n and ws.split_counts()["gallery"] == n
    assert peak < 40 * 2**20, peak / 2**20  # 62 MB when every record was held (30 MB now)


def test_a_corpus_changed_between_its_check_and_its_storing_is_refused(ws: Workspace, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import embridge.core.beir_import as beir

    root = write_beir(tmp_path / "b")
    real = beir._read_qrels_folder

    def read_then_change(folder: Path) -> object:  # after both files were checked, before they are stored
        with (root / "corpus.jsonl").open("a") as fh:
            fh.write(json.dumps({"_id": "late", "text": "written meanwhile"}) + "\n")
        return real(folder)

    monkeypatch.setattr(beir, "_read_qrels_folder", read_then_change)
    with pytest.raises(ImportDataError, match="corpus.jsonl: changed while it was imported; nothing was stored"):
        import_beir(ws, root)
    assert ws.item_ids().size == 0 and not ws.has_judgments()  # the items stored before the end were rolled back
