"""The Train page's pair choices and validation protocol, worked out in the background.

Describing them reads every paired item's fold and label (about a second at 150,000 items), which the
page did on the GUI thread at each refresh. One job runs at a time; a request made while it runs is
served when it ends, for whatever the page then shows, so an answer for another pair is never displayed;
meanwhile the label says the description is being worked out.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QComboBox, QLabel

from embridge.app.context import AppContext
from embridge.app.pages.forms import set_combo_items
from embridge.core.jobs import JobOutcome
from embridge.core.progress import ProgressFn, StopFn

Key = tuple[str, str, str]  # (workspace root, old model, new model)


class PairDescriber:
    """Runs :func:`embridge.core.train.pair_choice.pair_setup` (storing nothing) for the page's models and
    shows the answer: the validation protocol in ``label``, the pair kinds in ``pairs`` (its default first;
    a kind the user chose stays chosen while offered)."""

    def __init__(self, ctx: AppContext, current: Callable[[], Key | None], label: QLabel, pairs: QComboBox) -> None:
        self.ctx, self.current, self.label, self.pairs = ctx, current, label, pairs
        self.job: Any = None
        self._again = False
        self.shown_for: Key | None = None  # the pair the label and the Pairs box describe

    def show(self) -> None:
        """Describe the page's pair, saying it is being worked out when the last answer was another's."""
        key = self.current()
        if key is None:
            self.label.setText("")
            return
        if key != self.shown_for:  # another pair or workspace: its predecessor's words must not stay
            self.label.setText("Working out the pairs and the validation protocol…")
            set_combo_items(self.pairs, [])
        self.request()

    def reset(self) -> None:
        """Another workspace: nothing of the last one's pairs is shown."""
        self.shown_for = None
        self.label.setText("")

    def _shown(self, key: Key, kinds: tuple[str, ...] | None, default: str, text: str) -> None:
        self.shown_for = key
        self.label.setText(text)
        if kinds is None:  # refused: the reason is the text
            return
        current = self.pairs.currentText()
        set_combo_items(self.pairs, list(kinds))
        self.pairs.setCurrentText(current if current in kinds and self.pairs.property("chosen") else default)

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
                self._shown(key, tuple(kinds), default, text)
            elif outcome.status == "failed":
                self._shown(key, None, "", outcome.error or "")

        self.job = self.ctx.jobs.start("Describe the training pairs", describe, ended, visible=False)
