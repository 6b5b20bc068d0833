"""The text demo: bundled public-domain verses with judgments, imported as BEIR, two trained text encoders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from embridge.core.cli.main import main
from embridge.core.demo_text import NEW_MODEL, OLD_MODEL, QUERY_PROMPT, load_verses, write_beir_folder
from embridge.core.report.judged_metrics import score_rankings
from embridge.core.store import Workspace

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("text-demo") / "ws"
    assert main(["demo", "--kind", "text", "-w", str(root), "--json"]) == 0
    return root


def _ndcg(ws: Workspace, model: str, split: str) -> float:
    judgments = ws.judgments(split)
    queries, gallery = judgments.query_ids_unique(), ws.item_ids("gallery")
    scores = ws.vectors_for(model, queries) @ ws.vectors_for(model, gallery).T
    ranked = gallery[np.argsort(-scores, axis=1, kind="stable")[:, :100]]
    return score_rankings(ranked, queries, judgments).mean()["ndcg@10"]


def test_the_demo_holds_documents_queries_and_judgments_per_split(demo: Path) -> None:
    corpus = [v for v in load_verses() if v.use == "corpus"]
    with Workspace.open(demo) as ws:
        counts = ws.split_counts()
        assert counts["query"] == 600
        # verses in which an encoder knows no word are left out (a handful: names only, outside Genesis)
        assert 0 < len(corpus) - counts["gallery"] <= 0.01 * len(corpus), (len(corpus), counts)
        assert {s: len(ws.judgments(s)) for s in ("train", "dev", "test")} == {"train": 300, "dev": 100, "test": 200}
        judgments = ws.judgments()
        queries = {it["id"]: it for it in ws.items(ids=judgments.query_ids)}
        docs = {it["id"]: it for it in ws.items(ids=judgments.item_ids)}
    by_ylt = {v.ylt: v.kjv for v in corpus}
    for q, d in zip(judgments.query_ids[:50], judgments.item_ids[:50], strict=True):
        assert by_ylt[queries[int(q)]["text"]] == docs[int(d)]["text"]  # a query's document is its own verse


def test_the_new_encoder_uses_its_query_prompt_and_beats_the_old_one(demo: Path) -> None:
    from sentence_transformers import SentenceTransformer

    with Workspace.open(demo) as ws:
        old, new = ws.model(OLD_MODEL), ws.model(NEW_MODEL)
        assert (old["role"], new["role"]) == ("old", "new")
        assert (old["spec"]["query_prompt"], new["spec"]["query_prompt"]) == ("", QUERY_PROMPT)
        assert (old["dim"], new["dim"]) == (32, 64)
        ndcg = {m: _ndcg(ws, m, "test") for m in (OLD_MODEL, NEW_MODEL)}
        query = ws.items(ids=ws.judgments("test").query_ids_unique()[:5])
        stored = ws.vectors_for(NEW_MODEL, [it["id"] for it in query])
        folder = ws.root / new["file"]
    assert ndcg[NEW_MODEL] > ndcg[OLD_MODEL] + 0.1, ndcg
    assert 0.3 < ndcg[OLD_MODEL] < 0.9, ndcg  # a real task: neither trivial nor hopeless
    encoder = SentenceTransformer(str(folder), device="cpu")
    texts = [it["text"] for it in query]
    np.testing.assert_allclose(stored, encoder.encode(texts, prompt=QUERY_PROMPT), atol=1e-5)
    assert np.abs(stored - encoder.encode(texts, prompt="")).max() > 1e-3


def test_the_beir_folder_is_what_a_user_would_import(tmp_path: Path) -> None:
    counts = write_beir_folder(tmp_path / "beir", load_verses(), seed=0)
    lines = (tmp_path / "beir" / "qrels" / "test.tsv").read_text().splitlines()
    assert lines[0] == "query-id\tcorpus-id\tscore" and len(lines) == 1 + counts["test"] == 201
    first = json.loads((tmp_path / "beir" / "queries.jsonl").read_text().splitlines()[0])
    assert set(first) == {"_id", "text"} and first["_id"].startswith("q-")


def test_every_stored_document_vector_has_a_direction(demo: Path) -> None:
    """A bag of words gives a text without a known word an all-zero vector, which no search finds and
    bundles and migrations refuse: the demo's documents are those both encoders read."""
    with Workspace.open(demo) as ws:
        gallery = ws.item_ids("gallery")
        for model in (OLD_MODEL, NEW_MODEL):
            norms = np.linalg.norm(ws.vectors_for(model, gallery), axis=1)
            assert norms.min() > 0.5, (model, int((norms == 0).sum()))


SAVE = """
import sys
from pathlib import Path
import numpy as np
from embridge.core.demo_text import save_encoder, whitespace_tokenizer
save_encoder(Path(sys.argv[1]), whitespace_tokenizer(["a", "b", "c"]), np.eye(3, dtype=np.float32), "q: ")
"""


def test_a_saved_encoder_is_the_same_bytes_in_every_process(tmp_path: Path) -> None:
    """The tokenizer's stop words (a set) were saved in the process's hash order, so one seed gave the demo
    models other sha256s on every build."""
    import os
    import subprocess
    import sys

    for seed in ("1", "2"):
        subprocess.run([sys.executable, "-c", SAVE, str(tmp_path / seed)], check=True, timeout=300,
                       env={**os.environ, "PYTHONHASHSEED": seed})
    files = sorted(p.relative_to(tmp_path / "1") for p in (tmp_path / "1").rglob("*") if p.is_file())
    assert any(p.name == "whitespacetokenizer_config.json" for p in files)
    assert all((tmp_path / "1" / p).read_bytes() == (tmp_path / "2" / p).read_bytes() for p in files)


def test_the_judged_documents_are_not_all_in_the_train_fold(demo: Path, tmp_path: Path) -> None:
    """Queries and folds were drawn by the same seeded permutation of as many items: every judged document
    (each query's one answer) fell in the train fold, so the layer was fitted on the pair of every test
    query's answer and `report --heldout-gallery` had no relevant document left to find."""
    import shutil

    ws_path = shutil.copytree(demo, tmp_path / "ws")
    assert main(["train", "-w", str(ws_path), "--method", "procrustes"]) == 0
    with Workspace.open(ws_path) as ws:
        train = set(ws.fold_ids()["train"].tolist())
        gallery = len(ws.item_ids("gallery"))
        for split in ("test", "dev"):
            j = ws.judgments(split)
            answers = set(j.item_ids[j.grades > 0].tolist())
            share = len(answers & train) / len(answers)
            assert share < 0.9 * len(train) / gallery + 0.1, (split, share)  # not all of them (it was 1.0)
    assert main(["report", "-w", str(ws_path), "--heldout-gallery", "--bootstrap", "20", "--backfill-steps", "2"]) == 0


def test_queries_the_old_model_reads_nothing_of_are_named_in_a_fusion_report(demo: Path, tmp_path: Path) -> None:
    """A fusion report scored such queries by the mapped new query alone while `bundle apply` refuses their
    all-zero old vectors, and neither said a word of them."""
    import shutil

    from embridge.core.report.build import ReportOptions, build_report

    ws_path = shutil.copytree(demo, tmp_path / "ws")
    assert main(["train", "-w", str(ws_path), "--method", "fusion"]) == 0
    with Workspace.open(ws_path) as ws:
        report = build_report(ws, None, ReportOptions(n_boot=20, backfill_steps=2), write=False)
        test_queries = ws.judgments("test").query_ids_unique()
        zero = int((~ws.vectors_for("old-bow", test_queries).any(axis=1)).sum())
    assert zero > 0  # the demo's old encoder knows only Genesis's words
    (line,) = [x for x in report.protocol if "all-zero old-model vector" in x]
    assert line.startswith(f"{zero} of the {len(test_queries)} queries have an all-zero old-model vector")
    assert "`bundle apply` refuses all-zero rows" in line
