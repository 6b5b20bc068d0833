"""Every malformed input of the corpus (``badinputs.py``) fails the same way through ``embridge``.

One line on stderr that names the file and the problem, exit status 1 (a user error, never the
"unexpected" status 3 of a bug), nothing on stdout, and every file under the test's folder
(the workspace, the inputs, anything a hostile input might try to create) byte-identical
afterwards. A few cases run through a real ``python -m embridge.core.cli.main`` process too.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from badinputs import CORPUS, Case, corpus_base, make_env, state
from badinputs_commands import COMMAND_CASES

from embridge.core.cli.main import main

__all__ = ["corpus_base"]
REPO = Path(__file__).resolve().parent.parent


def test_the_corpus_is_large_and_covers_every_kind_of_input() -> None:
    names = [case.name for case in CORPUS]
    assert len(names) == len(set(names)) >= 30
    prefixes = {name.split("-")[0] for name in names}
    assert {"ckpt", "vectors", "csv", "jsonl", "images", "bundle", "db"} <= prefixes


def _error_line(err: str) -> str:
    """The one error line; progress lines may precede it on stderr."""
    errors = [line for line in err.splitlines() if line.startswith("embridge: error: ")]
    assert len(errors) == 1, err
    assert err.rstrip().splitlines()[-1] == errors[0]
    return errors[0]


ALL_CASES = [*CORPUS, *COMMAND_CASES]


def test_the_command_corpus_is_large_and_names_are_unique() -> None:
    names = [case.name for case in ALL_CASES]
    assert len(names) == len(set(names))
    assert len(COMMAND_CASES) >= 60


@pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c.name)
def test_bad_input_is_named_and_changes_nothing(case: Case, corpus_base: dict[str, Any], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    env = make_env(corpus_base["ws"], corpus_base["bundle"], tmp_path)
    bad = case.build(env)
    for name, value in env.environ.items():
        monkeypatch.setenv(name, value)
    before = state(tmp_path)
    capsys.readouterr()
    with env.stack:
        code = main(case.argv(env, bad))
        out, err = capsys.readouterr()
    line = _error_line(err)
    assert code == getattr(case, "code", 1), line
    assert out == ""
    assert str(bad) in line, f"the message does not name {bad}: {line}"
    assert re.search(case.expect, line), line
    assert state(tmp_path) == before  # nothing written, nothing run, nothing extracted


SUBPROCESS_CASES = ["db-corrupt", "csv-duplicate-keys", "bundle-member-escapes-folder",
                    "vectors-npy-header-claims-huge-shape"]


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_bad_input_through_a_real_process(name: str, corpus_base: dict[str, Any], tmp_path: Path) -> None:
    case = next(c for c in CORPUS if c.name == name)
    env = make_env(corpus_base["ws"], corpus_base["bundle"], tmp_path)
    bad = case.build(env)
    before = state(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "embridge.core.cli.main", *case.argv(env, bad)], cwd=REPO,
                          capture_output=True, text=True, timeout=120, env={**os.environ, **env.environ})
    line = _error_line(proc.stderr)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == ""
    assert str(bad) in line and re.search(case.expect, line), line
    assert state(tmp_path) == before


def test_a_pickle_that_would_run_code_really_would(tmp_path: Path) -> None:
    """The premise of the two pickle cases: a plain unpickler runs their payload."""
    import pickle

    from badinput_builders import Env, code_pickle

    env = Env(root=tmp_path, ws=tmp_path, inputs=tmp_path, bundle=tmp_path)
    pickle.loads(code_pickle(env, with_torch=False).read_bytes())
    assert (tmp_path / "code-ran").exists()
