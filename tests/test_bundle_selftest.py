"""The headless self-test of installations and frozen builds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embridge.core.selftest import run_self_test, self_test_main
from embridge.core.store import Workspace


def test_self_test_runs_the_pipeline_on_the_demo(demo_workspace_path: Path, tmp_path: Path) -> None:
    result = run_self_test(workdir=tmp_path / "work", demo_from=demo_workspace_path)
    assert result["ok"], result.get("error")
    assert [s["name"] for s in result["steps"]] == ["build demo", "fit procrustes", "evaluate", "export bundle",
                                                    "verify bundle", "load and apply bundle"]
    metrics = result["metrics"]
    assert metrics["n_queries"] == 200 and metrics["upgraded_top1"] >= 0.5 * metrics["old_old_top1"]
    assert metrics["upgraded_top1"] > 0.3  # ten classes: chance is 0.1
    assert result["bundle"]["max_abs_diff_vs_in_process"] <= 1e-5
    assert (tmp_path / "work" / "bundle.zip").is_file()
    assert result["bundle"]["files"] == 10  # with report.json, report.html and adapter.safetensors


def test_self_test_names_the_failing_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    Workspace.create(tmp_path / "empty").close()  # no models: fitting must fail
    result = run_self_test(workdir=tmp_path / "work", demo_from=tmp_path / "empty")
    assert result["ok"] is False and result["error"].startswith("fit procrustes: ")
    assert "no model with role 'old'" in result["error"]

    import embridge.core.selftest as selftest

    monkeypatch.setattr(selftest, "run_self_test", lambda: result)
    assert self_test_main(["--self-test", "--self-test-out", str(tmp_path / "r.json")]) == 1
    assert "self-test FAILED: fit procrustes" in capsys.readouterr().err
    assert json.loads((tmp_path / "r.json").read_text())["ok"] is False
