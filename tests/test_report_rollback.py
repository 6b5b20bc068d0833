"""The rollback cell (`report --rollback`): old queries against the backfilled gallery served in the old
space, recomputed by plain numpy, and shown on the command line as report.json holds it."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from report_fixtures import brute_force, old_gallery_ids

from embridge.core.adapters import adapt_queries, load_adapter
from embridge.core.cli.main import main
from embridge.core.formatting import format_share
from embridge.core.retrieval import l2_normalize
from embridge.core.store import Workspace


def test_the_rollback_cell_is_old_queries_against_the_mapped_new_gallery_and_is_printed(
        demo_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["train", "-w", str(demo_copy), "--method", "procrustes"]) == 0
    capsys.readouterr()
    assert main(["report", "-w", str(demo_copy), "--rollback", "--bootstrap", "20", "--json"]) == 0
    report = json.loads(Path(json.loads(capsys.readouterr().out)["report_json"]).read_text())
    cell = report["cells"]["old/new"]
    with Workspace.open(demo_copy) as ws:
        queries = np.asarray(ws.item_ids("query"), dtype=np.int64)
        both = set(ws.ids_with_vectors("new-cnn").tolist())
        sample = np.array([i for i in old_gallery_ids(ws, "old-mlp") if int(i) in both], dtype=np.int64)
        adapter = load_adapter(ws.adapter_path(int(ws.adapters()[-1]["id"])))
        # h(new) of each item, on L2-normalised inputs as the layer takes them
        mapped = adapt_queries(adapter, l2_normalize(ws.vectors_for("new-cnn", sample)), None)
        want = brute_force(ws.vectors_for("old-mlp", queries), mapped, np.array(ws.labels(queries)),
                           np.array(ws.labels(sample)))
    assert cell["protocol"]["n_gallery"] == len(sample) == 600
    assert cell["metrics"]["top1"] == pytest.approx(want["top1"], abs=1e-9)
    assert cell["metrics"]["top5"] == pytest.approx(want["top5"], abs=1e-9)

    # the plain text printed nothing of it: only the cell's name inside the search statement
    assert main(["report", "-w", str(demo_copy), "--rollback", "--bootstrap", "20"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("rollback (old/new"))
    flips = report["flips"]["old/new"]
    assert (f"top-1 {format_share(cell['metrics']['top1'])}; flips: negative "
            f"{format_share(flips['negative_flip_rate'])}, positive {format_share(flips['positive_flip_rate'])}") in line
    assert line.endswith(f"measured on {cell['protocol']['text']}")
