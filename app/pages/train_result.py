"""What the Train page says about runs: the runs table's rows and the sentence shown when a run ends.

Every held-out number is shown next to the protocol its cell was measured on, grouped as the
command line groups them (:func:`embridge.core.run_record.protocol_groups`): old/old and the
upgraded system search the whole old gallery, new/new may search a smaller evaluation sample.
"""

from __future__ import annotations

import html
from typing import Any

from PySide6.QtCore import QSignalBlocker
from PySide6.QtWidgets import QTableWidget

from embridge.app.pages.page import fill_table
from embridge.core.evaluation.headline import HEADLINE, criterion_text, decides_on_ndcg
from embridge.core.formatting import capitalised
from embridge.core.run_record import CELL_NUMBERS, NEW_NEW, UPGRADED, RunRecord, fitted_text, protocol_groups

RUN_COLUMNS = ["Run", "Method", "Status", "Old/old top-1", "New/new top-1", "Upgraded top-1",
               "Gain retained (top-1)", "Old/old nDCG@10", "New/new nDCG@10", "Upgraded nDCG@10",
               "Gain retained (nDCG@10)",
               "Criterion", "Pairs", "Measured on", "Candidates", "Note"]
JUDGED_COLUMNS = ("Old/old nDCG@10", "New/new nDCG@10", "Upgraded nDCG@10", "Gain retained (nDCG@10)")  # judged runs
JUDGED_KEYS = ("old_old_ndcg@10", "new_new_ndcg@10", "ndcg@10", "gain_retained_ndcg@10")
LABELS = {"old_old_top1": "old/old top-1", "new_new_top1": "new/new top-1", "upgraded_top1": "upgraded top-1",
          "gain_retained": "gain retained", "old_old_ndcg@10": "old/old nDCG@10",
          "new_new_ndcg@10": "new/new nDCG@10", "ndcg@10": "upgraded nDCG@10", "mrr@10": "upgraded MRR@10",
          "old_old_sample_top1": "old/old top-1 on this sample", "old_old_sample_ndcg@10": "old/old nDCG@10 on this sample",
          "upgraded_sample_top1": "upgraded top-1 on this sample", "ceiling_top1": "head/head top-1",
          "ceiling_ndcg@10": "head/head nDCG@10",
          "upgraded_sample_ndcg@10": "upgraded nDCG@10 on this sample", "gain_retained_ndcg@10": "gain retained (nDCG@10)"}


def fill_runs_table(table: QTableWidget, runs: list[dict[str, Any]], keep: int | None) -> None:
    """Refill the runs table with ``runs`` (latest first), the run ``keep`` still selected and no selection
    signalled (refilling is no choice of the user's); the nDCG@10 columns shown only when a run's criterion
    is decided on them, each protocol cell's full sentences (new/new's too where it differs) on hover."""
    from embridge.core.report.number_source import source_of_run
    from embridge.core.run_record import other_cells_note

    with QSignalBlocker(table):
        fill_table(table, [run_row(r) for r in runs])
        table.clearSelection()
        ids = [r["id"] for r in runs]
        if keep in ids:
            table.selectRow(ids.index(keep))
    judged = any(decides_on_ndcg(r.get("metrics") or {}) for r in runs)
    for name in JUDGED_COLUMNS:
        table.setColumnHidden(RUN_COLUMNS.index(name), not judged)
    column = RUN_COLUMNS.index("Measured on")
    for row, run in enumerate(runs):
        item = table.item(row, column)
        if item is not None and item.text():
            lead = source_of_run(run).label()
            item.setToolTip(lead + other_cells_note(run.get("metrics") or {}, lead))

def run_row(run: dict[str, Any]) -> list[Any]:
    """One row of the runs table: the method actually fitted, the numbers and where they come from."""
    from embridge.core.report.number_source import gain_text, source_of_run
    from embridge.core.run_choice import run_choice

    record = RunRecord.from_row(run)
    metrics = record.metrics
    choice = run_choice(run)
    measured = source_of_run(run).short() if record.has_headline() else ""
    protocols = metrics.get("protocols") if isinstance(metrics.get("protocols"), dict) else {}
    new_new = protocols.get("new/new") if isinstance(protocols.get("new/new"), dict) else {}
    if measured and new_new.get("n_gallery") and not measured.endswith(f"/ {new_new['n_gallery']} items"):
        measured += f"; new/new {new_new['n_gallery']} items"  # its number sits in this row too
        if _number(metrics.get("old_old_sample_top1")):  # and the gain, measured on that sample
            measured += ", gain retained there"
    note = "; ".join(filter(None, (run.get("stale"), record.error or choice.reason or metrics.get("note"))))
    gain = metrics.get("gain_retained")
    against = _gain_against(metrics)
    values = [*[metrics.get(k) for k in HEADLINE if k != "gain_retained"],
              gain_text(gain, metrics.get("gain_retained_note")) + (against if _number(gain) else "")
              if gain is not None or metrics.get("gain_retained_note") else None]
    judged = [gain_text(metrics[k], None) + against if k.startswith("gain_retained") and _number(metrics.get(k))
              else metrics.get(k) for k in JUDGED_KEYS]  # gains as shares, as everywhere else
    return [record.id, choice.method_text(), record.status, *values, *judged,
            criterion_text(metrics),
            metrics.get("pairs_used") or "", measured,
            choice.candidates_text() if choice.is_auto else "", note]


def _gain_against(metrics: dict[str, Any]) -> str:
    """' (vs head/head, on the sample)': what a gain retained in the row was measured against, where that is not
    the New/new column beside it (a head's own ceiling, or new/new's evaluation sample)."""
    parts = [f"vs {metrics['ceiling_cell']}"] if metrics.get("ceiling_cell") not in (None, "new/new") else []
    parts += ["on the sample"] if _number(metrics.get("old_old_sample_top1")) else []
    return f" ({', '.join(parts)})" if parts else ""


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def heldout_text(summary: dict[str, Any]) -> str:
    """The held-out numbers, each group followed by the protocol its cells were measured on."""
    from embridge.core.report.number_source import UNRECORDED, gain_text

    parts = []
    # where new/new searched a sample, gain retained was measured there: listed under the sample's protocol
    gain_cell = NEW_NEW if _number(summary.get("old_old_sample_top1")) else UPGRADED
    judged = decides_on_ndcg(summary)  # then nDCG@10's gain decides, and top-1's is named as top-1's
    gains = ("gain_retained", "gain_retained_ndcg@10") if judged else ("gain_retained",)
    labels = {**LABELS, "gain_retained": "gain retained (top-1)"} if judged else LABELS
    numbers = {cell: tuple(k for k in keys if k != "gain_retained") + (gains if cell == gain_cell else ())
               for cell, keys in CELL_NUMBERS.items()}
    for cells, sentence in protocol_groups(summary):
        values = [f"{labels[k]} {gain_text(summary[k], None) if k.startswith('gain_retained') else f'{summary[k]:.3f}'}"
                  for cell in cells for k in numbers.get(cell, ()) if _number(summary.get(k))]  # gains as shares
        for key in gains if gain_cell in cells else ():
            if summary.get(key) is None and summary.get(f"{key}_note"):
                name = labels[key] if judged else "gain retained"
                values.append(f"{name}: {gain_text(None, summary[f'{key}_note'])}")
        if values:
            parts.append(f"{', '.join(values)} ({sentence or UNRECORDED})")
    return "; ".join(parts)


def result_text(summary: dict[str, Any]) -> str:
    """What the page says when a run ends: the numbers with their protocols, the choice, early stopping."""
    from embridge.core.run_choice import run_choice

    choice = run_choice({"method": summary.get("method"), "metrics": summary})
    numbers = heldout_text(summary)
    text = f"Run {summary['run_id']} ({choice.method_text()}, {summary['status']}): "
    text += numbers if numbers else str(summary.get("note") or "")
    if numbers and criterion_text(summary):  # the verdict `embridge train` prints, on the number that decides
        text += f". Compatibility criterion: {criterion_text(summary)}"
    if summary.get("pairs_used"):
        fitted = fitted_text(summary)  # the words `embridge train` prints
        text += f". {capitalised(fitted)}"
    if choice.protocol:
        text += f". Validated on {choice.protocol}"
    if choice.is_auto and choice.candidates:
        text += f". Candidates ({choice.metric}): {choice.candidates_text()}"
        if choice.times_text():
            text += f". Time per candidate: {choice.times_text()}"
    reason = str(summary.get("reason") or "")
    if reason:
        text += f". {reason[0].upper()}{reason[1:]}"
    for unused in summary.get("unused_settings") or []:  # as `embridge train` warns
        text += f". Not used: {', '.join(unused['names'])} ({unused['why']})"
    budget = summary.get("budget")
    if budget:
        text += f". Time budget {budget['seconds']:g} s, {budget['spent_s']:.1f} s spent"
    epochs, best = summary.get("epochs_run"), summary.get("best_epoch")
    if isinstance(best, int) and isinstance(epochs, int) and epochs > 1:
        text += f" (best epoch {best}, kept)"
    return text


def recorded_text(run: dict[str, Any]) -> str:
    """The sentence for a stored training run, so a run trained by ``embridge train`` (or in an earlier
    session) reads as it did when the app trained it: its record holds the summary the run returned."""
    record = RunRecord.from_row(run)
    if record.metrics.get("run_id") is not None:  # the run ended with a layer: its summary was stored
        text = result_text({**record.metrics, "run_id": record.id, "status": record.status,
                            "method": record.metrics.get("method") or record.method})
        stale = run.get("stale")  # numbers of data the workspace has outgrown (see core.data_state)
        return f"{text}. {capitalised(stale)}" if stale else text
    why = f": {record.error}" if record.error else ""
    if record.status == "running":
        return f"Run {record.id} ({record.method}) is still training; its numbers appear when it ends."
    return f"Run {record.id} ({record.method}, {record.status}){why}. No layer was stored."


def ended_text(status: str, error: str | None, result: Any) -> str:
    """What the page says when a training job did not complete: cancelled or failed, and what the
    workspace holds afterwards (the core records a run cancelled mid-training with its best epoch)."""
    why = f": {error}" if error else ""
    if status == "failed":
        return f"Training failed{why}. No layer was stored."
    summary = result if isinstance(result, dict) else {}
    if summary.get("run_id") is not None:
        reason = str(summary.get("reason") or "cancelled by the user")
        return (f"Training cancelled ({reason}). Run {summary['run_id']} is recorded as cancelled, with the "
                "layer of its best epoch so far; it is not a completed training.")
    return f"Training cancelled{why}. No layer was stored."


def method_text(kind: str, info: Any, problems: list[str]) -> str:
    """The method chooser's explanation of ``kind`` (``info``: its registry entry; none for 'auto'), and
    why it cannot run on the chosen pair, in red."""
    if kind == "auto":
        from embridge.core.train import auto

        text = f"<b>Automatic choice</b><p>{html.escape((auto.__doc__ or '').split(chr(10))[0].replace('``', ''))}</p>"
    else:
        text = (f"<b>{html.escape(info.title)}</b><p>{html.escape(info.summary)}</p>"
                f"<p>Direction: {info.direction} · Needs labels: {'yes' if info.needs_labels else 'no'} · "
                f"Needs equal dimensions: {'yes' if info.equal_dims else 'no'} · "
                f"{'trained over epochs' if info.trainable else 'closed form (no epochs)'}</p>")
    return text + "".join(f"<p style='color:#b00020'>⚠ {html.escape(p)}</p>" for p in problems)
