"""Report export: the figures of a report, ``report.json`` and a self-contained ``report.html``.

The HTML page has inline CSS and every figure as inline SVG: no script, no external stylesheet, font
or image, and no URL at all, so it opens offline and can travel inside a bundle. Both files are
written atomically into ``<workspace>/reports/<report id>/`` and registered in one transaction.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import numpy as np

from embridge.core.errors import StoreError
from embridge.core.evaluation.headline import JUDGED_METRICS, metric_label
from embridge.core.jobs import JobRecord
from embridge.core.json_values import json_safe
from embridge.core.progress import ProgressFn, StopFn, check_stop, no_progress
from embridge.core.report.html_page import render_html
from embridge.core.report.report_record import Report, as_report, curve_metric, run_heldout
from embridge.core.store import Workspace
from embridge.core.store.files import atomic_write_text
from embridge.core.store.workspace_folder import unregistered_report_folder

__all__ = ["figure_svgs", "inline_svg", "json_safe", "report_figure_recipes", "report_figures", "report_json",
           "save_report"]


def report_json(report: Report) -> str:
    """The text of ``report.json``."""
    return json.dumps(report.to_json(), indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and value is not None else float("nan")


def report_figures(report: Report | Mapping[str, Any]) -> dict[str, Any]:
    """Every figure of a report (or chain report), by name: the app shows the same ones."""
    return {name: build() for name, build in report_figure_recipes(report).items()}


def report_figure_recipes(report: Report | Mapping[str, Any]) -> dict[str, Callable[[], Any]]:
    """Each figure of :func:`report_figures` as a recipe that builds it: the figures a report has are known
    at once, and each is built where it is drawn (the app's pages build them off the GUI thread)."""
    from embridge.core.report import figures

    r = as_report(report)
    out: dict[str, Callable[[], Any]] = {}
    if r.cells:
        present = {m for c in r.cells.values() for m, v in (c.get("metrics") or {}).items() if v is not None}
        shown = r.headline_metrics + [m for m in JUDGED_METRICS if m in present]  # nDCG@10, MRR@10 on judged data
        values = {n: {m: _num(c["metrics"].get(m)) for m in shown} for n, c in r.cells.items()}
        cis = {n: {m: tuple(c["ci"][m]) for m in shown if m in (c.get("ci") or {})
                   and None not in c["ci"][m]} for n, c in r.cells.items()}
        out["cells"] = partial(figures.metric_bars, values, shown, cis, labels=_cell_labels(r))
        out["recall"] = partial(figures.recall_curves,
                                {n: {int(k): _num(v) for k, v in c["recall_curve"].items()} for n, c in r.cells.items()})
    if r.flips:
        out["flips"] = partial(figures.flip_bars, {n: {"negative": f["negative_flip_rate"],
                                                       "positive": f["positive_flip_rate"]} for n, f in r.flips.items()})
    if r.per_label:
        wanted = [r.upgraded_cell, "old/old", r.ceiling_cell]
        names = [n for n in dict.fromkeys(wanted) if n in r.per_label]
        out["per_label"] = partial(figures.per_label_bars,
                                   {n: {str(row["label"]): _num(row.get("top1")) for row in r.per_label[n]} for n in names})
    if r.backfill.get("policies"):
        head = r.headline  # old/old on the curves' sample when measured there (the whole gallery's may differ)
        m = curve_metric(r.backfill)
        floor = ((r.backfill.get("old_old") or {}).get("metrics") or {}).get(m, head.get(f"old_old_{m}"))
        refs = {"old/old": floor, str(r.ceiling_cell): head.get(f"ceiling_{m}")}
        out["backfill"] = partial(
            figures.backfill_curves,
            {p: {"betas": c["betas"], "values": [_num(v) for v in c["values"][m]], "area": c["areas"][m]}
             for p, c in r.backfill["policies"].items()}, metric=metric_label(m),
            references={k: float(v) for k, v in refs.items() if isinstance(v, int | float)},
            title=_curves_title(r.backfill, metric_label(m)))
    epochs = r.run.get("epochs") or []
    if any(isinstance(v, int | float) for row in epochs for k, v in row.items() if k != "epoch"):
        axis = _epoch_axis(epochs)
        rows = epochs if axis == "epoch" else [{k: v for k, v in row.items() if k != "epoch"} for row in epochs]
        out["training"] = partial(figures.training_curves, rows, axis, run_heldout(r.run).get("val_metric_name"),
                                  trained_layer(r.adapter))
    chain = r.chain
    if chain:
        out["compatibility_matrix"] = partial(
            figures.compatibility_heatmap, np.array(chain["matrix"], dtype=np.float64), chain["versions"],
            chain.get("ac"), chain.get("am"), chain.get("metric", "top1"))
    return out


def trained_layer(adapter: Mapping[str, Any] | None) -> str | None:
    """What a bridge's epochs trained: 'mlp, the fusion's base layer' (None for other layers, whose epochs
    are their own)."""
    kind = str((adapter or {}).get("kind") or "")
    if kind not in ("fusion", "cascade"):
        return None
    base = ((adapter or {}).get("config") or {}).get("base") or {}
    name = base.get("kind") if isinstance(base, Mapping) else None
    return f"{name}, the {kind}'s base layer" if name else f"the {kind}'s base layer"


def _cell_labels(r: Report) -> dict[str, str]:
    """Each cell's name in a figure, with the gallery it searched where that is not the upgraded cell's (new/new
    searches the evaluation sample when only the sample has new vectors): bars side by side look alike."""
    upgraded = r.cells.get(r.upgraded_cell or "") or {}
    base, base_words = upgraded.get("gallery"), (upgraded.get("protocol") or {}).get("gallery")
    out = {}
    for name, cell in r.cells.items():
        protocol = cell.get("protocol") or {}
        size = protocol.get("n_gallery")
        same = cell.get("gallery") == base or (base_words is not None and protocol.get("gallery") == base_words)
        if base is None or same or not isinstance(size, int):  # a sample that is the whole gallery is no sample
            out[name] = name
        else:
            out[name] = f"{name} (on the sample, {size:,} items)" if cell.get("gallery") == "sample" \
                else f"{name} ({size:,} items)"
    return out


def _curves_title(backfill: Mapping[str, Any], metric: str) -> str:
    """The partial-backfill figure's title, naming the gallery its curves ran on (the evaluation sample, or
    the whole gallery where every item has vectors under both models)."""
    protocol = (backfill.get("old_old") or {}).get("protocol") or {}
    size = protocol.get("n_gallery")
    gallery = "the whole gallery" if protocol.get("gallery") == "the whole gallery" else "the evaluation sample"
    where = f"\non {gallery} ({size:,} items)" if isinstance(size, int) else ""
    return f"Partial backfill: {metric}{where}"


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


def figure_svgs(report: Report) -> dict[str, str]:
    """Each figure of the report rendered to inline SVG text."""
    from embridge.core.report.figures import figure_to_svg

    return {name: inline_svg(figure_to_svg(fig), f"fig{i}") for i, (name, fig) in
            enumerate(report_figures(report).items())}


def save_report(ws: Workspace, report: Report, on_progress: ProgressFn | None = None,
                should_stop: StopFn | None = None, record: JobRecord | None = None) -> dict[str, Any]:
    """Write report.json and report.html into ``reports/<id>/`` and register them; returns the row.

    The id is taken inside the registering transaction, so the folder name and the row agree even with
    several writers; the figures are rendered before it, so the database is held only for the writes.
    ``record``, the report run's, gets the report's id and is completed inside that transaction, so the
    report and its run's status are stored together or not at all.
    """
    progress = on_progress or no_progress
    progress(0, 2, {"stage": "figures"})
    svgs = figure_svgs(report)
    check_stop(should_stop)
    progress(1, 2, {"stage": "writing"})
    folder, ours = None, False
    try:
        with ws.transaction(result=True):  # a stop landing at its commit waits until the run reads completed
            report_id = ws.next_report_id()
            folder = ws.root / "reports" / str(report_id)
            # a folder left by someone else is never removed; one a killed report left is taken over
            ours = not folder.exists() or unregistered_report_folder(folder)
            json_path, html_path = folder / "report.json", folder / "report.html"
            report.report_id = report_id
            report.files = {"json": str(json_path), "html": str(html_path)}
            atomic_write_text(json_path, report_json(report))
            atomic_write_text(html_path, render_html(report, svgs))
            row = ws.add_report(report.run_id, report.adapter_id, json_path, html_path, report.summary())
            if int(row["id"]) != report_id:
                raise StoreError(f"{folder}: report registered as {row['id']}, expected {report_id}")
            if record is not None:
                record.setdefault("metrics", {})["report_id"] = report_id
                record.complete()
    except BaseException:  # the commit too: files of a report that was not registered are not left behind
        if folder is not None and ours:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    progress(2, 2, {"stage": "written"})
    return row
