"""A refused option or combination of options: one line naming it, exit status 2, before any work.

argparse gives status 2 for the values it refuses itself; the combinations the commands check
afterwards give the same, so a script tells misuse (2) from a failed run or a failed gate (1).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from embridge.core.cli.main import main

CASES = [
    (["backfill", "--model", "m", "--detach"], "backfill", "--detach: submits a job to a Ray cluster"),
    (["backfill", "--model", "m", "--actors", "2"], "backfill", "--actors: sizes the Ray actor pool; it needs --engine ray"),
    (["report", "--shards", "3"], "report", "--shards: splits the gallery across Ray workers; it needs --engine ray"),
    (["report", "--engine", "ray", "--search", "ivf"], "report", "--search: --engine ray searches shards exactly"),
    (["report", "--junit", "{tmp}/gate.xml"], "report", "--junit: needs at least one --fail-under check"),
    (["chain", "--models", "a,,b", "--runs", "1,2"], "chain", "--models: has an empty entry in 'a,,b'"),
    (["import"], "import", "give --path (a folder or file to import), --from URI, or --qrels FILE"),
    (["import", "--from", "parquet:///{tmp}/store", "--model", " "], "import", "--model: is empty"),
    (["import", "--path", "{tmp}/x.csv", "--label-field", "label"], "import",
     "--label-field: names a payload field of a store's points"),
    (["migrate", "--bundle", "{tmp}/b.zip", "--from", "parquet:///{tmp}/a", "--to", "parquet:///{tmp}/b",
      "--engine", "ray", "--order", "planner"], "migrate", "--engine ray: migrates through the bundle only"),
]


@pytest.mark.parametrize(("argv", "command", "said"), CASES, ids=[" ".join(c[0][:2]) for c in CASES])
def test_a_refused_option_is_one_line_and_status_2(argv: list[str], command: str, said: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    ws = tmp_path / "ws"
    args = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if command != "migrate":
        args += ["--workspace", str(ws)]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1, captured.err
    assert said in captured.err and f"(see 'embridge {command} --help')" in captured.err, captured.err
    assert "Traceback" not in captured.err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing was created: no workspace, no output
