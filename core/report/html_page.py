"""The self-contained HTML page of a report: inline CSS, inline SVG figures, no scripts, no URLs.

:func:`render_html` takes the JSON-safe report dict and the figures already rendered to inline SVG
(see :func:`embridge.core.report.report_export.figure_svgs`); every figure given appears exactly once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from embridge.core.evaluation.headline import JUDGED_METRICS, metric_label, noise_words, ties, weighed
from embridge.core.report.number_source import served_lines
from embridge.core.report.report_record import Report, curve_metric, run_heldout
from embridge.core.report.wording import comparison_word

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:70em;color:#222;
padding:0 1em;line-height:1.4;overflow-wrap:anywhere}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
.meta{color:#666;font-size:.9em}table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}th{background:#f4f4f4}
td.n{text-align:right;font-variant-numeric:tabular-nums}.fail{color:#b00020;font-weight:600}
.pass{color:#1b7f3b;font-weight:600}figure{margin:1em 0}figure svg{max-width:100%;height:auto}
figcaption{color:#555;font-size:.9em}.small{font-size:.85em;color:#555}
"""


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def _ci(pair: Sequence[Any] | None, defined: Any = None) -> str:
    """' [lo, hi]', with the share of resamples it came from where the number is undefined in some."""
    if not pair or None in pair:
        return ""
    over = f" over the {defined:.0%} of resamples where it is defined" \
        if isinstance(defined, float) and defined < 1.0 else ""
    return f" [{pair[0]:.3f}, {pair[1]:.3f}{over}]"


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="n">{escape(_fmt(v))}</td>' if isinstance(v, int | float) and not
                         isinstance(v, bool) else f"<td>{escape(_fmt(v))}</td>" for v in row) + "</tr>"
        for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _size_rows(sizes: dict[str, Any]) -> list[tuple[str, Any]]:
    """The report's sizes a row each; a group of them (the gallery each kind of cell searched) a row per entry,
    not a dict printed as Python writes it."""
    rows: list[tuple[str, Any]] = []
    for key, value in sizes.items():
        rows += [(f"{key}: {name}", inner) for name, inner in value.items()] if isinstance(value, dict) else [(key, value)]
    return rows


def _list(lines: Sequence[str]) -> str:
    return "<ul>" + "".join(f"<li>{escape(str(line))}</li>" for line in lines) + "</ul>"


class _Figures:
    """Hands out each SVG once; whatever was not placed goes to a last section."""

    def __init__(self, svgs: Mapping[str, str]) -> None:
        self.svgs, self.used = dict(svgs), set()

    def take(self, name: str, caption: str) -> str:
        if name not in self.svgs or name in self.used:
            return ""
        self.used.add(name)
        return f'<figure id="figure-{escape(name)}">{self.svgs[name]}<figcaption>{escape(caption)}</figcaption></figure>'

    def rest(self) -> str:
        left = [n for n in self.svgs if n not in self.used]
        return "".join(self.take(n, n) for n in left)


def _headline(report: Mapping[str, Any]) -> str:
    h = report.get("headline") or {}
    up, cc = report.get("upgraded_cell"), report.get("ceiling_cell")
    decided = weighed(h)  # nDCG@10 with graded judgments, as the verdicts below
    verdict = {True: '<span class="pass">passes</span>', False: '<span class="fail">fails</span>'}.get(
        decided.compatible, "cannot be judged without labels")
    verdict += escape(noise_words(h))
    if decided.compatible is False and ties(h):  # the criterion asks for more than today's system; the table: 'equal'
        verdict += f" (the upgraded system equals old/old, {float(decided.old_old or 0):.3f}: no better than today)"
    top1_gain = "gain retained (top-1)" if decided.name != "top-1" else "gain retained"
    sample = " on the evaluation sample" if h.get("old_old_sample_top1") is not None else ""  # new/new's gallery
    rows = [("old/old top-1 (today)", h.get("old_old_top1")), (f"{cc} top-1 (full backfill)", h.get("ceiling_top1")),
            (f"{up} top-1 (upgraded)", h.get("upgraded_top1")),
            (top1_gain + sample + _ci(h.get("gain_retained_ci"), h.get("gain_retained_ci_defined")),
             h.get("gain_retained") if h.get("gain_retained") is not None else h.get("gain_retained_note")),
            (f"ARR (recall@{h.get('arr_k')}){sample}", h.get("arr")),
            ("negative flip rate" + _ci(h.get("negative_flip_rate_ci")), h.get("negative_flip_rate")),
            ("positive flip rate" + _ci(h.get("positive_flip_rate_ci")), h.get("positive_flip_rate")),
            ("relative NFR" + _ci(h.get("relative_nfr_ci"), h.get("relative_nfr_ci_defined")), h.get("relative_nfr")),
            ("queries scored", h.get("n_queries"))]
    at = 3  # after the upgraded row
    if h.get("old_old_sample_top1") is not None:  # on new/new's gallery, where gain retained is measured
        rows[3:3] = [("old/old top-1 on the evaluation sample (new/new's gallery)", h["old_old_sample_top1"]),
                     (f"{up} top-1 on the evaluation sample", h.get("upgraded_sample_top1"))]
        at = 5
    for key in JUDGED_METRICS:  # graded judgments only
        name = metric_label(key)
        if key in h:
            gain = h.get(f"gain_retained_{key}")
            judged_sample = h.get(f"old_old_sample_{key}") is not None
            on_sample = ([(f"old/old {name} on the evaluation sample", h[f"old_old_sample_{key}"]),
                          (f"{up} {name} on the evaluation sample", h.get(f"upgraded_sample_{key}"))]
                         if judged_sample else [])
            rows[at:at] = [(f"old/old {name}", h.get(f"old_old_{key}")), (f"new/new {name}", h.get(f"new_new_{key}")),
                           (f"{up} {name} (upgraded)", h.get(key)), *on_sample,
                           (f"gain retained ({name})" + (" on the evaluation sample" if judged_sample else ""),
                            gain if gain is not None else h.get(f"gain_retained_{key}_note"))]
    return (f"<p>Compatibility criterion ({escape(decided.name)}): the upgrade {verdict}.</p>"
            + _list(report.get("verdicts") or [])
            + _table(["number", "value"], rows))


def _cells(report: Mapping[str, Any], figs: _Figures, shown: list[str]) -> str:
    rows = []
    for name, cell in (report.get("cells") or {}).items():
        metrics, cis = cell.get("metrics") or {}, cell.get("ci") or {}
        protocol = cell.get("protocol") or {}
        where = f"{protocol.get('gallery')} ({protocol.get('n_gallery')} items)" if protocol else ""
        rows.append([name, cell.get("query_side"), cell.get("gallery_side"), where,
                     *[f"{_fmt(metrics.get(m))}{_ci(cis.get(m))}" for m in shown], cell.get("n_queries")])
    recall = [m for m in shown if m.startswith("recall@")]
    said = (f"<p>{escape(', '.join(recall))}: the share of queries with a relevant item among the first k "
            "(success@k, the re-identification convention); the share of each query's relevant items found, "
            "the information-retrieval recall, is recall_frac@k in report.json.</p>") if recall else ""
    return (_table(["cell", "query side", "gallery side", "gallery searched", *shown, "queries"], rows) + said
            + figs.take("cells", "Metrics per cell with 95% bootstrap intervals")
            + figs.take("recall", "Recall@k per cell"))


def _compatibility(report: Mapping[str, Any]) -> str:
    comparison = report.get("comparison") or {}
    sampled = any("old_old_sample" in r for r in comparison.values())  # gain and ARR measured on the sample
    rows = [[m, r.get("old_old"), r.get("upgraded"), r.get("new_new"), comparison_word(r),
             *([r.get("old_old_sample"), r.get("upgraded_sample")] if sampled else []),
             r.get("gain_retained") if r.get("gain_retained") is not None else r.get("gain_retained_note"),
             r.get("arr")] for m, r in comparison.items()]
    sample_columns = ["old/old on the sample", "upgraded on the sample"] if sampled else []
    out = _table(["metric", "old/old", "upgraded", "full backfill", "criterion", *sample_columns,
                  "gain retained" + (" (on the sample)" if sampled else ""), "ARR"], rows)
    rate = report.get("compatibility_rate")
    if rate:
        out += (f"<p>Formal compatibility rate on {rate.get('n_positive')} same-label and {rate.get('n_negative')} "
                f"different-label sampled gallery pairs ({rate.get('distance')} distance): {_fmt(rate.get('rate'))} "
                f"(same-label {_fmt(rate.get('positive_rate'))}, different-label {_fmt(rate.get('negative_rate'))}).</p>")
    return out


def _flips(report: Mapping[str, Any], figs: _Figures, listed: int = 50) -> str:
    rows = [[n, f.get("against") or "old/old", f.get("negative_flip_rate"), f.get("positive_flip_rate"),
             f.get("relative_nfr"), f.get("n_negative"), f.get("n_positive")] for n, f in (report.get("flips") or {}).items()]
    out = _table(["cell", "against", "NFR", "PFR", "relative NFR", "negative", "positive"], rows)
    out += figs.take("flips", "Top-1 flips against old/old")
    section = report.get("flipped_queries") or {}
    for kind in ("negative", "positive"):
        records = section.get(kind) or []
        if records:
            out += f"<h3>{kind.capitalize()} flips of {escape(str(section.get('cell')))} (first {min(listed, len(records))} of {section.get('n_' + kind)})</h3>"
            out += _table(["query", "label", "old/old top results", "upgraded top results"],
                          [[r["query_key"], r.get("label"),
                            _pairs(r["old_top"], r.get("old_top_labels"), r.get("old_top_grades")),
                            _pairs(r["upgraded_top"], r.get("upgraded_top_labels"), r.get("upgraded_top_grades"))]
                           for r in records[:listed]])
    return out


def _pairs(keys: Sequence[str], labels: Sequence[Any] | None, grades: Sequence[int] | None = None) -> str:
    """'d7 (cat) ✓; d9 (dog) ✗': each result with its label and, where the report lists its grades,
    whether it is relevant as the metrics count it."""
    labels = labels or [None] * len(keys)
    marks = [""] * len(keys) if grades is None else [" ✓" if g > 0 else " ✗" for g in grades]
    return "; ".join((f"{_isolated(k)} ({_isolated(lab)})" if lab is not None else _isolated(k)) + mark
                     for k, lab, mark in zip(keys, labels, marks, strict=False))


def _isolated(text: Any) -> str:
    """A user's key or label between Unicode isolates (FSI ... PDI): a right-to-left override inside it
    reorders only itself, not the results after it in the same cell."""
    return f"\u2068{text}\u2069"


def _per_label(report: Mapping[str, Any], figs: _Figures) -> str:
    per_label = report.get("per_label") or {}
    if not per_label:
        return "<p>No labels: per-label numbers need labelled queries.</p>"
    names = list(per_label)
    by_label: dict[str, dict[str, Any]] = {}
    for name in names:
        for row in per_label[name]:
            by_label.setdefault(str(row["label"]), {"n": row["n"]})[name] = row.get("top1")
    rows = [[lab, v["n"], *[v.get(n) for n in names]] for lab, v in by_label.items()]
    return _table(["label", "queries", *[f"{n} top-1" for n in names]], rows) + figs.take(
        "per_label", "Top-1 per label (worst labels first)")


def _backfill(report: Mapping[str, Any], figs: _Figures) -> str:
    b = report.get("backfill") or {}
    done = served_lines(report.get("served"))  # the backfill done, before the ones weighed
    served = _list(done) if done else ""
    if not b.get("policies"):
        return served + _list(b.get("note") or ["Partial-backfill curves were not computed for this report."])
    m = curve_metric(b)
    shown = ["top1", "top5"] if m == "top1" else [m, "top1"]  # the deciding metric first
    rows = [[p, *[c["areas"].get(k) for k in shown], c["values"][m][0], c["values"][m][-1]]
            for p, c in b["policies"].items()]
    name = metric_label(m)
    return (served + _list(b.get("note") or []) + _table(["policy", *[f"area {metric_label(k)}" for k in shown],
                                                 f"{name} at β=0", f"{name} at β=1"], rows)
            + f"<p>Best policy by area under the {escape(name)} curve: {escape(str(b.get('best_policy')))}.</p>"
            + _curve_floor(b) + figs.take("backfill", f"{name} against the backfilled fraction β"))


def _curve_floor(backfill: Mapping[str, Any]) -> str:
    floor = backfill.get("old_old") or {}
    m = curve_metric(backfill)
    value = (floor.get("metrics") or {}).get(m)
    if value is None:
        return ""
    where = (floor.get("protocol") or {}).get("text") or "the curves' sample"
    return f"<p>old/old on the same queries and gallery: {metric_label(m)} {_fmt(value)} ({escape(where)}).</p>"


def _training(report: Mapping[str, Any], figs: _Figures) -> str:
    run = report.get("run") or {}
    held = run_heldout(run)
    rows = [["run", run.get("id")], ["method", run.get("method")], ["device", run.get("device")],
            ["duration (s)", run.get("duration_s")], *[[k, v] for k, v in held.items()]]
    return _table(["training", "value"], rows) + figs.take("training", "Training and validation curves")


def _chain_direction(chain: Mapping[str, Any]) -> str:
    if chain.get("direction") == "forward":
        return "Gallery vectors carried up the chain of forward layers to the query's version."
    return "Queries mapped down the chain of layers to the gallery's version."


def _chain(report: Mapping[str, Any], figs: _Figures) -> str:
    chain = report.get("chain") or {}
    versions = chain.get("versions") or []
    matrix = chain.get("matrix") or []
    rows = [[versions[i], *[matrix[i][j] if j <= i else "" for j in range(len(versions))]] for i in range(len(versions))]
    return (f"<p>C[i][j] = {escape(str(chain.get('metric')))} of query model i against gallery model j (j ≤ i). "
            f"{_chain_direction(chain)} AC = {_fmt(chain.get('ac'))}, AM = {_fmt(chain.get('am'))}.</p>"
            + (f"<p><span class='fail'>Note:</span> {escape(str(chain['ac_note']))}.</p>" if chain.get("ac_note") else "")
            + _table(["query \\ gallery", *versions], rows)
            + figs.take("compatibility_matrix", "Compatibility matrix"))


def render_html(typed: Report, svgs: Mapping[str, str]) -> str:
    """The whole page as text (see the module docstring), drawn from the report's JSON form."""
    figs = _Figures(svgs)
    report = typed.to_json()
    adapter = report.get("adapter") or {}
    models = report.get("models") or {}
    if report.get("kind") == "chain":
        title = "Compatibility chain " + " → ".join((report.get("chain") or {}).get("versions") or [])
    else:
        title = (f"Compatibility report: {adapter.get('kind')} layer, {(models.get('new') or {}).get('name')} → "
                 f"{(models.get('old') or {}).get('name')}")
    meta = (f"Report {report.get('report_id')} · created {report.get('created')} · Embridge "
            f"{report.get('embridge_version')} · schema {report.get('schema')}")
    parts = [f"<h1>{escape(title)}</h1>", f'<p class="meta">{escape(meta)}</p>']
    search = report.get("search") or {}
    protocol = list(report.get("protocol") or []) + ([search["statement"]] if search.get("statement") else [])
    if report.get("kind") == "chain":
        parts += ["<h2>Compatibility matrix</h2>", _chain(report, figs)]
    else:
        parts += ["<h2>Verdict</h2>", _headline(report)]
    parts += ["<h2>Protocol</h2>", _list(protocol),
              _table(["size", "value"], _size_rows(report.get("sizes") or {}))]
    if report.get("kind") != "chain":
        judged = [m for m in ("ndcg@10", "mrr@10")
                  if any(m in (c.get("metrics") or {}) for c in (report.get("cells") or {}).values())]
        parts += ["<h2>Cells</h2>", _cells(report, figs, [*typed.headline_metrics, *judged]),
                  "<h2>Compatibility</h2>", _compatibility(report),
                  "<h2>Flips</h2>", _flips(report, figs), "<h2>Per label</h2>", _per_label(report, figs),
                  "<h2>Partial backfill</h2>", _backfill(report, figs), "<h2>Training</h2>", _training(report, figs)]
    rest = figs.rest()
    if rest:
        parts += ["<h2>More figures</h2>", rest]
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n")
