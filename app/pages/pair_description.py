"""The Train page's pair choices and validation protocol, worked out in the background.

Describing them reads every paired item's fold and label (about a second at 150,000 items), which the
page did on the GUI thread at each refresh. One job runs at a time; a request made while it runs is
served when it ends, for whatever the page then shows, so an answer for another pair is never displayed;
meanwhile the page says the description is being worked out.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from embridge.app.context import AppContext
from embridge.core.jobs import JobOutcome
from embridge.core.progress import ProgressFn, StopFn

Key = tuple[str, str, str]  # (workspace root, old model, new model)
Shown = Callable[[tuple[str, ...] | None, str, str], None]  # (kinds or None on a refusal, default, text)


class PairDescriber:
    """Runs :func:`embridge.core.train.pair_choice.pair_setup` (storing nothing) for the page's models."""

    def __init__(self, ctx: AppContext, current: Callable[[], Key | None], show: Shown) -> None:
        self.ctx, self.current, self.show = ctx, current, show
        self.job: Any = None
        self._again = False

    def request(self) -> None:
        """Describe the pairs of the models the page shows now (or as soon as the running job ends)."""
        if self.job is not None:
            self._again = True
            return
        key = self.current()
        if key is None:
            return
        root, old, new = key

        def describe(on_progress: ProgressFn, should_stop: StopFn) -> tuple[list[str], str, str]:
            from embridge.core.store import Workspace
            from embridge.core.train.pair_choice import pair_setup

            with Workspace.open(Path(root)) as ws:
                setup = pair_setup(ws, old, new, persist=False)  # a view stores nothing: training draws the folds
            return list(setup.kinds), setup.default, setup.validation

        def ended(outcome: JobOutcome) -> None:
            self.job = None
            if outcome.status == "cancelled":  # the window or workspace is closing: nothing more to describe
                self._again = False
                return
            if self._again or self.current() != key:  # asked again, or the page moved on meanwhile
                self._again = False
                self.request()
                return
            if outcome.status == "completed":
                kinds, default, text = outcome.result
                self.show(tuple(kinds), default, text)
            elif outcome.status == "failed":
                self.show(None, "", outcome.error or "")

        self.job = self.ctx.jobs.start("Describe the training pairs", describe, ended, visible=False)
