"""Which number a plan decides on: nDCG@10 when relevance comes from graded judgments, else top-1.

With judgments (text retrieval, BEIR qrels) top-1 is success@1, a coarse and noisy measure of a
ranking of several graded documents: a new model can win one more first hit and lose nDCG@10 on the
same queries. The plan then weighs the options by nDCG@10, the measure such systems are judged by,
and shows top-1 beside it; labels and own-item relevance keep top-1.
"""

from __future__ import annotations

from embridge.core.report.report_record import Report

JUDGED_METRIC = "ndcg@10"


def decision_metric(report: Report, cells: tuple[str, ...]) -> str:
    """``ndcg@10`` when every cell in ``cells`` measured it, else ``top1``."""
    if all(report.cell_metrics(c, [JUDGED_METRIC]).get(JUDGED_METRIC) is not None for c in cells):
        return JUDGED_METRIC
    return "top1"

