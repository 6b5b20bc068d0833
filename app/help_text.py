"""Words the app shows to explain itself: header tooltips and the in-app guide (Help ▸ Guide)."""

from __future__ import annotations

GAIN_HELP = ("(upgraded − old/old) ÷ (new/new − old/old): the share of the full-backfill gain the layer keeps "
             "without re-embedding the gallery. 1.0 = all of it, 0 = none, negative = worse than today.")

HEADER_HELP: dict[str, str] = {
    "Old/old top-1": "Today's system: old-model queries against the old-model gallery. The number to beat.",
    "New/new top-1": "Full backfill: new-model queries against a re-embedded gallery. The best an upgrade can do.",
    "Upgraded top-1": "New-model queries mapped by the layer, searched against the untouched old gallery.",
    "Gain retained": GAIN_HELP,
    "Gain retained (top-1)": GAIN_HELP + " Measured on top-1, as the columns beside it (the Reports page and the "
                             "report give nDCG@10's where graded judgments decide).",
    "Measured on": "The query set and gallery the numbers of this row were measured on.",
    "Pairs": "The item pairs the layer was fitted on: documents, queries judged in the train split, or both.",
    "Method": "The method asked for; for the automatic choice, the method it chose.",
    "Candidates": "Automatic choice: every candidate's validation score; the best one was kept.",
    "Passes": "Does this option beat today's system (old/old) on the number in the header (nDCG@10 with graded "
              "judgments, top-1 otherwise)? The compatibility criterion.",
    "Acceptable": "Passes the criterion and keeps at least the gain threshold of the full-backfill gain.",
    "Time": "Estimated time to carry out this option on this machine (re-embedding and mapping).",
    "Storage": "Extra storage the option needs (new vectors, adapter).",
    "Items re-embedded": "How many gallery items this option embeds again with the new model.",
    "Top-1": "Top-1 of this option on the report's queries and gallery.",
    "Metric": "top-k: share of queries whose first result is relevant (top-1) or with a relevant item in the top k; "
              "recall@k: share of queries with a relevant item in the top k (success@k; the share of relevant items "
              "found is recall_frac@k in report.json); mAP: mean average precision.",
}

GUIDE_HTML = """
<h3>The upgrade workflow</h3>
<ol>
<li><b>Workspace</b>: create or open a folder that holds everything (File ▸ New / Open).</li>
<li><b>Models</b>: add the model that built today's index as <i>old</i> and the one to upgrade to as
<i>new</i>. Same checkpoint twice is refused; remove, rename or change a role there.</li>
<li><b>Gallery</b>: import items (image folders, CSV/JSONL texts, vectors) and embed them with both models.
Items of the split <i>query</i> are the queries; every other split forms the gallery.</li>
<li><b>Train</b>: fit a compatibility layer that maps new-model vectors into the old space. The automatic
choice fits every candidate and keeps the best on validation; the table shows which and why.</li>
<li><b>Reports</b>: score every cell (old/old, upgraded, new/new, …) on the query set and gallery, with
confidence intervals, flipped queries and partial-backfill curves; open the HTML report to share.</li>
<li><b>Plan</b>: compare bridging, partial and full backfill by time, storage and quality.</li>
<li><b>Export</b>: write a verified bundle (adapter, manifest, report) for the serving side.</li>
</ol>
<h3>What the numbers mean</h3>
<ul>
<li><b>old/old</b>: today's system. <b>new/new</b>: after a full backfill. <b>upgraded</b>: new queries
through the layer against the old gallery.</li>
<li><b>top-1</b>: share of queries whose first result is relevant (same label, or the query's own item
when there are no labels).</li>
<li><b>Gain retained</b>: (upgraded − old/old) ÷ (new/new − old/old).</li>
<li><b>Criterion</b>: the layer <i>passes</i> a metric when upgraded beats old/old; <i>equal</i> when both
sides are the same (for example recall@100 of 1.0 on both); <i>fail</i> when it is worse.</li>
<li>Every number names where it was measured: the protocol its record stores (query set and size,
gallery and size, relevance: judgments, labels or the query's own item). A run's held-out numbers and
its report's upgraded cell share one protocol, so they are the same numbers.</li>
<li><b>nDCG@10</b> and <b>MRR@10</b>: measured when the workspace has relevance judgments (graded
gain, log2 discount; reciprocal rank of the first relevant item in the top 10).</li>
</ul>
"""
