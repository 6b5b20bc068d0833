"""``embridge report``, ``plan`` and ``chain`` end to end with --json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from report_fixtures import build_chain_workspace

from embridge.core.cli.main import main


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict | str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    data = json.loads(out) if "--json" in args and code == 0 else out
    return code, data, err


def test_report_and_plan_on_a_demo_copy(demo_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = str(demo_copy)
    code, err_out, err = run_cli(capsys, "report", "--workspace", ws, "--json")
    assert code == 1 and "no completed training run" in err and err.count("\n") == 1
    code, trained, err = run_cli(capsys, "train", "--workspace", ws, "--method", "affine", "--device", "cpu", "--json")
    assert code == 0, err
    code, rep, err = run_cli(capsys, "report", "--workspace", ws, "--bootstrap", "200", "--json")
    assert code == 0, err
    assert "report:" in err  # progress on stderr, one JSON object on stdout
    assert rep["run_id"] == trained["run_id"] and set(rep["cells"]) == {"old/old", "new/new", "new→old"}
    for key in ("relative_nfr_ci_defined", "gain_retained_ci_defined"):  # the intervals' resamples where defined
        assert 0.0 <= rep[key] <= 1.0, key
    assert (rep["old_model"], rep["new_model"]) == (trained["old"], trained["new"])  # which pair it compares
    for cell in rep["cells"].values():
        assert {"top1", "top5", "recall@10", "mAP"} <= set(cell) and 0 <= cell["top1"] <= 1
    for key in ("gain_retained", "arr", "negative_flip_rate", "positive_flip_rate"):
        assert isinstance(rep[key], float)
    assert rep["upgraded_top1"] - rep["old_old_top1"] == pytest.approx(
        rep["positive_flip_rate"] - rep["negative_flip_rate"])
    assert Path(rep["report_json"]).is_file() and Path(rep["report_html"]).is_file()
    assert Path(rep["report_json"]).parent.name == str(rep["report_id"])
    stored = json.loads(Path(rep["report_json"]).read_text(encoding="utf-8"))
    assert stored["headline"]["gain_retained"] == rep["gain_retained"]
    # the report's run row names where its numbers were measured, in the words of its upgraded cell
    code, runs, err = run_cli(capsys, "runs", "--workspace", ws, "--kind", "report", "--json")
    assert code == 0, err
    (row,) = [r for r in runs["runs"] if (r.get("metrics") or {}).get("report_id") == rep["report_id"]]
    assert row["metrics"]["protocol"] == stored["cells"]["new→old"]["protocol"]["text"]
    assert row["metrics"]["upgraded_top1"] == rep["upgraded_top1"] and "queries" in row["metrics"]["protocol"]

    code, plan, err = run_cli(capsys, "plan", "--workspace", ws, "--device", "cpu", "--json")
    assert code == 0, err
    assert plan["report_id"] == rep["report_id"]
    names = [o["name"] for o in plan["options"]]
    assert names[:2] == ["stay", "adapter_only"] and names[-1] == "full_backfill"
    for option in plan["options"]:
        assert {"name", "time_s", "storage_bytes", "quality", "notes"} <= set(option)
    assert plan["recommendation"] in names and plan["reason"]
    code, plan_half, err = run_cli(capsys, "plan", "--workspace", ws, "--fraction", "0.5", "--device", "cpu", "--json")
    assert code == 0, err
    half = {o["name"]: o for o in plan_half["options"]}["partial_backfill"]
    assert half["fraction"] == 0.5 and half["items_embedded"] == round(0.5 * 997)

    code, text, err = run_cli(capsys, "report", "--workspace", ws, "--run", "999")
    assert code == 1 and "error: --run: names run 999, which the workspace does not hold" in err
    # new/new searched the 600-item sample: gain retained and ARR are that sample's, and the text says so
    assert rep["old_old_sample_top1"] is not None
    code, text, err = run_cli(capsys, "report", "--workspace", ws, "--bootstrap", "50")
    assert code == 0, err
    assert f"ARR@{rep['arr_k']} " in text and "(both on the evaluation sample)" in text
    html = Path(rep["report_html"]).read_text(encoding="utf-8")
    assert "ARR (recall@10) on the evaluation sample" in html


def test_chain_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    info = build_chain_workspace(tmp_path / "ws")
    code, data, err = run_cli(capsys, "chain", "--workspace", str(info["path"]), "--models", ",".join(info["models"]),
                              "--runs", ",".join(str(r) for r in info["runs"]), "--json")
    assert code == 0, err
    assert data["versions"] == ["v1", "v2", "v3"] and len(data["matrix"]) == 3 and data["matrix"][0][2] is None
    assert 0 <= data["ac"] <= 1 and 0 <= data["am"] <= 1 and Path(data["report_html"]).is_file()
    # every cell searched the same queries and gallery: one sentence, in the JSON and in the text
    (sentence,) = data["measured_on"]
    assert sentence.startswith("64 test queries") and "(256 items)" in sentence
    code, text, err = run_cli(capsys, "chain", "--workspace", str(info["path"]), "--models", ",".join(info["models"]),
                              "--runs", ",".join(str(r) for r in info["runs"]))
    assert code == 0 and f"measured on {sentence}" in text, err
    for option, value, said in (("--runs", "1,", "--runs: expected comma-separated run ids, got '1,'"),
                                ("--models", "v1,,v3", "--models: has an empty entry in 'v1,,v3'")):
        args = {"--models": ",".join(info["models"]), "--runs": ",".join(str(r) for r in info["runs"]), option: value}
        code, _, err = run_cli(capsys, "chain", "--workspace", str(info["path"]), *[x for kv in args.items() for x in kv])
        assert code == 2 and said in err and err.count("\n") == 1, err  # a usage error, as argparse's


def test_queries_without_a_relevant_item_are_counted_as_not_scored(demo_copy: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """30 queries whose label no gallery item has count in no metric: the report says 170 of 200 scored."""
    from embridge.core.store import Workspace

    with Workspace.open(demo_copy) as ws:
        unseen = ws.query_ids()[:30].tolist()
        with ws.transaction():
            ws.db.execute(f"update items set label = 'unseen' where id in ({','.join('?' * len(unseen))})", unseen)
    assert main(["train", "-w", str(demo_copy), "--method", "procrustes", "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["report", "-w", str(demo_copy), "--bootstrap", "50"]) == 0
    out = capsys.readouterr().out
    assert "170 queries scored (of 200)" in out.splitlines()[0]
    assert main(["report", "-w", str(demo_copy), "--bootstrap", "50", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["n_queries"] == 170 and data["sizes"]["queries_scored"] == 170
    # the partial-backfill curves the README lists for report --json, as report.json records them
    stored = json.loads(Path(data["report_json"]).read_text(encoding="utf-8"))["backfill"]["policies"]
    assert data["backfill_curves"] and set(data["backfill_curves"]) == set(stored)
    for policy, curve in data["backfill_curves"].items():
        assert curve == {"betas": stored[policy]["betas"], "values": stored[policy]["values"]}
    page = Path(data["report_html"]).read_text(encoding="utf-8")
    assert ("Scored: 170 of the 200 queries (the others have no relevant item in this gallery), so no metric counts "
            "the other 30.") in page
