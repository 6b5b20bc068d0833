"""Core rules the app and CLI share: where numbers come from, what auto chose, ties, the gallery,
and the system-libraries script that `make run` and `make test` call."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from core.overview import gallery_splits, gallery_text
from core.report.number_source import NumberSource, source_of_report, source_of_run, with_source
from core.report.wording import comparison_word
from core.run_choice import run_choice

ROOT = Path(__file__).resolve().parents[1]


def test_number_sources_of_runs_and_reports_differ_and_accept_an_explicit_protocol() -> None:
    run = {"metrics": {"n_queries": 120}}
    assert with_source("0.810", source_of_run(run)) == \
        "0.810 (120 queries of the held-out test fold; gallery: 120 items of the test fold (old vectors))"
    report = {"sizes": {"queries": 200, "queries_scored": 200, "gallery": 1027, "query_source": "query split",
                        "heldout_gallery": True}}
    assert source_of_report(report).label() == \
        "200 queries of the query split; gallery: 1027 items of the held-out gallery (train fold left out)"
    explicit = {"protocol": {"query_set": "dev queries", "n_queries": 50, "gallery": "corpus", "n_gallery": 900}}
    assert source_of_report({"evaluation": explicit["protocol"]}) == NumberSource("dev queries", 50, "corpus", 900)
    assert source_of_run({"metrics": explicit}).short() == "dev queries, 50 q / 900 g"


def test_run_choice_ranks_candidates_and_names_the_winner() -> None:
    run = {"method": "auto", "metrics": {"kind": "lowrank", "val_metric_name": "label_top1", "reason": "lowrank won",
                                         "candidates": [
                                             {"kind": "procrustes", "status": "completed", "val_metric": 0.79},
                                             {"kind": "bct", "status": "skipped", "reason": "needs labels",
                                              "val_metric": None},
                                             {"kind": "lowrank", "status": "completed", "val_metric": 0.812}]}}
    choice = run_choice(run)
    assert choice.method_text() == "auto → lowrank" and choice.metric == "validation label top-1"
    assert choice.candidates_text() == "lowrank 0.812 (chosen), procrustes 0.790, bct skipped: needs labels"
    plain = run_choice({"method": "affine", "metrics": {"kind": "affine"}})
    assert plain.method_text() == "affine" and not plain.is_auto and plain.candidates == ()


def test_a_tie_is_equal_and_the_gallery_is_every_split_but_query() -> None:
    assert comparison_word({"upgraded": 1.0, "old_old": 1.0, "passes": False}) == "equal"
    assert comparison_word({"upgraded": 0.6, "old_old": 0.5, "passes": True}) == "pass"
    assert comparison_word({"upgraded": 0.4, "old_old": 0.5, "passes": False}) == "fail"
    counts = {"gallery": 997, "mine": 30, "query": 200}
    assert gallery_splits(counts) == {"gallery": 997, "mine": 30}
    assert gallery_text(counts) == "gallery: 1027 items (gallery 997 + mine 30); queries: 200 (split 'query')"


def _shim(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
    path.chmod(0o755)


def test_system_deps_names_missing_packages_when_it_cannot_install(tmp_path: Path) -> None:
    _shim(tmp_path, "dpkg-query", "exit 1")  # nothing is installed
    _shim(tmp_path, "id", "echo 1000")  # not root
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", "PYTHON": "/nonexistent"}
    out = subprocess.run(["sh", str(ROOT / "packaging" / "system-deps.sh"), "run"], capture_output=True,
                         text=True, env=env, timeout=60)
    assert out.returncode == 1
    assert "missing system packages: libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0" in out.stderr
    assert "sudo apt-get install libxcb-icccm4" in out.stderr
    usage = subprocess.run(["sh", str(ROOT / "packaging" / "system-deps.sh"), "nonsense"], capture_output=True,
                           text=True, timeout=60)
    assert usage.returncode == 2


def test_system_deps_finds_everything_the_xcb_plugin_needs_here() -> None:
    """After `make test` installed them, the Qt xcb plugin resolves every library it links."""
    import sys

    env = {**os.environ, "PYTHON": sys.executable}
    out = subprocess.run(["sh", str(ROOT / "packaging" / "system-deps.sh"), "run"], capture_output=True,
                         text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
