"""Report figures from plain data, shared by the HTML export and the desktop app's canvases.

Every function builds a ``matplotlib.figure.Figure`` directly (no pyplot state, no GUI backend), so
it renders headless through Agg here and inside a ``FigureCanvasQTAgg`` in the app.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib import rc_context, rcParams
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter, NullLocator

from embridge.core.evaluation.headline import metric_label

# A font cache built without matplotlib's own fonts (shared by another installation) makes every report
# log twenty "findfont: Font family ... not found" lines; the fallback font draws the same figures.
logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
# Labels, keys and model names are the user's text: a '$' in one ("$5 or $10", "$HOME_$") is drawn as
# typed, not read as math (which failed the whole report on a symbol it did not know). No figure here
# uses math; text objects take this setting when they are made.
rcParams["text.parse_math"] = False

_SIZE = (6.4, 3.6)
# Fixed colours for the usual cells so the same cell looks the same in every figure.
_CELL_COLOURS = {"old/old": "#7f7f7f", "new/new": "#2ca02c", "new→old": "#1f77b4", "new/fct(old)": "#9467bd"}
_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def _colour(name: str, i: int) -> str:
    return _CELL_COLOURS.get(name, _PALETTE[i % len(_PALETTE)])


def _figure(size: tuple[float, float] = _SIZE) -> Figure:
    return Figure(figsize=size, layout="constrained")


def _finite(value: Any) -> float:
    return float(value) if value is not None and np.isfinite(value) else float("nan")


def _legend_below(fig: Figure, ax: Any, entries: int) -> None:
    """The legend under the plot, outside the axes, so it never covers bars or lines; at most three
    entries a row, which a page at the window's smallest size still shows whole."""
    if ax.get_legend_handles_labels()[0]:
        fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", fontsize="small",
                   ncols=max(1, min(entries, 3)), frameon=False)


def metric_bars(
    cells: Mapping[str, Mapping[str, float]],
    metrics: Sequence[str] | None = None,
    cis: Mapping[str, Mapping[str, tuple[float, float]]] | None = None,
    title: str = "Retrieval quality per cell",
    labels: Mapping[str, str] | None = None,
) -> Figure:
    """Grouped bars: one group per metric, one bar per cell, optional CI whiskers; ``labels`` names a cell in the
    legend (its gallery, where it differs), its colour stays the cell's."""
    names = list(cells)
    metrics = list(metrics or next(iter(cells.values()), {}).keys())
    fig = _figure()
    ax = fig.add_subplot()
    width = 0.8 / max(len(names), 1)
    x = np.arange(len(metrics))
    for i, cell in enumerate(names):
        values = [_finite(cells[cell].get(m)) for m in metrics]
        err = None
        if cis and cell in cis:
            lo_hi = [cis[cell].get(m, (v, v)) for m, v in zip(metrics, values, strict=True)]
            err = np.array([[v - lo, hi - v] for v, (lo, hi) in zip(values, lo_hi, strict=True)]).T
            err = np.nan_to_num(np.maximum(err, 0.0))  # an interval may miss its estimate; whiskers stay >= 0
        ax.bar(x + (i - (len(names) - 1) / 2) * width, values, width, yerr=err, capsize=2,
               label=(labels or {}).get(cell, cell), color=_colour(cell, i))  # fmt: skip
    ax.set_xticks(x, [metric_label(m) for m in metrics])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("value")
    ax.set_title(title)
    _legend_below(fig, ax, len(names))
    return fig


def recall_curves(curves: Mapping[str, Mapping[int, float]], title: str = "Recall@k") -> Figure:
    """Recall@k against k, one line per cell (``{cell: {k: recall}}``)."""
    fig = _figure()
    ax = fig.add_subplot()
    for i, (cell, points) in enumerate(curves.items()):
        ks = sorted(points)
        ax.plot(ks, [_finite(points[k]) for k in ks], marker="o", label=cell, color=_colour(cell, i))
    ax.set_xscale("log")
    every_k = sorted({int(k) for points in curves.values() for k in points})
    if every_k:
        ax.set_xticks(every_k, [str(k) for k in every_k])
        ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("k")
    ax.set_ylabel("recall@k")
    ax.set_ylim(0, 1.05)
    ax.set_title(title)
    _legend_below(fig, ax, len(curves))
    return fig


def flip_bars(flips: Mapping[str, Mapping[str, float]], title: str = "Top-1 flips against old/old") -> Figure:
    """Negative and positive flip rates per upgraded cell (``{cell: {"negative": r, "positive": r}}``)."""
    names = list(flips)
    fig = _figure()
    ax = fig.add_subplot()
    x = np.arange(len(names))
    neg = [_finite(flips[c].get("negative")) for c in names]
    pos = [_finite(flips[c].get("positive")) for c in names]
    ax.bar(x - 0.2, neg, 0.4, label="negative flips", color="#d62728")
    ax.bar(x + 0.2, pos, 0.4, label="positive flips", color="#2ca02c")
    ax.set_xticks(x, names)
    ax.set_ylabel("share of queries")
    ax.set_title(title)
    _legend_below(fig, ax, 2)
    return fig


def per_label_bars(
    values: Mapping[str, Mapping[Any, float]],
    metric: str = "top1",
    max_labels: int = 30,
    title: str | None = None,
) -> Figure:
    """Horizontal bars of a metric per label for each cell (``{cell: {label: value}}``).

    With many labels only the ``max_labels`` worst under the first cell are drawn, worst on top.
    """
    names = list(values)
    first = values[names[0]] if names else {}
    labels = sorted(first, key=lambda lab: _finite(first[lab]))[:max_labels]
    fig = _figure((6.4, max(2.5, 0.28 * len(labels) * max(1, len(names)) ** 0.5 + 1.2)))
    ax = fig.add_subplot()
    height = 0.8 / max(len(names), 1)
    y = np.arange(len(labels))
    for i, cell in enumerate(names):
        ax.barh(y + (i - (len(names) - 1) / 2) * height, [_finite(values[cell].get(lab)) for lab in labels],
                height, label=cell, color=_colour(cell, i))  # fmt: skip
    ax.set_yticks(y, [tick_text(lab) for lab in labels], fontsize="small")
    ax.invert_yaxis()
    ax.set_xlim(0, 1.05)
    ax.set_xlabel(metric)
    shown = f" (worst {len(labels)} of {len(first)})" if len(first) > len(labels) else ""
    ax.set_title(title or f"{metric} per label{shown}")
    _legend_below(fig, ax, len(names))
    return fig


def compatibility_heatmap(
    matrix: Any,
    versions: Sequence[str],
    ac: float | None = None,
    am: float | None = None,
    metric: str = "top1",
) -> Figure:
    """Heatmap of C[i][j] = M(query model i, gallery model j) for j ≤ i, values written in cells."""
    c = np.asarray(matrix, dtype=np.float64)
    t = c.shape[0]
    shown = np.where(np.tril(np.ones((t, t), dtype=bool)), c, np.nan)
    fig = _figure((5.2, 4.4))
    ax = fig.add_subplot()
    image = ax.imshow(shown, cmap="viridis", vmin=np.nanmin(shown), vmax=np.nanmax(shown))
    for i in range(t):
        for j in range(i + 1):
            ax.text(j, i, f"{shown[i, j]:.3f}", ha="center", va="center", color="white", fontsize="small")
    ax.set_xticks(range(t), list(versions))
    ax.set_yticks(range(t), list(versions))
    ax.set_xlabel("gallery model")
    ax.set_ylabel("query model")
    scores = []
    if ac is not None:
        scores.append(f"AC {ac:.3f}")
    if am is not None:
        scores.append(f"AM {am:.3f}")
    ax.set_title(f"Compatibility matrix ({metric})" + (": " + ", ".join(scores) if scores else ""))
    fig.colorbar(image, ax=ax, shrink=0.8)
    return fig


def backfill_curves(
    curves: Mapping[str, Mapping[str, Any]],
    metric: str = "top1",
    references: Mapping[str, float] | None = None,
    title: str | None = None,
) -> Figure:
    """Metric against backfilled fraction β per policy (``{policy: {"betas", "values", "area"}}``).

    ``references`` draws horizontal lines, e.g. ``{"old/old": 0.61}``.
    """
    fig = _figure()
    ax = fig.add_subplot()
    for i, (policy, curve) in enumerate(curves.items()):
        area = curve.get("area")
        label = f"{policy} (area {area:.3f})" if area is not None else policy
        ax.plot(curve["betas"], curve["values"], marker=".", label=label, color=_PALETTE[i % len(_PALETTE)])
    for i, (name, value) in enumerate((references or {}).items()):
        ax.axhline(value, linestyle="--", linewidth=1, color=_colour(name, i + 4), label=name)
    ax.set_xlim(0, 1)
    ax.set_xlabel("backfilled fraction β of the gallery")
    ax.set_ylabel(metric)
    ax.set_title(title or f"Partial backfill: {metric}")
    _legend_below(fig, ax, len(curves) + len(references or {}))
    return fig


METRIC_LABELS = {"label_top1": "top-1 (same label)", "pair_top1": "top-1 (own item)", "judged_top1": "top-1 (judged)",
                 "judged_ndcg@10": "nDCG@10 (judged)"}


SWEEP_KEYS = {"whitening": "whitening shrinkage (0: the plain rotation)", "ridge": "ridge λ (relative)",
              "k": "K (candidates re-ranked)", "alpha": "α (mixing weight)"}
_SWEEP_NAMES = {"whitening": "whitening", "ridge": "λ", "k": "K", "alpha": "α"}
_LOG_SWEEPS = {"whitening", "ridge"}  # grids spaced by decades
Sweep = tuple[str, list[Mapping[str, Any]]]


def split_sweeps(rows: Sequence[Mapping[str, Any]]) -> tuple[list[Mapping[str, Any]], list[Sweep]]:
    """(epoch rows, [(swept setting, its rows)]): the settings a closed form tries (Procrustes'
    whitening, affine's ridge λ) and a fusion's α or a cascade's K after its base layer are
    settings, not epochs, and each gets a panel of its own, in the order the fit tried them."""
    sweeps: dict[str, list[Mapping[str, Any]]] = {}
    epochs: list[Mapping[str, Any]] = []
    for row in rows:
        key = next((k for k in SWEEP_KEYS if k in row), None)
        (epochs if key is None else sweeps.setdefault(key, [])).append(row)
    return epochs, list(sweeps.items())


def _sweep_panel(ax: Any, key: str, rows: list[Mapping[str, Any]], metric_label: str) -> None:
    """The validation metric per value tried; a grid spaced by decades (whitening, λ) on a log axis
    that still shows 0."""
    xs = [_finite(row.get(key)) for row in rows]
    ax.plot(xs, [_finite(row.get("val_metric")) for row in rows], marker="o", color=_PALETTE[0])
    positive = [x for x in xs if np.isfinite(x) and x > 0]
    if key in _LOG_SWEEPS and positive and max(positive) >= 10 * min(positive):
        ax.set_xscale("symlog", linthresh=min(positive))
        # its default labels are math text ("$10^{-2}$"), which these figures draw literally (parse_math off)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(SWEEP_KEYS[key])
    ax.set_ylabel(metric_label)
    ax.set_title(f"Validation per {_SWEEP_NAMES[key]}")


def training_curves(epochs: Sequence[Mapping[str, Any]], x_key: str = "epoch",
                    metric_name: str | None = None, layer: str | None = None) -> Figure:
    """Per-epoch numbers: the training loss (with the learning rate on its own right axis) and the
    validation metric, named. A fit without a loss (closed form) gets the validation panel only; each
    setting swept (whitening, λ, a fusion's α, a cascade's K) gets a panel of the validation metric per
    value. ``layer`` names what the epochs trained where that is not the layer kept (a fusion's or
    cascade's base layer, whose validation scores read low beside the bridge's own)."""
    epochs, sweeps = split_sweeps(epochs)
    keys: list[str] = []
    for row in epochs:
        keys += [k for k, v in row.items() if k != x_key and k not in keys and isinstance(v, int | float)]
    loss_keys = [k for k in keys if "loss" in k]
    lr_keys = [k for k in keys if k == "lr"]
    other_keys = [k for k in keys if "loss" not in k and k != "lr"]
    has_loss = any(np.isfinite(_finite(row.get(k))) for row in epochs for k in loss_keys)
    has_epochs = has_loss or bool(other_keys) or not sweeps
    panels = (2 if has_loss else 1 if has_epochs else 0) + len(sweeps)
    fig = _figure({1: _SIZE, 2: (8.0, 3.4), 3: (11.0, 3.4)}.get(panels, (14.0, 3.4)))
    axes = list(np.atleast_1d(fig.subplots(1, panels)))
    sweep_axes = axes[len(axes) - len(sweeps):]
    axes = axes[: len(axes) - len(sweeps)]
    xs = [row.get(x_key, i + 1) for i, row in enumerate(epochs)]
    metric_label = METRIC_LABELS.get(metric_name or "", metric_name or "top-1")

    def label(key: str) -> str:
        return {"val_metric": metric_label, "train_loss": "training loss", "loss": "training loss"}.get(
            key, key.replace("_", " "))

    def draw(ax: Any, group: list[str], ylabel: str) -> None:
        for i, key in enumerate(group):
            ax.plot(xs, [_finite(row.get(key)) for row in epochs], marker=".", label=label(key),
                    color=_PALETTE[i % len(_PALETTE)])
        ax.set_xlabel(x_key)
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))  # legible in a narrow window too

    if has_loss:
        draw(axes[0], loss_keys, "training loss")
        axes[0].set_title("Training loss" + (f" ({layer})" if layer else ""))
        if lr_keys:
            twin = axes[0].twinx()
            twin.plot(xs, [_finite(row.get("lr")) for row in epochs], linestyle="--", color="#7f7f7f",
                      label="learning rate")
            twin.set_ylabel("learning rate")
            twin.yaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:.3g}"))  # no offset text
            lines = axes[0].get_lines() + twin.get_lines()
            # "best": where it covers the fewest points, recomputed as a live plot's lines grow
            axes[0].legend(lines, [ln.get_label() for ln in lines], fontsize="small", loc="best")
        elif loss_keys:
            axes[0].legend(fontsize="small", loc="best")
    if axes:
        draw(axes[-1], other_keys, metric_label)
        axes[-1].set_title("Validation" + (f" ({layer})" if layer else ""))
        if len(other_keys) > 1:
            axes[-1].legend(fontsize="small", loc="best")
    for ax, (key, rows) in zip(sweep_axes, sweeps, strict=True):
        _sweep_panel(ax, key, rows, metric_label)
    return fig


TICK_CHARS = 40  # a label drawn beside an axis; the tables show it whole


def tick_text(label: object, most: int = TICK_CHARS) -> str:
    """``label`` cut with an ellipsis past ``most`` characters: one long label pushed the axes aside, cut
    every other label at the figure's edge, and matplotlib warned on stderr."""
    text = str(label)
    return text if len(text) <= most else text[:most - 1] + "…"


def figure_to_png_bytes(fig: Figure, dpi: int = 100) -> bytes:
    """PNG bytes (rendered through Agg whatever canvas the figure is attached to)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def figure_to_svg(fig: Figure) -> str:
    """SVG text to inline in the HTML report; undated, with fixed element ids (reproducible files)."""
    buf = io.StringIO()
    with rc_context({"svg.hashsalt": "embridge"}), warnings.catch_warnings():
        # a label in a script the font lacks (emoji) is drawn as boxes; the tables show it whole
        warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)
        fig.savefig(buf, format="svg", metadata={"Date": None})
    return buf.getvalue()
