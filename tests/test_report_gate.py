"""``embridge report --fail-under`` / ``--junit``: a release gate on a real report of the demo workspace."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from embridge.core.cli.main import main
from embridge.core.report.gate import Check, evaluate, parse_check


def test_parse_and_evaluate_checks() -> None:
    assert parse_check("gain_retained=0.5") == Check("gain_retained", ">=", 0.5)
    assert parse_check("negative_flip_rate<=0.05") == Check("negative_flip_rate", "<=", 0.05)
    assert parse_check("ndcg@10>=0.3").metric == "ndcg@10"
    results = evaluate([parse_check("a=0.5"), parse_check("b<=0.1"), parse_check("c=0"), parse_check("zz=1")],
                       {"a": 0.5, "b": 0.2, "c": None, "c_note": "the new model gains nothing"})
    assert [r.passed for r in results] == [True, False, False, False]
    assert "gains nothing" in results[2].message and "no such metric" in results[3].message


def test_gate_on_a_real_report(demo_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = str(demo_copy)
    assert main(["train", "--workspace", ws, "--method", "procrustes", "--device", "cpu", "--json"]) == 0
    capsys.readouterr()
    junit = tmp_path / "gate.xml"
    code = main(["report", "--workspace", ws, "--bootstrap", "200", "--json", "--junit", str(junit),
                 "--fail-under", "gain_retained=0.0", "--fail-under", "negative_flip_rate<=1",
                 "--fail-under", "upgraded_top1>=1.01", "--fail-under", "no_such_metric=0.1"])
    out, err = capsys.readouterr()
    data = json.loads(out)  # the JSON still comes on stdout
    assert code == 1
    gate_lines = [line for line in err.splitlines() if line.startswith("embridge: gate failed")]
    assert len(gate_lines) == 2
    assert "upgraded_top1" in gate_lines[0] and "no_such_metric" in gate_lines[1]
    assert [c["passed"] for c in data["gate"]["checks"]] == [data["gain_retained"] >= 0, True, False, False]
    suite = ET.parse(junit).getroot().find("testsuite")
    cases = suite.findall("testcase")
    assert suite.get("tests") == "4" and suite.get("failures") == "2"
    assert [c.get("name") for c in cases] == ["gain_retained>=0", "negative_flip_rate<=1", "upgraded_top1>=1.01",
                                              "no_such_metric>=0.1"]
    failed = {c.get("name"): c.find("failure").get("message") for c in cases if c.find("failure") is not None}
    assert f"{data['upgraded_top1']:.6g}" in failed["upgraded_top1>=1.01"]

    # every check passing: exit 0, the JUnit file is replaced by the new result
    code = main(["report", "--workspace", ws, "--bootstrap", "200", "--junit", str(junit),
                 "--fail-under", f"upgraded_top1={data['upgraded_top1']}",
                 "--fail-under", f"negative_flip_rate<={data['negative_flip_rate']}"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "gate: 2 of 2 checks passed" in out
    assert ET.parse(junit).getroot().get("failures") == "0"


def test_gate_bad_options(demo_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = str(demo_copy)
    assert main(["report", "--workspace", ws, "--fail-under", "gain_retained~0.5"]) == 2
    assert "--fail-under" in capsys.readouterr().err
    code = main(["report", "--workspace", ws, "--junit", str(demo_copy / "gate.xml")])
    err = capsys.readouterr().err
    assert code == 1 and "--junit" in err and err.count("\n") == 1
