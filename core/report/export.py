"""Report export: the figures of a report dict, ``report.json`` and a self-contained ``report.html``.

The HTML page has inline CSS and every figure as inline SVG: no script, no external stylesheet, font
or image, and no URL at all, so it opens offline and can travel inside a bundle. Both files are
written atomically into ``<workspace>/reports/<report id>/`` and registered in one transaction.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import StoreError
from core.progress import ProgressFn, StopFn, check_stop, no_progress
from core.report.html_page import render_html
from core.store import Workspace
from core.store.files import atomic_write_text

SUMMARY_KEYS = ("old_old_top1", "new_new_top1", "ceiling_top1", "upgraded_top1", "gain_retained",
                "gain_retained_note", "ndcg@10", "mrr@10", "arr",
                "arr_k", "compatible", "negative_flip_rate", "positive_flip_rate", "relative_nfr", "n_queries")


def json_safe(value: Any) -> Any:
    """Plain JSON values: numpy scalars and arrays unwrapped, NaN and infinities as None, keys as text."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [json_safe(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def report_json(report: Mapping[str, Any]) -> str:
    return json.dumps(json_safe(report), indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and value is not None else float("nan")


def report_figures(report: Mapping[str, Any]) -> dict[str, Any]:
    """Every figure of a report (or chain report) dict, by name: the app shows the same ones."""
    from core.report import figures

    out: dict[str, Any] = {}
    cells = report.get("cells") or {}
    scoring = report.get("scoring") or {}
    if cells:
        shown = ["top1", "top5", f"recall@{scoring.get('recall_k', 10)}", scoring.get("map_key", "mAP")]
        values = {n: {m: _num(c["metrics"].get(m)) for m in shown} for n, c in cells.items()}
        cis = {n: {m: tuple(c["ci"][m]) for m in shown if m in (c.get("ci") or {})
                   and None not in c["ci"][m]} for n, c in cells.items()}
        out["cells"] = figures.metric_bars(values, shown, cis)
        out["recall"] = figures.recall_curves(
            {n: {int(k): _num(v) for k, v in c["recall_curve"].items()} for n, c in cells.items()})
    flips = report.get("flips") or {}
    if flips:
        out["flips"] = figures.flip_bars({n: {"negative": f["negative_flip_rate"], "positive": f["positive_flip_rate"]}
                                          for n, f in flips.items()})
    per_label = report.get("per_label") or {}
    if per_label:
        wanted = [report.get("upgraded_cell"), "old/old", report.get("ceiling_cell")]
        names = [n for n in dict.fromkeys(wanted) if n in per_label]
        out["per_label"] = figures.per_label_bars(
            {n: {str(r["label"]): _num(r.get("top1")) for r in per_label[n]} for n in names})
    backfill = report.get("backfill") or {}
    if backfill.get("policies"):
        head = report.get("headline") or {}
        refs = {"old/old": head.get("old_old_top1"), str(report.get("ceiling_cell")): head.get("ceiling_top1")}
        out["backfill"] = figures.backfill_curves(
            {p: {"betas": c["betas"], "values": [_num(v) for v in c["values"]["top1"]], "area": c["areas"]["top1"]}
             for p, c in backfill["policies"].items()},
            references={k: float(v) for k, v in refs.items() if isinstance(v, int | float)})
    epochs = (report.get("run") or {}).get("epochs") or []
    if any(isinstance(v, int | float) for row in epochs for k, v in row.items() if k != "epoch"):
        axis = _epoch_axis(epochs)
        rows = epochs if axis == "epoch" else [{k: v for k, v in r.items() if k != "epoch"} for r in epochs]
        heldout = (report.get("run") or {}).get("heldout_test_fold") or {}
        out["training"] = figures.training_curves(rows, axis, heldout.get("val_metric_name"))
    chain = report.get("chain")
    if chain:
        out["compatibility_matrix"] = figures.compatibility_heatmap(
            np.array(chain["matrix"], dtype=np.float64), chain["versions"], chain.get("ac"), chain.get("am"),
            chain.get("metric", "top1"))
    return out


def _epoch_axis(epochs: list[dict[str, Any]]) -> str:
    """Plot per epoch when epochs differ; closed-form fits list candidates instead (one per row)."""
    if len({row.get("epoch") for row in epochs}) > 1:
        return "epoch"
    return "candidate"  # absent from the rows: the figure numbers them 1..n


_SVG_DROP = (re.compile(r"<\?xml[^>]*\?>\s*"), re.compile(r"<!DOCTYPE[^>]*>\s*", re.I),
             re.compile(r"<metadata>.*?</metadata>\s*", re.S), re.compile(r'\s+xmlns(:\w+)?="[^"]*"'))


def inline_svg(svg: str, prefix: str) -> str:
    """An SVG document made fit to inline in HTML: no prolog or metadata, no namespace URLs, ids unique."""
    for pattern in _SVG_DROP:
        svg = pattern.sub("", svg)
    svg = re.sub(r'\bid="', f'id="{prefix}-', svg)
    svg = re.sub(r'href="#', f'href="#{prefix}-', svg)
    return re.sub(r"url\(#", f"url(#{prefix}-", svg).strip()


def figure_svgs(report: Mapping[str, Any]) -> dict[str, str]:
    """Each figure of the report rendered to inline SVG text."""
    from core.report.figures import figure_to_svg

    return {name: inline_svg(figure_to_svg(fig), f"fig{i}") for i, (name, fig) in
            enumerate(report_figures(report).items())}


def summary_of(report: Mapping[str, Any]) -> dict[str, Any]:
    """The scalar numbers stored with the report row (and shown by bundles)."""
    if report.get("kind") == "chain":
        chain = report["chain"]
        return json_safe({"kind": "chain", "versions": chain["versions"], "ac": chain["ac"], "am": chain["am"],
                          "metric": chain["metric"]})
    head = report.get("headline") or {}
    out = {k: head.get(k) for k in SUMMARY_KEYS}
    out.update({k: v for k, v in head.items() if k.startswith("backfill_area_")})
    out["kind"] = "upgrade"
    return json_safe(out)


def save_report(ws: Workspace, report: dict[str, Any], on_progress: ProgressFn | None = None,
                should_stop: StopFn | None = None) -> dict[str, Any]:
    """Write report.json and report.html into ``reports/<id>/`` and register them; returns the row.

    The id is taken inside the registering transaction, so the folder name and the row agree even with
    several writers; the figures are rendered before it, so the database is held only for the writes.
    """
    progress = on_progress or no_progress
    progress(0, 2, {"stage": "figures"})
    svgs = figure_svgs(report)
    check_stop(should_stop)
    progress(1, 2, {"stage": "writing"})
    with ws.transaction():
        report_id = ws.next_report_id()
        folder = ws.root / "reports" / str(report_id)
        ours = not folder.exists()  # a folder left by someone else is never removed
        json_path, html_path = folder / "report.json", folder / "report.html"
        report["report_id"] = report_id
        report["files"] = {"json": str(json_path), "html": str(html_path)}
        try:
            atomic_write_text(json_path, report_json(report))
            atomic_write_text(html_path, render_html(json_safe(report), svgs))
            run_id = None if report.get("kind") == "chain" else (report.get("run") or {}).get("id")
            adapter_id = None if report.get("kind") == "chain" else (report.get("adapter") or {}).get("id")
            row = ws.add_report(run_id, adapter_id, json_path, html_path, summary_of(report))
            if int(row["id"]) != report_id:
                raise StoreError(f"{folder}: report registered as {row['id']}, expected {report_id}")
        except BaseException:
            if ours:
                shutil.rmtree(folder, ignore_errors=True)
            raise
    progress(2, 2, {"stage": "written"})
    return row
