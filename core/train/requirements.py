"""What a training method needs from the old/new pair, checked before any run is recorded.

``embridge train`` (through :func:`embridge.core.train.runs.train_run`) and the app's Train page both ask
:func:`requirement_problems`, so a pair the page greys out is refused by the command line with
the same sentence, and the other way round.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from embridge.core.errors import InputError, UsageError
from embridge.core.store import Workspace

MODELS_SOURCE = "models"  # what a refusal names: the chosen old/new pair
BRIDGE_SETTING = {"fusion": "α", "cascade": "K"}  # what a bridge chooses on validation


def requirement_problems(method: str, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None,
                         labelled_items: int, judged: bool = False, label_classes: int | None = None) -> list[str]:
    """Why ``method`` cannot run on this old/new pair (model rows with name and dim); empty when it can.
    ``judged``: the workspace holds relevance judgments; ``label_classes``: how many labels its items have
    (None: not known)."""
    from embridge.core.adapters.registry import METHODS, canonical_kind

    info = METHODS.get(canonical_kind(method))  # an alias (oca) needs what its method needs
    problems = []
    if old is None or new is None:
        problems.append("choose an old and a new model (add them with 'embridge model add' or on the Models page)")
    elif old["name"] == new["name"]:
        problems.append(same_models(old["name"]))
    if info is not None and info.needs_labels and not labelled_items:
        problems.append(f"{info.title} needs labelled items; this workspace has none")
    elif info is not None and info.needs_labels and label_classes is not None and label_classes < 2:
        problems.append(f"{info.title} trains a classifier and needs at least two classes; every labelled item "
                        "of this workspace has the same label")
    if info is not None and info.kind in BRIDGE_SETTING and not labelled_items and not judged:
        problems.append(f"{info.title} chooses its {BRIDGE_SETTING[info.kind]} on dev queries with judged documents "
                        "or labels, and this workspace has neither (on own-item validation the old vectors are the "
                        "targets themselves, so the choice would say nothing)")
    if info is not None and info.equal_dims and old and new and old["dim"] != new["dim"]:
        problems.append(f"{info.title} needs equal dimensions; the models give {old['dim']} and {new['dim']}")
    return problems


def same_models(name: str) -> str:
    return f"old and new model are both '{name}'; choose two different models"


def check_requirements(ws: Workspace, method: str, old: str, new: str,
                       config: Mapping[str, Any] | None = None) -> None:
    """Refuse (:class:`InputError` naming the models) a method this pair cannot train: also a fusion or
    cascade whose ``base`` cannot, and an ``auto`` none of whose layer candidates can (``config``: the
    user's settings), before a run is recorded, rather than as a failed run."""
    from embridge.core.adapters.registry import canonical_kind
    from embridge.core.train.config import AUTO_CANDIDATES

    kind, settings = canonical_kind(method), dict(config or {})
    if old == new:  # no workspace could take these: usage errors (exit status 2), as a bad setting is
        raise UsageError("--old/--new", same_models(old))
    if kind == "auto" and settings.get("candidates") and all(
            canonical_kind(str(c)) in BRIDGE_SETTING for c in settings["candidates"]):
        asked = ", ".join(canonical_kind(str(c)) for c in settings["candidates"])
        raise UsageError("--set", f"auto's candidates ({asked}) are bridges only, which build on a fitted new->old "
                         "layer; name one among them too (e.g. procrustes)")
    facts = (ws.model(old), ws.model(new), ws.labelled_count(), ws.has_judgments(), ws.label_classes())
    problems = requirement_problems(method, *facts)
    if not problems and kind in BRIDGE_SETTING and settings.get("base") is not None:
        base = canonical_kind(str(settings["base"]))
        problems = [f"its base, {base}: {p}" for p in requirement_problems(base, *facts)]
    if not problems and kind == "auto":
        asked = [canonical_kind(str(c)) for c in settings.get("candidates") or AUTO_CANDIDATES]
        blocked = {c: requirement_problems(c, *facts) for c in asked if c not in BRIDGE_SETTING}
        if blocked and all(blocked.values()):
            problems = ["no candidate of auto can run: " + "; ".join(f"{c}: {p[0]}" for c, p in blocked.items())]
    if problems:
        raise InputError(MODELS_SOURCE, "; ".join(problems))
