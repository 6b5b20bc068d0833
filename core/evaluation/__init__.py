"""One evaluation path for training, reports, plans and bundles.

Every retrieval number Embridge shows is made here: a :class:`RetrievalTask` (a named query set, a
named gallery and a relevance rule: judgments, else labels, else the query's own item) is searched
and scored by :func:`score`, which returns the metric values together with the :class:`Protocol`
they were measured on. Training's validation (early stopping, ``auto``, λ, whitening, fusion α)
goes through :class:`Validator` on the dev queries, its held-out numbers and the report's cells
through :func:`measure_upgrade` / :func:`score_upgrade` on the test queries, so one layer has one
number per protocol. ``embridge.core.train`` and ``embridge.core.report`` both import this package and never each
other (an import-linter contract in pyproject.toml checks it).

Modules (imported on demand, so importing the package stays cheap: ``search`` loads faiss lazily,
``upgrade`` and ``selection`` load torch through the adapters):

- ``task``: QuerySet, GallerySet, RetrievalTask, Protocol; ``relevance``: RelevanceRule, choose_rule;
- ``tasks``: the workspace's test and dev tasks (upgrade_tasks, dev_task); ``folds``: assign_folds, split_pairs;
- ``scoring``: score, scoring_plan, selection_plan, EvalResult; ``search``: faiss search;
- ``selection``: Validator, array_validator; ``choice``: choose (ties say "no choice was made");
- ``upgrade``: measure_upgrade, score_upgrade (old/old, new/new, upgraded cells);
- ``compat``: gain_retained (None when the new model is not better), NOT_BETTER, criterion, ARR;
- ``metrics``: per-query ranking metrics and bootstrap CIs; ``vectors``: MatrixMaker.
"""
