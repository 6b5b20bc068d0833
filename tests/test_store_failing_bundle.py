"""A migration through a layer that fails the compatibility criterion runs, as asked, and says so first:
the bundle's own warning (``bundle inspect``'s first line) leads the result's text (the command line prints
it, the app's migration dialog shows it) and is in the JSON; a passing layer's migration has none."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from bundle_fixtures import _register, build_upgrade_workspace
from store_fixtures import cli, parquet_dataset

from embridge.core.adapters import FCTAdapter
from embridge.core.adapters.closed_form import ridge_path
from embridge.core.bundle import export_bundle
from embridge.core.report.build import ReportOptions, build_report
from embridge.core.retrieval import l2_normalize
from embridge.core.store import Workspace


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two measured forward layers of one workspace: an untrained (random) one and one started from the
    ridge map old -> new (the fct layer's own initialisation)."""
    import torch

    root = tmp_path_factory.mktemp("failing")
    up = build_upgrade_workspace(root / "ws", with_report=False)
    out: dict[str, Any] = {"v1": up["vectors"]["v1"]}
    with Workspace.open(up["path"]) as ws:
        torch.manual_seed(0)
        random_run = _register(ws, FCTAdapter(16, 32, hidden=32).eval(), "v1", "v3")["run_id"]
        x1, x3 = l2_normalize(up["vectors"]["v1"]), l2_normalize(up["vectors"]["v3"])
        fitted = FCTAdapter(16, 32, hidden=32)
        fitted.init_from_data(x1, next(ridge_path(x1, x3, [1e-3]))[1])
        fitted_run = _register(ws, fitted.eval(), "v1", "v3")["run_id"]
        for name, run in (("random", random_run), ("fitted", fitted_run)):
            report = build_report(ws, run, ReportOptions(n_boot=20, backfill_steps=3))
            out[name] = {"bundle": root / f"{name}.zip", "compatible": report.summary()["compatible"]}
            export_bundle(ws, out[name]["bundle"], [run])
    return out


def test_a_migration_through_a_failing_layer_warns_first(bundles: dict[str, Any], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from embridge.core.cli.main import main

    assert bundles["random"]["compatible"] is False and bundles["fitted"]["compatible"] is True  # measured
    source = parquet_dataset(tmp_path / "src", bundles["v1"])
    for name, warned in (("random", True), ("fitted", False)):
        args = ["migrate", "--bundle", str(bundles[name]["bundle"]), "--from", source,
                "--to", f"parquet://{tmp_path / ('out-' + name)}"]
        code, out, err = cli(capsys, *args)
        assert code == 0 and out["status"] == "completed" and out["verification"]["ok"], err
        assert bool(out["warning"]) == warned
        assert main([*args]) == 0  # the rerun (already complete) prints its text
        text = capsys.readouterr().out.splitlines()
        if warned:
            assert text[0] == out["warning"] and text[0].startswith("WARNING: this layer FAILS the compatibility")
            # a forward layer transforms the gallery: no query is served through it
            assert "searching the gallery it transforms with new queries" in out["warning"]
            assert "serving new queries through it" not in out["warning"]
            assert out["text"].splitlines()[0] == out["warning"]
            assert main(["bundle", "inspect", str(bundles[name]["bundle"])]) == 0
            assert out["warning"] in capsys.readouterr().out.splitlines()[:2]  # the bundle's own words, after its path
        else:
            assert text[0].startswith("Migration already complete: ") and "WARNING" not in "\n".join(text)
