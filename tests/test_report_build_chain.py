"""Version chains: the compatibility matrix of composed layers on a synthetic three-version workspace."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from report_fixtures import brute_force, build_chain_workspace, protocol_ids

from embridge.core.adapters import adapt_queries, load_adapter
from embridge.core.errors import InputError
from embridge.core.report.chain import chain_report
from embridge.core.store import Workspace


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    info = build_chain_workspace(tmp_path_factory.mktemp("chain") / "ws")
    with Workspace.open(info["path"]) as ws:
        info["report"] = chain_report(ws, info["models"], info["runs"])
    return info


def _gallery_and_queries(ws: Workspace, models: list[str]) -> tuple[np.ndarray, np.ndarray]:
    queries, gallery = protocol_ids(ws, models[0], models[1])
    for name in models[2:]:
        have = ws.ids_with_vectors(name)
        queries, gallery = np.intersect1d(queries, have), np.intersect1d(gallery, have)
    return queries, gallery


def test_matrix_matches_brute_force_with_composed_layers(chain: dict[str, Any]) -> None:
    models, c = chain["models"], chain["report"].chain
    m = np.array(c["matrix"], dtype=np.float64)
    with Workspace.open(chain["path"]) as ws:
        queries, gallery = _gallery_and_queries(ws, models)
        q_lab, g_lab = np.array(ws.labels(queries)), np.array(ws.labels(gallery))
        vec = {name: (ws.vectors_for(name, queries), ws.vectors_for(name, gallery)) for name in models}
        layers = [load_adapter(ws.adapter_path(ws.adapter_for_run(r)["id"])) for r in chain["runs"]]
    assert chain["report"].sizes["queries"] == len(queries) == 64
    for i, name in enumerate(models):
        assert m[i, i] == pytest.approx(brute_force(*vec[name], q_lab, g_lab)["top1"], abs=1e-6)
    # v3 queries through v3→v2, then v2→v1, against the untouched v1 gallery
    q = vec["v3"][0]
    for layer in (layers[1], layers[0]):
        q = adapt_queries(layer, q / np.linalg.norm(q, axis=1, keepdims=True))
    assert m[2, 0] == pytest.approx(brute_force(q, vec["v1"][1], q_lab, g_lab)["top1"], abs=1e-6)
    q21 = adapt_queries(layers[1], vec["v3"][0] / np.linalg.norm(vec["v3"][0], axis=1, keepdims=True))
    assert m[2, 1] == pytest.approx(brute_force(q21, vec["v2"][1], q_lab, g_lab)["top1"], abs=1e-6)
    assert np.isnan(m[np.triu_indices(3, k=1)]).all()
    # each version separates more classes than the one before: the diagonal rises clearly
    assert m[0, 0] + 0.1 < m[1, 1] and m[1, 1] + 0.1 < m[2, 2]


def test_ac_and_am_follow_their_definitions(chain: dict[str, Any]) -> None:
    c = chain["report"].chain
    m = np.array(c["matrix"], dtype=np.float64)
    wins = [m[i, j] > m[j, j] for i in range(3) for j in range(i)]
    assert c["ac"] == pytest.approx(2 * sum(wins) / (3 * 2))
    assert c["am"] == pytest.approx(np.mean([m[i, j] for i in range(3) for j in range(i + 1)]))
    assert [row["passes"] for row in c["criterion"]] == wins
    assert set(c["matrices"]) == {"top1", "top5", "recall@10", "mAP"}


def test_chain_report_files(chain: dict[str, Any]) -> None:
    report = chain["report"]
    stored = json.loads(Path(report.json_file).read_text(encoding="utf-8"))
    assert stored["schema"] == "embridge.report/1" and stored["kind"] == "chain"
    assert stored["chain"]["matrix"][0][1] is None  # above the diagonal: undefined, written as null
    page = Path(report.html_file).read_text(encoding="utf-8")
    assert page.count("<svg") == 1 and 'id="figure-compatibility_matrix"' in page
    assert "http://" not in page and "https://" not in page
    with Workspace.open(chain["path"]) as ws:
        row = ws.report(report.report_id)
        assert row["run_id"] is None and row["summary"]["ac"] == report.chain["ac"]


def test_chain_refuses_steps_in_the_wrong_order(chain: dict[str, Any]) -> None:
    with Workspace.open(chain["path"]) as ws, pytest.raises(InputError, match="step 1 of the chain"):
        chain_report(ws, chain["models"], list(reversed(chain["runs"])), write=False)


def test_a_renamed_version_is_renamed_in_the_chain_runs_that_name_it(tmp_path: Path) -> None:
    """``model rename`` says its runs follow: the chain report's run kept the old name in its versions, so
    'runs' listed a chain over a model that no longer exists and rerunning it as listed failed."""
    from embridge.core.models.manage import rename_model

    info = build_chain_workspace(tmp_path / "ws")
    with Workspace.open(info["path"]) as ws:
        before = chain_report(ws, info["models"], info["runs"])
        rename_model(ws, "v2", "v2b")
        run = ws.run(int(before.report_run_id))
        assert run["config"]["models"] == ["v1", "v2b", "v3"]
        again = chain_report(ws, run["config"]["models"], run["config"]["runs"])  # rerun as recorded
        np.testing.assert_array_equal(np.array(again.chain["matrix"]), np.array(before.chain["matrix"]))


def test_chain_usage_errors_name_the_option(chain: dict[str, Any]) -> None:
    """The count check named no option (exit 1); a recall@k the option admits but the sample does not
    report was called an unknown metric."""
    from embridge.core.errors import UsageError

    models, runs = chain["models"], chain["runs"]
    with Workspace.open(chain["path"]) as ws:
        with pytest.raises(UsageError, match=r"--runs.*gives 1 run for 3 versions; a chain of 3 versions takes 2"):
            chain_report(ws, models, runs[:1], write=False)
        with pytest.raises(UsageError, match=r"--models.*names 1 version; a chain needs at least two"):
            chain_report(ws, models[:1], [], write=False)
        with pytest.raises(UsageError, match=r"--metric.*recall@5 is not measured on this chain's sample of \d+ "
                                             r"items, which reports recall@10"):
            chain_report(ws, models, runs, metric="recall@5", write=False)


def test_a_head_run_an_unknown_run_and_a_reversed_run_are_refused_naming_what_they_are(chain: dict[str, Any]) -> None:
    """A bct head was chained as a plain layer, against a diagonal of the raw new model the head replaces
    when served; '--runs 99' named the workspace, and a reversed run did not say which way it was trained."""
    from embridge.core.train.runs import train_run

    models, runs = chain["models"], chain["runs"]
    with Workspace.open(chain["path"]) as ws:
        head = train_run(ws, "bct", "v1", "v2", device="cpu", config={"epochs": 1})["run_id"]
        reverse = train_run(ws, "affine", "v2", "v1", device="cpu")["run_id"]
        with pytest.raises(InputError, match=rf"run {head}: is a bct head: 'v2' would be served through it"):
            chain_report(ws, models, [head, runs[1]], write=False)
        with pytest.raises(InputError, match=r"--runs: names run 999, which the workspace does not hold"):
            chain_report(ws, models, [999, runs[1]], write=False)
        with pytest.raises(InputError, match=rf"run {reverse}: was trained with old model 'v2' and new model 'v1', "
                                             "but step 1 of the chain takes old 'v1' and new 'v2'"):
            chain_report(ws, models, [reverse, runs[1]], write=False)


def test_a_forward_chain_says_its_layers_carry_the_gallery_up(tmp_path: Path) -> None:
    """fct layers were labelled 'v2 → v1' and the page said the queries were mapped down."""
    from embridge.core.train.runs import train_run

    info = build_chain_workspace(tmp_path / "ws")
    with Workspace.open(info["path"]) as ws:
        runs = [train_run(ws, "fct", f"v{k}", f"v{k + 1}", device="cpu", config={"epochs": 2})["run_id"]
                for k in (1, 2)]
        report = chain_report(ws, info["models"], runs)
    assert [layer["maps"] for layer in report.chain["layers"]] == ["v1 gallery → v2 space", "v2 gallery → v3 space"]
    page = Path(report.html_file).read_text(encoding="utf-8")
    assert "carried up the chain of forward layers" in page and "mapped down" not in page


def test_without_labels_or_judgments_ac_is_said_to_measure_nothing(chain: dict[str, Any], tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """With the query's own item as its relevance each version finds its own items (the diagonal is 1), so
    AC was 0 whatever the layers, printed with no word of why."""
    from embridge.core.report.chain_text import chain_lines

    info = build_chain_workspace(tmp_path / "ws")
    with Workspace.open(info["path"]) as ws:
        ws.db.execute("update items set label = null")
        report = chain_report(ws, info["models"], info["runs"], write=False)
    c = report.chain
    assert np.diag(np.array(c["matrix"])).min() == 1.0 and c["ac"] == 0.0
    assert any(line.startswith("note: AC is 0 by construction here") for line in chain_lines(c))
    said = " ".join(report.protocol)  # 'searches ... plus the 64 query items: 256 of the 256 gallery items'
    assert "256 of the 256 gallery items and the 64 query items, 320 in all" in said
    assert "items the layers were fitted on" in said and "the layer was" not in said
    labelled = chain["report"].chain
    assert "ac_note" not in labelled and not any(line.startswith("note:") for line in chain_lines(labelled))
    from embridge.core.cli.main import main

    assert main(["chain", "--workspace", str(info["path"]), "--models", "v1,v2,v3", "--runs",
                 ",".join(map(str, info["runs"])), "--json"]) == 0  # --json carries the note too
    assert json.loads(capsys.readouterr().out)["ac_note"].startswith("AC is 0 by construction here")
