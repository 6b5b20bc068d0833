"""A headless end-to-end check of an installation or a frozen build: ``--self-test``.

It runs the product's own pipeline on the bundled demo in a temp folder: build the demo
workspace (train the two small digit embedders, embed), fit a ``procrustes`` layer, evaluate it
with a full report (faiss search, metrics, figures, JSON + HTML), export a zipped bundle, verify
it, load it with torch alone and check that it reproduces the in-process layer. Any failure names the step; nothing is written outside the
temp folder (or ``workdir`` when given).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embridge.core import __version__
from embridge.core.errors import EmbridgeError
from embridge.core.progress import ProgressFn, no_progress
from embridge.core.store.files import atomic_write_text

# A working layer keeps most of old/old top-1 on the demo (about 0.66 vs 0.77 with seed 0); a
# broken one (wrong dims, a scrambled map, a bundle that lost its weights) falls to chance (0.1).
MIN_KEPT_SHARE = 0.5
APPLY_TOL = 1e-5


class SelfTestFailure(EmbridgeError):
    """One step of the self-test did not give the expected result."""


def run_self_test(workdir: str | Path | None = None, demo_from: str | Path | None = None,
                  on_progress: ProgressFn | None = None) -> dict[str, Any]:
    """Run the pipeline; returns ``{"ok", "steps", "metrics", ...}`` and never raises.

    ``demo_from`` copies an existing demo workspace instead of building one (tests use it to share
    the build); ``workdir`` keeps the files for inspection instead of a removed temp folder.
    """
    report = on_progress or no_progress
    started = time.perf_counter()
    result: dict[str, Any] = {"ok": False, "version": __version__, "steps": [], "metrics": {}}
    tmp = None if workdir else tempfile.mkdtemp(prefix="embridge-selftest-")
    root = Path(workdir or tmp)  # type: ignore[arg-type]
    try:
        _run(root, demo_from, result, report)
        result["ok"] = True
    except Exception as exc:  # every failure becomes a message naming the step
        result["error"] = f"{result['steps'][-1]['name'] if result['steps'] else 'start'}: {exc}"
        if not isinstance(exc, EmbridgeError):
            result["traceback"] = traceback.format_exc()
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    result["seconds"] = round(time.perf_counter() - started, 2)
    return result


def _step(result: dict[str, Any], name: str, report: ProgressFn, fn: Callable[[], Any]) -> Any:
    entry: dict[str, Any] = {"name": name}
    result["steps"].append(entry)
    report(len(result["steps"]) - 1, 6, {"stage": name})
    t0 = time.perf_counter()
    value = fn()
    entry["seconds"] = round(time.perf_counter() - t0, 2)
    entry["ok"] = True
    return value


def _run(root: Path, demo_from: str | Path | None, result: dict[str, Any], report: ProgressFn) -> None:
    from embridge.core.store import Workspace

    root.mkdir(parents=True, exist_ok=True)
    ws_path = root / "demo-workspace"

    def build() -> Workspace:
        if demo_from is not None:
            shutil.copytree(demo_from, ws_path)
            return Workspace.open(ws_path)
        from embridge.core.demo import build_demo

        return build_demo(ws_path, seed=0)

    ws = _step(result, "build demo", report, build)
    try:
        _pipeline(ws, root, result, report)
    finally:
        ws.close()


def _pipeline(ws: Any, root: Path, result: dict[str, Any], report: ProgressFn) -> None:
    from embridge.core.adapters import adapt_queries, load_adapter
    from embridge.core.bundle import export_bundle, load_bundle, verify_bundle
    from embridge.core.l2 import l2_normalize
    from embridge.core.train.runs import train_run

    summary = _step(result, "fit procrustes", report, lambda: train_run(ws, "procrustes", device="cpu"))
    adapter = load_adapter(ws.adapter_path(summary["adapter_id"]))
    new = summary["new"]

    def evaluate() -> dict[str, Any]:
        from embridge.core.evaluation.headline import HEADLINE
        from embridge.core.report.build import ReportOptions, build_report

        built = build_report(ws, summary["run_id"], ReportOptions(n_boot=200, backfill_steps=5))
        head = built.headline
        metrics = {k: head.get(k) for k in (*HEADLINE, "negative_flip_rate", "n_queries")}
        metrics["report_id"] = built.report_id
        upgraded, old_old = float(head["upgraded_top1"]), float(head["old_old_top1"])
        if not upgraded >= MIN_KEPT_SHARE * old_old:
            raise SelfTestFailure(f"upgraded top-1 {upgraded:.3f} is below {MIN_KEPT_SHARE} x old/old {old_old:.3f}")
        return metrics

    result["metrics"] = _step(result, "evaluate", report, evaluate)
    bundle_path = root / "bundle.zip"
    exported = _step(result, "export bundle", report,
                     lambda: export_bundle(ws, bundle_path, [summary["run_id"]]))
    result["bundle"] = {"bytes": exported["bytes"], "files": len(exported["files"])}
    if exported["manifest"]["report"]["id"] != result["metrics"]["report_id"]:
        raise SelfTestFailure("the exported bundle does not carry the report just built")
    verified = _step(result, "verify bundle", report, lambda: verify_bundle(bundle_path))
    result["bundle"]["probes"] = verified["probes"]

    def apply() -> None:
        queries = ws.vectors_for(new, ws.item_ids("query"))
        from_bundle = load_bundle(bundle_path)(queries)
        in_process = adapt_queries(adapter, l2_normalize(queries))
        diff = float(np.max(np.abs(from_bundle - in_process)))
        result["bundle"]["max_abs_diff_vs_in_process"] = diff
        if not diff <= APPLY_TOL:
            raise SelfTestFailure(f"the bundle's adapter differs from the in-process one by {diff:.3g}")

    _step(result, "load and apply bundle", report, apply)
    report(6, 6, {"stage": "done"})


def self_test_main(argv: Sequence[str] | None = None) -> int:
    """``--self-test`` entry for the app and the frozen build: one JSON line, exit 0 or 1.

    ``--self-test-out FILE`` also writes the result to FILE (windowed builds have no stdout).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    out_file = args[args.index("--self-test-out") + 1] if "--self-test-out" in args[:-1] else None
    result = run_self_test()
    line = json.dumps(result, default=str)
    if out_file:
        atomic_write_text(out_file, line + "\n")
    stream = sys.stdout if result["ok"] else sys.stderr
    if stream is not None:
        stream.write(line + "\n" if result["ok"] else f"embridge self-test FAILED: {result['error']}\n{line}\n")
        stream.flush()
    return 0 if result["ok"] else 1
