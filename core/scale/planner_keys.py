"""The planner's partial-backfill order as a file of item keys, for models Embridge cannot run.

``backfill --order planner`` embeds the plan's items itself; an embeddings-only model (vectors made
elsewhere) or an ``embed-dataset`` job outside the workspace needs the order as data instead:
``plan --order-out FILE.npy`` writes the keys of the items to re-embed, first first (integers when every
key is one, as a store's ids are; text otherwise), which ``embed-dataset --order`` takes and whose vectors
``import --format vectors --model NEW`` then attaches.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from embridge.core.errors import InputError
from embridge.core.scale.backfill_workspace import planner_order

_INTEGER = re.compile(r"-?[0-9]+")
OPTION = "--order-out"


def check_order_out(out: str | Path, workspace: str | Path) -> None:
    """Refuse, before any work, an ``--order-out`` in the workspace or one that would replace a file."""
    from embridge.core.paths import check_output

    check_output(out, label=OPTION, workspace=workspace)
    if Path(out).exists() or Path(out).is_symlink():
        raise InputError(f"{OPTION} {out}", "already exists; choose a new file (an earlier order is not replaced)")


def planner_keys(ws: Any, plan: Any) -> np.ndarray:
    """The keys of the items the plan's partial backfill re-embeds, in its order."""
    if not any(o.get("name") == "partial_backfill" for o in plan.options):
        raise InputError(OPTION, f"the plan recommends {plan.recommendation} and has no partial backfill to write "
                                 "the order of; nothing was written (--fraction asks for a partial backfill at a "
                                 "share of your choosing)")
    try:
        ids = planner_order(ws, plan)
    except InputError as exc:  # an order that needs what a plan cannot give: said as the option asked for it
        raise InputError(OPTION, exc.problem) from None
    return key_array(ws.keys_of(ids))


def key_array(keys: list[str]) -> np.ndarray:
    """Keys as a store's ids are: integers where every key reads back as itself ('0370' stays text, as the
    item is keyed), text otherwise."""
    if keys and all(_INTEGER.fullmatch(k) and str(int(k)) == k and -(2**63) <= int(k) < 2**63 for k in keys):
        return np.array([int(k) for k in keys], dtype=np.int64)
    return np.array(keys, dtype=str)


def write_planner_keys(ws: Any, plan: Any, out: str | Path) -> int:
    """Write :func:`planner_keys` to ``out`` (a new ``.npy``, temp name then rename); returns how many."""
    from embridge.core.store.files import atomic_target

    keys = planner_keys(ws, plan)
    with atomic_target(out) as tmp, open(tmp, "wb") as fh:
        np.save(fh, keys, allow_pickle=False)
    return int(keys.size)
