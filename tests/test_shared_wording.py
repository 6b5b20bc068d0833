"""Core rules the app and CLI share: where numbers come from, what auto chose, ties, the gallery,
and the system-libraries script that `make run` and `make test` call."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from embridge.core.evaluation.compat import NOT_BETTER
from embridge.core.evaluation.task import Protocol
from embridge.core.overview import gallery_splits, gallery_text
from embridge.core.report.number_source import (
    UNRECORDED,
    NumberSource,
    gain_text,
    source_of_report,
    source_of_run,
    with_source,
)
from embridge.core.report.wording import comparison_word
from embridge.core.run_choice import run_choice

ROOT = Path(__file__).resolve().parents[1]


def test_number_sources_read_the_recorded_protocol_and_never_guess() -> None:
    protocol = Protocol("test queries (judged)", 150, "the whole old gallery", 800, "relevance judgments (test split)")
    run = {"metrics": {"n_queries": 150, "protocols": {"old/old": protocol.to_dict(), "new→old": protocol.to_dict()}}}
    assert source_of_run(run) == NumberSource(protocol)
    assert with_source("0.810", source_of_run(run)) == f"0.810 ({protocol.describe()})"
    assert source_of_run(run).short() == "150 test queries (judged) / 800 items"
    scored = Protocol("test queries (judged)", 42, "the whole old gallery", 600, "relevance judgments (test split)", n_scored=41)
    assert NumberSource(scored).short() == "41 of 42 test queries (judged) / 600 items"  # as its sentence counts
    sample = Protocol("test queries (judged)", 150, "the evaluation sample", 400, "relevance judgments (test split)")
    report = {"upgraded_cell": "new→old",
              "headline": {"protocols": {"new/new": sample.to_dict(), "new→old": protocol.to_dict()}}}
    assert source_of_report(report).label() == protocol.describe()  # the upgraded cell's, not new/new's
    # an old record without protocols says so instead of inventing a query set from its sizes
    assert source_of_run({"metrics": {"n_queries": 120}}).label() == UNRECORDED
    assert source_of_report({"sizes": {"queries": 200, "gallery": 1027}}).short() == "protocol not recorded"
    assert gain_text(0.7345, None) == "73.5%"  # a share, in every page and command alike
    assert gain_text(None, NOT_BETTER) == f"undefined — {NOT_BETTER}"


def test_run_choice_reads_the_recorded_choice_candidates_and_validation_protocol() -> None:
    run = {"method": "auto", "metrics": {
        "kind": "lowrank", "val_metric_name": "judged_top1", "reason": "lowrank won with validation top-1 0.812",
        "val_protocol": "60 dev queries (judged) against the whole old gallery (800 items)",
        "choice": {"what": "auto candidate", "index": 2, "decided": True, "reason": "lowrank won", "kind": "lowrank"},
        "candidates": [
            {"kind": "procrustes", "status": "completed", "val_metric": 0.79, "duration_s": 0.42, "epochs": 0},
            {"kind": "bct", "status": "skipped", "reason": "needs labels", "val_metric": None},
            {"kind": "lowrank", "status": "completed", "val_metric": 0.812, "duration_s": 12.04, "epochs": 3},
            {"kind": "fusion", "status": "no gain", "val_metric": 0.812, "base": "lowrank", "alpha": 0.0},
            {"kind": "cascade", "status": "skipped", "reason": "the new model embedded no documents",
             "val_metric": None}]}}
    choice = run_choice(run)
    assert choice.method_text() == "auto → lowrank" and choice.metric == "validation judged top-1"
    assert choice.candidates_text() == ("lowrank 0.812 (chosen), fusion 0.812 (no gain), procrustes 0.790, "
                                        "bct skipped: needs labels, "
                                        "cascade skipped: the new model embedded no documents")
    assert choice.protocol.startswith("60 dev queries (judged)") and choice.decided
    assert choice.times_text() == "procrustes 0.4 s, lowrank 12.0 s (3 epochs)"  # run order, skipped ones left out
    tie = run_choice({"method": "auto", "metrics": {"kind": "procrustes", "choice": {
        "decided": False, "kind": "procrustes", "reason": "no choice was made: every candidate scored top-1 1.000"}}})
    assert tie.method_text() == "auto → procrustes (tie: default kept)" and tie.reason.startswith("no choice")
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
