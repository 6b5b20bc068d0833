"""Importer edges a real corpus meets: ids holding a no-break space or a comma, a BEIR folder missing its
corpus, a clash with stored items counted over the whole folder, JSONL line ends, the seed a library
caller passes for a BEIR folder's dev queries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.workspace_files import refused_unchanged
from test_beir_import import write_beir

from embridge.core.beir_import import DEV_FROM_TRAIN_META, import_beir
from embridge.core.errors import ImportDataError
from embridge.core.importers import import_items
from embridge.core.qrels import import_qrels
from embridge.core.store import Workspace


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = Workspace.create(tmp_path / "ws")
    yield workspace
    workspace.close()


def _judged(ws: Workspace, split: str) -> dict[str, dict[str, int]]:
    """{query key: {document key: grade}} of ``split``'s stored judgments."""
    got = ws.judgments(split)
    out: dict[str, dict[str, int]] = {}
    for q, d, g in zip(ws.keys_of(got.query_ids), ws.keys_of(got.item_ids), got.grades.tolist(), strict=True):
        out.setdefault(q, {})[d] = int(g)
    return out


@pytest.mark.parametrize("blank", ["\u00a0", "\u3000", "\u2009"])
def test_a_unicode_space_inside_a_qrels_id_is_part_of_the_id(ws: Workspace, tmp_path: Path, blank: str) -> None:
    """Only ASCII blanks separate a whitespace qrels file: 'd<NBSP>x' was split into two columns and the
    line read as TREC's four (query, iteration 'd', document 'x', grade), judging another document."""
    odd = f"d{blank}x"
    import_beir(ws, write_beir(tmp_path / "beir", corpus=[{"_id": odd, "text": "odd"}, {"_id": "x", "text": "x"},
                                                          {"_id": "d1", "text": "one"}],
                               queries=[{"_id": "q1", "text": "ask"}, {"_id": "q2", "text": "ask"}],
                               qrels={"test": [("q2", "d1", 1)]}))
    path = tmp_path / "more.txt"
    path.write_text(f"q1 {odd} 2\n", encoding="utf-8")
    import_qrels(ws, path, split="test")
    assert _judged(ws, "test")["q1"] == {odd: 2}


def test_a_trec_line_with_a_comma_in_a_document_id_is_read_by_blanks(ws: Workspace, tmp_path: Path) -> None:
    """A comma anywhere in the first line made the whole file comma-separated ('found 2 columns')."""
    import_beir(ws, write_beir(tmp_path / "beir", corpus=[{"_id": "Paris,_Texas", "text": "a town"},
                                                          {"_id": "d1", "text": "one"}],
                               queries=[{"_id": "q1", "text": "ask"}, {"_id": "q2", "text": "ask"}],
                               qrels={"test": [("q2", "d1", 1)]}))
    trec = tmp_path / "run.txt"
    trec.write_text("q1 0 Paris,_Texas 1\nq1 0 d1 0\n")
    import_qrels(ws, trec, split="test")
    assert _judged(ws, "test")["q1"] == {"Paris,_Texas": 1, "d1": 0}
    listed = tmp_path / "list.txt"  # a comma list with blanks after its commas stays comma-separated
    listed.write_text("q2, d1, 2\n")
    with pytest.raises(ImportDataError, match="already judged"):  # read as (q2, d1, 2): that pair exists
        import_qrels(ws, listed, split="test")


def test_a_beir_folder_without_its_corpus_is_named_as_a_beir_folder(ws: Workspace, tmp_path: Path) -> None:
    root = write_beir(tmp_path / "beir")
    (root / "corpus.jsonl").unlink()
    refused_unchanged(ws, lambda: import_items(ws, root), r"corpus\.jsonl")
    images = tmp_path / "images" / "qrels"  # an image label may be called 'qrels': no .tsv, still images
    images.mkdir(parents=True)
    with pytest.raises(ImportDataError, match="no image files"):
        import_items(ws, images.parent)


def test_a_beir_clash_with_stored_items_counts_every_clashing_key(ws: Workspace, tmp_path: Path) -> None:
    """Items are added in parts of 10,000; the refusal counted only the first part that clashed."""
    corpus = [{"_id": f"d{i}", "text": f"doc {i}"} for i in range(25_000)]
    queries = [{"_id": "q1", "text": "ask"}, {"_id": "q2", "text": "ask"}]
    root = write_beir(tmp_path / "beir", corpus=corpus, queries=queries, qrels={"test": [("q1", "d1", 1)]})
    import_items(ws, write_beir(tmp_path / "first", corpus=[corpus[15_000], corpus[24_999]],
                                queries=[{"_id": "q9", "text": "other"}], qrels={"test": [("q9", "d15000", 1)]}))
    refused_unchanged(ws, lambda: import_beir(ws, root),
                      r"2 keys already exist in the workspace, e\.g\. d15000, d24999")


def test_jsonl_lines_end_at_newline_only_and_keyless_records_are_named_by_line(ws: Workspace,
                                                                               tmp_path: Path) -> None:
    """A lone CR does not end a JSONL record (as in a BEIR folder); keys name the line, blank lines counted."""
    path = tmp_path / "notes.jsonl"
    path.write_bytes(b'{"text": "a"}\r\n\n{"text": "b"}\n')
    import_items(ws, path, split="gallery")
    assert sorted(r["key"] for r in ws.items("gallery")) == ["notes:1", "notes:3"]
    lone = tmp_path / "lone.jsonl"
    lone.write_bytes(b'{"text": "c"}\r{"text": "d"}\r')
    with pytest.raises(ImportDataError, match=r"lone\.jsonl: line 1"):
        import_items(ws, lone, split="gallery")


def test_a_library_caller_seeds_a_beir_folders_dev_queries(ws: Workspace, tmp_path: Path) -> None:
    corpus = [{"_id": f"d{i}", "text": f"document {i}"} for i in range(60)]
    queries = [{"_id": f"q{i}", "text": f"query {i}"} for i in range(50)]
    train = [(f"q{i}", f"d{i}", 1) for i in range(40)]
    import_items(ws, write_beir(tmp_path / "beir", corpus=corpus, queries=queries, qrels={"train": train}),
                 qrels_seed=7)
    assert json.loads(ws.meta(DEV_FROM_TRAIN_META))["seed"] == 7


def test_a_tsv_quote_error_names_the_tab(ws: Workspace, tmp_path: Path) -> None:
    """Python's csv message quotes the delimiter, and a tab printed as a blank: "(' ' expected after '\"')"
    told a TSV user that a space was missing."""
    path = tmp_path / "x.tsv"
    path.write_text('key\ttext\nt1\thello\nt2\t"quoted" text\n')
    with pytest.raises(ImportDataError, match=r"x\.tsv: line 3: malformed TSV \(a tab expected after '\"'\)"):
        import_items(ws, path, None, "gallery")
    assert ws.items() == []
