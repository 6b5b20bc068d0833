"""With graded judgments the compatibility criterion is decided on nDCG@10 wherever it is stated.

A task built so that one more first hit hides a worse ranking: each query's old vector leads with a
non-relevant document and then its grade-3, grade-2 and grade-1 documents; its new vector finds the
grade-1 document first and nothing else. A Procrustes layer then wins top-1 (success@1) and loses
nDCG@10. The report's verdict, ``train``'s verdict, the HTML headline and the release gate's
``compatible`` and ``gain_retained`` all say FAILS, on nDCG@10; top-1's own numbers stay listed as such.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embridge.core.cli.main import main
from embridge.core.store import Workspace
from embridge.core.store.judgments import Judgments

N_DOCS, N_QUERIES, DIM = 240, 90, 32


def build(path: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    docs = rng.standard_normal((N_DOCS, DIM))
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    rotation = np.linalg.qr(rng.standard_normal((DIM, DIM)))[0]
    picks = np.array([rng.choice(N_DOCS, 4, replace=False) for _ in range(N_QUERIES)])  # wrong, g3, g2, g1
    old_q = docs[picks[:, 0]] + 0.9 * docs[picks[:, 1]] + 0.8 * docs[picks[:, 2]] + 0.7 * docs[picks[:, 3]]
    new_q = (docs[picks[:, 3]] + 0.01 * rng.standard_normal((N_QUERIES, DIM))) @ rotation
    ws = Workspace.create(path)
    doc_ids = np.asarray(ws.add_items([{"key": f"d{i}", "split": "gallery"} for i in range(N_DOCS)]), np.int64)
    query_ids = np.asarray(ws.add_items([{"key": f"q{i}", "split": "query"} for i in range(N_QUERIES)]), np.int64)
    splits = np.array(["train"] * 45 + ["dev"] * 15 + ["test"] * 30)
    ws.add_judgments(Judgments.from_arrays(np.repeat(query_ids, 3), doc_ids[picks[:, 1:]].ravel(),
                                           np.tile([3, 2, 1], N_QUERIES), np.repeat(splits, 3)))
    for role, gallery, queries in (("old", docs, old_q), ("new", docs @ rotation, new_q)):
        spec = {"name": role, "kind": "vectors", "modality": "vector", "dim": DIM, "sha256": f"{len(role):064d}",
                "path": ""}
        ws.add_model(role, role, spec, None)
        ws.add_vector_set(role, np.concatenate([doc_ids, query_ids]), np.concatenate([gallery, queries]))
    ws.close()


@pytest.fixture(scope="module")
def judged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import contextlib
    import io

    path = tmp_path_factory.mktemp("criterion") / "ws"
    build(path)
    out: dict[str, Any] = {"path": path}
    for name, argv in (("train", ["train", "--method", "procrustes"]), ("report", ["report"])):
        for fmt in ([], ["--json"]):
            stdout = io.StringIO()
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(io.StringIO()):
                assert main([*argv, "--workspace", str(path), *fmt]) == 0
            out[name + ("_json" if fmt else "_text")] = stdout.getvalue()
    out["report"] = json.loads(out["report_json"])
    return out


def test_the_task_wins_top1_and_loses_ndcg(judged: dict[str, Any]) -> None:
    r = judged["report"]
    assert r["upgraded_top1"] > r["old_old_top1"] and r["compatible"] is True  # top-1's own criterion
    assert r["ndcg@10"] < r["old_old_ndcg@10"] and r["compatible_ndcg@10"] is False
    assert any("FAILS the compatibility criterion: new→old nDCG@10" in v for v in r["verdicts"])


def test_flipped_queries_list_each_results_judged_grade(judged: dict[str, Any]) -> None:
    with Workspace.open(judged["path"]) as ws:
        stored = json.loads(Path(judged["report"]["report_json"]).read_text())
        j = ws.judgments()
        judgments = {(int(q), int(d)): int(g) for q, d, g in zip(j.query_ids, j.item_ids, j.grades, strict=True)}
        all_ids = ws.item_ids()
        ids = {k: int(i) for k, i in zip(ws.keys_of(all_ids), all_ids, strict=True)}
    section = stored["flipped_queries"]
    assert section["positive"] and not section["negative"]  # the new model finds a relevant document first
    for f in section["positive"]:
        q = ids[f["query_key"]]
        for side in ("old_top", "upgraded_top"):
            assert f[side + "_grades"] == [judgments.get((q, ids[k]), 0) for k in f[side]]
        assert f["upgraded_top_grades"][0] > 0 and f["old_top_grades"][0] == 0  # what makes it a positive flip
    assert any(g > 0 for f in section["positive"] for g in f["old_top_grades"])  # old/old finds them lower down


def test_train_states_the_verdict_on_ndcg(judged: dict[str, Any]) -> None:
    run = json.loads(judged["train_json"])
    assert run["compatible"] is True and run["compatible_ndcg@10"] is False
    lines = judged["train_text"].splitlines()
    (top1,) = [line for line in lines if line.startswith("held-out top-1:")]
    (ndcg,) = [line for line in lines if line.startswith("held-out nDCG@10:")]
    assert "criterion" not in top1 and "gain retained (top-1): " in top1
    assert "-> FAILS the compatibility criterion (decided on nDCG@10 with relevance judgments)" in ndcg
    assert "PASSES" not in judged["train_text"]


def test_runs_lists_the_criterion_on_ndcg(judged: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "--workspace", str(judged["path"]), "--kind", "train", "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)["runs"]  # the fixture trained twice (text and --json)
    assert len(runs) == 2 and all(r["criterion"] == {"metric": "nDCG@10", "compatible": False} for r in runs)
    trained = json.loads(judged["train_json"])
    assert runs[-1]["metrics"]["new_new_ndcg@10"] == trained["new_new_ndcg@10"]  # the ceiling nDCG@10 is listed too
    judged_numbers = {k: v for k, v in trained.items() if ("ndcg@10" in k or "mrr@10" in k) and not k.startswith("compatible")}
    assert {"old_old_mrr@10", "gain_retained_mrr@10"} <= judged_numbers.keys()
    assert {k: runs[-1]["metrics"].get(k) for k in judged_numbers} == judged_numbers  # every judged number, as train gives it
    assert main(["runs", "--workspace", str(judged["path"]), "--kind", "train"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("#")]
    assert len(lines) == 2 and all("criterion: FAILS (nDCG@10)" in line and "passes" not in line for line in lines)


def test_the_html_headline_states_the_ndcg_criterion(judged: dict[str, Any]) -> None:
    html = Path(judged["report"]["report_html"]).read_text()
    assert 'Compatibility criterion (nDCG@10): the upgrade <span class="fail">fails</span>' in html
    assert "Compatibility criterion (top-1)" not in html and "gain retained (top-1)" in html
    # a BEIR user reads recall@k as the share of relevant documents found: the page says what it is here
    assert "the share of queries with a relevant item among the first k (success@k" in html
    stored = json.loads(Path(judged["report"]["report_json"]).read_text())
    assert all(f"recall_frac@{k}" in cell["metrics"] for cell in stored["cells"].values() for k in (1, 10))


def test_the_gate_fails_compatible_and_gain_retained_on_ndcg(judged: dict[str, Any], tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    junit = tmp_path / "gate.xml"
    code = main(["report", "--workspace", str(judged["path"]), "--fail-under", "compatible=1",
                 "--fail-under", "gain_retained=0.5", "--fail-under", "upgraded_top1=0.5", "--junit", str(junit)])
    err = capsys.readouterr().err
    assert code != 0
    assert "compatible (decided on nDCG@10 with relevance judgments: compatible_ndcg@10) = 0, required at least 1" in err
    assert "gain_retained (decided on nDCG@10 with relevance judgments: gain_retained_ndcg@10): undefined" in err
    xml = junit.read_text()
    assert xml.count("<failure") == 2 and 'name="compatible&gt;=1"' in xml  # the check as the user wrote it
    assert main(["report", "--workspace", str(judged["path"]), "--fail-under", "compatible=1", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    (check,) = out["gate"]["checks"]
    assert out["compatible"] is True and check["reads"] == "compatible_ndcg@10" and check["value"] == 0.0


def test_the_gate_checks_top1s_own_criterion_by_name(judged: dict[str, Any], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """With judgments ``compatible`` reads the nDCG@10 criterion (failed here); top-1's own (passed
    here) is gated as ``compatible_top1``, and the JUnit file says which key each check read."""
    junit = tmp_path / "gate.xml"
    capsys.readouterr()
    assert main(["report", "--workspace", str(judged["path"]), "--fail-under", "compatible_top1=1",
                 "--fail-under", "gain_retained_top1>=0", "--junit", str(junit)]) == 0
    xml = junit.read_text()
    assert "compatible_top1 (top-1's criterion: compatible) = 1" in xml and 'failures="0"' in xml
    assert main(["report", "--workspace", str(judged["path"]), "--fail-under", "compatible=1"]) != 0
    assert "compatible_ndcg@10" in capsys.readouterr().err
