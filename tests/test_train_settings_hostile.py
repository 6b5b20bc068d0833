"""``embridge train --set`` values of the wrong type or out of range are refused before a run is recorded.

Every setting is checked by the kind of its default in ``METHODS`` (a grid, a count, a weight, a
switch...): one line naming the setting, exit 2 (a usage error), and the workspace's run history
unchanged. Numbers have upper ends too: 1e300 overflowed float32 halfway through a run (a crash, or a
NaN loss blamed on the learning rate).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers.workspace_files import table_dump

from embridge.core.cli.main import main
from embridge.core.errors import InputError

BAD_SETTINGS = [
    ("affine", ['ridge_grid="abc"'], "ridge_grid"),
    ("affine", ["ridge_grid=5"], "ridge_grid"),
    ("affine", ["ridge_grid=[-1]"], "ridge_grid"),
    ("affine", ["ridge_grid=[1e300]"], "ridge_grid"),  # trained a chance-level layer
    ("affine", ["ridge_grid=[]"], "ridge_grid"),
    ("bt2", ['align_weight="x"'], "align_weight"),
    ("fusion", ["alpha_grid=0.5"], "alpha_grid"),
    ("fusion", ["alpha_grid=[null]"], "alpha_grid"),
    ("fusion", ["alpha_grid=[1.5]"], "alpha_grid"),
    ("cascade", ["k_grid=5"], "k_grid"),
    ("cascade", ["k_grid=[2.5]"], "k_grid"),
    ("auto", ["candidates=5"], "candidates"),
    ("auto", ["candidates=[3]"], "candidates"),
    ("procrustes", ["whiten=true", "shrink_grid=0.1"], "shrink_grid"),
    ("procrustes", ["shrink_grid=[2]"], "shrink_grid"),
    ("bct", ["influence_weight=-5"], "influence_weight"),
    ("bct", ["logit_scale=0"], "logit_scale"),
    ("bct", ["influence_weight=NaN"], "influence_weight"),
    ("bct", ["logit_scale=Infinity"], "logit_scale"),
    ("lowrank", ['diagonal="maybe"'], "diagonal"),
    ("mlp", ['amp="yes"'], "amp"),
    ("mlp", ["patience=0"], "patience"),
    ("mlp", ["temperature=1e300"], "temperature"),
    ("mlp", ["temperature=1e-300"], "temperature"),
    ("mlp", ["weight_decay=1e300"], "weight_decay"),
    ("bct", ["influence_weight=1e300"], "influence_weight"),
    ("mlp", ["patience=99999999999999999999"], "patience"),
]


def _runs_json(ws: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["runs", "-w", str(ws), "--json"]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize(("method", "sets", "name"), BAD_SETTINGS,
                         ids=[f"{m}-{'-'.join(s)}" for m, s, _ in BAD_SETTINGS])
def test_a_bad_setting_is_one_line_naming_it_and_records_no_run(
        demo_copy: Path, capsys: pytest.CaptureFixture[str], method: str, sets: list[str], name: str) -> None:
    runs, rows = _runs_json(demo_copy, capsys), table_dump(demo_copy)
    args = [a for s in sets for a in ("--set", s)]
    code = main(["train", "-w", str(demo_copy), "--method", method, "--epochs", "2", "--device", "cpu", *args])
    out, err = capsys.readouterr()
    assert code == 2 and out == "", err
    assert err.count("\n") == 1 and err.startswith("embridge: error: training settings: "), err
    assert re.search(rf"'{name}' must be ", err) and "unexpected" not in err and "learning rate" not in err, err
    assert _runs_json(demo_copy, capsys) == runs
    assert table_dump(demo_copy) == rows


@pytest.mark.parametrize(("method", "settings"), [
    ("affine", {"ridge_grid": [1e-3, 1]}),
    ("fusion", {"alpha_grid": [0, 1]}),
    ("cascade", {"k_grid": [1, 5]}),
    ("procrustes", {"whiten": False, "shrink_grid": [1.0]}),
    ("bct", {"influence_weight": 0, "logit_scale": 0.5}),
    ("bt2", {"align_weight": 0.0, "influence_weight": 2}),
    ("lowrank", {"diagonal": False, "amp": False}),
    ("auto", {"candidates": ["oca", "affine"], "time_budget": 5}),
])
def test_values_at_the_edges_of_their_range_are_accepted(method: str, settings: dict) -> None:
    from embridge.core.train.config import resolve_config

    assert {k: resolve_config(method, settings)[1][k] for k in settings} == settings


def test_every_default_passes_its_own_check() -> None:
    """The rules are derived from the defaults: each method's own defaults must satisfy them."""
    from embridge.core.train.config import known_kinds, resolve_config

    for kind in known_kinds():
        resolve_config(kind, {})


def test_a_setting_of_the_wrong_kind_is_refused_by_the_kind_of_its_default() -> None:
    """Every setting with a boolean, count, number or grid default refuses a text value, naming it."""
    from embridge.core.train.config import SPECIAL, allowed_settings, known_kinds, resolve_config

    for kind in known_kinds():
        for key, default in allowed_settings(kind).items():
            if key in SPECIAL or not isinstance(default, bool | int | float | list):
                continue
            with pytest.raises(InputError, match=rf"'{key}' must be "):
                resolve_config(kind, {key: "x"})


def test_a_train_refused_for_its_pairs_draws_no_folds(demo_copy: Path) -> None:
    """The refusal came after the test and training folds were drawn with its --seed and stored: the next run,
    with another seed, was then measured on the refused command's folds."""
    before = table_dump(demo_copy)
    assert main(["train", "-w", str(demo_copy), "--method", "procrustes", "--pairs", "queries", "--seed", "7"]) == 1
    assert table_dump(demo_copy) == before
