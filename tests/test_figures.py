"""Report figures: each returns a Figure with the expected artists and renders to PNG and SVG."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from embridge.core.report import figures

CELLS = {
    "old/old": {"top1": 0.61, "top5": 0.80, "recall@10": 0.86, "mAP": 0.41},
    "new→old": {"top1": 0.66, "top5": 0.84, "recall@10": 0.89, "mAP": 0.45},
    "new/new": {"top1": 0.74, "top5": 0.90, "recall@10": 0.93, "mAP": 0.55},
}


def _renders(fig: Figure) -> None:
    png = figures.figure_to_png_bytes(fig, dpi=40)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000


def test_metric_bars_with_intervals() -> None:
    cis = {"new→old": {"top1": (0.62, 0.70), "top5": (0.81, 0.87)}}
    fig = figures.metric_bars(CELLS, cis=cis)
    (ax,) = fig.axes
    assert len(ax.patches) == 3 * 4
    assert [t.get_text() for t in ax.get_xticklabels()] == ["top-1", "top5", "recall@10", "mAP"]  # as sentences say
    assert len(fig.legends[0].get_texts()) == 3
    heights = sorted(round(p.get_height(), 2) for p in ax.patches)
    assert heights[0] == 0.41 and heights[-1] == 0.93
    _renders(fig)


def test_recall_and_flip_figures() -> None:
    fig = figures.recall_curves(
        {c: {1: v["top1"], 5: v["top5"], 10: v["recall@10"]} for c, v in CELLS.items()}
    )
    (ax,) = fig.axes
    assert len(ax.lines) == 3 and list(ax.lines[0].get_xdata()) == [1, 5, 10]
    _renders(fig)
    fig = figures.flip_bars(
        {"new→old": {"negative": 0.04, "positive": 0.09}, "fusion": {"negative": 0.02, "positive": 0.07}}
    )
    (ax,) = fig.axes
    assert len(ax.patches) == 4
    assert [round(p.get_height(), 2) for p in ax.patches] == [0.04, 0.02, 0.09, 0.07]
    _renders(fig)


def test_per_label_bars_caps_labels() -> None:
    rng = np.random.default_rng(0)
    old = {f"class{i}": float(v) for i, v in enumerate(rng.random(50))}
    up = {k: min(1.0, v + 0.1) for k, v in old.items()}
    fig = figures.per_label_bars({"old/old": old, "new→old": up}, max_labels=10)
    (ax,) = fig.axes
    assert len(ax.patches) == 20
    shown = [t.get_text() for t in ax.get_yticklabels()]
    assert shown == sorted(old, key=old.get)[:10]  # the worst labels under the first cell
    assert "worst 10 of 50" in ax.get_title()
    _renders(fig)


def test_compatibility_heatmap() -> None:
    c = np.array([[0.5, np.nan, np.nan], [0.6, 0.7, np.nan], [0.4, 0.8, 0.9]])
    fig = figures.compatibility_heatmap(c, ["v1", "v2", "v3"], ac=2 / 3, am=0.65)
    assert len(fig.axes) == 2  # heatmap and colour bar
    ax = fig.axes[0]
    assert sorted(t.get_text() for t in ax.texts) == sorted(
        ["0.500", "0.600", "0.700", "0.400", "0.800", "0.900"]
    )
    assert "AC 0.667" in ax.get_title() and "AM 0.650" in ax.get_title()
    _renders(fig)


def test_backfill_and_training_curves() -> None:
    betas = np.linspace(0, 1, 6).tolist()
    curves = {
        "random": {"betas": betas, "values": [0.6, 0.64, 0.67, 0.7, 0.72, 0.74], "area": 0.68},
        "largest_residual": {"betas": betas, "values": [0.6, 0.69, 0.72, 0.73, 0.74, 0.74], "area": 0.71},
    }
    fig = figures.backfill_curves(curves, references={"old/old": 0.61, "new/new": 0.74})
    (ax,) = fig.axes
    assert len(ax.lines) == 4
    assert "random (area 0.680)" in [t.get_text() for t in fig.legends[0].get_texts()]
    _renders(fig)
    epochs = [
        {"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e, "val_top1": 0.5 + 0.02 * e, "note": "x"}
        for e in range(1, 6)
    ]
    fig = figures.training_curves(epochs)
    left, right = fig.axes
    assert len(left.lines) == 2 and len(right.lines) == 1
    assert list(right.lines[0].get_ydata()) == pytest.approx([0.52, 0.54, 0.56, 0.58, 0.60])
    _renders(fig)


def test_svg_is_reproducible() -> None:
    a = figures.figure_to_svg(figures.metric_bars(CELLS))
    b = figures.figure_to_svg(figures.metric_bars(CELLS))
    assert a.lstrip().startswith("<?xml") and "</svg>" in a
    assert a == b


def test_no_pyplot_and_no_qt() -> None:
    code = (
        "import sys\n"
        "from embridge.core.report import figures\n"
        "figures.figure_to_png_bytes(figures.metric_bars({'a': {'top1': 0.5}}))\n"
        "bad = [m for m in sys.modules if m == 'matplotlib.pyplot' or m.startswith(('PySide6', 'PyQt'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_a_cascades_k_values_get_their_own_panel_not_a_series_beside_the_epochs() -> None:
    from embridge.core.report.figures import training_curves

    rows = [{"epoch": e, "loss": 2.0 / e, "lr": 1e-3, "val_metric": 0.5 + 0.1 * e} for e in (1, 2, 3)]
    rows += [{"epoch": 0.0, "k": float(k), "val_metric": v} for k, v in ((5, 0.7), (20, 0.9), (100, 0.85))]
    fig = training_curves(rows)
    loss_ax, val_ax, sweep_ax = [ax for ax in fig.axes if ax.get_title()]
    labels = [line.get_label() for line in val_ax.get_lines()]
    assert labels == ["top-1"] and list(val_ax.get_lines()[0].get_xdata()) == [1, 2, 3]
    assert sweep_ax.get_title() == "Validation per K"
    assert list(sweep_ax.get_lines()[0].get_xdata()) == [5.0, 20.0, 100.0]
    assert list(sweep_ax.get_lines()[0].get_ydata()) == [0.7, 0.9, 0.85]
    assert loss_ax.get_title() == "Training loss"


def test_a_closed_forms_grid_is_a_panel_per_setting_not_a_series_beside_the_metric(demo_copy: Path) -> None:
    """A fusion over Procrustes records the whitening grid Procrustes tried and then the α grid: each
    is drawn against its own values, and no setting is drawn as a line on the metric's axis (the
    whitening values were once plotted as a "whitening" series over a made-up candidate number)."""
    from embridge.core.report.report_export import report_figures
    from embridge.core.store import Workspace
    from embridge.core.train.runs import train_run

    with Workspace.open(demo_copy) as ws:
        summary = train_run(ws, "fusion", device="cpu", config={"base": "procrustes"})
        run = ws.run(summary["run_id"])
    rows = run["epochs"]
    fig = report_figures({"run": {"epochs": rows, "heldout": {"val_metric_name": "label_top1"}}})["training"]
    titled = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
    assert set(titled) == {"Validation per whitening", "Validation per α"}
    whitening = [r for r in rows if "whitening" in r]
    (line,) = titled["Validation per whitening"].get_lines()
    assert list(line.get_xdata()) == [r["whitening"] for r in whitening] and len(whitening) > 1
    assert list(line.get_ydata()) == [r["val_metric"] for r in whitening]
    assert titled["Validation per whitening"].get_xscale() == "symlog"  # a grid by decades, 0 included
    assert titled["Validation per α"].get_xscale() == "linear"
    # the log axis's labels are numbers, not the math text ("$\mathdefault{10^{-2}}$") it drew literally
    fig.canvas.draw()
    shown = [t.get_text() for t in titled["Validation per whitening"].get_xticklabels() if t.get_text()]
    assert shown and all(float(text) >= 0 for text in shown)
    assert not {ln.get_label() for ax in fig.axes for ln in ax.get_lines()} & {"whitening", "alpha", "ridge"}
    _renders(fig)


def test_a_missing_font_family_does_not_flood_the_terminal() -> None:
    """A font cache without matplotlib's own fonts logged twenty 'findfont' lines per report on stderr."""
    script = ("import io, logging, sys\nlogging.basicConfig()\n"
              "if sys.argv[1] == 'figures':\n    import embridge.core.report.figures\n"
              "from matplotlib.figure import Figure\nfig = Figure()\n"
              "fig.text(0.5, 0.5, 'x', family='NoSuchFamilyEmbridge')\nfig.savefig(io.BytesIO(), format='png')\n")
    runs = {which: subprocess.run([sys.executable, "-c", script, which], capture_output=True, text=True, check=True)
            for which in ("plain", "figures")}
    assert "findfont" in runs["plain"].stderr  # matplotlib alone says it, once per lookup
    assert "findfont" not in runs["figures"].stderr


def test_a_long_label_is_cut_in_the_figure_and_warns_nothing() -> None:
    """A label of 100 characters pushed the axes aside (every other label cut at the edge) and matplotlib
    printed a two-line warning on every report."""
    import warnings

    values = {cell: {("L" * 300 if i == 0 else f"lab{i}"): 0.5 for i in range(10)} for cell in ("a", "b")}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        svg = figures.figure_to_svg(figures.per_label_bars(values))
    assert caught == [] and "L" * (figures.TICK_CHARS - 1) + "…" in svg and "L" * figures.TICK_CHARS not in svg
    assert figures.tick_text("lab1") == "lab1"


def test_a_right_to_left_override_in_a_key_reorders_only_itself_in_the_flips_tables() -> None:
    """The results of a flipped query were joined into one cell as plain text: an override in one key or
    label reversed every result after it."""
    from embridge.core.report.html_page import _pairs

    joined = _pairs(["g332", "g485"], ["\u202eRTL override", "cat"], [1, 0])
    assert joined == "\u2068g332\u2069 (\u2068\u202eRTL override\u2069) ✓; \u2068g485\u2069 (\u2068cat\u2069) ✗"


def test_the_sizes_table_gives_a_group_of_sizes_a_row_each_not_a_python_dict() -> None:
    """The 'galleries' entry (which gallery each kind of cell searched) was printed as "{'old': ...}"."""
    from embridge.core.report.html_page import _size_rows, _table

    sizes = {"queries": 250, "galleries": {"old": "the whole gallery", "sample": "the evaluation sample"}}
    assert _size_rows(sizes) == [("queries", 250), ("galleries: old", "the whole gallery"),
                                 ("galleries: sample", "the evaluation sample")]
    assert "{" not in _table(["size", "value"], _size_rows(sizes))


def _whole_gallery_report() -> dict:
    """A judged report whose new/new searched 'the sample', which is the whole gallery (every item has both
    vectors), with the curves' protocol saying so."""
    whole = {"gallery": "the whole gallery", "n_gallery": 2331}
    metrics = {"top1": 0.5, "top5": 0.7, "recall@10": 0.8, "mAP": 0.4, "ndcg@10": 0.6, "mrr@10": 0.55}
    ci = {m: [v - 0.05, v + 0.05] for m, v in metrics.items()}
    cells = {name: {"gallery": gallery, "protocol": whole, "metrics": metrics, "ci": ci,
                    "recall_curve": {"10": 0.8}} for name, gallery in
             (("old/old", "old"), ("new/new", "sample"), ("new→old", "old"))}
    betas = [0.0, 0.5, 1.0]
    policy = {"betas": betas, "values": {"ndcg@10": [0.6, 0.7, 0.8], "top1": [0.5, 0.6, 0.7]},
              "areas": {"ndcg@10": 0.7, "top1": 0.6}}
    return {"cells": cells, "upgraded_cell": "new→old", "ceiling_cell": "new/new",
            "backfill": {"policies": {"random": policy}, "metric": "ndcg@10",
                         "old_old": {"protocol": whole, "metrics": {"ndcg@10": 0.6}}},
            "adapter": {"kind": "fusion", "config": {"base": {"kind": "mlp"}}},
            "run": {"epochs": [{"epoch": e, "train_loss": 1 / e, "val_metric": 0.2 + 0.01 * e, "lr": 3e-3 - 1e-11 * e}
                               for e in range(1, 6)], "heldout": {"val_metric_name": "ndcg@10"}}}


def test_a_sample_that_is_the_whole_gallery_is_not_called_a_sample_and_judged_bars_have_whiskers() -> None:
    from matplotlib.container import ErrorbarContainer

    from embridge.core.report.report_export import report_figures

    made = report_figures(_whole_gallery_report())
    names = [t.get_text() for t in made["cells"].legends[0].get_texts()]
    assert names == ["old/old", "new/new", "new→old"]
    assert made["backfill"].axes[0].get_title() == "Partial backfill: nDCG@10\non the whole gallery (2,331 items)"
    (ax,) = made["cells"].axes
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)][0]
    segments = bars.lines[2][0].get_segments()  # one whisker per metric
    lengths = [abs(seg[1][1] - seg[0][1]) for seg in segments]
    assert lengths[ticks.index("nDCG@10")] == pytest.approx(0.1) and lengths[ticks.index("MRR@10")] == pytest.approx(0.1)


def test_a_bridges_training_panels_name_the_base_layer_and_the_learning_rate_reads_plainly() -> None:
    from embridge.core.report.report_export import report_figures

    fig = report_figures(_whole_gallery_report())["training"]
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["Training loss (mlp, the fusion's base layer)", "Validation (mlp, the fusion's base layer)"]
    fig.canvas.draw()
    twin = fig.axes[-1]  # the learning rate's own axis, drawn last
    assert twin.get_ylabel() == "learning rate" and twin.yaxis.get_offset_text().get_text() == ""
    assert all(label.get_text().startswith("0.003") for label in twin.get_yticklabels() if label.get_text())
